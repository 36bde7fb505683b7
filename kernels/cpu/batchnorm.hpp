// Batch norm and layer norm kernels, forward and backward.
//
// Batch norm: x, y [B, C, S] (S = product of the spatial dims, 1 for [B, C]) in one of two layouts
// (BatchNormDims): channels-first, memory [B][C][S], or channels-last, memory [B][S][C] (C innermost,
// i.e. rows of C values); per channel c over the N = B * S values:
//   training: mean = sum x / N,  var = sum (x - mean)^2 / N (biased);  eval: mean, var given
//   invstd = 1 / sqrt(var + eps),  z = (x - mean) * invstd * w + b       (w = 1, b = 0 when absent)
//   y = z, or y = max(z, 0) with the fused ReLU
//   backward, xhat = (x - mean) * invstd, g = dy (g = dy * [y > 0] with the fused ReLU):
//     db = sum g,  dw = sum g * xhat
//     training: dx = w * invstd / N * (N * g - sum g - xhat * sum(g * xhat))
//     eval:     dx = w * invstd * g
// Channels-first: one task per channel; the channel's statistics come from one pass over its B rows of
// S contiguous values (each row's mean and squared deviations are taken while it is in cache and the
// rows combined with Chan's update, so no sum-of-squares cancellation), a second pass writes
// y = (x - mean) * scale + b. Backward: one pass for sum g and sum g * (x - mean), one that
// writes dx = a * (g - mean g - (x - mean) * q) (centred, so no cancellation for a large mean).
// The fused ReLU's mask [y > 0] is recomputed from x (NormRelu): z = (x - mean) * scale + shift with the
// forward's own operations gives the forward's bits, so y > 0 exactly where z > 0 and neither backward
// pass reads y (two input streams a pass instead of three); a given y is read instead (the older path).
// A channel's rows are S values C * S apart: on AVX-512 every pass prefetches the rows ~4 KB ahead
// (norm_ahead), and the second pass walks the rows down, so it starts on the rows the first left in L2;
// y and dx of more than kNormStreamBytes go out with non-temporal stores (rows of whole lines).
// Channels-last (and [B, C], where S == 1 makes the layouts equal): x is R = B * S rows of C, SIMD runs
// across channels. The rows are cut into at most kNormMaxBlocks blocks (parallel, fixed by R and C, so
// the result does not depend on the thread count); each block walks tiles of about kNormTile values
// (tile sums, then squared deviations from the tile mean while it is in L1, merged into the block's
// (count, mean, m2) in double by Chan's update), and the blocks are merged in block order. The same
// blocking gives the backward's per-channel sums; y and dx are then one parallel pass over the rows.
// Layer norm: x, y [M, N] contiguous, normalized over each row of N, w, b [N]:
//   mean, rstd = 1 / sqrt(var + eps) per row,  y = (x - mean) * rstd * w + b
//   backward, g = dy * w:  dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
//                          dw = sum over rows dy * xhat, db = sum over rows dy
// One fused pass: blocks of rows in parallel, each writing dx and a partial dw, db.
// Statistics and weights are in A = acc_t<T> (float for f32/f16/bf16, double for f64); row sums
// use Vec<T> lanes in blocks of kNormBlock added in double. References: PyTorch
// aten/src/ATen/native/Normalization.cpp, cpu/layer_norm_kernel.cpp, cpu/batch_norm_kernel.cpp
// (channels-last); Chan, Golub, LeVeque, "Algorithms for computing the sample variance" (1983).
// The `_ref` loops are in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/cpu/elementwise.hpp"
#include "strata/core/dtype.hpp"
#include "strata/core/parallel.hpp"

namespace strata::cpu {

/// Values summed in SIMD lanes before the partial sum is added in double.
inline constexpr int64_t kNormBlock = 2048;
/// Elements of work below which a norm kernel stays on one thread.
inline constexpr int64_t kNormGrain = 32768;
/// Most row blocks a rows-layout kernel splits its rows into (each keeps partial sums of its width).
inline constexpr int64_t kNormMaxBlocks = 64;
/// Values per tile of the channels-last statistics (two passes over a tile, the second from L1).
inline constexpr int64_t kNormTile = 4096;
/// SIMD paths need the storage type to be the accumulation type (float, double).
template <class T, class A>
inline constexpr bool norm_vec = has_vec<T> && std::is_same_v<T, A>;
/// Bytes ahead that a channels-first pass prefetches (see norm_ahead).
inline constexpr int64_t kNormPrefetchBytes = 4096;
/// Outputs (y, dx) of more bytes than this are written with non-temporal stores by the channels-first
/// passes where they can (norm_streams): the pass moves at least twice as many bytes through the caches,
/// so the output's first lines are gone by the time the next op reads them, and a plain store would
/// read every line before writing it.
inline constexpr int64_t kNormStreamBytes = int64_t(16) << 20;

/// Whether a run of n values at y can take non-temporal stores: AVX-512 floats, y 64-byte aligned and
/// n a multiple of 16 (whole lines).
template <class T, class A>
bool norm_streams(const T* y, int64_t n) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float> && std::is_same_v<A, float>)
    return n % 16 == 0 && (reinterpret_cast<uintptr_t>(y) & 63) == 0;
#endif
  (void)y, (void)n;
  return false;
}

/// Stores v at p: a plain store, or a non-temporal one (only where norm_streams said yes).
template <bool stream, class V, class T>
inline void norm_store(V v, T* p) {
#if defined(__AVX512F__)
  if constexpr (stream && std::is_same_v<T, float> && sizeof(V) == 64) {
    _mm512_stream_ps(p, v.v);
    return;
  }
#endif
  v.store(p);
}

/// Orders a thread's non-temporal stores before what follows (the end of its parallel task).
inline void norm_stream_fence() {
#if defined(__AVX512F__)
  _mm_sfence();
#endif
}

/// Elements ahead to prefetch while a channels-first pass walks row n of B rows of S values, `stride`
/// elements apart (the same channel of the next images), up (n = 0, 1, ..) or down (B - 1, B - 2, ..):
/// k rows on, k the fewest rows that make kNormPrefetchBytes, 0 (none) past the ends. The rows of a
/// channel are short and far apart, so the hardware streamer starts over at every row; software
/// prefetches of one line per vector keep the memory busy. Only where a vector is one 64-byte line
/// (AVX-512): 0 elsewhere.
template <class T, class A>
int64_t norm_ahead(int64_t n, int64_t B, int64_t S, int64_t stride, bool down = false) {
  if constexpr (norm_vec<T, A>) {
    if constexpr (sizeof(Vec<T>) == 64) {
      const int64_t k = (kNormPrefetchBytes + S * int64_t(sizeof(T)) - 1) / (S * int64_t(sizeof(T)));
      if (down) return n - k >= 0 ? -k * stride : 0;
      return n + k < B ? k * stride : 0;
    }
  }
  (void)n, (void)B, (void)S, (void)stride, (void)down;
  return 0;
}

