// read_image / decode_image / write_jpeg / write_image / verify_images: image files <-> u8 [C, H, W].
//
// Contract: decode_image turns the bytes of a JPEG, PNG, BMP, GIF (first frame), PSD, PIC, PNM or
// HDR file into a u8 tensor [C, H, W] (channel-major, top row first), C as stored (1 gray, 2 gray+alpha,
// 3 RGB, 4 RGBA) or forced to `channels` (1..4) with stb's conversions (gray = weighted RGB, alpha
// added as 255 or dropped). 16-bit PNGs and HDR are reduced to 8 bits by stb. Anything that does not
// decode -- garbage, a truncated file, an empty file, an unknown format -- throws strata::Error naming
// the file and stb's reason, never a crash and never a silently half-black picture: stb fills a cut
// JPEG or BMP with zeros, leaves a cut PNM's pixels unset and ignores a PNG's end, so those four are
// checked for their end (JPEG's EOI marker, the pixel rows a BMP or PNM header promises, PNG's IEND
// chunk). GIF, PSD, PIC and HDR are left to stb's own checks. TGA is compiled out: it has no signature, so garbage would
// "decode" as TGA and verify_images could not find it.
//
// Thread safety: only stb's *_from_memory entry points are used; stb's failure reason is
// thread-local (C++11 build), and each call pins this thread's vertical flip to off, so a
// stbi_set_flip_vertically_on_load(1) elsewhere does not leak in. DataLoader workers may call
// read_image at once.
//
// Writing: write_jpeg (stb_image_write's baseline encoder, quality 1..100) and write_image (by the
// extension: .png, .jpg/.jpeg, .bmp) write atomically through png.hpp's detail::write_file_atomic.
//
// stb_image (Debian's libstb-dev, public domain) is compiled here with static linkage, unless the
// user already included stb_image.h, in which case their declarations and implementation are used.
#pragma once

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "strata/core/error.hpp"
#include "strata/core/parallel.hpp"
#include "strata/io/png.hpp"
#include "strata/tensor/tensor.hpp"

#ifndef STBI_INCLUDE_STB_IMAGE_H
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wcast-qual"
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_TGA
#include <stb/stb_image.h>
#undef STBI_NO_TGA
#undef STB_IMAGE_IMPLEMENTATION
#undef STB_IMAGE_STATIC
#pragma GCC diagnostic pop
#endif

