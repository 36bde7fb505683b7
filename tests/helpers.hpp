// Test helpers: reference-loop access to any tensor, closeness checks, non-contiguous inputs, and
// one-line gradcheck. Keep each op's test case to a line or two with these.
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <strata/strata.hpp>

namespace th {
using namespace strata;

/// All elements in row-major order, as double, whatever the dtype, strides or offset.
inline std::vector<double> values(const Tensor& t) {
  std::vector<double> out;
  out.reserve(size_t(t.numel()));
  if (t.numel() == 0) return out;
  std::vector<int64_t> idx(t.dim(), 0);
  dispatch_all(t.dtype(), "values", [&]<class T>(type_tag<T>) {
    const T* base = static_cast<const T*>(t.storage()->data()) + t.offset();
    for (int64_t n = 0; n < t.numel(); ++n) {
      int64_t off = 0;
      for (int d = 0; d < t.dim(); ++d) off += idx[d] * t.strides()[d];
      out.push_back(double(cast_value<double>(base[off])));
      for (int d = t.dim() - 1; d >= 0; --d) {
        if (++idx[d] < t.shape()[d]) break;
        idx[d] = 0;
      }
    }
  });
  return out;
}

/// Element at a multi-index, as double (for reference loops).
inline double at(const Tensor& t, const std::vector<int64_t>& idx) {
  int64_t off = 0;
  for (int d = 0; d < t.dim(); ++d) off += idx[d] * t.strides()[d];
  return dispatch_all(t.dtype(), "at", [&]<class T>(type_tag<T>) {
    return cast_value<double>(static_cast<const T*>(t.storage()->data())[t.offset() + off]);
  });
}

/// Row-major multi-index of linear element n in `shape`.
inline std::vector<int64_t> unravel(int64_t n, const Shape& shape) {
  std::vector<int64_t> idx(shape.size());
  for (int d = int(shape.size()) - 1; d >= 0; --d) {
    idx[d] = shape[d] ? n % shape[d] : 0;
    n = shape[d] ? n / shape[d] : 0;
  }
  return idx;
}

/// A tensor from doubles, in any dtype.
inline Tensor make(const std::vector<double>& v, Shape shape, DType dt = DType::f32) {
  return from_vector(v, std::move(shape), {.dtype = dt});
}

/// Random values of `shape`; noncontig = true gives a permuted, strided view with the same shape.
inline Tensor random(const Shape& shape, DType dt = DType::f32, bool noncontig = false, double lo = -2, double hi = 2) {
  if (!noncontig || shape.size() < 1) return add(mul(rand(shape, {.dtype = DType::f64}), hi - lo), lo).to(dt);
  // build a bigger tensor with the dims reversed and doubled in the last one, then view back
  Shape big(shape.rbegin(), shape.rend());
  big.back() *= 2;
  Tensor b = add(mul(rand(big, {.dtype = DType::f64}), hi - lo), lo).to(dt);
  Tensor v = slice(b, -1, 0, big.back(), 2);  // stride 2 in the last dim
  std::vector<int64_t> perm(shape.size());
  for (size_t i = 0; i < perm.size(); ++i) perm[i] = int64_t(perm.size() - 1 - i);
  return permute(v, perm);
}

/// Max |a - b| check with a message listing the first bad element.
inline void check_close(const std::vector<double>& got, const std::vector<double>& want, double atol = 1e-5,
                        double rtol = 1e-5, const std::string& what = "") {
  INFO(what);
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const bool both_nan = std::isnan(got[i]) && std::isnan(want[i]);
    const bool same_inf = std::isinf(got[i]) && got[i] == want[i];
    if (both_nan || same_inf) continue;
    if (!(std::abs(got[i] - want[i]) <= atol + rtol * std::abs(want[i]))) {
      FAIL_CHECK(what << ": element " << i << " got " << got[i] << ", want " << want[i]);
      return;
    }
  }
  SUCCEED();
}
inline void check_close(const Tensor& got, const Tensor& want, double atol = 1e-5, double rtol = 1e-5,
                        const std::string& what = "") {
  INFO(what << " shapes " << got.shape() << " vs " << want.shape());
  REQUIRE(got.shape() == want.shape());
  check_close(values(got), values(want), atol, rtol, what);
}