/// Sizes and memory layout of a batch-norm input x [B, C, S] (S = product of the spatial dims).
struct BatchNormDims {
  int64_t B = 0, C = 0, S = 1;
  bool channels_last = false;  // memory [B][S][C] (C innermost), else [B][C][S]
  bool relu = false;           // fused ReLU: y = max(bn(x), 0), and the backward masks dy by y > 0
  /// Offset of element (n, c, s).
  int64_t at(int64_t n, int64_t c, int64_t s) const { return channels_last ? (n * S + s) * C + c : (n * C + c) * S + s; }
};

// ---------------------------------------------------------------- reference

/// Batch norm forward in double: x, y [B, C, S] laid out as d says; w, b [C] or null; mean, var,
/// invstd [C] (mean and var written when training, read otherwise).
template <class T, class A>
void batch_norm_fwd_ref(const T* x, T* y, const A* w, const A* b, A* mean, A* var, A* invstd, const BatchNormDims& d,
                        double eps, bool training) {
  const int64_t B = d.B, C = d.C, S = d.S;
  for (int64_t c = 0; c < C; ++c) {
    double m = mean[c], v = var[c];
    if (training) {
      double sum = 0, sq = 0;  // two passes: mean, then mean squared deviation
      for (int64_t n = 0; n < B; ++n)
        for (int64_t s = 0; s < S; ++s) sum += double(static_cast<A>(x[d.at(n, c, s)]));
      m = sum / double(B * S);
      for (int64_t n = 0; n < B; ++n)
        for (int64_t s = 0; s < S; ++s) sq += std::pow(double(static_cast<A>(x[d.at(n, c, s)])) - m, 2);
      v = sq / double(B * S);
      mean[c] = A(m), var[c] = A(v);
    }
    const double is = 1 / std::sqrt(v + eps);
    invstd[c] = A(is);
    for (int64_t n = 0; n < B; ++n)
      for (int64_t s = 0; s < S; ++s) {
        const double xhat = (double(static_cast<A>(x[d.at(n, c, s)])) - m) * is;
        const double z = xhat * (w ? double(w[c]) : 1.0) + (b ? double(b[c]) : 0.0);
        y[d.at(n, c, s)] = cast_value<T>(d.relu && z < 0 ? 0.0 : z);  // relu keeps NaN, as max(0, z)
      }
  }
}

/// Batch norm backward in double from the forward's mean and invstd; y (the forward's output) is read
/// only with d.relu; dx, dw, db may be null.
template <class T, class A>
void batch_norm_bwd_ref(const T* dy, const T* x, const T* y, const A* w, const A* mean, const A* invstd, T* dx, A* dw,
                        A* db, const BatchNormDims& d, bool training) {
  const int64_t B = d.B, C = d.C, S = d.S;
  const double N = double(B * S);
  for (int64_t c = 0; c < C; ++c) {
    const double m = mean[c], is = invstd[c], wc = w ? double(w[c]) : 1.0;
    // g = dy, masked by the ReLU's y > 0
    auto g = [&](int64_t i) { return d.relu && !(double(static_cast<A>(y[i])) > 0) ? 0.0 : double(static_cast<A>(dy[i])); };
    auto xhat = [&](int64_t i) { return (double(static_cast<A>(x[i])) - m) * is; };
    double sdy = 0, sdyx = 0;  // sum g, sum g * xhat
    for (int64_t n = 0; n < B; ++n)
      for (int64_t s = 0; s < S; ++s) sdy += g(d.at(n, c, s)), sdyx += g(d.at(n, c, s)) * xhat(d.at(n, c, s));
    if (dw) dw[c] = A(sdyx);
    if (db) db[c] = A(sdy);
    if (!dx) continue;
    for (int64_t n = 0; n < B; ++n)
      for (int64_t s = 0; s < S; ++s) {
        const int64_t i = d.at(n, c, s);
        dx[i] = cast_value<T>(training ? wc * is / N * (N * g(i) - sdy - xhat(i) * sdyx) : wc * is * g(i));
      }
  }
}

/// Layer norm forward in double: x, y [M, N]; w, b [N] or null; mean, rstd [M] written.
template <class T, class A>
void layer_norm_fwd_ref(const T* x, T* y, const A* w, const A* b, A* mean, A* rstd, int64_t M, int64_t N, double eps) {
  for (int64_t i = 0; i < M; ++i) {
    auto xv = [&](int64_t j) { return double(static_cast<A>(x[i * N + j])); };
    double m = 0, v = 0;
    for (int64_t j = 0; j < N; ++j) m += xv(j);
    m /= double(N);
    for (int64_t j = 0; j < N; ++j) v += (xv(j) - m) * (xv(j) - m);
    const double r = 1 / std::sqrt(v / double(N) + eps);
    mean[i] = A(m), rstd[i] = A(r);
    for (int64_t j = 0; j < N; ++j)
      y[i * N + j] = cast_value<T>((xv(j) - m) * r * (w ? double(w[j]) : 1.0) + (b ? double(b[j]) : 0.0));
  }
}

/// Layer norm backward in double; dx [M, N], dw, db [N] may be null.
template <class T, class A>
void layer_norm_bwd_ref(const T* dy, const T* x, const A* w, const A* mean, const A* rstd, T* dx, A* dw, A* db,
                        int64_t M, int64_t N) {
  std::vector<double> sw(size_t(N), 0.0), sb(size_t(N), 0.0);
  for (int64_t i = 0; i < M; ++i) {
    auto xhat = [&](int64_t j) { return (double(static_cast<A>(x[i * N + j])) - double(mean[i])) * double(rstd[i]); };
    auto g = [&](int64_t j) { return double(static_cast<A>(dy[i * N + j])) * (w ? double(w[j]) : 1.0); };
    double mg = 0, mgx = 0;  // mean(g), mean(g * xhat)
    for (int64_t j = 0; j < N; ++j) mg += g(j), mgx += g(j) * xhat(j);
    mg /= double(N), mgx /= double(N);
    for (int64_t j = 0; j < N; ++j) {
      if (dx) dx[i * N + j] = cast_value<T>(double(rstd[i]) * (g(j) - mg - xhat(j) * mgx));
      sw[size_t(j)] += double(static_cast<A>(dy[i * N + j])) * xhat(j);
      sb[size_t(j)] += double(static_cast<A>(dy[i * N + j]));
    }
  }
  for (int64_t j = 0; j < N; ++j) {
    if (dw) dw[j] = A(sw[size_t(j)]);
    if (db) db[j] = A(sb[size_t(j)]);
  }
}


