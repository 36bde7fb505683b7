// Elementwise kernels over strided, broadcast operands: map, unary, binary, cast/copy.
//
// Every elementwise op runs through one iteration scheme. The caller describes N operands (the
// output first) by one shared shape and a byte stride per operand and dim; a broadcast input has
// stride 0 along the dims it is repeated on. `make_loop` drops size-1 dims and merges neighbouring
// dims that are contiguous for every operand, so a contiguous tensor of any rank becomes one long
// row and `x[:, None] + y[None, :]` becomes a 2-d loop. `strided_loop` splits the element range
// into chunks for the thread pool; each chunk walks rows, calling inner(n, ptrs, strides) with the
// innermost byte strides. Kernels look at those strides: all equal to sizeof(T) (or 0 for a
// broadcast scalar) takes the SIMD path, anything else a plain strided loop.
// Reference: PyTorch's TensorIterator (coalescing, innermost-stride specialisation), simplified.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>

#include "strata/core/dtype.hpp"
#include "strata/core/error.hpp"
#include "strata/core/parallel.hpp"
#include "kernels/cpu/simd.hpp"

namespace strata::cpu {

inline constexpr int kMaxDims = 16;
/// Elements below which an elementwise op stays on one thread.
inline constexpr int64_t kElementwiseGrain = 32768;

/// Iteration space of N operands after coalescing; dims ordered outermost first.
template <int N>
struct StridedLoop {
  int ndim = 0;
  int64_t size[kMaxDims] = {};
  int64_t stride[N][kMaxDims] = {};  // bytes
  int64_t numel() const {
    int64_t n = 1;
    for (int d = 0; d < ndim; ++d) n *= size[d];
    return n;
  }
};

/// Builds the loop from a shape [ndim] and per-operand byte strides strides[k][ndim].
template <int N>
StridedLoop<N> make_loop(int ndim, const int64_t* shape, const std::array<const int64_t*, N>& strides) {
  STRATA_CHECK(ndim <= kMaxDims, "elementwise", "got a tensor with ", ndim, " dims, expected at most ",
               kMaxDims);
  StridedLoop<N> L;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] == 1) continue;  // size-1 dims do not move any pointer
    if (shape[d] == 0) {          // empty: nothing to iterate
      L.ndim = 1;
      L.size[0] = 0;
      return L;
    }
    bool merge = L.ndim > 0;
    for (int k = 0; k < N && merge; ++k)
      merge = strides[k][d] * shape[d] == L.stride[k][L.ndim - 1];
    if (merge) {  // dim d continues the previous dim: fold it in
      L.size[L.ndim - 1] *= shape[d];
      for (int k = 0; k < N; ++k) L.stride[k][L.ndim - 1] = strides[k][d];
    } else {
      L.size[L.ndim] = shape[d];
      for (int k = 0; k < N; ++k) L.stride[k][L.ndim] = strides[k][d];
      ++L.ndim;
    }
  }
  if (L.ndim == 0) {  // a single element
    L.ndim = 1;
    L.size[0] = 1;
  }
  return L;
}

/// Walks elements [lo, hi) of the loop, a row at a time: inner(n, ptrs, innermost byte strides).
template <int N, class Inner>
void walk_rows(const StridedLoop<N>& L, std::array<char*, N> base, int64_t lo, int64_t hi, Inner& inner) {
  const int last = L.ndim - 1;
  const int64_t row = L.size[last];
  int64_t idx[kMaxDims] = {};
  int64_t rest = lo / row;  // multi-index of the first row
  for (int d = last - 1; d >= 0; --d) {
    idx[d] = rest % L.size[d];
    rest /= L.size[d];
  }
  int64_t col = lo % row;
  std::array<int64_t, N> inner_stride;
  for (int k = 0; k < N; ++k) inner_stride[k] = L.stride[k][last];
  int64_t pos = lo;
  while (pos < hi) {
    std::array<char*, N> p = base;
    for (int k = 0; k < N; ++k) {
      for (int d = 0; d < last; ++d) p[k] += idx[d] * L.stride[k][d];
      p[k] += col * inner_stride[k];
    }
    const int64_t n = std::min(row - col, hi - pos);
    inner(n, p, inner_stride);
    pos += n;
    col = 0;
    for (int d = last - 1; d >= 0; --d) {  // next row: increment the multi-index
      if (++idx[d] < L.size[d]) break;
      idx[d] = 0;
    }
  }
}

/// Runs inner over the whole loop, in parallel chunks when it is large.
template <int N, class Inner>
void strided_loop(const StridedLoop<N>& L, std::array<char*, N> base, Inner inner,
                  int64_t grain = kElementwiseGrain) {
  parallel_for(0, L.numel(), grain, [&](int64_t lo, int64_t hi) { walk_rows<N>(L, base, lo, hi, inner); });
}

template <class T>
inline constexpr bool has_vec = std::is_same_v<T, float> || std::is_same_v<T, double>;

// ---------------------------------------------------------------- kernels

/// out[i] = op(a[i]) with In/Out storage types; op works on compute_t<In> (and Vec of it when
/// Op::vectorized and both are float or both double).
template <class Out, class In, class Op>
void unary_kernel(const StridedLoop<2>& L, Out* out, const In* a, Op op) {
  using C = compute_t<In>;
  strided_loop<2>(L, {reinterpret_cast<char*>(out), (char*)a},
                  [&](int64_t n, const std::array<char*, 2>& p, const std::array<int64_t, 2>& s) {
    Out* o = reinterpret_cast<Out*>(p[0]);
    const In* x = reinterpret_cast<const In*>(p[1]);
    int64_t i = 0;
    if constexpr (has_vec<In> && std::is_same_v<In, Out> && Op::vectorized) {
      if (s[0] == sizeof(Out) && s[1] == sizeof(In)) {
        using V = Vec<In>;
        for (; i + V::size <= n; i += V::size) op(V::load(x + i)).store(o + i);
        for (; i < n; ++i) o[i] = op(x[i]);
        return;
      }
    }
    for (; i < n; ++i)
      *reinterpret_cast<Out*>(p[0] + i * s[0]) =
          cast_value<Out>(op(static_cast<C>(*reinterpret_cast<const In*>(p[1] + i * s[1]))));
  });
}