/// got (a cuda tensor) equals want (a cpu tensor): same shape and dtype, values within tol (absolute
/// and relative: |got - want| <= tol + tol |want|); tol = 0: exactly.
inline void check_cuda_same(const Tensor& got, const Tensor& want, double tol, const std::string& what) {
  INFO(what << ": got " << got.shape() << " " << got.dtype() << " on " << got.device() << ", want " << want.shape()
            << " " << want.dtype());
  REQUIRE(got.defined());
  REQUIRE(got.device().is_cuda());
  REQUIRE(got.shape() == want.shape());
  REQUIRE(got.dtype() == want.dtype());
  check_close(to(got, kCPU), want, tol, tol, what);
}

/// The message of the strata::Error that f throws ("" when it throws none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const strata::Error& e) {
    return e.what();
  }
  return "";
}

/// Tolerances by dtype for comparing against a double reference.
inline double tol(DType dt) {
  switch (dt) {
    case DType::f64: return 1e-10;
    case DType::f32: return 1e-5;
    case DType::bf16: return 2e-2;
    case DType::f16: return 2e-3;
    default: return 0;
  }
}

/// gradcheck with every input as a float64 leaf that requires grad; REQUIREs success with the message.
/// A float64 input keeps its layout (a non-contiguous view stays one), so backward sees real strides.
inline void gradcheck_ok(const std::function<Tensor(const std::vector<Tensor>&)>& f, std::vector<Tensor> inputs) {
  for (Tensor& x : inputs) {
    x = x.dtype() == DType::f64 ? x.detach() : x.to(DType::f64).detach();
    x.requires_grad_();
  }
  auto r = gradcheck(f, inputs);
  INFO(r.message);
  REQUIRE(r.ok);
}

/// Requires that `fn` throws strata::Error whose message contains every one of `parts`.
template <class F>
void check_throws(F&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
  } catch (const strata::Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) {
      INFO("message: " << msg << " / expected to contain: " << p);
      CHECK(msg.find(p) != std::string::npos);
    }
    return;
  }
  FAIL("expected strata::Error");
}

/// A fresh directory under the system temp dir, removed with everything in it at scope exit.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& prefix = "strata_test") {
    static int n = 0;
    path = std::filesystem::temp_directory_path() /
           (prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return (path / name).string(); }
  /// How many files and directories it holds (a test that nothing half-written was left behind).
  size_t entries() const {
    return size_t(std::distance(std::filesystem::directory_iterator(path), std::filesystem::directory_iterator()));
  }
};

/// Two Gaussian blobs in 2-D for Learner tests: class of item i is i % 2, centred at (+-1, +-1), noise 0.4.
inline std::shared_ptr<strata::TensorDataset> blobs(int64_t n, uint64_t seed) {
  using namespace strata;
  manual_seed(seed);
  const std::vector<double> noise = values(randn({n, 2}, {.dtype = DType::f64}));
  std::vector<double> x(static_cast<size_t>(2 * n)), y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double c = i % 2 ? 1.0 : -1.0;
    x[size_t(2 * i)] = c + 0.4 * noise[size_t(2 * i)];
    x[size_t(2 * i + 1)] = c + 0.4 * noise[size_t(2 * i + 1)];
    y[size_t(i)] = double(i % 2);
  }
  return std::make_shared<TensorDataset>(std::vector<Tensor>{make(x, {n, 2})},
                                         std::vector<Tensor>{make(y, {n}, DType::i64)});
}

/// Train (shuffled, seed 7) and valid blobs for Learner tests.
inline strata::DataLoaders blob_dls(int64_t n_train, int64_t n_valid, int64_t bs, bool shuffle = true) {
  using namespace strata;
  return {.train = DataLoader(blobs(n_train, 1), {.bs = bs, .shuffle = shuffle, .seed = 7}),
          .valid = DataLoader(blobs(n_valid, 2), {.bs = bs}),
          .c = 2};
}

/// Checks that the PNG at path exists, is w x h (0: any) and is not blank: the variance of its pixel
/// values (all channels) is above min_var. Returns the image (u8 [C, H, W]).
inline strata::Tensor check_png(const std::string& path, int64_t w = 0, int64_t h = 0, double min_var = 10.0) {
  INFO("png: " << path);
  REQUIRE(std::filesystem::exists(path));
  const strata::Tensor img = strata::read_image(path);
  REQUIRE(img.dim() == 3);
  if (w > 0) CHECK(img.size(2) == w);
  if (h > 0) CHECK(img.size(1) == h);
  const std::vector<double> v = values(img);
  double mean = 0, var = 0;
  for (double x : v) mean += x;
  mean /= double(v.size());
  for (double x : v) var += (x - mean) * (x - mean);
  var /= double(v.size());
  INFO("pixel variance " << var);
  CHECK(var > min_var);
  return img;
}

}  // namespace th