// ---------------------------------------------------------------- row helpers

/// The fused ReLU's pre-activation z = (x - m) * a + c, the scalar form: the forward's scalar tails and
/// the backward's recomputed mask (norm_relu_keeps) both take it, so both round it the same way (the
/// SIMD lanes take vfmadd(x - m, a, c) in both).
template <class T, class A>
inline A norm_z(T x, A m, A a, A c) {
  return (static_cast<A>(x) - m) * a + c;
}

/// Whether the fused ReLU's output of pre-activation z is > 0: y = max(z, 0) stored as T (a 16-bit y
/// rounds z, a tiny z to 0); false for a NaN z, as for its NaN y.
template <class T, class A>
inline bool norm_relu_keeps(A z) {
  return static_cast<A>(cast_value<T>(z)) > A(0);
}

/// The fused ReLU's mask in a channels-first backward run: g = dy where the forward's y > 0, none
/// (g = dy) by default. y set: read from y. Else from_x: recomputed from the run's x as the forward
/// computed y, z = (x - m) * a + c (a = invstd * w, c = b: the forward's scale and shift, m its mean),
/// the same operations in the same SIMD lanes and tails, so the same bits: y is never read.
template <class T, class A>
struct NormRelu {
  const T* y = nullptr;
  bool from_x = false;
  A a = A(1), c = A(0);
  /// Mask kind: 0 none, 1 from y, 2 from x.
  int kind() const { return y ? 1 : from_x ? 2 : 0; }
  /// The same mask, `off` elements on (y's run moves with x's).
  NormRelu at(int64_t off) const { return {y ? y + off : nullptr, from_x, a, c}; }
  /// Whether element i (of x value xi) passes, the scalar form.
  bool keeps(int64_t i, T xi, A m) const {
    if (y) return static_cast<A>(y[i]) > A(0);
    return !from_x || norm_relu_keeps<T, A>(norm_z<T, A>(xi, m, a, c));
  }
};

/// sum x and sum (x - m)^2 over a contiguous run, or, with `dy`, sum g and sum g * (x - m) where g = dy,
/// or g = dy masked by the fused ReLU (relu, NormRelu): Vec<T> lanes within blocks of kNormBlock (whole
/// vectors, so the lanes and tails are the forward's), blocks added in double. `second` = false skips the
/// second sum (one pass for the plain sum).
template <class T, class A>
void norm_row_sums(const T* x, const T* dy, int64_t n, A m, bool second, double& s1, double& s2,
                   const NormRelu<T, A>& relu = {}, int64_t ahead = 0) {
  s1 = 0, s2 = 0;
  const T* mask = relu.y;
  for (int64_t b0 = 0; b0 < n; b0 += kNormBlock) {
    const int64_t b1 = std::min(n, b0 + kNormBlock);
    int64_t i = b0;
    A p1 = 0, p2 = 0;
    if constexpr (norm_vec<T, A>) {
      using V = Vec<T>;
      static_assert(kNormBlock % V::size == 0, "a block is whole vectors (the forward's SIMD lanes)");
      V v1(T(0)), v2(T(0));
      const V vm(m), va(relu.a), vc(relu.c), zero(T(0));
      // the loop for one case (grad sums with no mask, y's or x's; sum, sum and squares; prefetching or
      // not), so that no test is left in it (-O2 does not unswitch loops)
      auto loop = [&](auto grad, auto masked, auto squares, auto prefetch) {
        for (; i + V::size <= b1; i += V::size) {
          if constexpr (prefetch) {  // one line of each stream (norm_ahead)
            __builtin_prefetch(x + i + ahead);
            if constexpr (grad) __builtin_prefetch(dy + i + ahead);
            if constexpr (masked == 1) __builtin_prefetch(mask + i + ahead);
          }
          const V xv = V::load(x + i);
          if constexpr (grad) {
            const V d = xv - vm, dv = V::load(dy + i);
            V g = dv;
            if constexpr (masked == 1) g = select_lt(zero, V::load(mask + i), dv, zero);
            if constexpr (masked == 2) g = select_lt(zero, vfmadd(d, va, vc), dv, zero);  // the forward's z
            v1 = v1 + g;
            v2 = vfmadd(g, d, v2);
          } else {
            v1 = v1 + xv;
            if constexpr (squares) v2 = vfmadd(xv - vm, xv - vm, v2);
          }
        }
      };
      auto with = [&](auto grad, auto masked, auto squares) {
        if (ahead) loop(grad, masked, squares, std::true_type{});
        else loop(grad, masked, squares, std::false_type{});
      };
      constexpr std::true_type yes;
      constexpr std::false_type no;
      constexpr std::integral_constant<int, 0> none;
      if (dy) {
        switch (relu.kind()) {
          case 1: with(yes, std::integral_constant<int, 1>{}, yes); break;
          case 2: with(yes, std::integral_constant<int, 2>{}, yes); break;
          default: with(yes, none, yes); break;
        }
      } else if (second) {
        with(no, none, yes);
      } else {
        with(no, none, no);
      }
      p1 = reduce_add(v1), p2 = reduce_add(v2);
    }
    for (; i < b1; ++i) {
      const A d = static_cast<A>(x[i]) - m;
      if (dy) {
        const A g = relu.keeps(i, x[i], m) ? static_cast<A>(dy[i]) : A(0);
        p1 += g, p2 += g * d;
      } else {
        p1 += static_cast<A>(x[i]), p2 += second ? d * d : A(0);
      }
    }
    s1 += double(p1), s2 += double(p2);
  }
}

