// What this file teaches: where a task's inputs come from. An input distribution is a sampler
// (disk, sphere, cube, Gaussian, the rows of a CSV file, the paper's Fig. 5 interaural phase
// differences, or Fig. 6's MNIST digits, images.hpp) named by a short spec string, so a run's config can say "sphere:3" and every draw
// is reproducible from the counter-based Rng. A sample can have two views: the meta-learner
// labels the sample itself (X), the learner sees what a circuit would receive of it (for "ipd",
// two ears' spike trains); every other distribution shows both the same X.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <fstream>
#include <memory>
#include <numbers>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "../autodiff/random.hpp"
#include "parse.hpp"

namespace occam::experiment {

/// A bad inputs spec or data file. The message is one line, meant for the user.
class InputError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// A distribution over R^dim that can be sampled reproducibly.
class InputDistribution {
public:
    virtual ~InputDistribution() = default;
    /// Dimension of one sample.
    virtual int dim() const = 0;
    /// n x dim matrix, one sample per row.
    virtual Eigen::MatrixXd sample(int n, ad::Rng& rng) const = 0;
    /// The spec that recreates this distribution, e.g. "sphere:3".
    virtual std::string describe() const = 0;
    /// True when every sample lies on the unit sphere (so spherical-harmonic analysis applies).
    virtual bool is_sphere() const { return false; }

    // ---- what the learner sees of the samples ----------------------------------------------
    // The meta-learner labels the samples X (n x dim()); the learner is trained and tested on
    // learner_view(X), one row per sample. For most distributions the two are the same matrix.
    // A distribution whose learner sees a noisy encoding of each sample (spike trains of a
    // phase difference) overrides all three; the view may draw fresh randomness every call.

