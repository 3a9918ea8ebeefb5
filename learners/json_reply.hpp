// What this file teaches: reading another program's reply strictly. The whole output must be
// exactly one JSON object (RFC 8259, whitespace only around it), so a reply that is only half
// right (trailing text, a repeated key, NaN, a hex float) fails loudly instead of being half read.
#pragma once

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdio>
#include <initializer_list>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace occam::learners::json {

/// What is wrong with a reply, in one line.
class ReplyError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// At most `max` bytes of `s` on one printable line: \n, \r, \t and \\ as such, other bytes
/// outside printable ASCII as \xNN, and "..." when cut. For quoting a program's output.
inline std::string quote_bytes(std::string_view s, std::size_t max = 200) {
    std::string t;
    for (std::size_t i = 0; i < s.size() && i < max; ++i) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c == '\n') t += "\\n";
        else if (c == '\r') t += "\\r";
        else if (c == '\t') t += "\\t";
        else if (c == '\\') t += "\\\\";
        else if (c >= 0x20 && c < 0x7f) t += char(c);
        else {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02X", unsigned(c));
            t += buf;
        }
    }
    if (s.size() > max) t += "...";
    return t;
}

namespace detail {

/// A cursor over the text that validates one token at a time and throws where it fails.
class Reader {
public:
    explicit Reader(std::string_view text) : s_(text) {}
    std::size_t pos = 0;

    bool at_end() const { return pos >= s_.size(); }
    bool next_is(char c) const { return pos < s_.size() && s_[pos] == c; }
    unsigned char peek() const { return at_end() ? 0 : static_cast<unsigned char>(s_[pos]); }
    void skip_ws() {  // RFC 8259 whitespace: space, tab, line feed, carriage return; nothing else
        while (pos < s_.size() && (s_[pos] == ' ' || s_[pos] == '\t' || s_[pos] == '\n' || s_[pos] == '\r')) ++pos;
    }
    [[noreturn]] void fail(const std::string& why) const { fail_at(pos, why); }
    [[noreturn]] void fail_at(std::size_t at, const std::string& why) const {
        throw ReplyError("not valid JSON at byte " + std::to_string(at + 1) + ": " + why);
    }
    [[noreturn]] void fail_unexpected() const {
        if (at_end()) fail("the text ends inside the JSON value");
        fail("unexpected '" + quote_bytes(s_.substr(pos, 1)) + "'");
    }

    /// A string starting at the opening quote; its decoded UTF-8 goes to `decoded` if given.
    void string(std::string* decoded) {
        const std::size_t start = pos++;
        for (;;) {
            if (at_end()) fail_at(start, "a string is not closed");
            const unsigned char c = peek();
            if (c == '"') {
                ++pos;
                return;
            }
            if (c < 0x20) fail("a control byte (\\x" + hex2(c) + ") in a string must be escaped");
            if (c == '\\') {
                escape(decoded);
            } else if (c < 0x80) {
                if (decoded) *decoded += char(c);
                ++pos;
            } else {
                utf8(decoded);
            }
        }
    }

    /// A number token (RFC 8259 grammar, checked here: from_chars alone would take "1." or
    /// "inf"); returns its text.
    std::string_view number() {
        const std::size_t start = pos;
        if (next_is('+')) fail("a number may not start with '+'");
        if (next_is('.')) fail("a number must start with a digit, not '.'");
        if (next_is('-')) ++pos;
        if (!digit()) {
            if (non_finite_word()) fail_non_finite();
            fail("'-' must be followed by a digit");
        }
        if (next_is('0')) {
            ++pos;
            if (next_is('x') || next_is('X')) fail_at(start, "hex numbers are not JSON");
            if (digit()) fail_at(start, "a number may not have a leading zero");
        } else {
            while (digit()) ++pos;
        }
        if (next_is('.')) {
            ++pos;
            if (!digit()) fail("a '.' in a number must be followed by a digit");
            while (digit()) ++pos;
        }
        if (next_is('e') || next_is('E')) {
            ++pos;
            if (next_is('+') || next_is('-')) ++pos;
            if (!digit()) fail("an exponent needs a digit");
            while (digit()) ++pos;
        }
        const unsigned char c = peek();
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '.' || c == '_')
            fail_at(start, "a malformed number '" + quote_bytes(s_.substr(start, pos + 1 - start), 40) + "'");
        return s_.substr(start, pos - start);
    }

    /// true, false or null.
    void literal() {
        for (std::string_view word : {"true", "false", "null"})
            if (s_.substr(pos, word.size()) == word) {
                pos += word.size();
                const unsigned char c = peek();
                if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')
                    fail("a word that is not true, false or null");
                return;
            }
        if (non_finite_word()) fail_non_finite();
        fail("a word that is not true, false or null");
    }

