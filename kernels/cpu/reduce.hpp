// Reduction kernels: sum / max / min over any set of dims of a strided tensor, and arg-max/min
// (value and index) over one dim.
//
// A reduction is described by a ReduceGeom: the input's dims split into kept dims (one output
// each, written to a contiguous output) and reduced dims. make_reduce_geom drops size-1 dims,
// orders both groups by input stride (largest first: reduction order does not matter, so a
// permuted tensor is read in memory order) and merges neighbours that are contiguous. Two fast
// shapes are then left, plus a general fallback:
//   inner:   the innermost reduced dim has input stride 1 (sum over the last dim, or a whole
//            contiguous tensor): each output reduces runs of contiguous rows with SIMD lanes.
//   outer:   the innermost kept dim has input stride 1 and the reduction is across rows
//            (sum over dim 0 of an [N, C] tensor): a tile of up to kTile contiguous columns is
//            accumulated row after row (SIMD across columns) into an accumulator row kept in L1,
//            so the input is streamed in memory order, kTile outputs at a time.
//   general: any strides; the inner engine walks rows with a scalar strided loop.
// Accuracy: float32 sums accumulate in float with pairwise summation: a span of reduced elements
// longer than kPairwiseBlock (inner) or kPairwiseRows rows (outer) is split in halves and the
// halves' sums added; a block is summed by 4 interleaved SIMD accumulators (inner) or row by row
// (outer). The error grows like log2(N) instead of N: a float32 sum of 10^7 values in [0, 1)
// comes within ~2e-8 relative of the float64 sum (tests check 1e-6). float64 sums accumulate in
// double, f16/bf16 in float (widened in blocks), integers and bool in int64.
// NaN: max/min propagate NaN like PyTorch. The SIMD max ignores NaN, so the fast paths also add up
// x - x (NaN for NaN or inf inputs) and redo the block with the scalar, NaN-aware loop if it is NaN.
// Parallelism: over outputs (or column tiles) when there are many; otherwise the reduced range of
// each output is cut into one chunk per thread and the partial results combined in chunk order,
// so results depend on the thread count but never on scheduling.
// References: PyTorch's Reduce.h (dim reordering, inner/outer vectorization, cascade sums);
// Higham, "The accuracy of floating point summation" (pairwise summation).
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>

#include "kernels/cpu/elementwise.hpp"