    /// Columns of the learner's view of one sample.
    virtual int learner_dim() const { return dim(); }
    /// Time bins in the learner's view of one sample: learner_dim() = time_bins() * channels(),
    /// each row laid out bin by bin (column k * channels() + c is channel c at bin k), so a
    /// row reshapes to a time_bins() x channels() matrix, row-major. 1 for a static view.
    virtual int time_bins() const { return 1; }
    /// The width of one of those time bins, in ms (0 for a static view).
    virtual double time_bin_ms() const { return 0.0; }
    /// Channels per time bin of the learner's view.
    int channels() const { return learner_dim() / time_bins(); }
    /// What the learner sees of the samples X (n x dim()) when it is not X itself: an n x
    /// learner_dim() matrix, row i the view of sample i. The default, std::nullopt, means X
    /// itself: it draws nothing from `rng` (so adding this step to a run changes none of its
    /// other draws) and copies nothing (fig6's 2000 images are 12.5 MB a meta-step).
    virtual std::optional<Eigen::MatrixXd> own_view(const Eigen::MatrixXd& /*X*/, ad::Rng& /*rng*/) const {
        return std::nullopt;
    }
    /// What the learner sees of the samples X, as a matrix: own_view(X), or a copy of X.
    Eigen::MatrixXd learner_view(const Eigen::MatrixXd& X, ad::Rng& rng) const {
        std::optional<Eigen::MatrixXd> view = own_view(X, rng);
        return view ? std::move(*view) : X;
    }

protected:
    /// Callers pass sample counts computed from configs; a negative one is a bug, not user error.
    static void check_count(int n) {
        if (n < 0) throw std::invalid_argument("InputDistribution::sample: n must be >= 0, got " + std::to_string(n));
    }
};

/// Uniform on the unit disk in R^2. r = sqrt(U) because the area within radius r grows as r^2.
class DiskInputs : public InputDistribution {
public:
    int dim() const override { return 2; }
    Eigen::MatrixXd sample(int n, ad::Rng& rng) const override {
        check_count(n);
        Eigen::MatrixXd X(n, 2);
        for (int i = 0; i < n; ++i) {  // row by row, so the first k rows of sample(n) equal sample(k)
            const double r = std::sqrt(rng.uniform());
            const double angle = 2.0 * std::numbers::pi * rng.uniform();
            X(i, 0) = r * std::cos(angle);
            X(i, 1) = r * std::sin(angle);
        }
        return X;
    }
    std::string describe() const override { return "disk"; }
};

/// Uniform on the unit sphere S^(D-1) in R^D: a standard Gaussian vector is rotation invariant,
/// so its direction is uniform.
class SphereInputs : public InputDistribution {
public:
    explicit SphereInputs(int d) : d_(d) {
        if (d < 2) throw std::invalid_argument("SphereInputs: dimension must be >= 2, got " + std::to_string(d));
    }
    int dim() const override { return d_; }
    Eigen::MatrixXd sample(int n, ad::Rng& rng) const override {
        check_count(n);
        Eigen::MatrixXd X(n, d_);
        for (int i = 0; i < n; ++i) {
            double norm2 = 0.0;
            do {  // an all-zero Gaussian vector has probability ~0, but must never divide by zero
                for (int j = 0; j < d_; ++j) X(i, j) = rng.normal();
                norm2 = X.row(i).squaredNorm();
            } while (!(norm2 > 0.0));
            X.row(i) /= std::sqrt(norm2);
        }
        return X;
    }
    std::string describe() const override { return "sphere:" + std::to_string(d_); }
    bool is_sphere() const override { return true; }

private:
    int d_;
};

/// Uniform on the cube [-1, 1]^D.
class CubeInputs : public InputDistribution {
public:
    explicit CubeInputs(int d) : d_(d) {
        if (d < 1) throw std::invalid_argument("CubeInputs: dimension must be >= 1, got " + std::to_string(d));
    }
    int dim() const override { return d_; }
    Eigen::MatrixXd sample(int n, ad::Rng& rng) const override {
        check_count(n);
        Eigen::MatrixXd X(n, d_);
        for (int i = 0; i < n; ++i)
            for (int j = 0; j < d_; ++j) X(i, j) = rng.uniform(-1.0, 1.0);
        return X;
    }
    std::string describe() const override { return "cube:" + std::to_string(d_); }

private:
    int d_;
};

/// Standard Gaussian N(0, I_D).
class GaussianInputs : public InputDistribution {
public:
    explicit GaussianInputs(int d) : d_(d) {
        if (d < 1) throw std::invalid_argument("GaussianInputs: dimension must be >= 1, got " + std::to_string(d));
    }
    int dim() const override { return d_; }
    Eigen::MatrixXd sample(int n, ad::Rng& rng) const override {
        check_count(n);
        Eigen::MatrixXd X(n, d_);
        for (int i = 0; i < n; ++i)
            for (int j = 0; j < d_; ++j) X(i, j) = rng.normal();
        return X;
    }
    std::string describe() const override { return "gaussian:" + std::to_string(d_); }

private:
    int d_;
};

namespace detail {

/// s without leading and trailing whitespace (this also drops the '\r' of Windows line ends).
inline std::string_view trim(std::string_view s) {
    const char* ws = " \t\r\n\f\v";
    const auto first = s.find_first_not_of(ws);
    if (first == std::string_view::npos) return {};
    const auto last = s.find_last_not_of(ws);
    return s.substr(first, last - first + 1);
}

/// Split one CSV line on commas (no quoting: a data file is numbers only), each cell trimmed.
inline std::vector<std::string_view> split_cells(std::string_view line) {
    std::vector<std::string_view> cells;
    size_t start = 0;
    for (;;) {
        const auto comma = line.find(',', start);
        if (comma == std::string_view::npos) {
            cells.push_back(trim(line.substr(start)));
            return cells;
        }
        cells.push_back(trim(line.substr(start, comma - start)));
        start = comma + 1;
    }
}

/// Parse the whole cell as a double, or return false. std::from_chars is locale independent and
/// reports where it stopped, so "1.5x" is rejected rather than read as 1.5. "nan" and "inf" parse
/// (the caller reports them as non-finite, which is a clearer message than "not a number").
inline bool parse_double(std::string_view cell, double& out) {
    std::string_view s = cell;
    // from_chars rejects a leading '+', which spreadsheets do write; accept it before a digit or '.'.
    if (s.size() > 1 && s[0] == '+' && s[1] != '-' && s[1] != '+') s.remove_prefix(1);
    if (s.empty()) return false;
    const char* end = s.data() + s.size();
    const auto [ptr, ec] = std::from_chars(s.data(), end, out);
    if (ptr != end) return false;
    if (ec == std::errc::result_out_of_range) {
        // Too large or too small for a double: from_chars leaves out unset, strtod says which
        // (+-HUGE_VAL for overflow, reported later as non-finite; 0 or a denormal for underflow).
        out = std::strtod(std::string(s).c_str(), nullptr);
        return true;
    }
    return ec == std::errc();
}

/// Plural-aware count, for messages.
inline std::string count_of(size_t n, const char* what) {
    return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
}

/// What a path is when it is not a regular file, for messages ("a FIFO").
inline const char* file_kind(std::filesystem::file_type t) {
    using std::filesystem::file_type;
    switch (t) {
        case file_type::fifo: return "a FIFO";
        case file_type::character: return "a character device";
        case file_type::block: return "a block device";
        case file_type::socket: return "a socket";
        case file_type::directory: return "a directory";
        default: return "not a file";
    }
}

/// Opens a data file for reading, after checking it is a regular file (a symbolic link to one
/// is fine): a FIFO, a terminal or a device would block the run forever waiting for data, or
/// stream without end, so they are refused with one line saying why.
inline std::ifstream open_regular_file(const std::string& path, const std::string& where) {
    std::error_code fs_error;
    const auto status = std::filesystem::status(path, fs_error);  // follows symbolic links
    if (status.type() == std::filesystem::file_type::not_found) throw InputError(where + ": no such file");
    if (status.type() == std::filesystem::file_type::directory)
        throw InputError(where + ": is a directory, not a file");
    if (fs_error) throw InputError(where + ": cannot be read (" + fs_error.message() + ")");
    if (status.type() != std::filesystem::file_type::regular)
        throw InputError(where + " is not a regular file (" + file_kind(status.type()) +
                         "); occam reads CSV files only");
    std::ifstream in(path);
    if (!in) throw InputError(where + ": cannot be opened for reading");
    return in;
}

}  // namespace detail

/// Read a CSV file of numbers: one sample per row, comma separated. Blank lines are ignored and
/// cells are trimmed. The first non-blank line is skipped as a header only when none of its cells
/// is a number (a half-numeric first line is more likely a broken data row than a header). Throws
/// InputError naming the file, line and column for anything else: a missing file, ragged rows,
/// non-numeric or non-finite cells, or fewer than 10 data rows.
inline Eigen::MatrixXd load_csv(const std::string& path) {
    const std::string where = "inputs file '" + path + "'";
    std::ifstream in = detail::open_regular_file(path, where);

    std::vector<double> values;  // row-major, copied into the matrix at the end
    size_t width = 0;            // values per row, fixed by the first non-blank line
    size_t rows = 0;
    bool seen_first = false;
    std::string line;
    for (size_t line_no = 1; std::getline(in, line); ++line_no) {
        std::string_view text = line;
        // A UTF-8 byte-order mark (written by some spreadsheet exports) is not part of the data.
        if (line_no == 1 && text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
        if (detail::trim(text).empty()) continue;
        const auto cells = detail::split_cells(text);
        const std::string at_line = where + ": line " + std::to_string(line_no);

        if (!seen_first) {
            seen_first = true;
            width = cells.size();
            bool any_numeric = false;
            for (const auto cell : cells) {
                double ignored = 0.0;
                if (detail::parse_double(cell, ignored)) any_numeric = true;
            }
            if (!any_numeric) continue;  // a header: names only
        }
        if (cells.size() != width)
            throw InputError(at_line + " has " + detail::count_of(cells.size(), "value") + ", expected " +
                             std::to_string(width));
        for (size_t c = 0; c < cells.size(); ++c) {
            const std::string at_cell = at_line + ", column " + std::to_string(c + 1);
            if (cells[c].empty()) throw InputError(at_cell + ": empty value");
            double v = 0.0;
            if (!detail::parse_double(cells[c], v))
                throw InputError(at_cell + ": '" + std::string(cells[c]) + "' is not a number");
            if (!std::isfinite(v)) throw InputError(at_cell + ": non-finite value '" + std::string(cells[c]) + "'");
            values.push_back(v);
        }
        ++rows;
    }
    if (in.bad()) throw InputError(where + ": read error");

    constexpr size_t min_rows = 10;  // fewer cannot fill even a small train and test set
    if (rows < min_rows)
        throw InputError(where + ": only " + detail::count_of(rows, "data row") + "; need at least " +
                         std::to_string(min_rows));
    Eigen::MatrixXd data(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(width));
    for (size_t i = 0; i < rows; ++i)
        for (size_t j = 0; j < width; ++j)
            data(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) = values[i * width + j];
    return data;
}

/// The rows of a CSV file (read once, at construction). sample(n) draws n distinct rows when the
/// file has at least n, so a train and a test set drawn in one call never share a point;
/// otherwise it draws with replacement.
class FileInputs : public InputDistribution {
public:
    explicit FileInputs(std::string path) : path_(std::move(path)), data_(load_csv(path_)) {}
    int dim() const override { return static_cast<int>(data_.cols()); }
    Eigen::MatrixXd sample(int n, ad::Rng& rng) const override {
        check_count(n);
        const auto rows = static_cast<int>(data_.rows());
        Eigen::MatrixXd X(n, data_.cols());
        if (n <= rows) {
            const std::vector<int> picked = rng.sample_without_replacement(rows, n);
            for (int i = 0; i < n; ++i) X.row(i) = data_.row(picked[static_cast<size_t>(i)]);
        } else {
            for (int i = 0; i < n; ++i)
                X.row(i) = data_.row(static_cast<Eigen::Index>(rng.below(static_cast<uint64_t>(rows))));
        }
        return X;
    }
    std::string describe() const override { return "file:" + path_; }
    /// All rows of the file.
    const Eigen::MatrixXd& data() const { return data_; }

private:
    std::string path_;
    Eigen::MatrixXd data_;
};

namespace detail {

/// The shortest text that reads back as exactly v ("2", "0.25", "1e-05"), for canonical specs.
inline std::string shortest(double v) {
    char buf[64];
    const auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, v);
    return ec == std::errc() ? std::string(buf, ptr) : std::to_string(v);
}

}  // namespace detail

/// The settings of IpdInputs, named as in its spec (ipd:fibres=16,dt=2,...). The defaults are
/// the reduced size "R1": 16 fibres per ear, 2 ms bins over 100 ms (50 bins), a 20 Hz tone.
struct IpdSettings {
    int fibres = 16;            ///< auditory-nerve fibres per ear (N_a)
    double dt = 2;              ///< time bin, ms
    double duration = 100;      ///< ms; duration / dt time bins (a whole number >= 2)
    double freq = 20;           ///< the tone's frequency, Hz
    double rate = 400;          ///< peak firing rate R_max, Hz (rate * dt / 1000 <= 1: one spike per bin at most)
    double power = 2;           ///< envelope power k > 0: sharper phase locking as it grows
    bool shared_phase = false;  ///< the tone's start phase: drawn per sample (false) or once per learner_view call
};

/// The paper's Fig. 5 (Dorrell, Yuffa & Latham, ICML 2023): a tone reaches the two ears with an
/// interaural phase difference dphi ~ U(-pi/2, pi/2), and a spiking circuit learns functions
/// of it. The meta-learner sees one number per sample, u = dphi / (pi/2) in [-1, 1] (sample());
/// the learner sees what the circuit receives (learner_view()): N_a fibres per ear, each a
/// Bernoulli spike train over Ts = duration / dt bins. Fibre j of ear e (0 left, 1 right) at
/// bin k of sample b fires with probability
///   p = (R_max dt / 1000) ((1 + sin theta) / 2)^power,
///   theta = 2 pi ((freq dt / 1000) k + psi_b) + d_j + e dphi_b,
/// psi_b ~ U(0, 1) the tone's start phase in cycles (unknown to the circuit: only the difference
/// between the ears carries dphi), d_j = j (pi/2) / (N_a - 1) the fibre's preferred phase
/// (d_0 = 0 for one fibre). The right ear's phase is ahead by dphi, so its trains lead the
/// left's by dphi / (2 pi freq). A fibre's mean rate is R_max E[((1 + sin)/2)^power], 3/8 R_max
/// for power 2.
///
/// The view of n samples is n x (Ts * 2 * N_a), one trial per row: column k * (2 N_a) + e N_a + j
/// holds fibre j of ear e at bin k, exactly 0.0 or 1.0. Draw order (fixed, so a view is
/// reproducible bit for bit): sample by sample, psi_b (phase=per-sample) and then one uniform
/// per column in column order, spike = (uniform < p); with phase=shared, one psi before the
/// first sample and none per sample.
class IpdInputs : public InputDistribution {
public:
    /// `spec` names the distribution in messages (the canonical spec when empty). Throws
    /// InputError for settings out of range.
    explicit IpdInputs(IpdSettings s = {}, const std::string& spec = "") : s_(s) {
        const std::string where = "inputs '" + (spec.empty() ? canonical(s) : spec) + "'";
        if (s.fibres < 1 || s.fibres > kMaxFibres)
            throw InputError(where + ": fibres must be from 1 to " + std::to_string(kMaxFibres));
        if (!(s.dt > 0 && s.duration > 0 && s.rate > 0 && s.power > 0 && s.freq >= 0) || !std::isfinite(s.dt) ||
            !std::isfinite(s.duration) || !std::isfinite(s.rate) || !std::isfinite(s.power) || !std::isfinite(s.freq))
            throw InputError(where + ": dt, duration, rate and power must be finite and > 0, freq finite and >= 0");
        const double bins = s.duration / s.dt, whole = std::round(bins);
        if (!(std::abs(bins - whole) <= 1e-9 * std::max(1.0, whole)) || whole < 2)
            throw InputError(where + ": duration / dt = " + detail::shortest(s.duration) + " / " +
                             detail::shortest(s.dt) + " = " + detail::shortest(bins) +
                             " time bins; it must be a whole number >= 2");
        // Columns are counted in int; beyond that the view could never be allocated anyway.
        const double columns = whole * 2.0 * s.fibres;
        if (columns > double(std::numeric_limits<int>::max()))
            throw InputError(where + ": " + describe_count(whole) + " time bins x 2 ears x " +
                             std::to_string(s.fibres) + " fibres = " + describe_count(columns) +
                             " columns per sample; at most " + std::to_string(std::numeric_limits<int>::max()));
        if (s.rate * s.dt / 1000.0 > 1.0)
            throw InputError(where + ": rate x dt = " + detail::shortest(s.rate) + " Hz x " + detail::shortest(s.dt) +
                             " ms = " + detail::shortest(s.rate * s.dt / 1000.0) +
                             " spikes per bin at the peak; a bin holds at most one (rate * dt / 1000 <= 1)");
        bins_ = int(whole);
        for (int j = 0; j < s.fibres; ++j)  // inclusive linspace 0..pi/2
            fibre_phase_.push_back(s.fibres == 1 ? 0.0 : j * (std::numbers::pi / 2) / (s.fibres - 1));
    }

