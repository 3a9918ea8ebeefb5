// What this file teaches: reading a number the user typed. std::stoi and friends read a prefix
// ("20x" is 20), wrap negative numbers into unsigned ones ("-1" is 2^64 - 1) and throw messages
// that name neither the flag nor the text; std::from_chars reports where it stopped and whether
// the value fits, so a whole string is either a number in range or an error naming the flag.
// Also the size limits that follow from the numbers: what one matrix may hold, and how much
// memory this machine has.
#pragma once

#include <unistd.h>

#include <charconv>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace occam::experiment {

namespace detail {

/// s without surrounding spaces and tabs (a list typed as "1, 2, 3" is not misread).
inline std::string_view trim_blanks(std::string_view s) {
    const auto first = s.find_first_not_of(" \t");
    if (first == std::string_view::npos) return {};
    return s.substr(first, s.find_last_not_of(" \t") - first + 1);
}

/// The text of an integer of any width (std::to_string has no overload for every type).
template <std::integral T>
std::string integer_text(T v) {
    if constexpr (std::is_signed_v<T>)
        return std::to_string(static_cast<long long>(v));
    else
        return std::to_string(static_cast<unsigned long long>(v));
}

}  // namespace detail

/// The whole of `text` (surrounding blanks aside) as an integer in [min, max], or
/// std::invalid_argument naming `what` (a flag, e.g. "--seeds"): "--seeds: '-1' is not a
/// non-negative integer", "--threads: '0' is out of range (1 to 1024)". No sign for unsigned
/// types, no '+', no trailing characters, no silent wrap-around.
template <std::integral T>
T parse_integer(std::string_view text, std::string_view what, T min = std::numeric_limits<T>::min(),
                T max = std::numeric_limits<T>::max()) {
    const std::string_view s = detail::trim_blanks(text);
    const std::string quoted = std::string(what) + ": '" + std::string(text) + "'";
    const std::string range = " (" + detail::integer_text(min) + " to " + detail::integer_text(max) + ")";
    T v{};
    const char* end = s.data() + s.size();
    const auto [ptr, ec] = std::from_chars(s.data(), end, v);
    if (s.empty() || ptr != end || (ec != std::errc() && ec != std::errc::result_out_of_range)) {
        bool non_negative = true;
        if constexpr (std::is_signed_v<T>) non_negative = min >= 0;
        throw std::invalid_argument(quoted + (non_negative ? " is not a non-negative integer" : " is not an integer"));
    }
    if (ec == std::errc::result_out_of_range || std::cmp_less(v, min) || std::cmp_greater(v, max))
        throw std::invalid_argument(quoted + " is out of range" + range);
    return v;
}

/// The whole of `text` (surrounding blanks aside) as a finite number in [min, max], or
/// std::invalid_argument naming `what`: "--lr: '0.01x' is not a number". A leading '+' is
/// accepted; "nan", "inf" and overflowing values ("1e999") are rejected.
inline double parse_number(std::string_view text, std::string_view what,
                           double min = -std::numeric_limits<double>::max(),
                           double max = std::numeric_limits<double>::max()) {
    std::string_view s = detail::trim_blanks(text);
    const std::string quoted = std::string(what) + ": '" + std::string(text) + "'";
    if (s.size() > 1 && s[0] == '+' && s[1] != '-' && s[1] != '+') s.remove_prefix(1);
    double v = 0;
    const char* end = s.data() + s.size();
    const auto [ptr, ec] = std::from_chars(s.data(), end, v);
    if (s.empty() || ptr != end || (ec != std::errc() && ec != std::errc::result_out_of_range))
        throw std::invalid_argument(quoted + " is not a number");
    if (ec == std::errc::result_out_of_range) {
        // Overflow is an error; underflow ("1e-400") reads as 0 or a denormal, as strtod gives it.
        v = std::strtod(std::string(s).c_str(), nullptr);
        if (!std::isfinite(v)) throw std::invalid_argument(quoted + " is too large");
    }
    if (!std::isfinite(v)) throw std::invalid_argument(quoted + " is not a finite number");
    if (v < min || v > max) {
        char range[96];
        if (max == std::numeric_limits<double>::max())
            std::snprintf(range, sizeof range, " is out of range (must be >= %.15g)", min);
        else if (min == -std::numeric_limits<double>::max())
            std::snprintf(range, sizeof range, " is out of range (must be <= %.15g)", max);
        else
            std::snprintf(range, sizeof range, " is out of range (%.15g to %.15g)", min, max);
        throw std::invalid_argument(quoted + range);
    }
    return v;
}