namespace strata::cpu {

/// Work (elements read) below which a reduction stays on one thread.
inline constexpr int64_t kReduceGrain = 32768;
/// Reduced elements summed sequentially before pairwise splitting (inner engine).
inline constexpr int64_t kPairwiseBlock = 2048;
/// Rows summed sequentially before pairwise splitting (outer engine).
inline constexpr int64_t kPairwiseRows = 64;

// ---------------------------------------------------------------- geometry

/// A reduction's iteration space after dropping size-1 dims, sorting by stride and merging.
struct ReduceGeom {
  int nk = 0, nr = 0;
  int64_t k_size[kMaxDims] = {}, k_in[kMaxDims] = {}, k_out[kMaxDims] = {};  // kept: size, strides (elements)
  int64_t r_size[kMaxDims] = {}, r_in[kMaxDims] = {};                        // reduced: size, input stride
  int64_t n_out = 1, n_red = 1;  // outputs, reduced elements per output
};

/// Builds the geometry for an input of shape[ndim] and strides[ndim] (elements) reducing the dims
/// whose bit is set in `reduced`. Outputs are laid out contiguously over the kept dims in order.
inline ReduceGeom make_reduce_geom(int ndim, const int64_t* shape, const int64_t* strides, uint32_t reduced) {
  STRATA_CHECK(ndim <= kMaxDims, "reduce", "got a tensor with ", ndim, " dims, expected at most ", kMaxDims);
  ReduceGeom g;
  int64_t out_stride[kMaxDims];
  int64_t acc = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    if (reduced >> d & 1u) {
      g.n_red *= shape[d];
    } else {
      out_stride[d] = acc;
      acc *= shape[d];
      g.n_out *= shape[d];
    }
  }
  // collect dims of size > 1, then sort each group by input stride, largest first
  int kd[kMaxDims], rd[kMaxDims];
  int nk = 0, nr = 0;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] == 1) continue;
    if (reduced >> d & 1u) rd[nr++] = d;
    else kd[nk++] = d;
  }
  std::stable_sort(kd, kd + nk, [&](int a, int b) { return strides[a] > strides[b]; });
  std::stable_sort(rd, rd + nr, [&](int a, int b) { return strides[a] > strides[b]; });
  for (int i = 0; i < nk; ++i) {
    const int d = kd[i];
    if (g.nk > 0 && g.k_in[g.nk - 1] == strides[d] * shape[d] && g.k_out[g.nk - 1] == out_stride[d] * shape[d]) {
      g.k_size[g.nk - 1] *= shape[d];  // continues the previous kept dim in input and output
      g.k_in[g.nk - 1] = strides[d];
      g.k_out[g.nk - 1] = out_stride[d];
    } else {
      g.k_size[g.nk] = shape[d];
      g.k_in[g.nk] = strides[d];
      g.k_out[g.nk] = out_stride[d];
      ++g.nk;
    }
  }
  for (int i = 0; i < nr; ++i) {
    const int d = rd[i];
    if (g.nr > 0 && g.r_in[g.nr - 1] == strides[d] * shape[d]) {
      g.r_size[g.nr - 1] *= shape[d];
      g.r_in[g.nr - 1] = strides[d];
    } else {
      g.r_size[g.nr] = shape[d];
      g.r_in[g.nr] = strides[d];
      ++g.nr;
    }
  }
  if (g.n_red == 0) g.nr = 0;                 // empty reduction: every output is the identity
  if (g.n_red == 1 && g.nr == 0) {            // nothing reduced: one element per output
    g.nr = 1;
    g.r_size[0] = 1;
    g.r_in[0] = 0;
  }
  return g;
}

/// Input and output offsets of output o (row-major over the first `upto` kept dims).
inline void kept_offsets(const ReduceGeom& g, int64_t o, int upto, int64_t& in, int64_t& out) {
  in = 0;
  out = 0;
  for (int d = upto - 1; d >= 0; --d) {
    const int64_t i = o % g.k_size[d];
    o /= g.k_size[d];
    in += i * g.k_in[d];
    out += i * g.k_out[d];
  }
}

/// Walks outputs o, o+1, ... keeping their input and output offsets (no division per output).
struct KeptWalker {
  const ReduceGeom& g;
  int upto;  // kept dims walked: g.nk, or g.nk - 1 when the last one is tiled
  int64_t idx[kMaxDims] = {};
  int64_t in = 0, out = 0;
  KeptWalker(const ReduceGeom& geom, int64_t o, int upto_dims) : g(geom), upto(upto_dims) {
    for (int d = upto - 1; d >= 0; --d) {
      idx[d] = o % g.k_size[d];
      o /= g.k_size[d];
      in += idx[d] * g.k_in[d];
      out += idx[d] * g.k_out[d];
    }
  }
  void next() {
    for (int d = upto - 1; d >= 0; --d) {
      in += g.k_in[d];
      out += g.k_out[d];
      if (++idx[d] < g.k_size[d]) return;
      in -= g.k_size[d] * g.k_in[d];
      out -= g.k_size[d] * g.k_out[d];
      idx[d] = 0;
    }
  }
};

// ---------------------------------------------------------------- reduction ops
// step(acc, x) folds one value (or a partial result) in; vstep does it lane-wise; vfinal folds lanes.

struct SumOp {
  static constexpr bool nan_check = false;
  template <class A> static A init() { return A(0); }
  template <class A> static A step(A acc, A x) { return A(acc + x); }
  template <class V> static V vstep(V acc, V x) { return acc + x; }
  template <class V> static auto vfinal(V v) { return reduce_add(v); }
};