    int dim() const override { return 1; }
    /// u = dphi / (pi/2) ~ U(-1, 1), one draw per sample.
    Eigen::MatrixXd sample(int n, ad::Rng& rng) const override {
        check_count(n);
        Eigen::MatrixXd X(n, 1);
        for (int i = 0; i < n; ++i) X(i, 0) = rng.uniform(-1.0, 1.0);
        return X;
    }
    std::string describe() const override { return canonical(s_); }

    int learner_dim() const override { return bins_ * 2 * s_.fibres; }
    int time_bins() const override { return bins_; }
    double time_bin_ms() const override { return s_.dt; }
    /// Both ears' spike trains for each sample u in X (n x 1); see the class comment for the
    /// layout and the draw order.
    std::optional<Eigen::MatrixXd> own_view(const Eigen::MatrixXd& X, ad::Rng& rng) const override {
        if (X.cols() != 1)
            throw std::invalid_argument("IpdInputs::learner_view: samples must be n x 1 (u), got n x " +
                                        std::to_string(X.cols()));
        const int n = int(X.rows()), na = s_.fibres, channels = 2 * na;
        const double two_pi = 2.0 * std::numbers::pi;
        const double cycles_per_bin = s_.freq * s_.dt / 1000.0, peak = s_.rate * s_.dt / 1000.0;
        // Filled row by row (one trial at a time, in draw order), returned column-major.
        Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> V(n, learner_dim());
        const double shared_psi = s_.shared_phase ? rng.uniform() : 0.0;
        for (int b = 0; b < n; ++b) {
            const double dphi = X(b, 0) * (std::numbers::pi / 2);
            const double psi = s_.shared_phase ? shared_psi : rng.uniform();
            for (int k = 0; k < bins_; ++k)
                for (int e = 0; e < 2; ++e)
                    for (int j = 0; j < na; ++j) {
                        const double theta = two_pi * (cycles_per_bin * k + psi) + fibre_phase_[std::size_t(j)] + e * dphi;
                        const double p = peak * std::pow((1.0 + std::sin(theta)) / 2.0, s_.power);
                        V(b, k * channels + e * na + j) = rng.uniform() < p ? 1.0 : 0.0;
                    }
        }
        return Eigen::MatrixXd(V);
    }