namespace strata {

namespace detail {

/// "" when a JPEG (starting FF D8) reaches its end-of-image marker, else why not. Walks the marker
/// segments by their lengths and the entropy-coded data byte by byte (0xFF is stuffed as FF 00 there
/// and FF D0..D7 are restart markers), so an EOI inside an EXIF thumbnail is not mistaken for the end.
inline std::string jpeg_end_problem(std::span<const uint8_t> b) {
  const size_t n = b.size();
  size_t i = 2;
  bool in_scan = false;
  while (i < n) {
    if (in_scan) {  // entropy-coded data: look for the next real marker
      if (b[i] != 0xFF) { ++i; continue; }
      if (i + 1 >= n) break;
      const uint8_t m = b[i + 1];
      if (m == 0x00 || (m >= 0xD0 && m <= 0xD7) || m == 0xFF) { i += m == 0xFF ? 1 : 2; continue; }
      in_scan = false;
      continue;  // b[i] is the 0xFF of a marker
    }
    if (b[i] != 0xFF) { ++i; continue; }  // junk between segments: stb skips it too
    while (i < n && b[i] == 0xFF) ++i;  // fill bytes
    if (i >= n) break;
    const uint8_t m = b[i++];
    if (m == 0xD9) return "";                                   // EOI
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue;        // no length
    if (i + 2 > n) break;
    const size_t len = size_t(b[i]) << 8 | b[i + 1];
    if (len < 2) return "corrupt JPEG (segment length " + std::to_string(len) + " at byte " + std::to_string(i) + ")";
    if (i + len > n) break;
    i += len;
    if (m == 0xDA) in_scan = true;  // SOS: entropy-coded data follows
  }
  return "truncated JPEG (" + std::to_string(n) + " bytes, no end-of-image marker)";
}

/// "" when an uncompressed BMP holds every pixel row its header promises, else why not.
inline std::string bmp_end_problem(std::span<const uint8_t> b) {
  auto u32 = [&](size_t o) { return uint32_t(b[o]) | uint32_t(b[o + 1]) << 8 | uint32_t(b[o + 2]) << 16 | uint32_t(b[o + 3]) << 24; };
  auto u16 = [&](size_t o) { return uint32_t(b[o]) | uint32_t(b[o + 1]) << 8; };
  if (b.size() < 26) return "truncated BMP (" + std::to_string(b.size()) + " bytes, shorter than its header)";
  const uint64_t offset = u32(10), header = u32(14);
  int64_t w = 0, h = 0;
  uint32_t bpp = 0, compression = 0;
  if (header == 12) {  // OS/2 BITMAPCOREHEADER
    w = u16(18), h = u16(20), bpp = u16(24);
  } else {
    if (b.size() < 34) return "truncated BMP (" + std::to_string(b.size()) + " bytes, shorter than its header)";
    w = int32_t(u32(18)), h = int32_t(u32(22)), bpp = u16(28), compression = u32(30);
  }
  if (compression != 0 && compression != 3) return "";  // RLE or other: stb decides
  const uint64_t stride = (uint64_t(std::llabs(w)) * bpp + 31) / 32 * 4;
  const uint64_t need = offset + stride * uint64_t(std::llabs(h));
  if (b.size() < need)
    return "truncated BMP (" + std::to_string(b.size()) + " bytes, its header promises " + std::to_string(need) + ")";
  return "";
}

/// "" when a PNG's chunks run whole up to and including IEND, else why not.
inline std::string png_end_problem(std::span<const uint8_t> b) {
  size_t i = 8;  // after the signature
  while (i + 8 <= b.size()) {
    const uint64_t len = uint64_t(b[i]) << 24 | uint64_t(b[i + 1]) << 16 | uint64_t(b[i + 2]) << 8 | b[i + 3];
    const bool iend = std::memcmp(&b[i + 4], "IEND", 4) == 0;
    if (i + 12 + len > b.size()) break;
    i += 12 + size_t(len);
    if (iend) return "";
  }
  return "truncated PNG (" + std::to_string(b.size()) + " bytes, no complete IEND chunk)";
}

/// "" when a binary PGM/PPM (P5/P6) holds the width x height x channels samples its header promises.
inline std::string pnm_end_problem(std::span<const uint8_t> b) {
  size_t i = 2;
  uint64_t v[3] = {};  // width, height, maxval
  for (uint64_t& x : v) {
    for (;;) {  // whitespace and # comments
      while (i < b.size() && std::isspace(b[i])) ++i;
      if (i < b.size() && b[i] == '#')
        while (i < b.size() && b[i] != '\n') ++i;
      else
        break;
    }
    if (i >= b.size() || !std::isdigit(b[i])) return "truncated or corrupt PNM header";
    while (i < b.size() && std::isdigit(b[i]) && x < (uint64_t(1) << 32)) x = x * 10 + (b[i++] - '0');
  }
  const uint64_t need = i + 1 + v[0] * v[1] * (b[1] == '6' ? 3 : 1) * (v[2] > 255 ? 2 : 1);
  if (b.size() < need)
    return "truncated PNM (" + std::to_string(b.size()) + " bytes, its header promises " + std::to_string(need) + ")";
  return "";
}

/// "" when a JPEG, BMP, PNG or PNM reaches the end its structure promises (other formats: ""), else why not.
inline std::string image_end_problem(std::span<const uint8_t> b) {
  if (b.size() >= 2 && b[0] == 0xFF && b[1] == 0xD8) return jpeg_end_problem(b);
  if (b.size() >= 2 && b[0] == 'B' && b[1] == 'M') return bmp_end_problem(b);
  if (b.size() >= 8 && b[0] == 0x89 && b[1] == 'P' && b[2] == 'N' && b[3] == 'G') return png_end_problem(b);
  if (b.size() >= 2 && b[0] == 'P' && (b[1] == '5' || b[1] == '6')) return pnm_end_problem(b);
  return "";
}

}  // namespace detail

/// Decodes an image file's bytes to u8 [C, H, W]; channels 0 keeps the stored channels, 1..4 converts.
/// `what` (usually the path) names the source in errors.
inline Tensor decode_image(std::span<const uint8_t> bytes, const std::string& what, int channels = 0) {
  const char* op = "read_image";
  STRATA_CHECK(channels >= 0 && channels <= 4, op, "'", what, "': got channels=", channels,
               ", expected 0 (as stored), 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA)");
  STRATA_CHECK(!bytes.empty(), op, "'", what, "': empty file (0 bytes), expected an image");
  STRATA_CHECK(bytes.size() < (size_t(1) << 31), op, "'", what, "': got ", bytes.size(),
               " bytes, expected an image file under 2 GiB");
  stbi_set_flip_vertically_on_load_thread(0);
  int w = 0, h = 0, stored = 0;
  const std::unique_ptr<unsigned char, void (*)(void*)> pixels(
      stbi_load_from_memory(bytes.data(), int(bytes.size()), &w, &h, &stored, channels), stbi_image_free);
  const unsigned char* px = pixels.get();
  // stb zero-fills a cut JPEG or BMP, leaves a cut PNM unset, ignores a PNG's end: check ends ourselves
  // (and, when stb fails, say "truncated" rather than stb's last guess at the format)
  const std::string problem = detail::image_end_problem(bytes);
  if (px == nullptr) {
    const char* why = stbi_failure_reason();
    detail::fail(op, "'", what, "': cannot decode ", bytes.size(), " bytes (", problem.empty() ? "" : problem + ", ",
                 "stb_image: ", why ? why : "unknown error",
                 "), expected a complete JPEG, PNG, BMP, GIF, PSD, PIC, PNM or HDR file");
  }
  STRATA_CHECK(problem.empty(), op, "'", what, "': ", problem, ", expected a complete image file");
  STRATA_CHECK(w > 0 && h > 0, op, "'", what, "': decoded a ", w, "x", h,
               " image (a truncated or corrupt header), expected a non-empty image");
  const int64_t C = channels ? channels : stored, H = h, W = w;
  Tensor out = Tensor::empty({C, H, W}, DType::u8);
  uint8_t* dst = out.data_ptr<uint8_t>();
  for (int64_t c = 0; c < C; ++c)  // interleaved [H, W, C] -> planar [C, H, W]
    for (int64_t i = 0; i < H * W; ++i) dst[c * H * W + i] = px[i * C + c];
  return out;
}

/// The bytes of a regular file; errors name the path and `op`.
inline std::vector<uint8_t> read_file_bytes(const std::string& path, const char* op = "read_file_bytes") {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  STRATA_CHECK(std::filesystem::exists(st), op, "'", path, "': no such file, expected an existing file");
  STRATA_CHECK(!std::filesystem::is_directory(st), op, "'", path, "': is a directory, expected a file");
  STRATA_CHECK(std::filesystem::is_regular_file(st), op, "'", path, "': not a regular file, expected a file");
  std::FILE* f = std::fopen(path.c_str(), "rb");
  STRATA_CHECK(f != nullptr, op, "'", path, "': cannot open (", std::strerror(errno), "), expected a readable file");
  std::vector<uint8_t> bytes;
  uint8_t buf[1 << 16];
  for (size_t got; (got = std::fread(buf, 1, sizeof(buf), f)) > 0;) bytes.insert(bytes.end(), buf, buf + got);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  STRATA_CHECK(!failed, op, "'", path, "': read error after ", bytes.size(), " bytes, expected a readable file");
  return bytes;
}

/// Reads an image file to u8 [C, H, W]; channels 0 keeps the stored channels, 1..4 converts.
inline Tensor read_image(const std::string& path, int channels = 0) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, "read_image");
  return decode_image(bytes, path, channels);
}