template <bool kMax>
struct ExtremumOp {  // max (kMax) or min; NaN wins, like PyTorch
  static constexpr bool nan_check = true;
  template <class A> static A init() {
    if constexpr (std::numeric_limits<A>::has_infinity)
      return kMax ? -std::numeric_limits<A>::infinity() : std::numeric_limits<A>::infinity();
    else
      return kMax ? std::numeric_limits<A>::lowest() : std::numeric_limits<A>::max();
  }
  template <class A> static A step(A acc, A x) {
    if constexpr (std::is_floating_point_v<A>) {
      if (std::isnan(x)) return x;
    }
    return (kMax ? x > acc : x < acc) ? x : acc;  // a NaN acc stays: comparisons with it are false
  }
  template <class V> static V vstep(V acc, V x) { return kMax ? vmax(acc, x) : vmin(acc, x); }
  template <class V> static auto vfinal(V v) { return kMax ? reduce_max(v) : reduce_min(v); }
};
using MaxOp = ExtremumOp<true>;
using MinOp = ExtremumOp<false>;

template <class T>
inline constexpr bool is_half_v = std::is_same_v<T, f16> || std::is_same_v<T, bf16>;

/// dst[i] = float(src[i]) for a run of 16-bit floats. bf16 widens by a shift; the fixed-length
/// inner loop is what GCC's -O2 cost model agrees to vectorize.
template <class T>
inline float widen_one(T v) {
  if constexpr (std::is_same_v<T, bf16>) return std::bit_cast<float>(uint32_t(v.bits) << 16);
  else return float(v);
}
template <class T>
void widen(const T* __restrict src, float* __restrict dst, int64_t n) {
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int j = 0; j < 64; ++j) dst[i + j] = widen_one(src[i + j]);
  for (; i < n; ++i) dst[i] = widen_one(src[i]);
}

// ---------------------------------------------------------------- reference

/// Plain loop: out[o] = post(fold of op.step over the reduced elements of output o).
/// shape[ndim], strides[ndim] (elements); out contiguous over the kept dims.
template <class T, class A, class Op, class Out, class Post>
void reduce_ref(int ndim, const int64_t* shape, const int64_t* strides, uint32_t reduced, const T* x, Out* out,
                Op op, Post post) {
  int64_t n_out = 1, numel = 1;
  for (int d = 0; d < ndim; ++d) {
    numel *= shape[d];
    if (!(reduced >> d & 1u)) n_out *= shape[d];
  }
  std::unique_ptr<A[]> acc(new A[size_t(n_out)]);  // not vector: A may be bool
  std::fill_n(acc.get(), n_out, op.template init<A>());
  for (int64_t n = 0; n < numel; ++n) {
    // multi-index of element n (row-major), its input offset and its output index
    int64_t rest = n, in = 0, o = 0, o_mul = 1;
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t i = rest % shape[d];
      rest /= shape[d];
      in += i * strides[d];
      if (!(reduced >> d & 1u)) {
        o += i * o_mul;
        o_mul *= shape[d];
      }
    }
    acc[size_t(o)] = op.step(acc[size_t(o)], A(static_cast<compute_t<T>>(x[in])));
  }
  for (int64_t o = 0; o < n_out; ++o) out[o] = post(acc[size_t(o)]);
}

// ---------------------------------------------------------------- inner engine