    const IpdSettings& settings() const { return s_; }

    /// The spec with every key, in a fixed order: what make_inputs reads back as these settings.
    static std::string canonical(const IpdSettings& s) {
        return "ipd:fibres=" + std::to_string(s.fibres) + ",dt=" + detail::shortest(s.dt) +
               ",duration=" + detail::shortest(s.duration) + ",freq=" + detail::shortest(s.freq) +
               ",rate=" + detail::shortest(s.rate) + ",power=" + detail::shortest(s.power) +
               ",phase=" + (s.shared_phase ? "shared" : "per-sample");
    }
    static constexpr int kMaxFibres = 100000;  ///< far beyond any ear (about 30 000 fibres)

private:
    IpdSettings s_;
    int bins_ = 0;
    std::vector<double> fibre_phase_;  ///< d_j
};

namespace detail {

/// The settings of "ipd" or "ipd:key=value,...": every key at most once, every value read whole
/// and in range (parse.hpp), anything else one InputError line naming the spec and the key.
/// The constructor of IpdInputs checks what involves two keys (whole bins, rate x dt).
inline IpdSettings parse_ipd_settings(const std::string& spec, bool has_arg, std::string_view arg) {
    const std::string where = "inputs '" + spec + "'";
    const std::string keys = "fibres, dt, duration, freq, rate, power, phase";
    IpdSettings s;
    if (!has_arg) return s;
    std::vector<std::string> seen;
    std::size_t start = 0;
    for (;;) {
        const auto comma = arg.find(',', start);
        const std::string_view item =
            trim(arg.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
        if (item.empty()) throw InputError(where + ": empty setting (expected ipd:key=value,... with keys " + keys + ")");
        const auto eq = item.find('=');
        if (eq == std::string_view::npos)
            throw InputError(where + ": '" + std::string(item) + "' is not key=value (keys: " + keys + ")");
        const std::string key(trim(item.substr(0, eq)));
        const std::string_view value = trim(item.substr(eq + 1));
        static constexpr std::string_view known[] = {"fibres", "dt", "duration", "freq", "rate", "power", "phase"};
        if (std::find(std::begin(known), std::end(known), key) == std::end(known))
            throw InputError(where + ": unknown key '" + key + "' (keys: " + keys + ")");
        if (std::find(seen.begin(), seen.end(), key) != seen.end()) throw InputError(where + ": " + key + " is given twice");
        seen.push_back(key);
        // A number > 0, with the message format of parse_number.
        auto positive = [&](std::string_view text) {
            const double v = parse_number(text, key);
            if (!(v > 0)) throw std::invalid_argument(key + ": '" + std::string(text) + "' is out of range (must be > 0)");
            return v;
        };
        try {
            if (key == "fibres")
                s.fibres = parse_integer<int>(value, key, 1, IpdInputs::kMaxFibres);
            else if (key == "dt")
                s.dt = positive(value);
            else if (key == "duration")
                s.duration = positive(value);
            else if (key == "freq")
                s.freq = parse_number(value, key, 0.0);
            else if (key == "rate")
                s.rate = positive(value);
            else if (key == "power")
                s.power = positive(value);
            else if (value == "per-sample" || value == "shared")
                s.shared_phase = value == "shared";
            else
                throw std::invalid_argument("phase must be per-sample or shared (got '" + std::string(value) + "')");
        } catch (const std::invalid_argument& e) {
            throw InputError(where + ": " + e.what());
        }
        if (comma == std::string_view::npos) return s;
        start = comma + 1;
    }
}

}  // namespace detail

/// True when `spec` names IpdInputs ("ipd" or "ipd:..."), for tools that analyse or draw its
/// functions of u differently, without building the distribution.
inline bool is_ipd(const std::string& spec) {
    const std::string_view s = detail::trim(spec);
    return s == "ipd" || s.substr(0, 4) == "ipd:";
}

namespace detail {

/// The D of "name:D": an integer in [min_dim, max_dim], or an InputError quoting the spec.
inline int parse_dimension(const std::string& spec, std::string_view text, int min_dim) {
    constexpr int max_dim = 100000;  // far beyond any use; stops "sphere:999999999" exhausting memory
    int d = 0;
    const char* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), end, d);
    if (text.empty() || ec != std::errc() || ptr != end || d < min_dim)
        throw InputError("inputs '" + spec + "': dimension must be an integer >= " + std::to_string(min_dim));
    if (d > max_dim)
        throw InputError("inputs '" + spec + "': dimension " + std::to_string(d) + " is too large (at most " +
                         std::to_string(max_dim) + ")");
    return d;
}

}  // namespace detail

