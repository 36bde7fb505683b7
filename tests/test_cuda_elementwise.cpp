// CUDA elementwise kernels (kernels/cuda/elementwise.cuh) and their indexer (kernels/cuda/indexer.cuh),
// run on cuda tensors (under the emulator with g++), against strata's CPU ops on the same values:
// add, sub, mul, div, neg, relu bit for bit (same float op, same order), exp within 2 ulp (the CPU's
// SIMD exp and the device's expf are each within ~1 ulp of the true value), for f32 and f64, on
// contiguous, transposed, sliced (step 2, offset) and broadcast ([3,1,5] + [4,5]) operands and on
// random shapes and views. The indexer alone: offsets against a hand-written row-major loop, dim
// merging (contiguous -> 1 dim, a transposed pair kept apart) and its errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "strata/backend/device_allocator.hpp"
#include "strata/tensor/tensor.hpp"

#include "kernels/cuda/elementwise.cuh"

namespace test_cuda_elementwise {

using namespace strata;

/// Row-major values of a cpu tensor of T, through its strides (a plain loop).
template <class T>
std::vector<T> host_values(const Tensor& t) {
  REQUIRE(t.device() == kCPU);
  std::vector<T> out;
  std::vector<int64_t> idx(size_t(t.dim()), 0);
  const T* base = static_cast<const T*>(t.storage()->data()) + t.offset();
  for (int64_t n = 0; n < t.numel(); ++n) {
    int64_t off = 0;
    for (int d = 0; d < t.dim(); ++d) off += idx[size_t(d)] * t.strides()[size_t(d)];
    out.push_back(base[off]);
    for (int d = t.dim() - 1; d >= 0; --d) {
      if (++idx[size_t(d)] < t.shape()[size_t(d)]) break;
      idx[size_t(d)] = 0;
    }
  }
  return out;
}

/// x's strides seen from `shape` (x right-aligned, numpy broadcasting): 0 where x is repeated.
inline std::vector<int64_t> broadcast_strides(const Tensor& x, const Shape& shape) {
  std::vector<int64_t> s(shape.size(), 0);
  const int lead = int(shape.size()) - x.dim();
  for (int d = 0; d < x.dim(); ++d)
    s[size_t(lead + d)] = x.shape()[size_t(d)] == 1 ? 0 : x.strides()[size_t(d)];
  return s;
}

/// A cuda tensor's first element (data_ptr refuses cuda tensors).
template <class T>
T* device_ptr(const Tensor& x) {
  REQUIRE(x.device().is_cuda());
  return static_cast<T*>(x.storage()->data()) + x.offset();
}

/// Distance in units in the last place between two finite values of the same sign.
template <class T>
int64_t ulp_distance(T a, T b) {
  using I = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  I ia, ib;
  std::memcpy(&ia, &a, sizeof(T));
  std::memcpy(&ib, &b, sizeof(T));
  return ia > ib ? int64_t(ia) - int64_t(ib) : int64_t(ib) - int64_t(ia);
}

/// The cuda result (as a cpu tensor of `shape`) equals `expected` within `max_ulp` per element.
template <class T>
void check_same(const Tensor& got_cuda, const Tensor& expected, int64_t max_ulp) {
  const Tensor got = to(got_cuda, kCPU);
  REQUIRE(got.shape() == expected.shape());
  const std::vector<T> g = host_values<T>(got), e = host_values<T>(expected);
  REQUIRE(g.size() == e.size());
  int64_t worst = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(g[i]) || std::isnan(e[i])) {  // NaN only where the CPU has NaN
      if (!(std::isnan(g[i]) && std::isnan(e[i]))) FAIL_CHECK("element " << i << ": cuda " << g[i] << ", cpu " << e[i]);
      continue;
    }
    const int64_t u = ulp_distance(g[i], e[i]);
    if (u > worst) worst = u;
    if (u > max_ulp) FAIL_CHECK("element " << i << ": cuda " << g[i] << ", cpu " << e[i] << " (" << u << " ulp)");
  }
  CHECK(worst <= max_ulp);
  if (const char* v = std::getenv("STRATA_TEST_VERBOSE"); v && *v == '1') WARN("worst " << worst << " ulp");
}

/// cuda out = op(a, b) with a, b cpu views copied to cuda as the same views: `make_a(base)` views a
/// contiguous device copy of a's base the way the cpu view does. Compared with cpu_op(a, b).
template <class T, class Op, class CpuOp, class ViewA, class ViewB>
void check_binary(Op op, CpuOp cpu_op, const Tensor& a_base, ViewA view_a, const Tensor& b_base, ViewB view_b) {
  const Tensor a = view_a(a_base), b = view_b(b_base);
  const Tensor expected = cpu_op(a, b);
  const Tensor ad = view_a(to(a_base, Device::cuda())), bd = view_b(to(b_base, Device::cuda()));
  REQUIRE(ad.strides() == a.strides());
  REQUIRE(bd.strides() == b.strides());
  const Shape shape = expected.shape();
  Tensor out = Tensor::empty(shape, a.dtype(), Device::cuda());
  const auto ix = cuda::make_indexer<3>(shape, {{std::vector<int64_t>(out.strides()), broadcast_strides(ad, shape),
                                                 broadcast_strides(bd, shape)}});
  cuda::cuda_elementwise<T>(op, out.numel(), ix, device_ptr<T>(out), device_ptr<T>(ad), device_ptr<T>(bd));
  check_same<T>(out, expected, 0);
}

