#include "experiment/inputs.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "temp_files.hpp"

using occam::ad::Rng;
using occam::experiment::InputError;
using occam::experiment::load_csv;
using occam::experiment::make_inputs;

namespace {

/// A scratch folder for this file's tests.
struct TempDir : occam::testing::TempDir {
    TempDir() : occam::testing::TempDir("occam-inputs-test-") {}
};
using occam::testing::contains;
using occam::testing::error_of;

/// n lines "i,2i" for i = 0..n-1 (valid data rows).
std::string numbered_rows(int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += std::to_string(i) + "," + std::to_string(2 * i) + "\n";
    return s;
}

double column_variance(const Eigen::MatrixXd& X, int j) {
    const double m = X.col(j).mean();
    return (X.col(j).array() - m).square().mean();
}

}  // namespace

TEST_CASE("inputs: make_inputs parses every built-in spec") {
    auto disk = make_inputs("disk");
    CHECK(disk->dim() == 2);
    CHECK(disk->describe() == "disk");
    CHECK_FALSE(disk->is_sphere());

    auto sphere = make_inputs("sphere:3");
    CHECK(sphere->dim() == 3);
    CHECK(sphere->describe() == "sphere:3");
    CHECK(sphere->is_sphere());

    auto cube = make_inputs("cube:2");
    CHECK(cube->dim() == 2);
    CHECK(cube->describe() == "cube:2");
    CHECK_FALSE(cube->is_sphere());

    auto gauss = make_inputs("gaussian:5");
    CHECK(gauss->dim() == 5);
    CHECK(gauss->describe() == "gaussian:5");

    CHECK(make_inputs("cube:1")->dim() == 1);
    CHECK(make_inputs("sphere:2")->dim() == 2);
    CHECK(make_inputs(" sphere:4 ")->describe() == "sphere:4");  // surrounding spaces from a config
}

TEST_CASE("inputs: make_inputs rejects bad specs with one-line messages") {
    CHECK(error_of([] { make_inputs("foo"); }) ==
          "unknown inputs 'foo' (expected disk, sphere:D, cube:D, gaussian:D, ipd[:key=value,...], file:PATH.csv, "
          "mnist[:PACKAGE_DIR] or idx:DIR)");
    CHECK(error_of([] { make_inputs("sphere:x"); }) == "inputs 'sphere:x': dimension must be an integer >= 2");
    CHECK(error_of([] { make_inputs("sphere:1"); }) == "inputs 'sphere:1': dimension must be an integer >= 2");
    CHECK(error_of([] { make_inputs("sphere:3x"); }) == "inputs 'sphere:3x': dimension must be an integer >= 2");
    CHECK(error_of([] { make_inputs("sphere:-3"); }) == "inputs 'sphere:-3': dimension must be an integer >= 2");
    CHECK(error_of([] { make_inputs("cube:0"); }) == "inputs 'cube:0': dimension must be an integer >= 1");
    CHECK(error_of([] { make_inputs("gaussian:"); }) == "inputs 'gaussian:': dimension must be an integer >= 1");
    CHECK(contains(error_of([] { make_inputs("cube"); }), "missing dimension"));
    CHECK(contains(error_of([] { make_inputs("sphere:99999999999"); }), "dimension must be an integer"));
    CHECK(contains(error_of([] { make_inputs("sphere:1000000"); }), "too large"));
    CHECK(contains(error_of([] { make_inputs("disk:2"); }), "disk takes no dimension"));
    CHECK(contains(error_of([] { make_inputs("file:"); }), "expected file:PATH.csv"));
    CHECK(contains(error_of([] { make_inputs(""); }), "unknown inputs ''"));
    CHECK(contains(error_of([] { make_inputs("Sphere:3"); }), "unknown inputs"));
    for (const char* spec : {"foo", "sphere:x", "disk:2", "file:", "file:/no/such/occam/file.csv"}) {
        const std::string msg = error_of([&] { make_inputs(spec); });
        CHECK_FALSE(msg.empty());
        CHECK(msg.find('\n') == std::string::npos);
    }
}

TEST_CASE("inputs: disk samples are uniform on the unit disk") {
    Rng rng(7);
    const Eigen::MatrixXd X = make_inputs("disk")->sample(20000, rng);
    REQUIRE(X.rows() == 20000);
    REQUIRE(X.cols() == 2);
    const Eigen::ArrayXd r2 = X.rowwise().squaredNorm().array();
    CHECK(r2.maxCoeff() <= 1.0);
    // Uniform on the disk means r^2 ~ U(0, 1): mean 1/2, and a quarter of points inside r = 1/2.
    CHECK(r2.mean() == doctest::Approx(0.5).epsilon(0.02));
    CHECK(static_cast<double>((r2 < 0.25).count()) / 20000.0 == doctest::Approx(0.25).epsilon(0.05));
    CHECK(std::abs(X.col(0).mean()) < 0.02);
    CHECK(std::abs(X.col(1).mean()) < 0.02);
    CHECK(column_variance(X, 0) == doctest::Approx(0.25).epsilon(0.04));  // E[x^2] = E[r^2]/2
    // Every quadrant gets about a quarter of the points (the angle is uniform).
    const double q1 = static_cast<double>(((X.col(0).array() > 0) && (X.col(1).array() > 0)).count()) / 20000.0;
    CHECK(q1 == doctest::Approx(0.25).epsilon(0.05));
}