/// True when `spec` names images ("mnist", "mnist:PACKAGE_DIR" or "idx:DIR", images.hpp).
inline bool is_image_spec(const std::string& spec) {
    const std::string_view s = detail::trim(spec);
    return s == "mnist" || s.substr(0, 6) == "mnist:" || s == "idx" || s.substr(0, 4) == "idx:";
}

// Defined in images.hpp, which builds on the classes above and is included at the end of this
// file, so that every file including this one can make image inputs.
inline std::unique_ptr<InputDistribution> make_image_inputs(const std::string& spec, const std::string& classes);
inline int image_input_dim(const std::string& spec);

/// The input distribution named by spec: disk, sphere:D (D >= 2), cube:D, gaussian:D (D >= 1),
/// ipd or ipd:key=value,... (IpdInputs), file:PATH (a CSV file, see load_csv), or the images of
/// mnist[:PACKAGE_DIR] or idx:DIR (ImageInputs) whose class is in `classes` (--classes: distinct
/// integers 0..255, comma separated; other specs ignore it). Throws InputError for anything else.
inline std::unique_ptr<InputDistribution> make_inputs(const std::string& spec, const std::string& classes = "0,1") {
    if (is_image_spec(spec)) return make_image_inputs(spec, classes);
    const std::string_view s = detail::trim(spec);
    const auto colon = s.find(':');
    const std::string_view name = s.substr(0, colon);
    const bool has_arg = colon != std::string_view::npos;
    const std::string_view arg = has_arg ? s.substr(colon + 1) : std::string_view{};

    if (name == "disk") {
        if (has_arg) throw InputError("inputs '" + spec + "': disk takes no dimension (it is always 2-D)");
        return std::make_unique<DiskInputs>();
    }
    if (name == "ipd") return std::make_unique<IpdInputs>(detail::parse_ipd_settings(spec, has_arg, arg), spec);
    if (name == "file") {
        if (detail::trim(arg).empty()) throw InputError("inputs '" + spec + "': expected file:PATH.csv");
        return std::make_unique<FileInputs>(std::string(arg));  // the path is kept verbatim
    }
    if (name == "sphere" || name == "cube" || name == "gaussian") {
        if (!has_arg)
            throw InputError("inputs '" + spec + "': missing dimension (expected " + std::string(name) + ":D)");
        const int d = detail::parse_dimension(spec, arg, name == "sphere" ? 2 : 1);
        if (name == "sphere") return std::make_unique<SphereInputs>(d);
        if (name == "cube") return std::make_unique<CubeInputs>(d);
        return std::make_unique<GaussianInputs>(d);
    }
    throw InputError("unknown inputs '" + spec +
                     "' (expected disk, sphere:D, cube:D, gaussian:D, ipd[:key=value,...], file:PATH.csv, "
                     "mnist[:PACKAGE_DIR] or idx:DIR)");
}

