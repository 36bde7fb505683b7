// Index kernels: gather and scatter-add along one dim (under index_select, gather, scatter_add,
// index_add and their backwards), and one_hot.
//
// Both kernels walk the positions p of an index tensor (its shape, any strides):
//   gather:       out[p] = x[p with p[dim] := index[p]]
//   scatter_add:  out[p with p[dim] := index[p]] += src[p]
// The "dense" operand (out for gather, src for scatter) and the index follow p; the "indexed"
// operand (x for gather, out for scatter) follows p in every dim but `dim`, where the index value
// picks the element. index_select/index_add are the same loops with an index that is broadcast
// (stride 0) over every dim but `dim`.
//
// Layout: the positions with `dim` dropped form an elementwise StridedLoop<3> (coalesced, byte
// strides, kernels/cpu/elementwise.hpp) over {dense, indexed, index}; `dim` itself is walked inside
// each row. Threads split the rows only, so two threads never touch the same output element even
// when the index repeats (scatter stays race-free and deterministic). An index value outside
// [0, indexed_size) stops the kernel and is returned as BadIndex (the caller throws, naming the op).
// Reference: PyTorch's gather/scatter_add (aten/src/ATen/native/cpu/ScatterGatherKernel.cpp), simplified.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <mutex>

#include "kernels/cpu/elementwise.hpp"