template <class T, class Op, class CpuOp, class ViewX>
void check_unary(Op op, CpuOp cpu_op, const Tensor& x_base, ViewX view_x, int64_t max_ulp) {
  const Tensor x = view_x(x_base);
  const Tensor expected = cpu_op(x);
  const Tensor xd = view_x(to(x_base, Device::cuda()));
  REQUIRE(xd.strides() == x.strides());
  Tensor out = Tensor::empty(x.shape(), x.dtype(), Device::cuda());
  const auto ix = cuda::make_indexer<2>(x.shape(), {{std::vector<int64_t>(out.strides()), std::vector<int64_t>(xd.strides())}});
  cuda::cuda_elementwise<T>(op, out.numel(), ix, device_ptr<T>(out), device_ptr<T>(xd));
  check_same<T>(out, expected, max_ulp);
}

inline Tensor same_view(const Tensor& x) { return x; }

template <class T>
void check_all_layouts() {
  const DType dt = dtype_v<T>;
  const auto r = [&](Shape s) { return randn(s, {.dtype = dt}); };
  const auto cpu_add = [](const Tensor& a, const Tensor& b) { return add(a, b); };
  const auto cpu_sub = [](const Tensor& a, const Tensor& b) { return sub(a, b); };
  const auto cpu_mul = [](const Tensor& a, const Tensor& b) { return mul(a, b); };
  const auto cpu_div = [](const Tensor& a, const Tensor& b) { return div(a, b); };
  const auto tr = [](const Tensor& x) { return transpose(x, 0, 1); };
  const auto sl = [](const Tensor& x) { return slice(x, 1, 1, 9, 2); };  // [5, 10] -> [5, 4], offset 1, stride 2
  const auto same = [](const Tensor& x) { return same_view(x); };

  // contiguous, same shape (merged to one dim)
  check_binary<T>(cuda::ew::Add{}, cpu_add, r({2, 3, 4}), same, r({2, 3, 4}), same);
  check_binary<T>(cuda::ew::Div{}, cpu_div, r({37}), same, r({37}), same);
  // a transposed input: [7, 5] viewed as [5, 7]
  check_binary<T>(cuda::ew::Mul{}, cpu_mul, r({7, 5}), tr, r({5, 7}), same);
  check_binary<T>(cuda::ew::Sub{}, cpu_sub, r({5, 7}), same, r({7, 5}), tr);
  // a sliced input with an offset and step 2, and a transposed one
  check_binary<T>(cuda::ew::Add{}, cpu_add, r({5, 10}), sl, r({4, 5}), tr);
  // broadcast: [3, 1, 5] + [4, 5] -> [3, 4, 5]; and the other order; and a scalar-like [1]
  check_binary<T>(cuda::ew::Add{}, cpu_add, r({3, 1, 5}), same, r({4, 5}), same);
  check_binary<T>(cuda::ew::Mul{}, cpu_mul, r({4, 5}), same, r({3, 1, 5}), same);
  check_binary<T>(cuda::ew::Div{}, cpu_div, r({3, 4, 5}), same, r({1}), same);
  // unary: contiguous, transposed, sliced
  const auto cpu_exp = [](const Tensor& x) { return exp(x); };
  const auto cpu_relu = [](const Tensor& x) { return relu(x); };
  const auto cpu_neg = [](const Tensor& x) { return neg(x); };
  check_unary<T>(cuda::ew::Exp{}, cpu_exp, r({1000}), same, 2);
  check_unary<T>(cuda::ew::Exp{}, cpu_exp, r({7, 5}), tr, 2);
  check_unary<T>(cuda::ew::Relu{}, cpu_relu, r({5, 10}), sl, 0);
  check_unary<T>(cuda::ew::Relu{}, cpu_relu, r({300}), same, 0);
  check_unary<T>(cuda::ew::Neg{}, cpu_neg, r({7, 5}), tr, 0);
  // special values: relu keeps NaN and -0 (as the CPU's max(0, x)), exp of +-inf and NaN
  using lim = std::numeric_limits<T>;
  const Tensor special = from_vector<T>({T(-0.0), lim::quiet_NaN(), lim::infinity(), -lim::infinity(), T(1.5), T(-1.5),
                                         T(0), lim::denorm_min(), T(-80), T(80)});
  check_unary<T>(cuda::ew::Relu{}, cpu_relu, special, same, 0);
  // neg against a plain loop: IEEE -x (-0 for +0, as PyTorch); strata's CPU neg gives +0 for +0
  const auto loop_neg = [](const Tensor& x) {
    std::vector<T> v = host_values<T>(x);
    for (T& e : v) e = -e;
    return from_vector<T>(v, x.shape());
  };
  check_unary<T>(cuda::ew::Neg{}, loop_neg, special, same, 0);
  check_unary<T>(cuda::ew::Exp{}, cpu_exp, special, same, 2);

  // random shapes (rank 1-4, sizes 1-6), a random permutation of the first input, the second
  // broadcast along random dims
  std::mt19937 rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    const int rank = 1 + int(rng() % 4);
    Shape shape;
    for (int d = 0; d < rank; ++d) shape.push_back(1 + int64_t(rng() % 6));
    std::vector<int64_t> perm(static_cast<size_t>(rank));
    for (int d = 0; d < rank; ++d) perm[size_t(d)] = d;
    std::shuffle(perm.begin(), perm.end(), rng);
    Shape a_shape(rank, 0);  // a's base is stored in permuted order; permuting back gives `shape`
    std::vector<int64_t> inverse(static_cast<size_t>(rank));
    for (int d = 0; d < rank; ++d) a_shape[size_t(d)] = shape[size_t(perm[size_t(d)])], inverse[size_t(perm[size_t(d)])] = d;
    Shape b_shape = shape;
    for (auto& s : b_shape)
      if (rng() % 3 == 0) s = 1;
    const auto perm_view = [inverse](const Tensor& x) { return permute(x, inverse); };
    INFO("trial " << trial << " rank " << rank);
    check_binary<T>(cuda::ew::Add{}, cpu_add, r(a_shape), perm_view, r(b_shape), same);
    check_binary<T>(cuda::ew::Mul{}, cpu_mul, r(b_shape), same, r(a_shape), perm_view);
    check_unary<T>(cuda::ew::Exp{}, cpu_exp, r(a_shape), perm_view, 2);
  }
}