/// out[i] = op(a[i], b[i]); a and b share storage type T; out may differ (bool for comparisons).
template <class Out, class T, class Op>
void binary_kernel(const StridedLoop<3>& L, Out* out, const T* a, const T* b, Op op) {
  using C = compute_t<T>;
  strided_loop<3>(L, {reinterpret_cast<char*>(out), (char*)a, (char*)b},
                  [&](int64_t n, const std::array<char*, 3>& p, const std::array<int64_t, 3>& s) {
    int64_t i = 0;
    if constexpr (has_vec<T> && std::is_same_v<T, Out> && Op::vectorized) {
      using V = Vec<T>;
      constexpr int64_t e = sizeof(T);
      T* o = reinterpret_cast<T*>(p[0]);
      const T* x = reinterpret_cast<const T*>(p[1]);
      const T* y = reinterpret_cast<const T*>(p[2]);
      if (s[0] == e && s[1] == e && s[2] == e) {
        for (; i + V::size <= n; i += V::size) op(V::load(x + i), V::load(y + i)).store(o + i);
        for (; i < n; ++i) o[i] = op(x[i], y[i]);
        return;
      }
      if (s[0] == e && s[1] == 0 && s[2] == e) {  // scalar-like a
        const V va(x[0]);
        for (; i + V::size <= n; i += V::size) op(va, V::load(y + i)).store(o + i);
        for (; i < n; ++i) o[i] = op(x[0], y[i]);
        return;
      }
      if (s[0] == e && s[1] == e && s[2] == 0) {  // scalar-like b
        const V vb(y[0]);
        for (; i + V::size <= n; i += V::size) op(V::load(x + i), vb).store(o + i);
        for (; i < n; ++i) o[i] = op(x[i], y[0]);
        return;
      }
    }
    for (; i < n; ++i) {
      const C x = static_cast<C>(*reinterpret_cast<const T*>(p[1] + i * s[1]));
      const C y = static_cast<C>(*reinterpret_cast<const T*>(p[2] + i * s[2]));
      *reinterpret_cast<Out*>(p[0] + i * s[0]) = cast_value<Out>(op(x, y));
    }
  });
}

/// out[i] = cond[i] ? a[i] : b[i].
template <class T>
void where_kernel(const StridedLoop<4>& L, T* out, const bool* cond, const T* a, const T* b) {
  strided_loop<4>(L, {reinterpret_cast<char*>(out), (char*)cond, (char*)a, (char*)b},
                  [&](int64_t n, const std::array<char*, 4>& p, const std::array<int64_t, 4>& s) {
    for (int64_t i = 0; i < n; ++i)
      *reinterpret_cast<T*>(p[0] + i * s[0]) = *reinterpret_cast<const bool*>(p[1] + i * s[1])
                                                   ? *reinterpret_cast<const T*>(p[2] + i * s[2])
                                                   : *reinterpret_cast<const T*>(p[3] + i * s[3]);
  });
}

/// out[i] = To(in[i]): copies and dtype casts; same-type contiguous rows are a memcpy, contiguous
/// float <-> bf16 rows take the vector conversions (kernels/cpu/simd.hpp).
template <class To, class From>
void copy_kernel(const StridedLoop<2>& L, To* out, const From* in) {
  strided_loop<2>(L, {reinterpret_cast<char*>(out), (char*)in},
                  [&](int64_t n, const std::array<char*, 2>& p, const std::array<int64_t, 2>& s) {
    if constexpr (std::is_same_v<To, From>) {
      if (s[0] == sizeof(To) && s[1] == sizeof(From)) {
        std::memcpy(p[0], p[1], size_t(n) * sizeof(To));
        return;
      }
    }
    if constexpr ((std::is_same_v<To, bf16> && std::is_same_v<From, float>) ||
                  (std::is_same_v<To, float> && std::is_same_v<From, bf16>)) {
      if (s[0] == sizeof(To) && s[1] == sizeof(From)) {
        if constexpr (std::is_same_v<To, bf16>)
          cvt_f32_to_bf16(reinterpret_cast<const float*>(p[1]), reinterpret_cast<bf16*>(p[0]), n);
        else
          cvt_bf16_to_f32(reinterpret_cast<const bf16*>(p[1]), reinterpret_cast<float*>(p[0]), n);
        return;
      }
    }
    for (int64_t i = 0; i < n; ++i)
      *reinterpret_cast<To*>(p[0] + i * s[0]) =
          cast_value<To>(*reinterpret_cast<const From*>(p[1] + i * s[1]));
  });
}

/// out[i] = value.
template <class T>
void fill_kernel(const StridedLoop<1>& L, T* out, T value) {
  strided_loop<1>(L, {reinterpret_cast<char*>(out)},
                  [&](int64_t n, const std::array<char*, 1>& p, const std::array<int64_t, 1>& s) {
    if (s[0] == sizeof(T)) {
      std::fill_n(reinterpret_cast<T*>(p[0]), n, value);
      return;
    }
    for (int64_t i = 0; i < n; ++i) *reinterpret_cast<T*>(p[0] + i * s[0]) = value;
  });
}

}  // namespace strata::cpu