/// y = (x - m) * a + c over a contiguous run (centering first: no cancellation for a large m);
/// relu: y = max(0, that) (NaN stays NaN). stream: non-temporal stores where norm_streams(y, n) (the
/// caller fences).
template <class T, class A>
void norm_row_scale(const T* x, T* y, int64_t n, A m, A a, A c, bool relu = false, int64_t ahead = 0,
                    bool stream = false) {
  int64_t i = 0;
  if constexpr (norm_vec<T, A>) {
    using V = Vec<T>;
    const V vm(m), va(a), vc(c), zero(T(0));
    auto loop = [&](auto with_relu, auto prefetch, auto nt) {  // one loop per case (see norm_row_sums)
      for (; i + V::size <= n; i += V::size) {
        if constexpr (prefetch) {
          __builtin_prefetch(x + i + ahead);
          if constexpr (!nt) __builtin_prefetch(y + i + ahead, 1);
        }
        const V z = vfmadd(V::load(x + i) - vm, va, vc);  // as NormRelu recomputes it
        norm_store<nt>(with_relu ? vmax(zero, z) : z, y + i);
      }
    };
    auto with = [&](auto with_relu, auto nt) {
      if (ahead) loop(with_relu, std::true_type{}, nt);
      else loop(with_relu, std::false_type{}, nt);
    };
    constexpr std::true_type yes;
    constexpr std::false_type no;
    if (stream && norm_streams<T, A>(y, n)) relu ? with(yes, yes) : with(no, yes);
    else relu ? with(yes, no) : with(no, no);
  }
  for (; i < n; ++i) {
    const A z = norm_z<T, A>(x[i], m, a, c);
    y[i] = cast_value<T>(relu && z < A(0) ? A(0) : z);
  }
}

/// dx = a * (g - mdy - (x - m) * q) over a contiguous run, g = dy, or dy masked by the fused ReLU (relu,
/// whose a must be this a when it recomputes from x); x may be null when q == 0 and the mask is not
/// recomputed from x (dx = a * (g - mdy)); with_q = false (eval: q == 0) drops the (x - m) * q term
/// while x is still read for the mask.
template <class T, class A>
void norm_row_dx(const T* dy, const T* x, T* dx, int64_t n, A a, A mdy, A m, A q, const NormRelu<T, A>& relu = {},
                 int64_t ahead = 0, bool stream = false, bool with_q = true) {
  int64_t i = 0;
  const T* mask = relu.y;
  const bool q_term = x && with_q;
  if constexpr (norm_vec<T, A>) {
    using V = Vec<T>;
    const V va(a), vmdy(mdy), vm(m), vq(q), vc(relu.c), zero(T(0));
    auto loop = [&](auto with_x, auto masked, auto prefetch, auto nt) {  // one loop per case (see norm_row_sums)
      for (; i + V::size <= n; i += V::size) {
        if constexpr (prefetch) {
          __builtin_prefetch(dy + i + ahead);
          if constexpr (!nt) __builtin_prefetch(dx + i + ahead, 1);
          if constexpr (with_x || masked == 2) __builtin_prefetch(x + i + ahead);
          if constexpr (masked == 1) __builtin_prefetch(mask + i + ahead);
        }
        const V dv = V::load(dy + i);
        V g = dv, xv = zero;
        if constexpr (with_x || masked == 2) xv = V::load(x + i);
        if constexpr (masked == 1) g = select_lt(zero, V::load(mask + i), dv, zero);
        if constexpr (masked == 2) g = select_lt(zero, vfmadd(xv - vm, va, vc), dv, zero);  // the forward's z
        if constexpr (with_x) norm_store<nt>(va * vfmadd(vm - xv, vq, g - vmdy), dx + i);
        else norm_store<nt>(va * (g - vmdy), dx + i);
      }
    };
    auto with = [&](auto with_x, auto masked, auto nt) {
      if (ahead) loop(with_x, masked, std::true_type{}, nt);
      else loop(with_x, masked, std::false_type{}, nt);
    };
    constexpr std::true_type yes;
    constexpr std::false_type no;
    auto masks = [&](auto with_x, auto nt) {
      switch (relu.kind()) {
        case 1: with(with_x, std::integral_constant<int, 1>{}, nt); break;
        case 2: with(with_x, std::integral_constant<int, 2>{}, nt); break;
        default: with(with_x, std::integral_constant<int, 0>{}, nt); break;
      }
    };
    auto stores = [&](auto nt) { q_term ? masks(yes, nt) : masks(no, nt); };
    if (stream && norm_streams<T, A>(dx, n)) stores(yes);
    else stores(no);
  }
  for (; i < n; ++i) {
    const A g = relu.keeps(i, x ? x[i] : T(0), m) ? static_cast<A>(dy[i]) : A(0);
    dx[i] = cast_value<T>(a * (g - mdy - (q_term ? (static_cast<A>(x[i]) - m) * q : A(0))));
  }
}

// ---------------------------------------------------------------- batch norm, rows of C (channels-last)

/// The fixed blocking of R rows of C values: `rows` rows per block, `blocks` blocks (at most kNormMaxBlocks).
inline void norm_row_blocks(int64_t R, int64_t C, int64_t& rows, int64_t& blocks) {
  rows = std::max({int64_t(1), kNormGrain / std::max<int64_t>(C, 1), (R + kNormMaxBlocks - 1) / kNormMaxBlocks});
  blocks = (R + rows - 1) / rows;
}

/// Chan's update per channel: (na, ma, qa) += (nb, mb, qb), with (count, mean [C], m2 [C]).
template <class B>
void norm_chan_merge(double na, double* ma, double* qa, double nb, const B* mb, const B* qb, int64_t C) {
  const double tot = na + nb;
  for (int64_t c = 0; c < C; ++c) {
    const double delta = double(mb[c]) - ma[c];
    ma[c] += delta * nb / tot;
    qa[c] += double(qb[c]) + delta * delta * na * nb / tot;
  }
}

/// Calls f(c, k) over the channels [0, C) of a rows-layout kernel by groups of k <= 4 SIMD vectors
/// (std::integral_constant k, so a group's sums can live in registers across the rows), c the first
/// channel of the group; returns the first channel left for the scalar tail.
template <class T, class F>
int64_t norm_col_groups(int64_t C, F&& f) {
  using V = Vec<T>;
  int64_t c = 0;
  for (; c + 4 * V::size <= C; c += 4 * V::size) f(c, std::integral_constant<int, 4>{});
  switch ((C - c) / V::size) {
    case 3: f(c, std::integral_constant<int, 3>{}), c += 3 * V::size; break;
    case 2: f(c, std::integral_constant<int, 2>{}), c += 2 * V::size; break;
    case 1: f(c, std::integral_constant<int, 1>{}), c += V::size; break;
    default: break;
  }
  return c;
}

