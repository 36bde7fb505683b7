// write_png: PNG files from raw 8-bit pixels or from an image tensor, written atomically.
//
// Contract: the file at `path` is either the complete new PNG or untouched. The image is encoded
// in memory with stb_image_write (Debian's libstb-dev, public domain), written to a temporary file
// beside the target and renamed over it; on any failure the temporary file is removed and
// strata::Error names the path. Users need nothing but this header: stb's implementation is
// compiled here with static linkage (STB_IMAGE_WRITE_STATIC), unless the user already included
// stb_image_write.h, in which case their declarations (and their implementation) are used.
//
// Pixels are row-major, top row first, `channels` interleaved bytes per pixel
// (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA), as in stbi_write_png.
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include <unistd.h>

#include "strata/core/error.hpp"
#include "strata/tensor/tensor.hpp"

#ifndef INCLUDE_STB_IMAGE_WRITE_H
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wcast-qual"
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#undef STB_IMAGE_WRITE_IMPLEMENTATION
#undef STB_IMAGE_WRITE_STATIC
#pragma GCC diagnostic pop
#endif

namespace strata {

namespace detail {

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so the
/// target is never seen half-written. `op` names the caller in errors.
inline void write_file_atomic(const std::string& path, const std::vector<unsigned char>& bytes, const char* op) {
  static std::atomic<unsigned> counter{0};
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  STRATA_CHECK(f != nullptr, op, "cannot open '", path, "' for writing (", std::strerror(errno),
               "), expected a writable file in an existing directory");
  const bool wrote = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  const int write_errno = errno;
  const bool closed = std::fclose(f) == 0;
  std::error_code ec;
  if (!wrote || !closed) {
    std::filesystem::remove(tmp, ec);
    detail::fail(op, "cannot write ", bytes.size(), " bytes to '", path, "' (", std::strerror(write_errno),
                 "), expected a complete write");
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    detail::fail(op, "cannot rename the temporary file onto '", path, "' (", ec.message(),
                 "), expected a path that can be replaced by a file");
  }
}

}  // namespace detail

namespace detail {

/// write_png for callers that name themselves (op) in errors.
inline void write_png_as(const char* op, const std::string& path, const uint8_t* pixels, int width, int height,
                         int channels) {
  STRATA_CHECK(pixels != nullptr, op, "got null pixels for '", path, "', expected a pixel buffer");
  STRATA_CHECK(width > 0 && height > 0, op, "got size ", width, "x", height, " for '", path,
               "', expected width and height > 0");
  STRATA_CHECK(channels >= 1 && channels <= 4, op, "got ", channels, " channels for '", path,
               "', expected 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA)");
  STRATA_CHECK(int64_t(width) * channels < (int64_t(1) << 30) && int64_t(width) * height < (int64_t(1) << 30), op,
               "got size ", width, "x", height, " for '", path, "', expected fewer than 2^30 pixels");
  std::vector<unsigned char> png;
  auto sink = [](void* ctx, void* data, int size) {
    auto* out = static_cast<std::vector<unsigned char>*>(ctx);
    const auto* p = static_cast<const unsigned char*>(data);
    out->insert(out->end(), p, p + size);
  };
  const int ok = stbi_write_png_to_func(sink, &png, width, height, channels, pixels, width * channels);
  STRATA_CHECK(ok != 0 && !png.empty(), op, "stb_image_write failed to encode '", path, "' (", width, "x", height,
               "x", channels, "), expected an encoded PNG");
  write_file_atomic(path, png, op);
}

}  // namespace detail

/// Writes `width` x `height` pixels of `channels` (1..4) interleaved bytes, row-major, top row first.
inline void write_png(const std::string& path, const uint8_t* pixels, int width, int height, int channels) {
  detail::write_png_as("write_png", path, pixels, width, height, channels);
}

/// Writes an image tensor: u8 (0..255) or floating (assumed in [0, 1], clamped; NaN -> 0), laid out
/// [H, W], [C, H, W] or [H, W, C] with C in 1..4. A 3-d tensor is read as [C, H, W] when size(0) is
/// 1..4 (PyTorch's layout), else as [H, W, C].
inline void write_png(const std::string& path, const Tensor& img) {
  STRATA_CHECK(img.defined(), "write_png", "got an undefined tensor for '", path, "', expected an image");
  STRATA_CHECK(img.device().is_cpu(), "write_png", "got a tensor on ", img.device(), " for '", path,
               "', expected a cpu tensor");
  STRATA_CHECK(img.dtype() == DType::u8 || img.is_floating_point(), "write_png", "got dtype ", img.dtype(),
               " for '", path, "', expected u8 or a floating dtype");
  STRATA_CHECK(img.dim() == 2 || img.dim() == 3, "write_png", "got shape ", img.shape(), " for '", path,
               "', expected [H, W], [C, H, W] or [H, W, C]");
  Tensor hwc = detach(img);
  if (hwc.dim() == 2) hwc = unsqueeze(hwc, 2);
  else if (hwc.size(0) >= 1 && hwc.size(0) <= 4) hwc = permute(hwc, {1, 2, 0});
  const int64_t H = hwc.size(0), W = hwc.size(1), C = hwc.size(2);
  STRATA_CHECK(C >= 1 && C <= 4, "write_png", "got shape ", img.shape(), " for '", path,
               "', expected 1 to 4 channels in dim 0 ([C, H, W]) or in the last dim ([H, W, C])");
  STRATA_CHECK(H > 0 && W > 0 && H < (1 << 30) && W < (1 << 30), "write_png", "got shape ", img.shape(),
               " for '", path, "', expected a non-empty image");
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
  write_png(path, px.data(), int(W), int(H), int(C));
}

}  // namespace strata