namespace detail {

/// An image tensor (u8, or floating in [0, 1]; [H, W] or [C, H, W]) as interleaved HWC bytes.
inline std::vector<uint8_t> image_hwc_bytes(const char* op, const std::string& path, const Tensor& img, int64_t& H,
                                            int64_t& W, int64_t& C) {
  STRATA_CHECK(img.defined(), op, "got an undefined tensor for '", path, "', expected an image");
  STRATA_CHECK(img.device().is_cpu(), op, "got a tensor on ", img.device(), " for '", path, "', expected a cpu tensor");
  STRATA_CHECK(img.dtype() == DType::u8 || img.is_floating_point(), op, "got dtype ", img.dtype(), " for '", path,
               "', expected u8 or a floating dtype in [0, 1]");
  STRATA_CHECK(img.dim() == 2 || img.dim() == 3, op, "got shape ", img.shape(), " for '", path,
               "', expected [C, H, W] or [H, W]");
  Tensor hwc = detach(img);
  hwc = hwc.dim() == 2 ? unsqueeze(hwc, 2) : permute(hwc, {1, 2, 0});
  H = hwc.size(0), W = hwc.size(1), C = hwc.size(2);
  STRATA_CHECK(H > 0 && W > 0 && H < 65536 && W < 65536, op, "got shape ", img.shape(), " for '", path,
               "', expected a non-empty image under 65536 x 65536");
  std::vector<uint8_t> px(size_t(H * W * C));
  if (img.dtype() == DType::u8) {
    const Tensor c = contiguous(hwc);
    std::copy(c.data_ptr<uint8_t>(), c.data_ptr<uint8_t>() + px.size(), px.begin());
  } else {
    const Tensor c = contiguous(to(hwc, DType::f64));
    const double* v = c.data_ptr<double>();
    for (size_t i = 0; i < px.size(); ++i)
      px[i] = std::isnan(v[i]) ? 0 : uint8_t(std::lround(std::clamp(v[i], 0.0, 1.0) * 255.0));
  }
  return px;
}

inline void append_bytes(void* ctx, void* data, int size) {
  auto* out = static_cast<std::vector<unsigned char>*>(ctx);
  const auto* p = static_cast<const unsigned char*>(data);
  out->insert(out->end(), p, p + size);
}

}  // namespace detail