namespace strata::cpu {

/// The first out-of-range index value a kernel met (found == false when all were in range).
struct BadIndex {
  bool found = false;
  int64_t value = 0;
};

/// Iteration for gather/scatter: rows over the positions without `dim`, then `dim` inside a row.
struct IndexLoop {
  StridedLoop<3> rows;       // operands {dense, indexed, index}; byte strides; `dim` removed
  int64_t n = 0;             // positions along dim (index.size(dim))
  int64_t dense_step = 0;    // byte stride of the dense operand along dim
  int64_t index_step = 0;    // byte stride of the index along dim
  int64_t indexed_step = 0;  // byte stride of the indexed operand along dim (times the index value)
  int64_t indexed_size = 0;  // valid index values: [0, indexed_size)
};

/// Positions per thread chunk below which a gather/scatter stays on one thread.
inline constexpr int64_t kIndexGrain = 32768;

// ---------------------------------------------------------------- reference loops

/// Plain element-stride description of the same problem, for the reference loops.
struct IndexRefArgs {
  int ndim = 0;
  int dim = 0;
  const int64_t* shape = nullptr;           // [ndim] positions (index shape)
  const int64_t* dense_stride = nullptr;    // [ndim] elements
  const int64_t* indexed_stride = nullptr;  // [ndim] elements
  const int64_t* index_stride = nullptr;    // [ndim] elements
  int64_t indexed_size = 0;
};

/// Visits every position p (row-major): fn(dense offset, indexed offset without dim, index offset).
template <class F>
void index_ref_walk(const IndexRefArgs& a, F fn) {
  int64_t total = 1;
  for (int d = 0; d < a.ndim; ++d) total *= a.shape[d];
  for (int64_t k = 0; k < total; ++k) {
    // unravel k into p, accumulating each operand's offset
    int64_t rest = k, od = 0, ox = 0, oi = 0;
    for (int d = a.ndim - 1; d >= 0; --d) {
      const int64_t p = rest % a.shape[d];
      rest /= a.shape[d];
      od += p * a.dense_stride[d];
      oi += p * a.index_stride[d];
      if (d != a.dim) ox += p * a.indexed_stride[d];  // along dim the index value decides
    }
    fn(od, ox, oi);
  }
}

/// out[p] = x[p with p[dim] := index[p]]; out: dense, x: indexed.
template <class T, class I>
BadIndex gather_ref(const IndexRefArgs& a, T* out, const T* x, const I* index) {
  BadIndex bad;
  index_ref_walk(a, [&](int64_t od, int64_t ox, int64_t oi) {
    const int64_t v = int64_t(index[oi]);
    if (bad.found) return;
    if (v < 0 || v >= a.indexed_size) {  // out of range: report the first one
      bad = {true, v};
      return;
    }
    out[od] = x[ox + v * a.indexed_stride[a.dim]];
  });
  return bad;
}

/// out[p with p[dim] := index[p]] += src[p]; out: indexed, src: dense. Sums in float for 16-bit floats.
template <class T, class I>
BadIndex scatter_add_ref(const IndexRefArgs& a, T* out, const T* src, const I* index) {
  BadIndex bad;
  index_ref_walk(a, [&](int64_t od, int64_t ox, int64_t oi) {
    const int64_t v = int64_t(index[oi]);
    if (bad.found) return;
    if (v < 0 || v >= a.indexed_size) {
      bad = {true, v};
      return;
    }
    T& o = out[ox + v * a.indexed_stride[a.dim]];
    o = cast_value<T>(compute_t<T>(o) + compute_t<T>(src[od]));
  });
  return bad;
}

// ---------------------------------------------------------------- kernels

namespace detail {
/// Runs row(n, ptrs, strides) over L.rows in parallel chunks and merges their BadIndex results.
template <class Row>
BadIndex index_rows(const IndexLoop& L, std::array<char*, 3> base, Row row) {
  BadIndex bad;
  std::mutex m;
  const int64_t grain = std::max<int64_t>(1, kIndexGrain / std::max<int64_t>(L.n, 1));
  parallel_for(0, L.rows.numel(), grain, [&](int64_t lo, int64_t hi) {
    BadIndex mine;
    auto inner = [&](int64_t n, const std::array<char*, 3>& p, const std::array<int64_t, 3>& s) {
      if (!mine.found) mine = row(n, p, s);
    };
    walk_rows<3>(L.rows, base, lo, hi, inner);
    if (mine.found) {
      std::lock_guard g(m);
      if (!bad.found) bad = mine;
    }
  });
  return bad;
}
}  // namespace detail

/// gather: out[p] = x[p with p[dim] := index[p]]. Operands {dense = out, indexed = x, index}.
/// A row whose index is constant (stride 0: index_select) checks it once and copies a strided run.
template <class T, class I>
BadIndex gather_kernel(const IndexLoop& L, T* out, const T* x, const I* index) {
  return detail::index_rows(L, {reinterpret_cast<char*>(out), (char*)x, (char*)index},
                            [&](int64_t n, const std::array<char*, 3>& p, const std::array<int64_t, 3>& s) {
    for (int64_t j = 0; j < L.n; ++j) {
      char* o = p[0] + j * L.dense_step;
      const char* ix = p[2] + j * L.index_step;
      if (s[2] == 0) {  // one index value for the whole row
        const int64_t v = int64_t(*reinterpret_cast<const I*>(ix));
        if (v < 0 || v >= L.indexed_size) return BadIndex{true, v};
        const char* src = p[1] + v * L.indexed_step;
        if (s[0] == sizeof(T) && s[1] == sizeof(T)) {
          std::memcpy(o, src, size_t(n) * sizeof(T));
        } else {
          for (int64_t i = 0; i < n; ++i)
            *reinterpret_cast<T*>(o + i * s[0]) = *reinterpret_cast<const T*>(src + i * s[1]);
        }
        continue;
      }
      for (int64_t i = 0; i < n; ++i) {
        const int64_t v = int64_t(*reinterpret_cast<const I*>(ix + i * s[2]));
        if (v < 0 || v >= L.indexed_size) return BadIndex{true, v};
        *reinterpret_cast<T*>(o + i * s[0]) = *reinterpret_cast<const T*>(p[1] + i * s[1] + v * L.indexed_step);
      }
    }
    return BadIndex{};
  });
}

/// scatter_add: out[p with p[dim] := index[p]] += src[p]. Operands {dense = src, indexed = out, index}.
/// Positions along dim are added in order, so repeated indices accumulate deterministically.
template <class T, class I>
BadIndex scatter_add_kernel(const IndexLoop& L, T* out, const T* src, const I* index) {
  using C = compute_t<T>;
  return detail::index_rows(L, {(char*)src, reinterpret_cast<char*>(out), (char*)index},
                            [&](int64_t n, const std::array<char*, 3>& p, const std::array<int64_t, 3>& s) {
    for (int64_t j = 0; j < L.n; ++j) {
      const char* d = p[0] + j * L.dense_step;
      const char* ix = p[2] + j * L.index_step;
      if (s[2] == 0) {  // one index value for the whole row (index_add): a strided axpy
        const int64_t v = int64_t(*reinterpret_cast<const I*>(ix));
        if (v < 0 || v >= L.indexed_size) return BadIndex{true, v};
        char* o = p[1] + v * L.indexed_step;
        if (s[0] == sizeof(T) && s[1] == sizeof(T)) {
          T* op = reinterpret_cast<T*>(o);
          const T* dp = reinterpret_cast<const T*>(d);
          for (int64_t i = 0; i < n; ++i) op[i] = cast_value<T>(C(op[i]) + C(dp[i]));
        } else {
          for (int64_t i = 0; i < n; ++i) {
            T& t = *reinterpret_cast<T*>(o + i * s[1]);
            t = cast_value<T>(C(t) + C(*reinterpret_cast<const T*>(d + i * s[0])));
          }
        }
        continue;
      }
      for (int64_t i = 0; i < n; ++i) {
        const int64_t v = int64_t(*reinterpret_cast<const I*>(ix + i * s[2]));
        if (v < 0 || v >= L.indexed_size) return BadIndex{true, v};
        T& t = *reinterpret_cast<T*>(p[1] + i * s[1] + v * L.indexed_step);
        t = cast_value<T>(C(t) + C(*reinterpret_cast<const T*>(d + i * s[0])));
      }
    }
    return BadIndex{};
  });
}

/// one_hot: out[i][labels[i]] = 1, zeros elsewhere. labels: [n] contiguous, each in [0, classes)
/// (checked by the caller); out: [n, classes] contiguous.
template <class I>
void one_hot_kernel(int64_t n, const I* labels, int64_t classes, int64_t* out) {
  if (n * classes == 0) return;
  std::memset(out, 0, size_t(n * classes) * sizeof(int64_t));
  for (int64_t i = 0; i < n; ++i) out[i * classes + int64_t(labels[i])] = 1;
}

}  // namespace strata::cpu