/// Folds n elements p[0], p[s], ... (SIMD when s == 1 and T is float/double; f16/bf16 through a
/// float buffer).
template <class T, class A, class Op>
A reduce_row(const T* p, int64_t n, int64_t s, Op op) {
  if constexpr (has_vec<T> && std::is_same_v<A, T>) {
    if (s == 1 && n >= Vec<T>::size) {
      using V = Vec<T>;
      constexpr int64_t L = V::size;
      V a0(op.template init<T>()), a1 = a0, a2 = a0, a3 = a0, nz(T(0));
      int64_t i = 0;
      for (; i + 4 * L <= n; i += 4 * L) {
        const V x0 = V::load(p + i), x1 = V::load(p + i + L), x2 = V::load(p + i + 2 * L), x3 = V::load(p + i + 3 * L);
        a0 = op.vstep(a0, x0);
        a1 = op.vstep(a1, x1);
        a2 = op.vstep(a2, x2);
        a3 = op.vstep(a3, x3);
        if constexpr (Op::nan_check) nz = nz + ((x0 - x0) + (x1 - x1)) + ((x2 - x2) + (x3 - x3));
      }
      for (; i + L <= n; i += L) {
        const V x0 = V::load(p + i);
        a0 = op.vstep(a0, x0);
        if constexpr (Op::nan_check) nz = nz + (x0 - x0);
      }
      T r = op.vfinal(op.vstep(op.vstep(a0, a1), op.vstep(a2, a3)));
      for (; i < n; ++i) r = op.step(r, p[i]);
      if constexpr (Op::nan_check) {
        if (!std::isnan(reduce_add(nz))) return r;  // else: NaN or inf seen, redo with the scalar loop
      } else {
        return r;
      }
    }
  } else if constexpr (is_half_v<T>) {
    if (s == 1 && n > 8) {
      float buf[256];
      A r = op.template init<A>();
      for (int64_t i = 0; i < n; i += 256) {
        const int64_t m = std::min<int64_t>(256, n - i);
        widen(p + i, buf, m);
        r = op.step(r, reduce_row<float, float>(buf, m, 1, op));
      }
      return r;
    }
  }
  A r = op.template init<A>();
  for (int64_t i = 0; i < n; ++i) r = op.step(r, A(static_cast<compute_t<T>>(p[i * s])));
  return r;
}

/// Calls f(offset, stride, n) for each row piece of the reduced positions [lo, hi), row-major
/// over the reduced dims: n elements at base + offset + i * stride.
template <class F>
void for_each_reduced_row(const ReduceGeom& g, int64_t lo, int64_t hi, F&& f) {
  if (lo >= hi) return;  // also keeps an empty row (size 0) out of the divisions below
  const int last = g.nr - 1;
  const int64_t row = g.r_size[last], rs = g.r_in[last];
  int64_t idx[kMaxDims] = {};
  int64_t rest = lo / row, col = lo % row, off = 0;
  for (int d = last - 1; d >= 0; --d) {
    idx[d] = rest % g.r_size[d];
    rest /= g.r_size[d];
    off += idx[d] * g.r_in[d];
  }
  for (int64_t pos = lo; pos < hi;) {
    const int64_t n = std::min(row - col, hi - pos);
    f(off + col * rs, rs, n);
    pos += n;
    col = 0;
    for (int d = last - 1; d >= 0; --d) {  // next row
      off += g.r_in[d];
      if (++idx[d] < g.r_size[d]) break;
      off -= g.r_size[d] * g.r_in[d];
      idx[d] = 0;
    }
  }
}

/// Folds the reduced elements [lo, hi) (row-major over the reduced dims) starting at base,
/// pairwise above kPairwiseBlock elements.
template <class T, class A, class Op>
A reduce_span(const ReduceGeom& g, const T* base, int64_t lo, int64_t hi, Op op) {
  if (hi - lo > kPairwiseBlock) {
    const int64_t mid = lo + (hi - lo) / 2;
    return op.step(reduce_span<T, A>(g, base, lo, mid, op), reduce_span<T, A>(g, base, mid, hi, op));
  }
  A acc = op.template init<A>();
  for_each_reduced_row(g, lo, hi, [&](int64_t off, int64_t rs, int64_t n) {
    acc = op.step(acc, reduce_row<T, A>(base + off, n, rs, op));
  });
  return acc;
}

/// Chunks for splitting one output's reduction across threads (1 = do not split).
inline int64_t reduce_chunks(int64_t n_tasks, int64_t work_per_task) {
  const int64_t threads = num_threads();
  if (n_tasks * 2 > threads) return 1;
  return std::clamp<int64_t>(work_per_task / kReduceGrain, 1, threads);
}

