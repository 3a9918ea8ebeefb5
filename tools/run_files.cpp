#include "run_files.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "settings.hpp"

namespace occam::cli {

using nlohmann::json;

json to_json(const experiment::Config& c) {
    json j;
    for (const Setting& s : settings()) std::visit([&](auto member) { j[s.key] = c.*member; }, s.field);
    return j;
}

experiment::Config config_from_json(const json& j) {
    experiment::Config c;
    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string& key = it.key();
        if (key.rfind("occam_", 0) == 0) continue;  // provenance (occam_version), not settings
        const auto s = std::find_if(settings().begin(), settings().end(), [&](const Setting& x) { return key == x.key; });
        if (s == settings().end()) throw std::runtime_error("unknown configuration key '" + key + "'");
        std::visit([&](auto member) { it.value().get_to(c.*member); }, s->field);
    }
    return c;
}

experiment::Config with_setting(const experiment::Config& c, const std::string& field, const std::string& value) {
    json j = to_json(c);
    if (!j.contains(field) || field == "sweep" || field == "preset")
        throw std::invalid_argument("--sweep: '" + field + "' is not a setting that can be swept (use a key of config.json)");
    json& v = j[field];
    const std::string bad = "--sweep: '" + value + "' is not a valid value for " + field;
    try {
        std::size_t used = 0;
        if (v.is_boolean()) {
            if (value != "true" && value != "false") throw std::invalid_argument(bad + " (true or false)");
            v = value == "true";
        } else if (v.is_number_unsigned()) {
            v = std::stoull(value, &used);
        } else if (v.is_number_integer()) {
            v = std::stoll(value, &used);
        } else if (v.is_number_float()) {
            v = std::stod(value, &used);
        } else {
            v = value;
            used = value.size();
        }
        if (!v.is_boolean() && used != value.size()) throw std::invalid_argument(bad);
    } catch (const std::logic_error&) {
        throw std::invalid_argument(bad);
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

void prepare_run_dir(const fs::path& dir, bool force) {
    if (fs::exists(dir)) {
        if (!fs::is_directory(dir)) throw std::runtime_error(dir.string() + " exists and is not a directory");
        if (!fs::is_empty(dir)) {
            if (!force)
                throw std::runtime_error(dir.string() +
                                         " exists and is not empty; pass --force to overwrite it or --out DIR");
            for (const auto& e : fs::directory_iterator(dir)) fs::remove_all(e.path());
        }
    } else {
        fs::create_directories(dir);
    }
}

Eigen::VectorXd ProbeTable::column(const std::string& name) const {
    for (std::size_t k = 0; k < names.size(); ++k)
        if (names[k] == name) return columns.col(Eigen::Index(k));
    throw std::runtime_error("probe.csv has no column '" + name + "'");
}

void write_probe(const fs::path& path, const ProbeTable& t) {
    std::string s;
    for (Eigen::Index d = 0; d < t.x.cols(); ++d) s += fmt::format("{}x{}", d ? "," : "", d);
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
    while (dims < int(header.size()) && header[dims] == "x" + std::to_string(dims)) ++dims;
    if (dims == 0) throw std::runtime_error(path.string() + ": the header must start with x0");
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

namespace {
json matrix_to_json(const Eigen::MatrixXd& m) {
    return {{"rows", m.rows()}, {"cols", m.cols()}, {"data", std::vector<double>(m.data(), m.data() + m.size())}};
}
Eigen::MatrixXd matrix_from_json(const json& j) {
    Eigen::MatrixXd m(j.at("rows").get<int>(), j.at("cols").get<int>());
    auto data = j.at("data").get<std::vector<double>>();
    if (data.size() != std::size_t(m.size())) throw std::runtime_error("checkpoint: matrix size mismatch");
    std::copy(data.begin(), data.end(), m.data());
    return m;
}
json matrices_to_json(const std::vector<Eigen::MatrixXd>& ms) {
    json a = json::array();
    for (const auto& m : ms) a.push_back(matrix_to_json(m));
    return a;
}
std::vector<Eigen::MatrixXd> matrices_from_json(const json& a) {
    std::vector<Eigen::MatrixXd> out;
    for (const auto& j : a) out.push_back(matrix_from_json(j));
    return out;
}
}  // namespace

// Doubles are written with round-trip precision, so a resumed run continues bit for bit.
void write_checkpoint(const fs::path& path, const Checkpoint& c) {
    json j;
    json frozen = json::array();
    for (const auto& f : c.frozen)
        frozen.push_back({{"params", matrices_to_json(f.params)}, {"coef", matrix_to_json(f.coef)}});
    j["frozen_functions"] = frozen;
    j["step"] = c.step;
    j["params"] = matrices_to_json(c.params);
    j["optimizer_steps"] = c.optimizer.steps;
    json bufs = json::array();
    for (const auto& b : c.optimizer.buffers) bufs.push_back(matrices_to_json(b));
    j["optimizer_buffers"] = bufs;
    write_text(path, j.dump());
}

Checkpoint read_checkpoint(const fs::path& path) {
    json j = read_json(path);
    try {
        Checkpoint c;
        for (const auto& f : j.at("frozen_functions"))
            c.frozen.push_back({matrices_from_json(f.at("params")), matrix_from_json(f.at("coef")).col(0)});
        c.step = j.at("step").get<int>();
        c.params = matrices_from_json(j.at("params"));
        c.optimizer.steps = j.at("optimizer_steps").get<int>();
        for (const auto& b : j.at("optimizer_buffers")) c.optimizer.buffers.push_back(matrices_from_json(b));
        return c;
    } catch (const json::exception& e) {
        throw std::runtime_error(path.string() + " is not a valid checkpoint: " + e.what());
    }
}

}  // namespace occam::cli