TEST_CASE("cuda elementwise f32: strided and broadcast operands match the CPU ops", "[cuda][gpu]") {
  check_all_layouts<float>();
}

TEST_CASE("cuda elementwise f64: strided and broadcast operands match the CPU ops", "[cuda][gpu]") {
  check_all_layouts<double>();
}

TEST_CASE("cuda indexer: offsets against a row-major loop, dim merging, errors", "[cuda]") {
  // out [3, 4, 5] contiguous; a [3, 1, 5] broadcast on dim 1; b = a [5, 4] transposed to [4, 5],
  // broadcast on dim 0
  const auto ix = cuda::make_indexer<3>({3, 4, 5}, {{{20, 5, 1}, {5, 0, 1}, {0, 1, 4}}});
  CHECK(ix.numel == 60);
  int64_t i = 0;
  for (int64_t p = 0; p < 3; ++p)
    for (int64_t q = 0; q < 4; ++q)
      for (int64_t s = 0; s < 5; ++s, ++i) {
        int64_t off[3];
        ix.offsets(i, off);
        CHECK(off[0] == p * 20 + q * 5 + s);
        CHECK(off[1] == p * 5 + s);
        CHECK(off[2] == q + s * 4);
      }
  // contiguous of any rank: one dim; size-1 dims dropped
  const auto flat = cuda::make_indexer<2>({2, 1, 3, 4}, {{{12, 12, 4, 1}, {12, 12, 4, 1}}});
  CHECK(flat.dims == 1);
  CHECK(flat.sizes[0] == 24);
  // a transposed operand keeps two dims; a scalar is zero dims
  CHECK(cuda::make_indexer<2>({3, 4}, {{{4, 1}, {1, 3}}}).dims == 2);
  const auto scalar = cuda::make_indexer<1>({}, {{{}}});
  CHECK(scalar.dims == 0);
  CHECK(scalar.numel == 1);
  // errors name the op
  std::vector<int64_t> nine(9, 2), alternating(9);
  for (int d = 0; d < 9; ++d) alternating[size_t(d)] = int64_t(1) << (2 * (8 - d));  // gaps: never merge
  CHECK_THROWS_WITH((cuda::make_indexer<1>(nine, {{alternating}})), Catch::Contains("make_indexer"));
  CHECK_THROWS_WITH((cuda::make_indexer<2>({3, 4}, {{{4, 1}, {1}}})), Catch::Contains("make_indexer"));
  CHECK_NOTHROW(cuda::make_indexer<1>(nine, {{std::vector<int64_t>{256, 128, 64, 32, 16, 8, 4, 2, 1}}}));
  float dummy[4] = {};
  CHECK_THROWS_WITH(cuda::cuda_elementwise<float>(cuda::ew::Neg{}, 5, cuda::make_indexer<2>({4}, {{{1}, {1}}}), dummy,
                                                  dummy),
                    Catch::Contains("cuda_elementwise"));
}

}  // namespace test_cuda_elementwise