template <class T, class A, class Op, class Out, class Post>
void reduce_inner(const ReduceGeom& g, const T* x, Out* out, Op op, Post post) {
  const int64_t chunks = reduce_chunks(g.n_out, g.n_red);
  if (chunks > 1) {  // few outputs, long reductions: per-thread partials, combined in order
    std::unique_ptr<A[]> part(new A[size_t(chunks)]);  // not vector: A may be bool
    for (int64_t o = 0; o < g.n_out; ++o) {
      int64_t in, oo;
      kept_offsets(g, o, g.nk, in, oo);
      parallel_for(0, chunks, 1, [&](int64_t lo, int64_t hi) {
        for (int64_t c = lo; c < hi; ++c)
          part[size_t(c)] = reduce_span<T, A>(g, x + in, g.n_red * c / chunks, g.n_red * (c + 1) / chunks, op);
      });
      A acc = part[0];
      for (int64_t c = 1; c < chunks; ++c) acc = op.step(acc, part[size_t(c)]);
      out[oo] = post(acc);
    }
    return;
  }
  const int64_t grain = std::max<int64_t>(1, kReduceGrain / std::max<int64_t>(g.n_red, 1));
  const bool one_row = g.nr == 1 && g.n_red <= kPairwiseBlock;  // short rows: skip reduce_span
  parallel_for(0, g.n_out, grain, [&](int64_t lo, int64_t hi) {
    KeptWalker k(g, lo, g.nk);
    for (int64_t o = lo; o < hi; ++o, k.next())
      out[k.out] = post(one_row ? reduce_row<T, A>(x + k.in, g.n_red, g.r_in[0], op)
                                : reduce_span<T, A>(g, x + k.in, 0, g.n_red, op));
  });
}

// ---------------------------------------------------------------- outer engine

/// Columns per tile of the outer engine: wide enough that each row contributes a long contiguous
/// read (good streaming, few passes over the input), small enough that the tile's accumulators
/// stay in L1.
inline constexpr int kTile = 1024;

/// Calls f(offset) for the reduced positions [lo, hi) (row-major over the reduced dims).
template <class F>
void for_each_position(const ReduceGeom& g, int64_t lo, int64_t hi, F&& f) {
  for_each_reduced_row(g, lo, hi, [&](int64_t off, int64_t rs, int64_t n) {
    for (int64_t i = 0; i < n; ++i) f(off + i * rs);
  });
}

/// acc[j] = fold over reduced positions [lo, hi) of base[position offset + j], j < w (w <= kTile
/// contiguous columns), streaming row by row; pairwise above kPairwiseRows positions, with the
/// right halves' partial tiles in scratch (kTile values per level of recursion).
template <class T, class A, class Op>
void reduce_cols(const ReduceGeom& g, const T* base, int64_t lo, int64_t hi, int w, A* acc, A* scratch, Op op) {
  if (hi - lo > kPairwiseRows) {
    const int64_t mid = lo + (hi - lo) / 2;
    reduce_cols<T, A>(g, base, lo, mid, w, acc, scratch, op);
    reduce_cols<T, A>(g, base, mid, hi, w, scratch, scratch + kTile, op);
    for (int j = 0; j < w; ++j) acc[j] = op.step(acc[j], scratch[j]);
    return;
  }
  std::fill_n(acc, w, op.template init<A>());
  if constexpr ((has_vec<T> && std::is_same_v<A, T>) || (is_half_v<T> && std::is_same_v<A, float>)) {
    using V = Vec<A>;
    constexpr int L = V::size;
    const int w4 = w / (4 * L) * (4 * L), wv = w / L * L;
    V nz0(A(0)), nz1 = nz0, nz2 = nz0, nz3 = nz0;  // NaN detectors: four, to keep the add chains short
    A buf[kTile];
    for_each_position(g, lo, hi, [&](int64_t off) {
      const A* p;
      if constexpr (is_half_v<T>) {  // widen the row segment to float first
        widen(base + off, buf, w);
        p = buf;
      } else {
        p = base + off;
      }
      int j = 0;
      for (; j < w4; j += 4 * L) {
        const V x0 = V::load(p + j), x1 = V::load(p + j + L), x2 = V::load(p + j + 2 * L), x3 = V::load(p + j + 3 * L);
        op.vstep(V::load(acc + j), x0).store(acc + j);
        op.vstep(V::load(acc + j + L), x1).store(acc + j + L);
        op.vstep(V::load(acc + j + 2 * L), x2).store(acc + j + 2 * L);
        op.vstep(V::load(acc + j + 3 * L), x3).store(acc + j + 3 * L);
        if constexpr (Op::nan_check) {
          nz0 = nz0 + (x0 - x0);
          nz1 = nz1 + (x1 - x1);
          nz2 = nz2 + (x2 - x2);
          nz3 = nz3 + (x3 - x3);
        }
      }
      for (; j < wv; j += L) {
        const V x = V::load(p + j);
        op.vstep(V::load(acc + j), x).store(acc + j);
        if constexpr (Op::nan_check) nz0 = nz0 + (x - x);
      }
      for (; j < w; ++j) acc[j] = op.step(acc[j], p[j]);
    });
    if constexpr (!Op::nan_check) {
      return;
    } else {
      if (!std::isnan(reduce_add((nz0 + nz1) + (nz2 + nz3)))) return;
      std::fill_n(acc, w, op.template init<A>());  // NaN or inf seen: redo with the scalar loop
    }
  }
  for_each_position(g, lo, hi, [&](int64_t off) {
    const T* p = base + off;
    for (int j = 0; j < w; ++j) acc[j] = op.step(acc[j], A(static_cast<compute_t<T>>(p[j])));
  });
}

