// The run directory's readers and guards: probe.csv checked against config.json, log.csv's rows
// up to a checkpoint, the checkpoint's checksum and what a resume may change, the .occam marker
// and lock, and directory names made from sweep values.
#include <doctest/doctest.h>
#include <unistd.h>

#include <fstream>
#include <set>

#include "tools/run_dir.hpp"
#include "tools/run_files.hpp"
#include "tools/summary.hpp"

using namespace occam;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {
fs::path fresh_dir(const std::string& name) {
    const fs::path d = fs::temp_directory_path() / ("occam-run-files-test-" + std::to_string(::getpid())) / name;
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}
void write(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }
std::string read(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// A probe table as a run with `c` writes it (disk inputs: two columns).
cli::ProbeTable probe_for(const experiment::Config& c) {
    cli::ProbeTable t;
    t.x = Eigen::MatrixXd::Random(c.probe, 2);
    for (int k = 1; k <= c.functions; ++k) {
        t.names.push_back("f" + std::to_string(k));
        t.names.push_back("g" + std::to_string(k));
    }
    t.columns = Eigen::MatrixXd::Random(c.probe, Eigen::Index(t.names.size()));
    return t;
}

cli::Checkpoint checkpoint_for(const experiment::Config& c, int step) {
    cli::Checkpoint k;
    k.step = step;
    k.params = {Eigen::MatrixXd::Constant(2, 3, 0.25), Eigen::MatrixXd::Constant(1, 3, -1.5)};
    k.optimizer.steps = step;
    k.optimizer.buffers = {{Eigen::MatrixXd::Constant(2, 3, 0.5)}};
    k.config = cli::checkpoint_config(c);
    k.inputs_hash = cli::inputs_fingerprint(c);
    return k;
}
}  // namespace

TEST_CASE("run files: probe.csv must be the table config.json describes") {
    experiment::Config c;
    c.inputs = "disk";
    c.probe = 40;
    c.functions = 2;
    const cli::ProbeTable good = probe_for(c);
    CHECK_NOTHROW(cli::check_probe(good, c, "probe.csv"));

    cli::ProbeTable t = good;  // only the header line: no rows
    t.x.resize(0, 2);
    t.columns.resize(0, 4);
    CHECK_THROWS_WITH(cli::check_probe(t, c, "probe.csv"), doctest::Contains("0 rows, expected 40"));
    t = good;  // cut at a line boundary
    t.x.conservativeResize(30, 2);
    t.columns.conservativeResize(30, 4);
    CHECK_THROWS_WITH(cli::check_probe(t, c, "probe.csv"), doctest::Contains("30 rows"));
    t = good;  // a function column renamed
    t.names[0] = "h1";
    CHECK_THROWS_WITH(cli::check_probe(t, c, "probe.csv"), doctest::Contains("expected f1,g1,f2,g2"));
    t = good;  // a function column missing
    t.names.erase(t.names.begin() + 2);
    t.columns = t.columns.leftCols(3).eval();
    CHECK_THROWS_WITH(cli::check_probe(t, c, "probe.csv"), doctest::Contains("are f1,g1,g2, expected"));
    t = good;  // an input column missing
    t.x = t.x.leftCols(1).eval();
    CHECK_THROWS_WITH(cli::check_probe(t, c, "probe.csv"), doctest::Contains("2 dimensions"));
    c.chosen = "kernel";  // the students game also writes n1, n2
    c.neglected = "ridge";
    CHECK_THROWS_WITH(cli::check_probe(good, c, "probe.csv"), doctest::Contains("expected f1,g1,n1,f2,g2,n2"));
}

TEST_CASE("summary: functions of a phase difference get Legendre shares and a normalised test error") {
    experiment::Config c;
    c.inputs = "ipd";
    c.learner = "ridge";
    c.functions = 2;
    c.probe = 2000;
    cli::ProbeTable t;
    t.x.resize(c.probe, 1);
    for (int i = 0; i < c.probe; ++i) t.x(i, 0) = -1.0 + (2.0 * i + 1.0) / c.probe;  // u evenly over [-1, 1]
    const Eigen::ArrayXd u = t.x.col(0).array();
    t.names = {"f1", "g1", "f2", "g2"};
    t.columns.resize(c.probe, 4);
    t.columns.col(0) = (0.5 + u).matrix();                         // a shifted P_1
    t.columns.col(1) = t.columns.col(0);
    t.columns.col(2) = ((3 * u.square() - 1) / 2).matrix();        // P_2
    t.columns.col(3) = t.columns.col(2);
    json s = cli::analyse_probe(t, c);
    const json& f1 = s["functions"][0];
    CHECK(f1["legendre_energy"].size() == 7);
    // Energy: mean 0.25, P_1 1/3: the raw split is 3/7 and 4/7, the centred one all degree 1.
    CHECK(f1["legendre_energy"][0].get<double>() == doctest::Approx(3.0 / 7.0).epsilon(1e-4));
    CHECK(f1["legendre_energy_centered"][1].get<double>() == doctest::Approx(1.0).epsilon(1e-6));
    CHECK(f1["odd_share"].get<double>() == doctest::Approx(1.0).epsilon(1e-6));
    CHECK(f1["even_share"].get<double>() < 1e-6);
    CHECK(f1["dominant_degree"] == 1);
    const json& f2 = s["functions"][1];
    CHECK(f2["dominant_degree"] == 2);
    CHECK(f2["even_share"].get<double>() == doctest::Approx(1.0).epsilon(1e-6));
    CHECK(s["max_abs_correlation"].get<double>() < 1e-6);  // P_1 and P_2 are orthogonal
    CHECK(s["inputs_description"] == "ipd:fibres=16,dt=2,duration=100,freq=20,rate=400,power=2,phase=per-sample");
    CHECK_FALSE(s.contains("kernel_theory"));  // the learner sees spike trains, not u

    // test MSE over the label variance on the probe set (f1's is 1/3).
    s["functions"][0]["test_mse"] = 0.1;
    cli::add_normalised_test_errors(s, c);
    CHECK(s["functions"][0]["normalised_test_error"].get<double>() == doctest::Approx(0.3).epsilon(1e-5));
    CHECK_FALSE(s["functions"][1].contains("normalised_test_error"));  // no test MSE yet
    CHECK(cli::describe_summary(s).find("Legendre energy of f - mean") != std::string::npos);

    // Other inputs: none of it.
    c.inputs = "cube:1";
    json other = cli::analyse_probe(t, c);
    CHECK_FALSE(other["functions"][0].contains("legendre_energy"));
    CHECK_FALSE(other["functions"][0].contains("odd_share"));
    CHECK(other.contains("max_abs_correlation"));
    other["functions"][0]["test_mse"] = 0.1;
    cli::add_normalised_test_errors(other, c);
    CHECK_FALSE(other["functions"][0].contains("normalised_test_error"));
}

TEST_CASE("run files: image runs write index,class in probe.csv, and summary.json their class statistics") {
    experiment::Config c;
    c.inputs = "mnist";
    c.learner = "cnn";
    c.probe = 6;
    cli::ProbeTable t;
    t.x_names = {"index", "class"};
    t.x.resize(6, 2);
    t.x << 10, 0, 11, 0, 12, 0, 3, 1, 4, 1, 5, 1;
    t.names = {"f1", "g1"};
    t.columns.resize(6, 2);
    t.columns.col(0) << 0.9, 1.0, 0.8, -1.0, -0.9, -0.8;  // the digit, with a little noise
    t.columns.col(1) = t.columns.col(0);
    CHECK_NOTHROW(cli::check_probe(t, c, "probe.csv"));
    const fs::path dir = fresh_dir("images");
    cli::write_probe(dir / "probe.csv", t);
    CHECK(read(dir / "probe.csv").rfind("index,class,f1,g1\n10,0,0.90000000000000002,", 0) == 0);
    const cli::ProbeTable back = cli::read_probe(dir / "probe.csv");
    CHECK(back.x_names == t.x_names);
    CHECK(back.x == t.x);
    CHECK(back.columns == t.columns);

    // An image run's table is refused for other inputs, and a pixel-less x0.. table for images.
    experiment::Config disk = c;
    disk.inputs = "disk";
    CHECK_THROWS_WITH(cli::check_probe(t, disk, "probe.csv"), doctest::Contains("index, class"));
    cli::ProbeTable plain = t;
    plain.x_names.clear();
    CHECK_THROWS_WITH(cli::check_probe(plain, c, "probe.csv"), doctest::Contains("write index, class"));

    const json s = cli::analyse_probe(t, c);
    const json& f1 = s["functions"][0];
    // corr with the class: class means 0.9 and -0.9, within-class spread 0.1.
    CHECK(f1["class_correlation"].get<double>() < -0.98);
    CHECK(f1["class_abs_correlation"].get<double>() == doctest::Approx(-f1["class_correlation"].get<double>()));
    CHECK(f1["class_means"]["0"].get<double>() == doctest::Approx(0.9));
    CHECK(f1["class_means"]["1"].get<double>() == doctest::Approx(-0.9));
    CHECK(f1["class_counts"]["1"] == 3);
    CHECK(f1["class_variance_share"].get<double>() == doctest::Approx(f1["linear_fit"]["r2"].get<double>()));
    CHECK_FALSE(s.contains("kernel_theory"));
    CHECK(cli::describe_summary(s).find("correlation with the class") != std::string::npos);
}

TEST_CASE("run files: summary.json must list the run's functions") {
    json s = {{"functions", {{{"name", "f1"}, {"label_std", 0.5}, {"linear_fit", {{"r2", 0.9}}}}}}};
    CHECK_NOTHROW(cli::check_summary_functions(s, 1, "summary.json"));
    CHECK_THROWS_WITH(cli::check_summary_functions(s, 2, "summary.json"), doctest::Contains("1 functions listed"));
    CHECK_THROWS_WITH(cli::check_summary_functions(json::object(), 1, "summary.json"), doctest::Contains("no \"functions\""));
    s["functions"][0].erase("label_std");
    CHECK_THROWS_WITH(cli::check_summary_functions(s, 1, "summary.json"), doctest::Contains("function 1 is incomplete"));
}

TEST_CASE("run files: log.csv must hold every row up to the checkpoint") {
    const fs::path d = fresh_dir("log");
    std::string log = cli::kLogHeader;
    for (int s = 0; s < 6; ++s) log += std::to_string(s) + ",1,0.5,0.25,0.125,0,0,1.000\n";
    write(d / "log.csv", log);
    CHECK(cli::log_prefix(d / "log.csv", 4) == log.substr(0, log.find("4,1,")));
    CHECK(cli::log_prefix(d / "log.csv", 6) == log);
    CHECK(cli::log_prefix(d / "missing.csv", 0) == cli::kLogHeader);  // no checkpoint yet: a new log
    CHECK_THROWS_WITH(cli::log_prefix(d / "log.csv", 7), doctest::Contains("ends at step 6"));
    CHECK_THROWS_WITH(cli::log_prefix(d / "missing.csv", 3), doctest::Contains("cannot read"));
    write(d / "cut.csv", log.substr(0, log.size() - 4));  // killed mid-line
    CHECK_THROWS_WITH(cli::log_prefix(d / "cut.csv", 6), doctest::Contains("step 5"));
    CHECK(cli::log_prefix(d / "cut.csv", 5) == log.substr(0, log.find("5,1,")));  // the cut row is past the checkpoint
    std::string gap = log;
    gap.erase(gap.find("2,1,"), gap.find("3,1,") - gap.find("2,1,"));
    write(d / "gap.csv", gap);
    CHECK_THROWS_WITH(cli::log_prefix(d / "gap.csv", 5), doctest::Contains("line 4 is not the complete row of step 2"));
    write(d / "header.csv", "step,loss\n" + log.substr(log.find('\n') + 1));
    CHECK_THROWS_WITH(cli::log_prefix(d / "header.csv", 2), doctest::Contains("header"));
}

TEST_CASE("run files: a checkpoint round-trips, and any edit breaks its checksum") {
    const fs::path d = fresh_dir("checkpoint");
    experiment::Config c;
    const cli::Checkpoint k = checkpoint_for(c, 7);
    cli::write_checkpoint(d / "checkpoint.json", k);
    const cli::Checkpoint back = cli::read_checkpoint(d / "checkpoint.json");
    CHECK(back.step == 7);
    CHECK(back.params[1] == k.params[1]);
    CHECK(back.config == k.config);
    CHECK_NOTHROW(cli::check_resumable(back, c));

    json j = json::parse(read(d / "checkpoint.json"));
    for (const char* edit : {"step", "params", "frozen_functions", "config"}) {
        CAPTURE(edit);
        json e = j;
        if (std::string(edit) == "step") e["step"] = 6;
        if (std::string(edit) == "params") e["params"][0]["data"][0] = 0.26;
        if (std::string(edit) == "frozen_functions") e["frozen_functions"].push_back(e["frozen_functions"].size());
        if (std::string(edit) == "config") e["config"]["lr"] = 0.5;
        write(d / "edited.json", e.dump());
        CHECK_THROWS_WITH(cli::read_checkpoint(d / "edited.json"), doctest::Contains("checksum"));
    }
    const std::string text = read(d / "checkpoint.json");
    write(d / "cut.json", text.substr(0, text.size() / 2));
    CHECK_THROWS_WITH(cli::read_checkpoint(d / "cut.json"), doctest::Contains("not valid JSON"));
    json old = j;  // written by an occam before checksums
    old.erase("format");
    old.erase("checksum");
    write(d / "old.json", old.dump());
    CHECK_THROWS_WITH(cli::read_checkpoint(d / "old.json"), doctest::Contains("older version"));
}

TEST_CASE("run files: a resume may change --threads, and --steps only while the first function trains") {
    experiment::Config c;
    c.steps = 100;
    c.functions = 2;
    const cli::Checkpoint k = checkpoint_for(c, 40);
    experiment::Config d = c;
    d.threads = 2;
    CHECK_NOTHROW(cli::check_resumable(k, d));
    d.steps = 200;  // longer: still in function 1, exactly a fresh 200-step run
    CHECK_NOTHROW(cli::check_resumable(k, d));
    d.steps = 40;
    CHECK_NOTHROW(cli::check_resumable(k, d));
    d.steps = 39;
    CHECK_THROWS_WITH(cli::check_resumable(k, d), doctest::Contains("below the 40 steps"));
    cli::Checkpoint second = k;  // function 1 finished with 100 steps
    second.frozen.push_back({k.params, Eigen::VectorXd()});
    d.steps = 200;
    CHECK_THROWS_WITH(cli::check_resumable(second, d), doctest::Contains("already trained with 100 steps"));
    d = c;
    d.lr = 0.02;
    CHECK_THROWS_WITH(cli::check_resumable(k, d), doctest::Contains("config.json's lr is 0.02"));
    d = c;
    d.seed = 9;
    CHECK_THROWS_WITH(cli::check_resumable(k, d), doctest::Contains("seed"));
    cli::Checkpoint bad = k;
    bad.step = 101;
    CHECK_THROWS_WITH(cli::check_resumable(bad, c), doctest::Contains("outside 0..100"));
    bad = k;
    bad.frozen.assign(2, {k.params, Eigen::VectorXd()});
    CHECK_THROWS_WITH(cli::check_resumable(bad, c), doctest::Contains("2 finished functions"));
    // A setting occam gained after the checkpoint (classes, added with image inputs) is
    // accepted at its default, refused at any other value.
    cli::Checkpoint old = k;
    old.config.erase("classes");
    CHECK_NOTHROW(cli::check_resumable(old, c));
    d = c;
    d.classes = "3,5";
    CHECK_THROWS_WITH(cli::check_resumable(old, d), doctest::Contains("config.json's classes is \"3,5\""));
    // A damaged setting name is quoted: the message stays one line (found by make fuzz).
    old = k;
    old.config["in\nner\xff"] = 1;
    CHECK_THROWS_WITH(cli::check_resumable(old, c), doctest::Contains("config.json lacks: \"in\\nner"));
}

TEST_CASE("run files: a resume refuses an input file that changed") {
    const fs::path d = fresh_dir("inputs");
    std::string csv;
    for (int i = 0; i < 12; ++i) csv += std::to_string(i) + "," + std::to_string(i * i) + "\n";
    write(d / "data.csv", csv);
    experiment::Config c;
    c.inputs = "file:" + (d / "data.csv").string();
    const cli::Checkpoint k = checkpoint_for(c, 3);
    CHECK(k.inputs_hash.size() == 16);
    CHECK_NOTHROW(cli::check_resumable(k, c));
    write(d / "data.csv", csv + "12,144\n");
    CHECK_THROWS_WITH(cli::check_resumable(k, c), doctest::Contains("changed since the run started"));
}

TEST_CASE("run dirs: --force replaces only occam's directories, and a lock keeps a second process out") {
    const fs::path d = fresh_dir("claim");
    {
        const cli::DirLock lock = cli::claim_new_dir(d / "new", false, "run");  // created
        CHECK(lock.held());
        CHECK(cli::is_occam_dir(d / "new"));
        // flock is per open file: a second claim, here or in another process, is refused.
        CHECK_THROWS_WITH((void)cli::claim_existing_dir(d / "new", "run"), doctest::Contains("in use by another occam"));
        CHECK_THROWS_WITH((void)cli::claim_new_dir(d / "new", true, "run"), doctest::Contains("in use by another occam"));
    }
    write(d / "new" / "summary.json", "{}");
    CHECK_THROWS_WITH((void)cli::claim_new_dir(d / "new", false, "run"), doctest::Contains("pass --force"));
    { const cli::DirLock lock = cli::claim_new_dir(d / "new", true, "run"); }
    CHECK(!fs::exists(d / "new" / "summary.json"));
    CHECK(cli::is_occam_dir(d / "new"));

    fs::create_directories(d / "foreign");
    write(d / "foreign" / "thesis.tex", "years of work");
    CHECK_THROWS_WITH((void)cli::claim_new_dir(d / "foreign", true, "run"), doctest::Contains("occam did not make it"));
    CHECK(read(d / "foreign" / "thesis.tex") == "years of work");
    CHECK_THROWS_WITH((void)cli::claim_existing_dir(d / "foreign", "run"), doctest::Contains("not an occam run directory"));

    fs::create_directories(d / "legacy");  // a run directory from before the marker
    write(d / "legacy" / "config.json", R"({"occam_version": "0.1.0", "seed": 1})");
    CHECK(cli::is_occam_dir(d / "legacy"));
    write(d / "file", "x");
    CHECK_THROWS_WITH((void)cli::claim_new_dir(d / "file", true, "run"), doctest::Contains("not a directory"));
}

TEST_CASE("run dirs: sweep values become safe, distinct directory names") {
    CHECK(cli::safe_file_name("0.001") == "0.001");
    CHECK(cli::safe_file_name("relu") == "relu");
    CHECK(cli::safe_file_name("../x") == "%2E.%2Fx");
    CHECK(cli::safe_file_name("a/b") == "a%2Fb");
    CHECK(cli::safe_file_name("100%") == "100%25");
    CHECK(cli::safe_file_name(std::string("a\0b", 3)) == "a%00b");
    const std::vector<std::string> values = {"a/b", "a%2Fb", "a_b", "a b", "..", ".", "%2E", "a:b", "a\nb"};
    std::set<std::string> names;
    for (const auto& v : values) {
        const std::string n = cli::safe_file_name(v);
        CHECK(n.find('/') == std::string::npos);
        CHECK(n[0] != '.');
        names.insert(n);
    }
    CHECK(names.size() == values.size());
}