    [[noreturn]] void fail_non_finite() const {
        fail("a non-finite number (NaN or Infinity) is not valid JSON");
    }
    /// NaN, Infinity, inf, ... as other languages print them.
    bool non_finite_word() const {
        auto starts = [&](std::string_view w) {
            if (s_.size() - pos < w.size()) return false;
            for (std::size_t i = 0; i < w.size(); ++i)
                if ((s_[pos + i] | 0x20) != w[i]) return false;
            return true;
        };
        return starts("nan") || starts("inf");
    }

private:
    bool digit() const { return pos < s_.size() && s_[pos] >= '0' && s_[pos] <= '9'; }
    static std::string hex2(unsigned c) {
        char buf[4];
        std::snprintf(buf, sizeof buf, "%02X", c & 0xffu);
        return buf;
    }
    static void append_utf8(std::string* out, unsigned cp) {
        if (!out) return;
        if (cp < 0x80) {
            *out += char(cp);
        } else if (cp < 0x800) {
            *out += char(0xC0 | (cp >> 6));
            *out += char(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            *out += char(0xE0 | (cp >> 12));
            *out += char(0x80 | ((cp >> 6) & 0x3F));
            *out += char(0x80 | (cp & 0x3F));
        } else {
            *out += char(0xF0 | (cp >> 18));
            *out += char(0x80 | ((cp >> 12) & 0x3F));
            *out += char(0x80 | ((cp >> 6) & 0x3F));
            *out += char(0x80 | (cp & 0x3F));
        }
    }
    /// Four hex digits after "\u" (pos at the backslash); leaves pos after them.
    unsigned hex4() {
        const std::size_t at = pos;
        if (s_.size() - pos < 6 || s_[pos + 1] != 'u') fail_at(at, "a \\u escape needs four hex digits");
        unsigned v = 0;
        for (std::size_t i = pos + 2; i < pos + 6; ++i) {
            const char c = s_[i];
            const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (d < 0) fail_at(at, "a \\u escape needs four hex digits");
            v = v * 16 + unsigned(d);
        }
        pos += 6;
        return v;
    }
    void escape(std::string* out) {
        const std::size_t at = pos;
        if (pos + 1 >= s_.size()) fail_at(at, "a string is not closed");
        const char e = s_[pos + 1];
        const char* simple = nullptr;
        switch (e) {
            case '"': simple = "\""; break;
            case '\\': simple = "\\"; break;
            case '/': simple = "/"; break;
            case 'b': simple = "\b"; break;
            case 'f': simple = "\f"; break;
            case 'n': simple = "\n"; break;
            case 'r': simple = "\r"; break;
            case 't': simple = "\t"; break;
            case 'u': break;
            default: fail_at(at, "an invalid escape '\\" + quote_bytes(s_.substr(pos + 1, 1)) + "'");
        }
        if (simple) {
            if (out) *out += simple;
            pos += 2;
            return;
        }
        unsigned cp = hex4();
        if (cp >= 0xDC00 && cp <= 0xDFFF) fail_at(at, "a lone low surrogate in a \\u escape");
        if (cp >= 0xD800 && cp <= 0xDBFF) {  // must be followed by its low half: a pair is one code point
            if (!next_is('\\')) fail_at(at, "a high surrogate \\u escape without its low half");
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail_at(at, "a high surrogate \\u escape without its low half");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        append_utf8(out, cp);
    }
    /// One multi-byte UTF-8 sequence (RFC 3629: no overlong forms, no surrogates, <= U+10FFFF).
    void utf8(std::string* out) {
        const unsigned char c = peek();
        int n = 0;
        unsigned char lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
        if (c >= 0xC2 && c <= 0xDF) n = 1;
        else if (c >= 0xE0 && c <= 0xEF) n = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        else if (c >= 0xF0 && c <= 0xF4) n = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        else fail("invalid UTF-8 (byte \\x" + hex2(c) + ")");
        for (int i = 1; i <= n; ++i) {
            const std::size_t k = pos + std::size_t(i);
            const unsigned char b = k < s_.size() ? static_cast<unsigned char>(s_[k]) : 0;
            if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF)) fail("invalid UTF-8 (byte \\x" + hex2(c) + ")");
        }
        if (out) out->append(s_.substr(pos, std::size_t(n) + 1));
        pos += std::size_t(n) + 1;
    }

    std::string_view s_;
};

/// The power of ten of a valid number token's first significant digit (1.5e3 -> 3, 0.02 -> -2),
/// with the exponent saturated; 0 for zero. Tells an overflow from an underflow.
inline long order_of_magnitude(std::string_view tok) {
    const std::size_t e = std::min(tok.find_first_of("eE"), tok.size());
    const std::size_t dot = std::min(tok.find('.'), e);
    long exponent = 0;
    if (e < tok.size()) {
        std::size_t q = e + 1;
        const bool negative = tok[q] == '-';
        if (tok[q] == '+' || tok[q] == '-') ++q;
        for (; q < tok.size(); ++q) exponent = std::min(exponent * 10 + (tok[q] - '0'), 1000000L);
        if (negative) exponent = -exponent;
    }
    for (std::size_t i = tok[0] == '-' ? 1 : 0; i < e; ++i)
        if (tok[i] >= '1' && tok[i] <= '9') return exponent + long(dot) - long(i) - (i < dot ? 1 : 0);
    return 0;
}

}  // namespace detail