/// acc[c] = sum over the rows [r0, r1) of x [r, c], or of (x [r, c] - m[c])^2 when m is given: the
/// sums taken row after row in A, the SIMD channels' sums in registers.
template <class T, class A>
void norm_cols_tile(A* acc, const T* x, const A* m, int64_t r0, int64_t r1, int64_t C) {
  int64_t c0 = 0;
  if constexpr (norm_vec<T, A>) {
    using V = Vec<T>;
    c0 = norm_col_groups<T>(C, [&]<int K>(int64_t c, std::integral_constant<int, K>) {
      V sum[K];
      for (int j = 0; j < K; ++j) sum[j] = V(T(0));
      if (m) {
        V mv[K];
        for (int j = 0; j < K; ++j) mv[j] = V::load(m + c + j * V::size);
        for (int64_t r = r0; r < r1; ++r)
          for (int j = 0; j < K; ++j) {
            const V d = V::load(x + r * C + c + j * V::size) - mv[j];
            sum[j] = vfmadd(d, d, sum[j]);
          }
      } else {
        for (int64_t r = r0; r < r1; ++r)
          for (int j = 0; j < K; ++j) sum[j] = sum[j] + V::load(x + r * C + c + j * V::size);
      }
      for (int j = 0; j < K; ++j) sum[j].store(acc + c + j * V::size);
    });
  }
  std::fill(acc + c0, acc + C, A(0));
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = c0; c < C; ++c) {
      const A v = static_cast<A>(x[r * C + c]) - (m ? m[c] : A(0));
      acc[c] += m ? v * v : v;
    }
}

/// Per-channel mean and biased var of x [R, C] (see the top of this file: blocks of tiles, Chan's update).
template <class T, class A>
void batch_norm_rows_stats(const T* x, A* mean, A* var, int64_t R, int64_t C) {
  int64_t rows, blocks;
  norm_row_blocks(R, C, rows, blocks);
  const int64_t tile = std::max<int64_t>(1, kNormTile / C);
  std::vector<double> part(size_t(2 * blocks * C), 0.0);  // per block: mean [C], m2 [C]
  parallel_for(0, blocks, 1, [&](int64_t lo, int64_t hi) {
    std::vector<A> tm(static_cast<size_t>(C)), tq(static_cast<size_t>(C));  // the tile's sums (then mean) and squared deviations
    for (int64_t k = lo; k < hi; ++k) {
      double *bm = part.data() + 2 * k * C, *bq = bm + C, cnt = 0;
      const int64_t r_end = std::min(R, (k + 1) * rows);
      for (int64_t r0 = k * rows; r0 < r_end; r0 += tile) {
        const int64_t r1 = std::min(r_end, r0 + tile);
        norm_cols_tile<T, A>(tm.data(), x, nullptr, r0, r1, C);
        for (A& v : tm) v /= A(r1 - r0);
        norm_cols_tile<T, A>(tq.data(), x, tm.data(), r0, r1, C);  // from L1
        norm_chan_merge(cnt, bm, bq, double(r1 - r0), tm.data(), tq.data(), C);
        cnt += double(r1 - r0);
      }
    }
  });
  std::vector<double> m(size_t(C), 0.0), q(size_t(C), 0.0);
  double cnt = 0;
  for (int64_t k = 0; k < blocks; ++k) {  // in block order: the same result for any thread count
    const double nb = double(std::min(R, (k + 1) * rows) - k * rows);
    norm_chan_merge(cnt, m.data(), q.data(), nb, part.data() + 2 * k * C, part.data() + (2 * k + 1) * C, C);
    cnt += nb;
  }
  for (int64_t c = 0; c < C; ++c) mean[c] = A(m[size_t(c)]), var[c] = A(q[size_t(c)] / double(R));
}

/// y = (x - mean) * scale + shift per channel over x, y [R, C] (max(0, .) with relu).
template <class T, class A>
void batch_norm_rows_apply(const T* x, T* y, const A* mean, const A* scale, const A* shift, int64_t R, int64_t C,
                           bool relu) {
  parallel_for(0, R, std::max<int64_t>(1, kNormGrain / C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * C;
      T* yr = y + r * C;
      int64_t c = 0;
      if constexpr (norm_vec<T, A>) {
        using V = Vec<T>;
        const V zero(T(0));
        auto loop = [&](auto with_relu) {  // one loop per case: -O2 does not unswitch loops
          for (; c + V::size <= C; c += V::size) {
            const V z = vfmadd(V::load(xr + c) - V::load(mean + c), V::load(scale + c), V::load(shift + c));
            (with_relu ? vmax(zero, z) : z).store(yr + c);
          }
        };
        relu ? loop(std::true_type{}) : loop(std::false_type{});
      }
      for (; c < C; ++c) {
        const A z = norm_z<T, A>(xr[c], mean[c], scale[c], shift[c]);  // as the backward recomputes it
        yr[c] = cast_value<T>(relu && z < A(0) ? A(0) : z);
      }
    }
  });
}

