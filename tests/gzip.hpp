// A gzip writer for the tests and the fuzzer: the gzipped files the image readers are tested on
// are made from bytes in the test itself (zlib's deflate with a gzip wrapper), so no binary
// fixture is kept in the repository. Only with zlib (OCCAM_HAVE_ZLIB).
#pragma once

#ifdef OCCAM_HAVE_ZLIB
#include <zlib.h>

#include <stdexcept>
#include <string>

namespace occam::testing {

/// `bytes` as one gzip member, as `gzip -9` writes them.
inline std::string gzip(const std::string& bytes) {
    z_stream z{};
    if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        throw std::runtime_error("gzip: deflateInit2 failed");
    std::string out(deflateBound(&z, uLong(bytes.size())), '\0');  // bound includes the gzip wrapper
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
    z.avail_in = uInt(bytes.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = uInt(out.size());
    const int rc = deflate(&z, Z_FINISH);
    out.resize(z.total_out);
    deflateEnd(&z);
    if (rc != Z_STREAM_END) throw std::runtime_error("gzip: deflate did not finish");
    return out;
}

}  // namespace occam::testing
#endif