TEST_CASE("inputs: sphere samples are uniform on the unit sphere") {
    Rng rng(11);
    const Eigen::MatrixXd X = make_inputs("sphere:3")->sample(20000, rng);
    REQUIRE(X.rows() == 20000);
    REQUIRE(X.cols() == 3);
    CHECK((X.rowwise().norm().array() - 1.0).abs().maxCoeff() < 1e-12);
    for (int j = 0; j < 3; ++j) {
        CHECK(std::abs(X.col(j).mean()) < 0.02);
        CHECK(column_variance(X, j) == doctest::Approx(1.0 / 3.0).epsilon(0.03));
    }
    // On S^2 each coordinate is uniform on [-1, 1] (Archimedes): a quarter below -1/2.
    CHECK(static_cast<double>((X.col(2).array() < -0.5).count()) / 20000.0 == doctest::Approx(0.25).epsilon(0.05));

    // Other dimensions: unit norms and per-coordinate variance 1/D.
    for (int d : {2, 4, 10}) {
        Rng r(3, static_cast<uint64_t>(d));
        const Eigen::MatrixXd Y = make_inputs("sphere:" + std::to_string(d))->sample(5000, r);
        REQUIRE(Y.cols() == d);
        CHECK((Y.rowwise().norm().array() - 1.0).abs().maxCoeff() < 1e-12);
        CHECK(column_variance(Y, 0) == doctest::Approx(1.0 / d).epsilon(0.08));
    }
}

TEST_CASE("inputs: cube samples are uniform on the cube") {
    Rng rng(5);
    const Eigen::MatrixXd X = make_inputs("cube:4")->sample(20000, rng);
    REQUIRE(X.rows() == 20000);
    REQUIRE(X.cols() == 4);
    CHECK(X.minCoeff() >= -1.0);
    CHECK(X.maxCoeff() < 1.0);
    for (int j = 0; j < 4; ++j) {
        CHECK(std::abs(X.col(j).mean()) < 0.02);
        CHECK(column_variance(X, j) == doctest::Approx(1.0 / 3.0).epsilon(0.03));
    }
}

TEST_CASE("inputs: gaussian samples have zero mean and identity covariance") {
    Rng rng(9);
    const Eigen::MatrixXd X = make_inputs("gaussian:3")->sample(20000, rng);
    REQUIRE(X.rows() == 20000);
    REQUIRE(X.cols() == 3);
    const Eigen::MatrixXd centred = X.rowwise() - X.colwise().mean();
    const Eigen::MatrixXd cov = centred.transpose() * centred / 20000.0;
    CHECK((cov - Eigen::MatrixXd::Identity(3, 3)).cwiseAbs().maxCoeff() < 0.05);
    CHECK(X.colwise().mean().cwiseAbs().maxCoeff() < 0.03);
    // Tails: about 4.55% of |x| beyond 2.
    CHECK(static_cast<double>((X.col(0).array().abs() > 2.0).count()) / 20000.0 ==
          doctest::Approx(0.0455).epsilon(0.15));
}

TEST_CASE("inputs: sampling is deterministic for a given Rng") {
    for (const char* spec : {"disk", "sphere:3", "cube:2", "gaussian:5"}) {
        CAPTURE(spec);
        auto inputs = make_inputs(spec);
        Rng a(42, 1), b(42, 1), c(43, 1);
        const Eigen::MatrixXd xa = inputs->sample(50, a);
        const Eigen::MatrixXd xb = inputs->sample(50, b);
        const Eigen::MatrixXd xc = inputs->sample(50, c);
        CHECK(xa == xb);
        CHECK(xa != xc);
        CHECK(a.counter() == b.counter());
        // Rows are drawn one after another, so a shorter draw is a prefix of a longer one.
        Rng d(42, 1);
        CHECK(inputs->sample(20, d) == xa.topRows(20));
        // Zero samples is a valid, empty draw.
        CHECK(inputs->sample(0, d).rows() == 0);
        CHECK_THROWS_AS(inputs->sample(-1, d), std::invalid_argument);
    }
}

TEST_CASE("inputs: load_csv reads numbers with or without a header") {
    TempDir dir;
    SUBCASE("plain rows") {
        const Eigen::MatrixXd M = load_csv(dir.write("plain.csv", numbered_rows(12)));
        REQUIRE(M.rows() == 12);
        REQUIRE(M.cols() == 2);
        CHECK(M(0, 0) == 0.0);
        CHECK(M(11, 0) == 11.0);
        CHECK(M(11, 1) == 22.0);
    }
    SUBCASE("a header row of names is skipped") {
        const Eigen::MatrixXd M = load_csv(dir.write("header.csv", "x, y\n" + numbered_rows(10)));
        REQUIRE(M.rows() == 10);
        CHECK(M(0, 0) == 0.0);
        CHECK(M(9, 1) == 18.0);
    }
    SUBCASE("blank lines whitespace CRLF signs and exponents") {
        std::string text = "\n  a , b \r\n\r\n";
        text += " +1.5 , -2e-3\r\n";
        text += "   \n";
        text += ".5,1E2\n";
        text += numbered_rows(8);
        text += "\n\n";
        const Eigen::MatrixXd M = load_csv(dir.write("messy.csv", text));
        REQUIRE(M.rows() == 10);
        REQUIRE(M.cols() == 2);
        CHECK(M(0, 0) == 1.5);
        CHECK(M(0, 1) == -0.002);
        CHECK(M(1, 0) == 0.5);
        CHECK(M(1, 1) == 100.0);
    }
    SUBCASE("a byte-order mark before the header is ignored") {
        const Eigen::MatrixXd M = load_csv(dir.write("bom.csv", "\xEF\xBB\xBFx,y\n" + numbered_rows(10)));
        CHECK(M.rows() == 10);
    }
    SUBCASE("one column") {
        std::string text = "value\n";
        for (int i = 0; i < 10; ++i) text += std::to_string(i) + "\n";
        const Eigen::MatrixXd M = load_csv(dir.write("one.csv", text));
        CHECK(M.rows() == 10);
        CHECK(M.cols() == 1);
    }
}

