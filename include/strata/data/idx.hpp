// read_idx: the idx format of MNIST, Fashion-MNIST, KMNIST, EMNIST, gzipped or plain.
//
// Layout (big endian), from http://yann.lecun.com/exdb/mnist/:
//   bytes 0-1  0x00 0x00
//   byte  2    element type: 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64
//   byte  3    number of dims D
//   D x 4      each dim's size, uint32 big endian
//   then the elements, row-major, big endian
// The result has the stored dims and the matching dtype: u8 -> uint8, i32 -> int32, f32 -> float32,
// f64 -> float64; i8 and i16 (no such strata dtype) widen to int32. Files are read through zlib's
// gzread, which reads .gz and plain files alike. max_items >= 0 reads only the first max_items
// entries of dim 0 (a quick subset without inflating the whole file).
// Errors name the file and what is wrong: missing, unreadable, bad magic, unknown type, truncated,
// extra bytes after the data, a corrupt gzip stream.
#pragma once

#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "strata/tensor/tensor.hpp"

namespace strata {

namespace detail {

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

/// zlib's description of the last error on f, or "" when there is none.
inline std::string gz_error(gzFile f) {
  int code = Z_OK;
  const char* msg = gzerror(f, &code);
  return code == Z_OK || code == Z_STREAM_END || !msg ? std::string() : std::string(" (zlib: ") + msg + ")";
}

/// Reads exactly n bytes (in chunks: gzread takes an unsigned count); returns the bytes read.
inline int64_t gz_read_all(gzFile f, void* dst, int64_t n) {
  int64_t done = 0;
  while (done < n) {
    const auto chunk = unsigned(std::min<int64_t>(n - done, int64_t(1) << 30));
    const int got = gzread(f, static_cast<char*>(dst) + done, chunk);
    if (got <= 0) break;
    done += got;
  }
  return done;
}

/// Big-endian bytes to native values, in place, for elements of `size` bytes.
inline void from_big_endian(void* data, int64_t count, int size) {
  if constexpr (std::endian::native == std::endian::big) return;
  auto* p = static_cast<unsigned char*>(data);
  for (int64_t i = 0; i < count; ++i, p += size) std::reverse(p, p + size);
}

}  // namespace detail

/// The tensor stored in an idx file (gzipped or plain); max_items >= 0 keeps the first entries of dim 0.
inline Tensor read_idx(const std::string& path, int64_t max_items = -1) {
  const char* op = "read_idx";
  std::error_code ec;
  STRATA_CHECK(std::filesystem::is_regular_file(path, ec), op, "got path '", path, "', expected an existing file (",
               std::filesystem::exists(path, ec) ? "it is not a regular file" : "no such file", ")");
  detail::GzFile f(gzopen(path.c_str(), "rb"));
  STRATA_CHECK(f != nullptr, op, "got path '", path, "', expected a readable file (", std::strerror(errno), ")");
  gzbuffer(f.get(), 1 << 18);

  unsigned char magic[4] = {};
  const int64_t got_magic = detail::gz_read_all(f.get(), magic, 4);
  STRATA_CHECK(got_magic == 4, op, "got a truncated file '", path, "' of ", got_magic,
               " bytes, expected at least the 4-byte idx magic", detail::gz_error(f.get()));
  STRATA_CHECK(magic[0] == 0 && magic[1] == 0, op, "got bad magic bytes ", int(magic[0]), " ", int(magic[1]),
               " at the start of '", path, "', expected 0 0 (an idx file, plain or gzipped)");
  DType dtype;
  int stored = 0;  // bytes per stored element
  switch (magic[2]) {
    case 0x08: dtype = DType::u8; stored = 1; break;
    case 0x09: dtype = DType::i32; stored = 1; break;  // i8, widened
    case 0x0B: dtype = DType::i32; stored = 2; break;  // i16, widened
    case 0x0C: dtype = DType::i32; stored = 4; break;
    case 0x0D: dtype = DType::f32; stored = 4; break;
    case 0x0E: dtype = DType::f64; stored = 8; break;
    default:
      detail::fail(op, "got element type code 0x", "0123456789abcdef"[magic[2] >> 4], "0123456789abcdef"[magic[2] & 15],
                   " in '", path, "', expected one of 0x08 (u8), 0x09 (i8), 0x0b (i16), 0x0c (i32), 0x0d (f32), 0x0e (f64)");
  }
  const int ndim = magic[3];

  std::vector<unsigned char> dim_bytes(size_t(ndim) * 4);
  const int64_t got_dims = detail::gz_read_all(f.get(), dim_bytes.data(), int64_t(dim_bytes.size()));
  STRATA_CHECK(got_dims == int64_t(dim_bytes.size()), op, "got a truncated file '", path, "': the header names ",
               ndim, " dims (", 4 * ndim, " bytes) but only ", got_dims, " bytes follow", detail::gz_error(f.get()));
  Shape shape(static_cast<size_t>(ndim));
  int64_t count = 1;
  for (int d = 0; d < ndim; ++d) {
    const unsigned char* b = &dim_bytes[size_t(d) * 4];
    shape[size_t(d)] = int64_t(uint32_t(b[0]) << 24 | uint32_t(b[1]) << 16 | uint32_t(b[2]) << 8 | b[3]);
    count *= shape[size_t(d)];
    STRATA_CHECK(count < (int64_t(1) << 40), op, "got dims ", shape, " in '", path,
                 "', expected fewer than 2^40 elements (a corrupt header?)");
  }
  const int64_t header_n = ndim ? shape[0] : 1;  // entries along dim 0 the file holds
  const bool partial = ndim > 0 && max_items >= 0 && max_items < shape[0];
  if (partial) {
    count = shape[0] ? count / shape[0] * max_items : 0;
    shape[0] = max_items;
  }

  Tensor out = Tensor::empty(shape, dtype);
  const int64_t want = count * stored;
  std::vector<unsigned char> narrow_buf;  // i8/i16 are read here, then widened
  void* dst = stored == itemsize(dtype) ? out.raw_data() : (narrow_buf.resize(size_t(want)), narrow_buf.data());
  const int64_t got = detail::gz_read_all(f.get(), dst, want);
  STRATA_CHECK(got == want, op, "got a truncated file '", path, "': the header says ", shape, " (", header_n,
               " entries) = ", want, " bytes of data, but only ", got, " bytes follow", detail::gz_error(f.get()));
  if (!partial) {
    unsigned char extra[4096];
    int64_t n_extra = 0;
    for (int64_t k; (k = detail::gz_read_all(f.get(), extra, sizeof(extra))) > 0;) n_extra += k;
    STRATA_CHECK(n_extra == 0, op, "got ", n_extra, " extra bytes after the data in '", path, "', expected exactly ",
                 want, " bytes for dims ", shape, " (a size mismatch)");
  }

  if (stored == 1 && dtype == DType::i32) {  // i8
    const auto* s = reinterpret_cast<const int8_t*>(narrow_buf.data());
    std::transform(s, s + count, out.data_ptr<int32_t>(), [](int8_t v) { return int32_t(v); });
  } else if (stored == 2) {  // i16, big endian
    const unsigned char* s = narrow_buf.data();
    int32_t* d = out.data_ptr<int32_t>();
    for (int64_t i = 0; i < count; ++i) d[i] = int16_t(uint16_t(s[2 * i] << 8 | s[2 * i + 1]));
  } else if (stored > 1) {
    detail::from_big_endian(out.raw_data(), count, stored);
  }
  return out;
}

}  // namespace strata