/// Writes u8 [C, H, W] (C 1 gray or 3 RGB) or [H, W] (or floating in [0, 1]) as a baseline JPEG.
inline void write_jpeg(const std::string& path, const Tensor& img, int quality = 90) {
  const char* op = "write_jpeg";
  STRATA_CHECK(quality >= 1 && quality <= 100, op, "got quality ", quality, " for '", path, "', expected 1..100");
  int64_t H = 0, W = 0, C = 0;
  const std::vector<uint8_t> px = detail::image_hwc_bytes(op, path, img, H, W, C);
  STRATA_CHECK(C == 1 || C == 3, op, "got shape ", img.shape(), " for '", path,
               "', expected [1, H, W] or [3, H, W] (JPEG stores gray or RGB, no alpha)");
  std::vector<unsigned char> jpg;
  const int ok = stbi_write_jpg_to_func(detail::append_bytes, &jpg, int(W), int(H), int(C), px.data(), quality);
  STRATA_CHECK(ok != 0 && !jpg.empty(), op, "stb_image_write failed to encode '", path, "' (", W, "x", H, "x", C,
               "), expected an encoded JPEG");
  detail::write_file_atomic(path, jpg, op);
}

/// Writes an image tensor ([C, H, W] or [H, W], u8 or floating in [0, 1]) in the format its
/// extension names: .png (1..4 channels), .jpg / .jpeg (1 or 3, quality 90), .bmp (1..4).
inline void write_image(const std::string& path, const Tensor& img) {
  std::string ext = std::filesystem::path(path).extension().string();
  for (char& ch : ext) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  if (ext == ".jpg" || ext == ".jpeg") return write_jpeg(path, img);
  const char* op = "write_image";
  STRATA_CHECK(ext == ".png" || ext == ".bmp", op, "got '", path, "' (extension '", ext,
               "'), expected a .png, .jpg, .jpeg or .bmp file name");
  int64_t H = 0, W = 0, C = 0;
  const std::vector<uint8_t> px = detail::image_hwc_bytes(op, path, img, H, W, C);
  STRATA_CHECK(C >= 1 && C <= 4, op, "got shape ", img.shape(), " for '", path, "', expected 1 to 4 channels");
  if (ext == ".png") return detail::write_png_as(op, path, px.data(), int(W), int(H), int(C));
  std::vector<unsigned char> bmp;
  const int ok = stbi_write_bmp_to_func(detail::append_bytes, &bmp, int(W), int(H), int(C), px.data());
  STRATA_CHECK(ok != 0 && !bmp.empty(), op, "stb_image_write failed to encode '", path, "', expected an encoded BMP");
  detail::write_file_atomic(path, bmp, op);
}

/// The files among `files` that cannot be read as images (fastai's verify_images), in input order.
/// Decodes on all of strata's threads.
inline std::vector<std::string> verify_images(const std::vector<std::string>& files) {
  std::vector<char> bad(files.size(), 0);
  parallel_for(0, int64_t(files.size()), 1, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      try {
        (void)read_image(files[size_t(i)]);
      } catch (const std::exception&) {  // strata::Error, or bad_alloc for a huge corrupt header
        bad[size_t(i)] = 1;
      }
    }
  });
  std::vector<std::string> out;
  for (size_t i = 0; i < files.size(); ++i)
    if (bad[i]) out.push_back(files[i]);
  return out;
}

/// verify_images for get_image_files' result: the paths that cannot be read as images, in order.
inline std::vector<std::filesystem::path> verify_images(const std::vector<std::filesystem::path>& files) {
  std::vector<std::string> names;
  names.reserve(files.size());
  for (const auto& f : files) names.push_back(f.string());
  const std::vector<std::string> bad = verify_images(names);
  return {bad.begin(), bad.end()};
}

}  // namespace strata