/// Scratch values reduce_cols needs for n positions.
inline int64_t cols_scratch(int64_t n) {
  int levels = 1;
  while (n > kPairwiseRows) n = (n + 1) / 2, ++levels;
  return int64_t(levels) * kTile;
}

template <class T, class A, class Op, class Out, class Post>
void reduce_outer(const ReduceGeom& g, const T* x, Out* out, Op op, Post post) {
  const int kl = g.nk - 1;
  const int64_t cols = g.k_size[kl], col_out = g.k_out[kl];
  const int64_t tiles = (cols + kTile - 1) / kTile, tasks = (g.n_out / cols) * tiles;
  auto task_ptrs = [&](int64_t t, const T*& base, Out*& obase, int& w) {
    int64_t in, oo;
    kept_offsets(g, t / tiles, kl, in, oo);
    const int64_t c0 = (t % tiles) * kTile;
    w = int(std::min<int64_t>(kTile, cols - c0));
    base = x + in + c0;
    obase = out + oo + c0 * col_out;
  };
  const int64_t chunks = reduce_chunks(tasks, g.n_red * std::min<int64_t>(cols, kTile));
  if (chunks > 1) {  // few tiles, many rows: per-thread partial tiles, combined in order
    const int64_t per = kTile + cols_scratch(g.n_red / chunks + 1);
    std::unique_ptr<A[]> part(new A[size_t(chunks * per)]);
    for (int64_t t = 0; t < tasks; ++t) {
      const T* base;
      Out* obase;
      int w;
      task_ptrs(t, base, obase, w);
      parallel_for(0, chunks, 1, [&](int64_t lo, int64_t hi) {
        for (int64_t c = lo; c < hi; ++c) {
          A* acc = &part[size_t(c * per)];
          reduce_cols<T, A>(g, base, g.n_red * c / chunks, g.n_red * (c + 1) / chunks, w, acc, acc + kTile, op);
        }
      });
      for (int j = 0; j < w; ++j) {
        A acc = part[size_t(j)];
        for (int64_t c = 1; c < chunks; ++c) acc = op.step(acc, part[size_t(c * per + j)]);
        obase[j * col_out] = post(acc);
      }
    }
    return;
  }
  const int64_t grain = std::max<int64_t>(1, kReduceGrain / std::max<int64_t>(g.n_red * kTile, 1));
  parallel_for(0, tasks, grain, [&](int64_t lo, int64_t hi) {
    std::unique_ptr<A[]> acc(new A[size_t(kTile + cols_scratch(g.n_red))]);
    for (int64_t t = lo; t < hi; ++t) {
      const T* base;
      Out* obase;
      int w;
      task_ptrs(t, base, obase, w);
      reduce_cols<T, A>(g, base, 0, g.n_red, w, acc.get(), acc.get() + kTile, op);
      for (int j = 0; j < w; ++j) obase[j * col_out] = post(acc[j]);
    }
  });
}

// ---------------------------------------------------------------- launchers