TEST_CASE("inputs: load_csv errors name the file line and column") {
    TempDir dir;
    SUBCASE("missing file") {
        const std::string path = (dir.path / "absent.csv").string();
        const std::string msg = error_of([&] { load_csv(path); });
        CHECK(contains(msg, path));
        CHECK(contains(msg, "no such file"));
    }
    SUBCASE("a directory") {
        const std::string msg = error_of([&] { load_csv(dir.path.string()); });
        CHECK(contains(msg, "is a directory"));
    }
    SUBCASE("ragged rows") {
        // line 1 header, lines 2-4 data, line 5 has an extra value
        const std::string path = dir.write("ragged.csv", "x,y\n1,2\n3,4\n5,6\n7,8,9\n" + numbered_rows(10));
        const std::string msg = error_of([&] { load_csv(path); });
        CHECK(msg == "inputs file '" + path + "': line 5 has 3 values, expected 2");
        const std::string short_path = dir.write("short.csv", "1,2\n3\n");
        CHECK(contains(error_of([&] { load_csv(short_path); }), "line 2 has 1 value, expected 2"));
    }
    SUBCASE("a non-numeric cell") {
        const std::string path = dir.write("text.csv", "x,y\n1,2\n3,4\n5,abc\n" + numbered_rows(10));
        CHECK(error_of([&] { load_csv(path); }) == "inputs file '" + path + "': line 4, column 2: 'abc' is not a number");
    }
    SUBCASE("trailing garbage after a number") {
        const std::string path = dir.write("garbage.csv", "1,2\n1.5x,4\n" + numbered_rows(10));
        CHECK(contains(error_of([&] { load_csv(path); }), "line 2, column 1: '1.5x' is not a number"));
        const std::string path2 = dir.write("twodots.csv", "1,2\n3,1.2.3\n" + numbered_rows(10));
        CHECK(contains(error_of([&] { load_csv(path2); }), "line 2, column 2: '1.2.3' is not a number"));
        const std::string path3 = dir.write("quoted.csv", "1,2\n\"3\",4\n" + numbered_rows(10));
        CHECK(contains(error_of([&] { load_csv(path3); }), "is not a number"));
    }
    SUBCASE("an empty cell") {
        const std::string path = dir.write("empty.csv", "1,2\n3,\n" + numbered_rows(10));
        CHECK(contains(error_of([&] { load_csv(path); }), "line 2, column 2: empty value"));
    }
    SUBCASE("NaN and infinity") {
        const std::string nan_path = dir.write("nan.csv", numbered_rows(6) + "nan,1\n" + numbered_rows(6));
        CHECK(error_of([&] { load_csv(nan_path); }) ==
              "inputs file '" + nan_path + "': line 7, column 1: non-finite value 'nan'");
        const std::string inf_path = dir.write("inf.csv", "1,-inf\n" + numbered_rows(10));
        CHECK(contains(error_of([&] { load_csv(inf_path); }), "line 1, column 2: non-finite value '-inf'"));
        const std::string big_path = dir.write("big.csv", "1,2\n1e999,3\n" + numbered_rows(10));
        CHECK(contains(error_of([&] { load_csv(big_path); }), "line 2, column 1: non-finite value '1e999'"));
    }
    SUBCASE("a half-numeric first line is data not a header") {
        const std::string path = dir.write("half.csv", "x,1\n" + numbered_rows(10));
        CHECK(contains(error_of([&] { load_csv(path); }), "line 1, column 1: 'x' is not a number"));
    }
    SUBCASE("too few data rows") {
        const std::string path = dir.write("few.csv", "x,y\n" + numbered_rows(7));
        CHECK(error_of([&] { load_csv(path); }) == "inputs file '" + path + "': only 7 data rows; need at least 10");
        const std::string empty_path = dir.write("nothing.csv", "\n\n");
        CHECK(contains(error_of([&] { load_csv(empty_path); }), "only 0 data rows"));
        const std::string header_only = dir.write("header_only.csv", "a,b\n");
        CHECK(contains(error_of([&] { load_csv(header_only); }), "only 0 data rows"));
    }
    SUBCASE("underflow reads as a tiny number") {
        const Eigen::MatrixXd M = load_csv(dir.write("tiny.csv", "1e-400,1\n" + numbered_rows(10)));
        CHECK(M(0, 0) == doctest::Approx(0.0));
    }
}