/// Checks that `text` is exactly one JSON object, strictly (RFC 8259: no duplicate keys in any
/// object, no NaN/Infinity, hex, '+' or leading zeros, valid strings and UTF-8, nesting at most
/// `max_depth` levels), and returns the numbers of its member `key`, which must be an array of
/// numbers that fit a double. Other members may hold anything. Throws ReplyError.
inline std::vector<double> number_array_member(std::string_view text, std::string_view key, int max_depth = 64) {
    detail::Reader r(text);
    r.skip_ws();
    if (r.at_end()) throw ReplyError(text.empty() ? "the output is empty" : "the output is only whitespace");
    if (!r.next_is('{')) {
        if (r.next_is('[') || r.next_is('"') || r.next_is('-') || (r.peek() >= '0' && r.peek() <= '9'))
            r.fail("the reply must be a JSON object {...}");
        r.fail("the reply must be a JSON object {...}, not '" + json::quote_bytes(text.substr(r.pos), 20) + "'");
    }
    // Iterative: one frame per open object or array, so a deep document cannot overflow the stack.
    struct Frame {
        bool object;
        std::set<std::string> keys;
    };
    std::vector<Frame> stack;
    stack.push_back({true, {}});
    ++r.pos;
    bool opened = true;  // just after '{' or '[': the container may close at once
    std::size_t found = std::string_view::npos;
    while (!stack.empty()) {
        r.skip_ws();
        const bool object = stack.back().object;
        const char close = object ? '}' : ']';
        if (r.next_is(close)) {  // "{}" and "[]" are fine; a ',' just before the close is caught below
            ++r.pos;
            stack.pop_back();
            opened = false;
            continue;
        }
        if (!opened) {
            if (r.at_end()) r.fail(object ? "the text ends inside an object (expected ',' or '}')"
                                          : "the text ends inside an array (expected ',' or ']')");
            if (!r.next_is(',')) r.fail(object ? "expected ',' or '}'" : "expected ',' or ']'");
            ++r.pos;
            r.skip_ws();
            if (r.next_is(close)) r.fail("a ',' before '" + std::string(1, close) + "'");
        }
        opened = false;
        if (object) {
            if (r.at_end()) r.fail("the text ends inside an object");
            if (!r.next_is('"')) r.fail("expected a key in double quotes");
            const std::size_t at = r.pos;
            std::string k;
            r.string(&k);
            if (!stack.back().keys.insert(k).second)
                r.fail_at(at, "the key \"" + json::quote_bytes(k, 40) + "\" appears twice in one object");
            r.skip_ws();
            if (!r.next_is(':')) r.fail("expected ':' after a key");
            ++r.pos;
            r.skip_ws();
            if (stack.size() == 1 && k == key) found = r.pos;
        }
        const unsigned char c = r.peek();
        if (c == '{' || c == '[') {
            if (int(stack.size()) >= max_depth) r.fail("nested deeper than " + std::to_string(max_depth) + " levels");
            stack.push_back({c == '{', {}});
            ++r.pos;
            opened = true;
        } else if (c == '"') {
            r.string(nullptr);
        } else if (c == '-' || c == '+' || c == '.' || (c >= '0' && c <= '9')) {
            r.number();
        } else if (c == 't' || c == 'f' || c == 'n' || c == 'N' || c == 'I' || c == 'i') {
            r.literal();
        } else {
            r.fail_unexpected();
        }
    }
    r.skip_ws();
    if (!r.at_end()) r.fail("text after the JSON object");

    const std::string name = "\"" + std::string(key) + "\"";
    if (found == std::string_view::npos) throw ReplyError("the reply has no " + name);
    // The document is valid, so the member's value needs only its shape checked.
    r.pos = found;
    if (!r.next_is('[')) throw ReplyError(name + " is not a list");
    ++r.pos;
    std::vector<double> v;
    for (r.skip_ws(); !r.next_is(']');) {
        const unsigned char c = r.peek();
        if (!(c == '-' || (c >= '0' && c <= '9')))
            throw ReplyError(name + " holds something that is not a number (item " + std::to_string(v.size() + 1) + ")");
        const std::string_view tok = r.number();
        double d = 0;
        const auto [end, ec] = std::from_chars(tok.data(), tok.data() + tok.size(), d);
        if (ec == std::errc::result_out_of_range) {  // too small rounds to zero; too large is an error
            if (detail::order_of_magnitude(tok) >= 0)
                throw ReplyError(name + " holds a number beyond the range of a double (item " +
                                 std::to_string(v.size() + 1) + ": " + json::quote_bytes(tok, 40) + ")");
            d = tok[0] == '-' ? -0.0 : 0.0;
        } else if (ec != std::errc() || end != tok.data() + tok.size()) {
            throw ReplyError(name + " holds an unreadable number (item " + std::to_string(v.size() + 1) + ")");
        }
        v.push_back(d);
        r.skip_ws();
        if (r.next_is(',')) ++r.pos;
        r.skip_ws();
    }
    return v;
}

}  // namespace occam::learners::json