/// out[o] = post(fold of the reduced elements of output o); x is the input's first element,
/// out has g.n_out elements laid out as make_reduce_geom describes. A is the accumulator type.
template <class T, class A, class Op, class Out, class Post>
void reduce_kernel(const ReduceGeom& g, const T* x, Out* out, Op op, Post post) {
  if (g.n_out == 0) return;
  const bool outer = g.nk > 0 && g.k_in[g.nk - 1] == 1 && g.nr > 0 && g.r_in[g.nr - 1] != 1;
  if (outer) reduce_outer<T, A>(g, x, out, op, post);
  else reduce_inner<T, A>(g, x, out, op, post);
}

/// Index (and value) of the max (kMax) or min along the one reduced dim of g (g.nr == 1, n_red > 0):
/// the first one on ties; NaN counts as larger and smaller than everything (first NaN wins).
/// values may be null.
template <class T, bool kMax>
void arg_reduce_kernel(const ReduceGeom& g, const T* x, T* values, int64_t* indices) {
  using C = compute_t<T>;
  if (g.n_out == 0) return;
  const int64_t n = g.r_size[0], s = g.r_in[0];
  auto better = [](C v, C best) {
    if constexpr (std::is_floating_point_v<C>) {
      if (std::isnan(best)) return false;
      if (std::isnan(v)) return true;
    }
    return kMax ? v > best : v < best;
  };
  const bool outer = g.nk > 0 && g.k_in[g.nk - 1] == 1 && s != 1;
  if (!outer) {  // one output at a time, scanning its (strided) row
    const int64_t grain = std::max<int64_t>(1, kReduceGrain / n);
    parallel_for(0, g.n_out, grain, [&](int64_t lo, int64_t hi) {
      KeptWalker k(g, lo, g.nk);
      for (int64_t o = lo; o < hi; ++o, k.next()) {
        const int64_t oo = k.out;
        const T* p = x + k.in;
        C best = static_cast<C>(p[0]);
        int64_t bi = 0;
        if constexpr (has_vec<T>) {
          if (s == 1) {  // SIMD max/min first, then the first position holding it
            best = reduce_row<T, T>(p, n, 1, ExtremumOp<kMax>{});
            if (std::isnan(best)) {
              while (bi < n - 1 && !std::isnan(p[bi])) ++bi;
            } else {
              while (bi < n - 1 && p[bi] != best) ++bi;  // best is one of the elements
            }
            indices[oo] = bi;
            if (values) values[oo] = best;
            continue;
          }
        }
        for (int64_t i = 1; i < n; ++i) {
          const C v = static_cast<C>(p[i * s]);
          if (better(v, best)) best = v, bi = i;
        }
        indices[oo] = bi;
        if (values) values[oo] = cast_value<T>(best);
      }
    });
    return;
  }
  // contiguous columns: a tile of W outputs advances row by row (cache friendly for dim 0)
  constexpr int W = kTile;
  const int kl = g.nk - 1;
  const int64_t cols = g.k_size[kl], col_out = g.k_out[kl];
  const int64_t tiles = (cols + W - 1) / W, tasks = (g.n_out / cols) * tiles;
  const int64_t grain = std::max<int64_t>(1, kReduceGrain / (n * W));
  parallel_for(0, tasks, grain, [&](int64_t lo, int64_t hi) {
    C best[W];
    int64_t bi[W];
    for (int64_t t = lo; t < hi; ++t) {
      int64_t in, oo;
      kept_offsets(g, t / tiles, kl, in, oo);
      const int64_t c0 = (t % tiles) * W;
      const int w = int(std::min<int64_t>(W, cols - c0));
      const T* p = x + in + c0;
      for (int j = 0; j < w; ++j) best[j] = static_cast<C>(p[j]), bi[j] = 0;
      for (int64_t i = 1; i < n; ++i)
        for (int j = 0; j < w; ++j) {
          const C v = static_cast<C>(p[i * s + j]);
          if (better(v, best[j])) best[j] = v, bi[j] = i;
        }
      for (int j = 0; j < w; ++j) {
        indices[oo + (c0 + j) * col_out] = bi[j];
        if (values) values[oo + (c0 + j) * col_out] = cast_value<T>(best[j]);
      }
    }
  });
}

}  // namespace strata::cpu