/// Per-channel sdy = sum g and sdx = sum g * (x - mean) over dy, x [R, C]: g = dy, or dy masked by the
/// fused ReLU, read from mask [R, C] (the forward's y, g = dy * [y > 0]) or, with no mask and a shift,
/// recomputed from x as batch_norm_rows_apply computed y: g = dy * [z > 0], z = (x - mean) * scale + shift
/// (see NormRelu). Tiles summed in A, added to per-block partials in double, blocks in order.
template <class T, class A>
void batch_norm_rows_grad_sums(const T* dy, const T* x, const T* mask, const A* scale, const A* shift, const A* mean,
                               double* sdy, double* sdx, int64_t R, int64_t C) {
  const int kind = mask ? 1 : shift ? 2 : 0;  // the mask: none, y's, x's
  int64_t rows, blocks;
  norm_row_blocks(R, C, rows, blocks);
  const int64_t tile = std::max<int64_t>(1, kNormTile / C);
  std::vector<double> part(size_t(2 * blocks * C), 0.0);  // per block: sum g [C], sum g (x - mean) [C]
  parallel_for(0, blocks, 1, [&](int64_t lo, int64_t hi) {
    std::vector<A> t1(static_cast<size_t>(C)), t2(static_cast<size_t>(C));
    for (int64_t k = lo; k < hi; ++k) {
      double *p1 = part.data() + 2 * k * C, *p2 = p1 + C;
      const int64_t r_end = std::min(R, (k + 1) * rows);
      for (int64_t r0 = k * rows; r0 < r_end; r0 += tile) {
        const int64_t r1 = std::min(r_end, r0 + tile);
        int64_t c0 = 0;
        if constexpr (norm_vec<T, A>) {  // the SIMD channels' tile sums in registers (norm_col_groups)
          using V = Vec<T>;
          c0 = norm_col_groups<T>(C, [&]<int K>(int64_t c, std::integral_constant<int, K>) {
            const V zero(T(0));
            V s1[K], s2[K], mv[K], av[K], cv[K];
            for (int j = 0; j < K; ++j) {
              s1[j] = zero, s2[j] = zero, mv[j] = V::load(mean + c + j * V::size);
              av[j] = kind == 2 ? V::load(scale + c + j * V::size) : zero;
              cv[j] = kind == 2 ? V::load(shift + c + j * V::size) : zero;
            }
            auto rows = [&](auto masked) {
              for (int64_t r = r0; r < r1; ++r)
                for (int j = 0; j < K; ++j) {
                  const int64_t o = r * C + c + j * V::size;
                  const V d = V::load(x + o) - mv[j], dv = V::load(dy + o);
                  V g = dv;
                  if constexpr (masked == 1) g = select_lt(zero, V::load(mask + o), dv, zero);
                  if constexpr (masked == 2) g = select_lt(zero, vfmadd(d, av[j], cv[j]), dv, zero);  // the forward's z
                  s1[j] = s1[j] + g;
                  s2[j] = vfmadd(g, d, s2[j]);
                }
            };
            if (kind == 1) rows(std::integral_constant<int, 1>{});
            else if (kind == 2) rows(std::integral_constant<int, 2>{});
            else rows(std::integral_constant<int, 0>{});
            for (int j = 0; j < K; ++j) s1[j].store(t1.data() + c + j * V::size), s2[j].store(t2.data() + c + j * V::size);
          });
        }
        std::fill(t1.begin() + c0, t1.end(), A(0));
        std::fill(t2.begin() + c0, t2.end(), A(0));
        for (int64_t r = r0; r < r1; ++r) {
          const T *gr = dy + r * C, *xr = x + r * C, *mr = mask ? mask + r * C : nullptr;
          for (int64_t c = c0; c < C; ++c) {
            const bool keep = kind == 1   ? static_cast<A>(mr[c]) > A(0)
                              : kind == 2 ? norm_relu_keeps<T, A>(norm_z<T, A>(xr[c], mean[c], scale[c], shift[c]))
                                          : true;
            const A g = keep ? static_cast<A>(gr[c]) : A(0);
            t1[size_t(c)] += g, t2[size_t(c)] += g * (static_cast<A>(xr[c]) - mean[c]);
          }
        }
        for (int64_t c = 0; c < C; ++c) p1[c] += double(t1[size_t(c)]), p2[c] += double(t2[size_t(c)]);
      }
    }
  });
  std::fill(sdy, sdy + C, 0.0);
  std::fill(sdx, sdx + C, 0.0);
  for (int64_t k = 0; k < blocks; ++k)
    for (int64_t c = 0; c < C; ++c) sdy[c] += part[size_t((2 * k) * C + c)], sdx[c] += part[size_t((2 * k + 1) * C + c)];
}

/// dx = a * (g - mdy - (x - mean) * q) per channel over dy, x, dx [R, C] (g as in batch_norm_rows_grad_sums,
/// with scale = a).
template <class T, class A>
void batch_norm_rows_dx(const T* dy, const T* x, const T* mask, const A* shift, const A* mean, const A* a,
                        const A* mdy, const A* q, T* dx, int64_t R, int64_t C) {
  const int kind = mask ? 1 : shift ? 2 : 0;  // the mask: none, y's, x's
  parallel_for(0, R, std::max<int64_t>(1, kNormGrain / C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T *gr = dy + r * C, *xr = x + r * C, *mr = mask ? mask + r * C : nullptr;
      T* dr = dx + r * C;
      int64_t c = 0;
      if constexpr (norm_vec<T, A>) {
        using V = Vec<T>;
        const V zero(T(0));
        auto loop = [&](auto masked) {  // one loop per case: -O2 does not unswitch loops
          for (; c + V::size <= C; c += V::size) {
            const V xv = V::load(xr + c), mv = V::load(mean + c), av = V::load(a + c), dv = V::load(gr + c);
            V g = dv;
            if constexpr (masked == 1) g = select_lt(zero, V::load(mr + c), dv, zero);
            if constexpr (masked == 2) g = select_lt(zero, vfmadd(xv - mv, av, V::load(shift + c)), dv, zero);
            const V t = vfmadd(mv - xv, V::load(q + c), g - V::load(mdy + c));
            (av * t).store(dr + c);
          }
        };
        if (kind == 1) loop(std::integral_constant<int, 1>{});
        else if (kind == 2) loop(std::integral_constant<int, 2>{});
        else loop(std::integral_constant<int, 0>{});
      }
      for (; c < C; ++c) {
        const bool keep = kind == 1   ? static_cast<A>(mr[c]) > A(0)
                          : kind == 2 ? norm_relu_keeps<T, A>(norm_z<T, A>(xr[c], mean[c], a[c], shift[c]))
                                      : true;
        const A g = keep ? static_cast<A>(gr[c]) : A(0);
        dr[c] = cast_value<T>(a[c] * (g - mdy[c] - (static_cast<A>(xr[c]) - mean[c]) * q[c]));
      }
    }
  });
}

// ---------------------------------------------------------------- batch norm