/// A comma-separated list of integers in [min, max], e.g. --seeds 1,2,3: every item whole
/// (blanks around items allowed), no empty item, and with `distinct` no value twice (a seed
/// listed twice would run twice and count twice in a median).
template <std::integral T>
std::vector<T> parse_integer_list(std::string_view text, std::string_view what, T min = std::numeric_limits<T>::min(),
                                  T max = std::numeric_limits<T>::max(), bool distinct = true) {
    std::vector<T> out;
    std::set<T> seen;
    if (detail::trim_blanks(text).empty()) throw std::invalid_argument(std::string(what) + " is empty");
    std::size_t start = 0;
    for (;;) {
        const auto comma = text.find(',', start);
        const std::string_view item = text.substr(start, comma == std::string_view::npos ? comma : comma - start);
        if (detail::trim_blanks(item).empty())
            throw std::invalid_argument(std::string(what) + ": empty item in '" + std::string(text) + "'");
        const T v = parse_integer<T>(item, what, min, max);
        if (distinct && !seen.insert(v).second)
            throw std::invalid_argument(std::string(what) + ": " + detail::integer_text(v) + " is listed twice");
        out.push_back(v);
        if (comma == std::string_view::npos) return out;
        start = comma + 1;
    }
}

/// "K" or "MIN<separator>MAX" (e.g. --features 20 or 10:50, a learner's features=10-50) as
/// integers with min <= MIN <= MAX <= max; both numbers whole. Errors read "WHAT must be K or
/// MIN:MAX, integers with 1 <= MIN <= MAX <= 2147483647 (got '10:20x')".
inline std::pair<int, int> parse_int_range(std::string_view text, char separator, std::string_view what, int min = 1,
                                           int max = std::numeric_limits<int>::max()) {
    const std::string message = std::string(what) + " must be K or MIN" + separator + "MAX, integers with " +
                                std::to_string(min) + " <= MIN <= MAX <= " + std::to_string(max) + " (got '" +
                                std::string(text) + "')";
    try {
        const auto at = text.find(separator);
        const int lo = parse_integer<int>(text.substr(0, at), what, min, max);
        const int hi = at == std::string_view::npos ? lo : parse_integer<int>(text.substr(at + 1), what, min, max);
        if (hi < lo) throw std::invalid_argument(message);
        return {lo, hi};
    } catch (const std::invalid_argument&) {
        throw std::invalid_argument(message);
    }
}

// ---- size limits ---------------------------------------------------------------------------

/// The most elements one matrix may hold: 2^31 - 1 (17 GB of doubles). Eigen indexes with 64
/// bits, but the learners and kernels count rows and columns in int, and no sensible run comes
/// near it; beyond it a run would overflow or die in std::bad_alloc rather than say why.
inline constexpr double kMaxMatrixElements = 2147483647.0;

/// The memory this process may use, in bytes: the machine's physical memory, or the limit of
/// its container (cgroup v2 memory.max, v1 memory.limit_in_bytes) when that is smaller, since
/// beyond it the kernel kills the process rather than fail an allocation. 0 when unknown.
inline double physical_memory_bytes() {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    double bytes = pages > 0 && page > 0 ? double(pages) * double(page) : 0.0;
    for (const char* limit_file : {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
        if (std::FILE* f = std::fopen(limit_file, "r")) {
            double limit = 0;  // "max" (no limit) does not scan
            if (std::fscanf(f, "%lf", &limit) == 1 && limit > 0 && (bytes == 0 || limit < bytes)) bytes = limit;
            std::fclose(f);
        }
    }
    return bytes;
}

/// A byte count for messages: "512 bytes", "16 GB", "23.4 GB" (decimal units, as `free -h` and
/// disk vendors count them: 1 GB = 1e9 bytes).
inline std::string describe_bytes(double bytes) {
    char s[64];
    const char* unit = "bytes";
    double v = bytes;
    for (const char* u : {"kB", "MB", "GB", "TB", "PB", "EB"}) {
        if (v < 1000) break;
        v /= 1000;
        unit = u;
    }
    if (v >= 1000)  // beyond exabytes: absurd sizes, written plainly
        std::snprintf(s, sizeof s, "%.3g bytes", bytes);
    else
        std::snprintf(s, sizeof s, v < 100 && unit[0] != 'b' ? "%.3g %s" : "%.0f %s", v, unit);
    return s;
}

/// A count for messages: an integer while exact (below 2^53), else "1.2e+27".
inline std::string describe_count(double n) {
    char s[64];
    std::snprintf(s, sizeof s, n < 9007199254740992.0 ? "%.0f" : "%.3g", n);
    return s;
}

}  // namespace occam::experiment