TEST_CASE("inputs: file inputs sample rows without replacement") {
    TempDir dir;
    const std::string path = dir.write("data.csv", "a,b,c\n" + [] {
        std::string s;
        for (int i = 0; i < 40; ++i) s += std::to_string(i) + "," + std::to_string(i * i) + "," + std::to_string(-i) + "\n";
        return s;
    }());
    auto inputs = make_inputs("file:" + path);
    CHECK(inputs->dim() == 3);
    CHECK(inputs->describe() == "file:" + path);
    CHECK_FALSE(inputs->is_sphere());

    // n <= rows: distinct rows (a train and test set drawn together are disjoint), all from the file.
    Rng rng(1);
    const Eigen::MatrixXd X = inputs->sample(40, rng);
    REQUIRE(X.rows() == 40);
    std::set<int> ids;
    for (int i = 0; i < 40; ++i) {
        const double id = X(i, 0);
        CHECK(X(i, 1) == id * id);
        CHECK(X(i, 2) == -id);
        ids.insert(static_cast<int>(id));
    }
    CHECK(ids.size() == 40);

    Rng r2(2);
    const Eigen::MatrixXd Y = inputs->sample(25, r2);
    std::set<int> ids25;
    for (int i = 0; i < 25; ++i) ids25.insert(static_cast<int>(Y(i, 0)));
    CHECK(ids25.size() == 25);

    // n > rows: with replacement, still only rows of the file.
    Rng r3(3);
    const Eigen::MatrixXd Z = inputs->sample(100, r3);
    REQUIRE(Z.rows() == 100);
    for (int i = 0; i < 100; ++i) {
        CHECK(Z(i, 0) >= 0.0);
        CHECK(Z(i, 0) <= 39.0);
        CHECK(Z(i, 1) == Z(i, 0) * Z(i, 0));
    }

    // Deterministic for a given Rng, and the file is read once: deleting it changes nothing.
    std::filesystem::remove(path);
    Rng again(1);
    CHECK(inputs->sample(40, again) == X);

    // A missing file fails at construction, naming it.
    CHECK(contains(error_of([&] { make_inputs("file:" + path); }), path));
}

// ---- Numbers from the user, read whole (experiment/parse.hpp), and data files that are not
// files: every bad value is one line naming the flag, never a wrapped or truncated number.

#include <sys/stat.h>

#include "experiment/parse.hpp"