/// Batch norm forward: x, y [B, C, S] laid out as d says (y in the same layout); w, b [C] or null;
/// mean, var, invstd [C] (mean and var are computed when training, read otherwise; invstd is always
/// written). d.relu writes y = max(0, bn(x)). Needs B * S > 0.
template <class T, class A>
void batch_norm_fwd_kernel(const T* x, T* y, const A* w, const A* b, A* mean, A* var, A* invstd, const BatchNormDims& d,
                           double eps, bool training) {
  const int64_t B = d.B, C = d.C, S = d.S, per_channel = B * S;
  if (C == 0 || per_channel == 0) return;
  auto finish = [&](int64_t c) { invstd[c] = A(1) / std::sqrt(var[c] + A(eps)); };
  if (d.channels_last || S == 1) {  // rows of C
    if (training) batch_norm_rows_stats<T, A>(x, mean, var, per_channel, C);
    std::vector<A> scale(static_cast<size_t>(C)), shift(static_cast<size_t>(C));  // y = (x - mean) * scale + shift
    for (int64_t c = 0; c < C; ++c) {
      finish(c);
      scale[size_t(c)] = invstd[c] * (w ? w[c] : A(1));
      shift[size_t(c)] = b ? b[c] : A(0);
    }
    batch_norm_rows_apply<T, A>(x, y, mean, scale.data(), shift.data(), per_channel, C, d.relu);
    return;
  }
  const int64_t grain = std::max<int64_t>(1, kNormGrain / per_channel);
  const bool stream = per_channel * C * int64_t(sizeof(T)) > kNormStreamBytes;  // y / dx: non-temporal stores
  parallel_for(0, C, grain, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      if (training) {  // Chan's update over rows: (count, mean, m2) += (S, row mean, row m2)
        double cm = 0, m2 = 0;
        for (int64_t n = 0; n < B; ++n) {
          const T* xr = x + (n * C + c) * S;
          double s, unused;
          norm_row_sums<T, A>(xr, nullptr, S, A(0), false, s, unused, {}, norm_ahead<T, A>(n, B, S, C * S));
          const A rm = A(s / double(S));
          double rm2;
          norm_row_sums<T, A>(xr, nullptr, S, rm, true, unused, rm2);
          const double cnt = double(n * S), delta = double(rm) - cm, tot = cnt + double(S);
          cm += delta * double(S) / tot;
          m2 += rm2 + delta * delta * cnt * double(S) / tot;
        }
        mean[c] = A(cm), var[c] = A(m2 / double(per_channel));
      }
      finish(c);
      const A scale = invstd[c] * (w ? w[c] : A(1)), shift = b ? b[c] : A(0);
      for (int64_t n = B - 1; n >= 0; --n)  // down: the rows the statistics read last are still in L2
        norm_row_scale<T, A>(x + (n * C + c) * S, y + (n * C + c) * S, S, mean[c], scale, shift, d.relu,
                             norm_ahead<T, A>(n, B, S, C * S, true), stream);
      if (stream) norm_stream_fence();
    }
  });
}

/// Batch norm backward: dy, x, dx [B, C, S] laid out as d says (dx in the same layout); w, b [C] or null
/// (the forward's); mean, invstd [C] from the forward; dw, db [C]. Any of dx, dw, db may be null (not
/// wanted). d.relu masks dy by the forward's y > 0: recomputed from x, w, b as the forward computed y
/// (NormRelu: the same bits, y not read) where y is null, else read from y [B, C, S] (the older path,
/// one stream more a pass). Needs B * S > 0.
template <class T, class A>
void batch_norm_bwd_kernel(const T* dy, const T* x, const T* y, const A* w, const A* b, const A* mean,
                           const A* invstd, T* dx, A* dw, A* db, const BatchNormDims& d, bool training) {
  const int64_t B = d.B, C = d.C, S = d.S, per_channel = B * S;
  if (C == 0 || per_channel == 0) return;
  const T* mask = d.relu ? y : nullptr;
  const bool relu_x = d.relu && !y;  // the mask recomputed from x
  const bool need_sums = dw || db || (dx && training);
  const A inv_n = A(1) / A(per_channel);
  // dx = a * (g - mdy - (x - mean) * q), from sdy = sum g and sdx = sum g * (x - mean):
  // a = w * invstd, mdy = sdy / N, q = invstd^2 * sdx / N (mdy = q = 0 in eval)
  auto coefficients = [&](int64_t c, A sdy, A sdx, A& a, A& mdy, A& q) {
    a = invstd[c] * (w ? w[c] : A(1));
    mdy = training ? sdy * inv_n : A(0);
    q = training ? invstd[c] * invstd[c] * sdx * inv_n : A(0);
  };
  if (d.channels_last || S == 1) {  // rows of C
    std::vector<double> sdy(size_t(C), 0.0), sdx(size_t(C), 0.0);
    std::vector<A> ka(static_cast<size_t>(C)), kmdy(static_cast<size_t>(C)), kq(static_cast<size_t>(C));
    std::vector<A> shift(relu_x ? static_cast<size_t>(C) : 0);  // the forward's scale is a, its shift b
    for (int64_t c = 0; c < C; ++c) {
      coefficients(c, A(0), A(0), ka[size_t(c)], kmdy[size_t(c)], kq[size_t(c)]);
      if (relu_x) shift[size_t(c)] = b ? b[c] : A(0);
    }
    const A* sh = relu_x ? shift.data() : nullptr;
    if (need_sums)
      batch_norm_rows_grad_sums<T, A>(dy, x, mask, ka.data(), sh, mean, sdy.data(), sdx.data(), per_channel, C);
    for (int64_t c = 0; c < C; ++c) {
      const size_t j = size_t(c);
      if (dw) dw[c] = A(sdx[j]) * invstd[c];
      if (db) db[c] = A(sdy[j]);
      coefficients(c, A(sdy[j]), A(sdx[j]), ka[j], kmdy[j], kq[j]);
    }
    if (dx) batch_norm_rows_dx<T, A>(dy, x, mask, sh, mean, ka.data(), kmdy.data(), kq.data(), dx, per_channel, C);
    return;
  }
  const int64_t grain = std::max<int64_t>(1, kNormGrain / per_channel);
  const bool stream = per_channel * C * int64_t(sizeof(T)) > kNormStreamBytes;  // y / dx: non-temporal stores
  parallel_for(0, C, grain, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      double sdy = 0, sdx = 0;
      A a, mdy, q;
      coefficients(c, A(0), A(0), a, mdy, q);  // a: the forward's scale
      const NormRelu<T, A> relu{mask, relu_x, a, b ? b[c] : A(0)};
      if (need_sums)
        for (int64_t n = 0; n < B; ++n) {
          const int64_t off = (n * C + c) * S;
          double s1, s2;
          norm_row_sums<T, A>(x + off, dy + off, S, mean[c], true, s1, s2, relu.at(off),
                              norm_ahead<T, A>(n, B, S, C * S));
          sdy += s1, sdx += s2;
        }
      if (dw) dw[c] = A(sdx) * invstd[c];
      if (db) db[c] = A(sdy);
      if (!dx) continue;
      coefficients(c, A(sdy), A(sdx), a, mdy, q);
      for (int64_t n = B - 1; n >= 0; --n) {  // down: the rows the sums read last are still in cache
        const int64_t off = (n * C + c) * S;
        norm_row_dx<T, A>(dy + off, training || relu_x ? x + off : nullptr, dx + off, S, a, mdy, mean[c], q,
                          relu.at(off), norm_ahead<T, A>(n, B, S, C * S, true), stream, training);
      }
      if (stream) norm_stream_fence();
    }
  });
}