/// The dimension of the inputs `spec` names, for checks before a run (the sizes of the matrices
/// it will need) without loading anything: a file's is the number of cells on its first
/// non-blank line (ragged rows are load_csv's to report when the run reads the file), so a
/// large file is read once, by the run; images' are their pixels (mnist: 784; idx: from the
/// images file's header alone). Throws InputError as make_inputs does.
inline int input_dim(const std::string& spec) {
    if (is_image_spec(spec)) return image_input_dim(spec);
    const std::string_view s = detail::trim(spec);
    if (s.substr(0, 5) != "file:" || detail::trim(s.substr(5)).empty()) return make_inputs(spec)->dim();
    const std::string path(s.substr(5));
    std::ifstream in = detail::open_regular_file(path, "inputs file '" + path + "'");
    std::string line;
    for (bool first = true; std::getline(in, line); first = false) {
        std::string_view text = line;
        if (first && text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
        if (!detail::trim(text).empty())  // capped so a pathological line cannot overflow int
            return static_cast<int>(std::min<size_t>(detail::split_cells(text).size(), size_t(1) << 30));
    }
    return 1;  // no data at all: load_csv says so when the run reads the file
}

/// The width of the learner's view of one sample of `spec` (learner_dim()), without loading a
/// file: a file's rows, or images, are what its learner sees, so it is input_dim's. Throws
/// InputError as make_inputs does.
inline int learner_input_dim(const std::string& spec) {
    const std::string_view s = detail::trim(spec);
    if (s.substr(0, 5) == "file:" || is_image_spec(spec)) return input_dim(spec);
    return make_inputs(spec)->learner_dim();
}

}  // namespace occam::experiment

// The image readers and ImageInputs, which make_inputs above builds (see its declarations).
#include "images.hpp"