namespace {
/// The std::invalid_argument message thrown by f, or "" if it threw nothing.
template <class F>
std::string invalid_of(F&& f) {
    try {
        f();
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "";
}
}  // namespace

TEST_CASE("parse: integers are read whole, in range, with the flag in every error") {
    using occam::experiment::parse_integer;
    CHECK(parse_integer<int>("42", "--steps") == 42);
    CHECK(parse_integer<int>(" 7 ", "--steps") == 7);  // blanks around a list item are not junk
    CHECK(parse_integer<int>("-3", "--x") == -3);
    CHECK(parse_integer<std::uint64_t>("18446744073709551615", "--seeds") == 18446744073709551615ull);
    // std::stoull("-1") is 2^64 - 1, std::stoi("20x") is 20: both are errors here.
    CHECK(invalid_of([] { parse_integer<std::uint64_t>("-1", "--seeds"); }) == "--seeds: '-1' is not a non-negative integer");
    CHECK(invalid_of([] { parse_integer<int>("20x", "--features"); }) == "--features: '20x' is not an integer");
    CHECK(invalid_of([] { parse_integer<int>("+5", "--steps"); }) == "--steps: '+5' is not an integer");
    CHECK(invalid_of([] { parse_integer<int>("", "--steps"); }) == "--steps: '' is not an integer");
    CHECK(invalid_of([] { parse_integer<int>("1.5", "--steps"); }) == "--steps: '1.5' is not an integer");
    CHECK(invalid_of([] { parse_integer<int>("99999999999999999999", "--steps"); }) ==
          "--steps: '99999999999999999999' is out of range (-2147483648 to 2147483647)");
    CHECK(invalid_of([] { parse_integer<std::uint64_t>("18446744073709551616", "--seeds"); }) ==
          "--seeds: '18446744073709551616' is out of range (0 to 18446744073709551615)");
    CHECK(invalid_of([] { parse_integer<int>("0", "--threads", 1, 1024); }) == "--threads: '0' is out of range (1 to 1024)");
    CHECK(invalid_of([] { parse_integer<int>("-3", "--threads", 1, 1024); }) == "--threads: '-3' is out of range (1 to 1024)");
}

TEST_CASE("parse: numbers are read whole and finite") {
    using occam::experiment::parse_number;
    CHECK(parse_number("0.01", "--lr") == 0.01);
    CHECK(parse_number("+1e-3", "--lr") == 0.001);
    CHECK(parse_number("1e-400", "--lr") == doctest::Approx(0.0));  // underflow reads as (almost) 0
    CHECK(invalid_of([] { parse_number("0.01x", "--lr"); }) == "--lr: '0.01x' is not a number");
    CHECK(invalid_of([] { parse_number("nan", "--lr"); }) == "--lr: 'nan' is not a finite number");
    CHECK(invalid_of([] { parse_number("-inf", "--lr"); }) == "--lr: '-inf' is not a finite number");
    CHECK(invalid_of([] { parse_number("1e999", "--lr"); }) == "--lr: '1e999' is too large");
    CHECK(invalid_of([] { parse_number("", "--lr"); }) == "--lr: '' is not a number");
    CHECK(invalid_of([] { parse_number("-1", "ridge", 0.0); }) == "ridge: '-1' is out of range (must be >= 0)");
    CHECK(invalid_of([] { parse_number("2", "p", 0.0, 1.0); }) == "p: '2' is out of range (0 to 1)");
}

TEST_CASE("parse: integer lists and K or MIN:MAX ranges") {
    using occam::experiment::parse_int_range;
    using occam::experiment::parse_integer_list;
    CHECK(parse_integer_list<std::uint64_t>("1,2,3", "--seeds") == std::vector<std::uint64_t>{1, 2, 3});
    CHECK(parse_integer_list<std::uint64_t>("1, 2", "--seeds") == std::vector<std::uint64_t>{1, 2});
    CHECK(invalid_of([] { parse_integer_list<std::uint64_t>("1,-1", "--seeds"); }) ==
          "--seeds: '-1' is not a non-negative integer");
    CHECK(invalid_of([] { parse_integer_list<std::uint64_t>("1,2,1", "--seeds"); }) == "--seeds: 1 is listed twice");
    CHECK(invalid_of([] { parse_integer_list<std::uint64_t>("1,,2", "--seeds"); }) == "--seeds: empty item in '1,,2'");
    CHECK(invalid_of([] { parse_integer_list<std::uint64_t>("1,", "--seeds"); }) == "--seeds: empty item in '1,'");
    CHECK(invalid_of([] { parse_integer_list<std::uint64_t>("", "--seeds"); }) == "--seeds is empty");
    CHECK(parse_integer_list<int>("1,1", "--x", 0, 9, false) == std::vector<int>{1, 1});

    CHECK(parse_int_range("20", ':', "--features") == std::pair{20, 20});
    CHECK(parse_int_range("10:50", ':', "--features") == std::pair{10, 50});
    CHECK(parse_int_range("10-50", '-', "features") == std::pair{10, 50});
    for (const char* bad : {"10:20x", "10x:20", "abc", "", ":5", "5:", "20:10", "0", "-5", "99999999999", "1:2:3"}) {
        CAPTURE(bad);
        const std::string msg = invalid_of([&] { parse_int_range(bad, ':', "--features"); });
        CHECK(msg == "--features must be K or MIN:MAX, integers with 1 <= MIN <= MAX <= 2147483647 (got '" +
                         std::string(bad) + "')");
    }
}

TEST_CASE("parse: sizes and byte counts for messages") {
    using occam::experiment::describe_bytes;
    CHECK(describe_bytes(512) == "512 bytes");
    CHECK(describe_bytes(16e9) == "16 GB");
    CHECK(describe_bytes(23.4e9) == "23.4 GB");
    CHECK(describe_bytes(8 * 2147483647.0) == "17.2 GB");
    CHECK(describe_bytes(2.5e9) == "2.5 GB");
    CHECK(occam::experiment::describe_count(100000000) == "100000000");
    CHECK(occam::experiment::physical_memory_bytes() > 0);
}

TEST_CASE("inputs: a FIFO, a device or a directory is refused at once, never read") {
    TempDir dir;
    const std::string fifo = (dir.path / "pipe.csv").string();
    REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
    // Opening a FIFO for reading blocks until a writer comes: the check must come first.
    const std::string msg = error_of([&] { load_csv(fifo); });
    CHECK(msg == "inputs file '" + fifo + "' is not a regular file (a FIFO); occam reads CSV files only");
    CHECK(error_of([&] { make_inputs("file:" + fifo); }) == msg);
    CHECK(error_of([&] { occam::experiment::input_dim("file:" + fifo); }) == msg);
    CHECK(contains(error_of([] { load_csv("/dev/null"); }), "is not a regular file (a character device)"));
    CHECK(contains(error_of([&] { load_csv(dir.path.string()); }), "is a directory"));
    // A symbolic link to a regular file is read as the file.
    const std::string data = dir.write("data.csv", numbered_rows(12));
    std::filesystem::create_symlink(data, dir.path / "link.csv");
    CHECK(load_csv((dir.path / "link.csv").string()).rows() == 12);
    std::filesystem::create_symlink(fifo, dir.path / "fifo-link.csv");
    CHECK(contains(error_of([&] { load_csv((dir.path / "fifo-link.csv").string()); }), "(a FIFO)"));
}

TEST_CASE("inputs: input_dim gives the dimension without loading the data") {
    TempDir dir;
    CHECK(occam::experiment::input_dim("sphere:3") == 3);
    CHECK(occam::experiment::input_dim("disk") == 2);
    CHECK(occam::experiment::input_dim("file:" + dir.write("h.csv", "\xEF\xBB\xBF\na,b,c\n1,2,3\n")) == 3);
    CHECK(contains(error_of([&] { occam::experiment::input_dim("file:" + (dir.path / "no.csv").string()); }),
                   "no such file"));
    CHECK(contains(error_of([] { occam::experiment::input_dim("sphere:x"); }), "dimension must be an integer"));
}

// ---- Two views of one sample: the meta-learner labels X, the learner sees learner_view(X) ----

TEST_CASE("inputs: the default learner view is the samples themselves and draws nothing") {
    TempDir dir;
    const std::string file = "file:" + dir.write("d.csv", numbered_rows(12));
    for (const std::string spec : {"disk", "sphere:3", "cube:2", "gaussian:5", file.c_str()}) {
        CAPTURE(spec);
        auto inputs = make_inputs(spec);
        CHECK(inputs->learner_dim() == inputs->dim());
        CHECK(inputs->time_bins() == 1);
        CHECK(inputs->time_bin_ms() == 0.0);
        CHECK(inputs->channels() == inputs->dim());
        CHECK(occam::experiment::learner_input_dim(spec) == inputs->dim());
        Rng rng(5, 2);
        const Eigen::MatrixXd X = inputs->sample(30, rng);
        const uint64_t before = rng.counter();
        CHECK(inputs->learner_view(X, rng) == X);
        CHECK(rng.counter() == before);  // no randomness consumed: every later draw is as before
    }
}

namespace {
using occam::experiment::IpdInputs;
using occam::experiment::IpdSettings;
constexpr double kPi = 3.14159265358979323846;

/// n samples that all have the same u.
Eigen::MatrixXd constant_u(int n, double u) { return Eigen::MatrixXd::Constant(n, 1, u); }
}  // namespace

TEST_CASE("inputs: ipd parses its defaults and every key") {
    auto d = make_inputs("ipd");
    CHECK(d->dim() == 1);
    CHECK(d->describe() == "ipd:fibres=16,dt=2,duration=100,freq=20,rate=400,power=2,phase=per-sample");
    CHECK(d->time_bins() == 50);
    CHECK(d->time_bin_ms() == 2.0);
    CHECK(d->channels() == 32);
    CHECK(d->learner_dim() == 1600);
    CHECK_FALSE(d->is_sphere());
    CHECK(occam::experiment::input_dim("ipd") == 1);
    CHECK(occam::experiment::learner_input_dim("ipd") == 1600);
    CHECK(occam::experiment::is_ipd("ipd"));
    CHECK(occam::experiment::is_ipd(" ipd:fibres=2 "));
    CHECK_FALSE(occam::experiment::is_ipd("ipdx"));
    CHECK_FALSE(occam::experiment::is_ipd("sphere:3"));

    auto e = make_inputs("ipd:fibres=3, dt=0.5,duration=20,freq=40.5,rate=1000,power=1.5,phase=shared");
    const auto& s = dynamic_cast<const IpdInputs&>(*e).settings();
    CHECK(s.fibres == 3);
    CHECK(s.dt == 0.5);
    CHECK(s.duration == 20);
    CHECK(s.freq == 40.5);
    CHECK(s.rate == 1000);
    CHECK(s.power == 1.5);
    CHECK(s.shared_phase);
    CHECK(e->time_bins() == 40);
    CHECK(e->time_bin_ms() == 0.5);
    CHECK(e->learner_dim() == 40 * 2 * 3);
    CHECK(e->describe() == "ipd:fibres=3,dt=0.5,duration=20,freq=40.5,rate=1000,power=1.5,phase=shared");
    CHECK(make_inputs("ipd:phase=per-sample")->describe() == d->describe());
    CHECK(make_inputs("ipd:freq=0")->describe().find(",freq=0,") != std::string::npos);  // a constant phase is allowed
    CHECK(make_inputs("ipd:dt=0.1,duration=1")->time_bins() == 10);  // 1 / 0.1 is 10 up to rounding
    CHECK(make_inputs("ipd:fibres=1")->learner_dim() == 100);

    // describe() recreates the distribution: same settings, same spec, same draws.
    for (const char* spec : {"ipd", "ipd:fibres=3,dt=0.5,duration=20,freq=40.5,rate=1000,power=1.5,phase=shared",
                             "ipd:dt=0.1,duration=1,power=0.3,freq=1e-05"}) {
        CAPTURE(spec);
        auto a = make_inputs(spec);
        auto b = make_inputs(a->describe());
        CHECK(b->describe() == a->describe());
        Rng ra(9), rb(9);
        const Eigen::MatrixXd xa = a->sample(7, ra), xb = b->sample(7, rb);
        CHECK(xa == xb);
        CHECK(a->learner_view(xa, ra) == b->learner_view(xb, rb));
    }
}

TEST_CASE("inputs: ipd spec errors are one line naming the key") {
    const std::string keys = " (keys: fibres, dt, duration, freq, rate, power, phase)";
    CHECK(error_of([] { make_inputs("ipd:foo=1"); }) == "inputs 'ipd:foo=1': unknown key 'foo'" + keys);
    CHECK(error_of([] { make_inputs("ipd:fib=1"); }) == "inputs 'ipd:fib=1': unknown key 'fib'" + keys);
    CHECK(error_of([] { make_inputs("ipd:fibres"); }) == "inputs 'ipd:fibres': 'fibres' is not key=value" + keys);
    CHECK(error_of([] { make_inputs("ipd:"); }) ==
          "inputs 'ipd:': empty setting (expected ipd:key=value,... with keys fibres, dt, duration, freq, rate, power, "
          "phase)");
    CHECK(contains(error_of([] { make_inputs("ipd:dt=1,,rate=10"); }), "empty setting"));
    CHECK(error_of([] { make_inputs("ipd:dt=1,dt=2"); }) == "inputs 'ipd:dt=1,dt=2': dt is given twice");
    CHECK(error_of([] { make_inputs("ipd:fibres=0"); }) == "inputs 'ipd:fibres=0': fibres: '0' is out of range (1 to 100000)");
    CHECK(error_of([] { make_inputs("ipd:fibres=2.5"); }) == "inputs 'ipd:fibres=2.5': fibres: '2.5' is not a non-negative integer");
    CHECK(error_of([] { make_inputs("ipd:fibres=100001"); }) ==
          "inputs 'ipd:fibres=100001': fibres: '100001' is out of range (1 to 100000)");
    CHECK(error_of([] { make_inputs("ipd:dt=x"); }) == "inputs 'ipd:dt=x': dt: 'x' is not a number");
    CHECK(error_of([] { make_inputs("ipd:dt=0"); }) == "inputs 'ipd:dt=0': dt: '0' is out of range (must be > 0)");
    CHECK(error_of([] { make_inputs("ipd:dt=nan"); }) == "inputs 'ipd:dt=nan': dt: 'nan' is not a finite number");
    CHECK(error_of([] { make_inputs("ipd:duration=-100"); }) ==
          "inputs 'ipd:duration=-100': duration: '-100' is out of range (must be > 0)");
    CHECK(error_of([] { make_inputs("ipd:duration=1e999"); }) == "inputs 'ipd:duration=1e999': duration: '1e999' is too large");
    CHECK(error_of([] { make_inputs("ipd:freq=-1"); }) == "inputs 'ipd:freq=-1': freq: '-1' is out of range (must be >= 0)");
    CHECK(error_of([] { make_inputs("ipd:freq=20Hz"); }) == "inputs 'ipd:freq=20Hz': freq: '20Hz' is not a number");
    CHECK(error_of([] { make_inputs("ipd:rate=0"); }) == "inputs 'ipd:rate=0': rate: '0' is out of range (must be > 0)");
    CHECK(error_of([] { make_inputs("ipd:power=-1"); }) == "inputs 'ipd:power=-1': power: '-1' is out of range (must be > 0)");
    CHECK(error_of([] { make_inputs("ipd:phase=random"); }) ==
          "inputs 'ipd:phase=random': phase must be per-sample or shared (got 'random')");
    // Checks of two keys together.
    CHECK(error_of([] { make_inputs("ipd:duration=5"); }) ==
          "inputs 'ipd:duration=5': duration / dt = 5 / 2 = 2.5 time bins; it must be a whole number >= 2");
    CHECK(error_of([] { make_inputs("ipd:duration=2"); }) ==
          "inputs 'ipd:duration=2': duration / dt = 2 / 2 = 1 time bins; it must be a whole number >= 2");
    CHECK(error_of([] { make_inputs("ipd:rate=1000"); }) ==
          "inputs 'ipd:rate=1000': rate x dt = 1000 Hz x 2 ms = 2 spikes per bin at the peak; a bin holds at most "
          "one (rate * dt / 1000 <= 1)");
    CHECK(contains(error_of([] { make_inputs("ipd:fibres=100000,dt=1e-6,duration=100000"); }),
                   "columns per sample; at most 2147483647"));
    CHECK(make_inputs("ipd:rate=500")->learner_dim() == 1600);  // exactly one spike per bin at the peak is fine
    for (const char* spec : {"ipd:foo=1", "ipd:", "ipd:dt=x", "ipd:duration=5", "ipd:rate=1000", "ipd:phase=q"}) {
        const std::string msg = error_of([&] { make_inputs(spec); });
        CHECK_FALSE(msg.empty());
        CHECK(msg.find('\n') == std::string::npos);
        CHECK(contains(error_of([&] { occam::experiment::input_dim(spec); }), msg));
    }
}

TEST_CASE("inputs: ipd samples u = dphi / (pi/2) uniform on [-1, 1]") {
    auto d = make_inputs("ipd");
    Rng rng(3);
    const Eigen::MatrixXd U = d->sample(20000, rng);
    REQUIRE(U.rows() == 20000);
    REQUIRE(U.cols() == 1);
    CHECK(U.minCoeff() >= -1.0);
    CHECK(U.maxCoeff() < 1.0);
    CHECK(std::abs(U.mean()) < 0.02);
    CHECK(column_variance(U, 0) == doctest::Approx(1.0 / 3.0).epsilon(0.03));
    CHECK(rng.counter() == 20000);  // one draw per sample
}

TEST_CASE("inputs: the ipd view's layout, values and draw order are the documented ones") {
    // Recompute the documented formula and draw order by hand, then compare bit for bit.
    for (const bool shared : {false, true}) {
        CAPTURE(shared);
        IpdSettings s;
        s.fibres = 3;
        s.duration = 16;  // 8 bins of 2 ms
        s.rate = 450;
        s.power = 1.7;
        s.shared_phase = shared;
        const IpdInputs d(s);
        REQUIRE(d.learner_dim() == 8 * 2 * 3);
        Rng rng(21, 4);
        const Eigen::MatrixXd U = d.sample(6, rng);
        Rng expected_rng = rng;
        const Eigen::MatrixXd V = d.learner_view(U, rng);
        REQUIRE(V.rows() == 6);
        REQUIRE(V.cols() == 48);
        Eigen::MatrixXd expected(6, 48);
        const double shared_psi = shared ? expected_rng.uniform() : 0.0;
        for (int b = 0; b < 6; ++b) {
            const double dphi = U(b, 0) * (kPi / 2);
            const double psi = shared ? shared_psi : expected_rng.uniform();
            for (int k = 0; k < 8; ++k)
                for (int e = 0; e < 2; ++e)
                    for (int j = 0; j < 3; ++j) {
                        const double d_j = j * (kPi / 2) / 2;
                        const double theta = 2 * kPi * ((20.0 * 2.0 / 1000.0) * k + psi) + d_j + e * dphi;
                        const double p = (450.0 * 2.0 / 1000.0) * std::pow((1 + std::sin(theta)) / 2, 1.7);
                        expected(b, k * 6 + e * 3 + j) = expected_rng.uniform() < p ? 1.0 : 0.0;
                    }
        }
        CHECK(V == expected);
        CHECK(rng.counter() == expected_rng.counter());
        CHECK(rng.counter() - 6 == (shared ? 1u : 6u) + 6u * 48u);  // after the 6 draws of u
    }
}

TEST_CASE("inputs: ipd spike trains are 0 or 1, reproducible, and fire at 3/8 of the peak rate") {
    auto d = make_inputs("ipd");  // power 2: E[((1 + sin)/2)^2] = 3/8
    Rng rng(17);
    const Eigen::MatrixXd U = d->sample(2000, rng);
    Rng view_rng(18);
    const Eigen::MatrixXd V = d->learner_view(U, view_rng);
    REQUIRE(V.rows() == 2000);
    REQUIRE(V.cols() == 1600);
    CHECK((V.array() * (1.0 - V.array())).abs().maxCoeff() == 0.0);  // exactly 0.0 or 1.0

    Rng again(18);
    CHECK(d->learner_view(U, again) == V);
    Rng other(19);
    CHECK(d->learner_view(U, other) != V);

    // Per fibre and ear: spikes per second over every trial and bin (100 ms a trial).
    const int bins = 50, channels = 32;
    for (int c = 0; c < channels; ++c) {
        double spikes = 0;
        for (int k = 0; k < bins; ++k) spikes += V.col(k * channels + c).sum();
        const double hz = spikes / (2000 * 0.1);
        CAPTURE(c);
        CHECK(hz == doctest::Approx(400.0 * 3.0 / 8.0).epsilon(0.03));
    }
    // Power 1: E[(1 + sin)/2] = 1/2.
    auto linear = make_inputs("ipd:power=1,fibres=2");
    Rng r1(4);
    const Eigen::MatrixXd V1 = linear->learner_view(U, r1);
    CHECK(V1.mean() / 0.002 == doctest::Approx(200.0).epsilon(0.03));
}

TEST_CASE("inputs: the right ear leads the left by the phase difference") {
    // dphi = pi/2 at 20 Hz is a quarter cycle, 12.5 ms: 5 bins of 2.5 ms. With one start phase
    // for all trials (phase=shared) the trial-averaged rate of the right ear at bin k is the
    // left's at bin k + 5.
    auto d = make_inputs("ipd:fibres=2,dt=2.5,duration=100,rate=400,power=4,phase=shared");
    REQUIRE(d->time_bins() == 40);
    Rng rng(8);
    const Eigen::MatrixXd V = d->learner_view(constant_u(10000, 1.0), rng);
    const int channels = 4;
    for (int j = 0; j < 2; ++j) {
        Eigen::VectorXd left(40), right(40);
        for (int k = 0; k < 40; ++k) {
            left(k) = V.col(k * channels + j).mean();
            right(k) = V.col(k * channels + 2 + j).mean();
        }
        CAPTURE(j);
        CHECK(left.maxCoeff() - left.minCoeff() > 0.5);  // strongly phase locked
        CHECK((right.head(35) - left.tail(35)).cwiseAbs().maxCoeff() < 0.04);  // shifted by 5 bins
        CHECK((right - left).cwiseAbs().maxCoeff() > 0.3);                      // and not unshifted
    }
    // dphi = 0: both ears the same train probabilities.
    Rng r0(8);
    const Eigen::MatrixXd V0 = d->learner_view(constant_u(10000, 0.0), r0);
    for (int k = 0; k < 40; ++k) CHECK(std::abs(V0.col(k * channels).mean() - V0.col(k * channels + 2).mean()) < 0.04);
    // Fibre j's preferred phase d_j = j (pi/2) / (N_a - 1): with two fibres the second is a
    // quarter cycle (5 bins) ahead of the first in the same ear.
    Rng r2(8);
    const Eigen::MatrixXd V2 = d->learner_view(constant_u(10000, 0.0), r2);
    double worst = 0;
    for (int k = 0; k + 5 < 40; ++k)
        worst = std::max(worst, std::abs(V2.col(k * channels + 1).mean() - V2.col((k + 5) * channels).mean()));
    CHECK(worst < 0.04);
    CHECK_THROWS_AS(d->learner_view(Eigen::MatrixXd::Zero(3, 2), rng), std::invalid_argument);
}