// ---------------------------------------------------------------- layer norm

/// Layer norm forward: x, y [M, N]; w, b [N] or null; mean, rstd [M] written. Parallel over rows;
/// each row: sum (one pass), squared deviations (a second pass, from cache), then y.
template <class T, class A>
void layer_norm_fwd_kernel(const T* x, T* y, const A* w, const A* b, A* mean, A* rstd, int64_t M, int64_t N,
                           double eps) {
  if (M == 0 || N == 0) return;
  const int64_t grain = std::max<int64_t>(1, kNormGrain / N);
  parallel_for(0, M, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const T* xr = x + i * N;
      T* yr = y + i * N;
      double s, sq, unused;
      norm_row_sums<T, A>(xr, nullptr, N, A(0), false, s, unused);
      const A m = A(s / double(N));
      norm_row_sums<T, A>(xr, nullptr, N, m, true, unused, sq);
      const A r = A(1) / std::sqrt(A(sq / double(N)) + A(eps));
      mean[i] = m, rstd[i] = r;
      if (!w && !b) {
        norm_row_scale<T, A>(xr, yr, N, m, r, A(0));
        continue;
      }
      int64_t j = 0;
      if constexpr (norm_vec<T, A>) {
        using V = Vec<T>;
        const V vm(m), vr(r), one(T(1)), zero(T(0));
        for (; j + V::size <= N; j += V::size) {
          const V t = (V::load(xr + j) - vm) * vr;
          vfmadd(t, w ? V::load(w + j) : one, b ? V::load(b + j) : zero).store(yr + j);
        }
      }
      for (; j < N; ++j)
        yr[j] = cast_value<T>((static_cast<A>(xr[j]) - m) * r * (w ? w[j] : A(1)) + (b ? b[j] : A(0)));
    }
  });
}

/// One row of the layer norm backward: dr = dx of the row (when not null), and the row's
/// dy * xhat and dy added into pw, pb (when not null).
template <class T, class A>
void layer_norm_bwd_row(const T* gr, const T* xr, const A* w, A m, A r, T* dr, A* pw, A* pb, int64_t N) {
  if (dr) {
    A sg = 0, sgx = 0;  // sum g, sum g * (x - mean), g = dy * w
    int64_t j = 0;
    if constexpr (norm_vec<T, A>) {
      using V = Vec<T>;
      V v1(T(0)), v2(T(0));
      for (; j + V::size <= N; j += V::size) {
        const V g = w ? V::load(gr + j) * V::load(w + j) : V::load(gr + j);
        v1 = v1 + g;
        v2 = vfmadd(g, V::load(xr + j) - V(m), v2);
      }
      sg = reduce_add(v1), sgx = reduce_add(v2);
    }
    for (; j < N; ++j) {
      const A g = static_cast<A>(gr[j]) * (w ? w[j] : A(1));
      sg += g, sgx += g * (static_cast<A>(xr[j]) - m);
    }
    // dx = r * (g - mg - (x - mean) * q), mg = sg / N, q = r^2 * sgx / N
    const A mg = sg / A(N), q = r * r * sgx / A(N);
    if (!w) {
      norm_row_dx<T, A>(gr, xr, dr, N, r, mg, m, q);
    } else {
      j = 0;
      if constexpr (norm_vec<T, A>) {
        using V = Vec<T>;
        const V vr(r), vmg(mg), vm(m), vq(q);
        for (; j + V::size <= N; j += V::size) {
          const V g = V::load(gr + j) * V::load(w + j);
          (vr * vfmadd(vm - V::load(xr + j), vq, g - vmg)).store(dr + j);
        }
      }
      for (; j < N; ++j)
        dr[j] = cast_value<T>(r * (static_cast<A>(gr[j]) * w[j] - mg - (static_cast<A>(xr[j]) - m) * q));
    }
  }
  if (!pw) return;
  int64_t j = 0;  // the row is in L1 now: dw += dy * xhat, db += dy
  if constexpr (norm_vec<T, A>) {
    using V = Vec<T>;
    const V vm(m), vr(r);
    for (; j + V::size <= N; j += V::size) {
      const V g = V::load(gr + j);
      vfmadd(g, (V::load(xr + j) - vm) * vr, V::load(pw + j)).store(pw + j);
      (V::load(pb + j) + g).store(pb + j);
    }
  }
  for (; j < N; ++j) {
    const A g = static_cast<A>(gr[j]);
    pw[j] += g * (static_cast<A>(xr[j]) - m) * r;
    pb[j] += g;
  }
}

/// Layer norm backward: dy, x [M, N]; w [N] or null; mean, rstd [M] from the forward; writes
/// dx [M, N], dw, db [N] where not null. One pass over the data: the rows are cut into at most
/// kNormMaxBlocks blocks (parallel), each computing its dx rows and a partial dw, db; the partials
/// are then added in block order, so the result does not depend on the thread count.
template <class T, class A>
void layer_norm_bwd_kernel(const T* dy, const T* x, const A* w, const A* mean, const A* rstd, T* dx, A* dw, A* db,
                           int64_t M, int64_t N) {
  if (N == 0) return;
  const bool params = dw || db;
  const int64_t rows = std::max({int64_t(1), kNormGrain / N, (M + kNormMaxBlocks - 1) / kNormMaxBlocks});
  const int64_t blocks = (M + rows - 1) / rows;
  std::vector<A> part(params ? size_t(2 * blocks * N) : 0, A(0));  // per block: dw partial [N], db partial [N]
  parallel_for(0, blocks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t k = lo; k < hi; ++k)
      for (int64_t i = k * rows; i < std::min(M, (k + 1) * rows); ++i)
        layer_norm_bwd_row<T, A>(dy + i * N, x + i * N, w, mean[i], rstd[i], dx ? dx + i * N : nullptr,
                                 params ? part.data() + 2 * k * N : nullptr,
                                 params ? part.data() + (2 * k + 1) * N : nullptr, N);
  });
  auto add_partials = [&](A* out, int64_t which) {  // out = sum over blocks, in block order
    if (!out) return;
    std::fill(out, out + N, A(0));
    for (int64_t k = 0; k < blocks; ++k) {
      const A* p = part.data() + (2 * k + which) * N;
      for (int64_t j = 0; j < N; ++j) out[j] += p[j];
    }
  };
  add_partials(dw, 0);
  add_partials(db, 1);
}

}  // namespace strata::cpu
