// Softmax cross entropy in one kernel each way, for logits x [B, C] (contiguous) and class indices
// y [B] (int64, each in [0, C)), with label smoothing eps:
//   lse_b  = m_b + log sum_c exp(x_bc - m_b),  m_b = max_c x_bc          (stable for any finite x)
//   l_b    = lse_b - (1 - eps) x_{b,y_b} - eps / C sum_c x_bc            (= -(1-eps) logp[y] - eps mean_c logp_c)
//   dx_bc  = dl_b (exp(x_bc - lse_b) - (1 - eps) [c == y_b] - eps / C)   (softmax minus the smoothed target)
// The forward keeps lse [B] (float32, float64 for double x) so the backward needs only x, y and lse:
// no log-probabilities are stored. Compare log_softmax + gather + mean, which writes and keeps a
// [B, C] tensor and walks it three times.
// References (softmax_xent_fwd_ref / _bwd_ref): the formulas above as plain loops, summing in double.
// Idea: PyTorch's fused cross_entropy_loss / llm.c's fused_classifier kernel.
#pragma once

#include <cmath>
#include <cstdint>

#include "strata/core/parallel.hpp"

namespace strata::cpu {

// ---------------------------------------------------------------- references

/// loss [B], lse [B] from x [B, C] and y [B].
template <class T, class A>
void softmax_xent_fwd_ref(const T* x, const int64_t* y, T* loss, A* lse, int64_t B, int64_t C, double eps) {
  for (int64_t b = 0; b < B; ++b) {
    const T* row = x + b * C;
    double m = double(row[0]), s = 0, sum_x = 0;
    for (int64_t c = 1; c < C; ++c) m = std::max(m, double(row[c]));            // m_b
    for (int64_t c = 0; c < C; ++c) s += std::exp(double(row[c]) - m), sum_x += double(row[c]);
    const double l = m + std::log(s);                                          // lse_b
    lse[b] = A(l);
    loss[b] = T(l - (1 - eps) * double(row[y[b]]) - eps / double(C) * sum_x);  // l_b
  }
}

/// dx [B, C] from dloss [B], x, y and the forward's lse.
template <class T, class A>
void softmax_xent_bwd_ref(const T* dloss, const T* x, const int64_t* y, const A* lse, T* dx, int64_t B, int64_t C,
                          double eps) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c) {
      const double target = (c == y[b] ? 1 - eps : 0) + eps / double(C);  // smoothed one-hot
      dx[b * C + c] = T(double(dloss[b]) * (std::exp(double(x[b * C + c]) - double(lse[b])) - target));
    }
}

// ---------------------------------------------------------------- kernels

/// softmax_xent_fwd_ref in the accumulation type A, rows split over the threads.
template <class T, class A>
void softmax_xent_fwd(const T* x, const int64_t* y, T* loss, A* lse, int64_t B, int64_t C, double eps) {
  parallel_for(0, B, std::max<int64_t>(1, 16384 / std::max<int64_t>(C, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b) {
      const T* row = x + b * C;
      A m = A(row[0]), s = 0, sum_x = 0;
      for (int64_t c = 1; c < C; ++c) m = row[c] > m ? A(row[c]) : m;
      for (int64_t c = 0; c < C; ++c) s += std::exp(A(row[c]) - m), sum_x += A(row[c]);
      const A l = m + std::log(s);
      lse[b] = l;
      loss[b] = T(l - A(1 - eps) * A(row[y[b]]) - A(eps / double(C)) * sum_x);
    }
  });
}

/// softmax_xent_bwd_ref in the accumulation type A, rows split over the threads.
template <class T, class A>
void softmax_xent_bwd(const T* dloss, const T* x, const int64_t* y, const A* lse, T* dx, int64_t B, int64_t C,
                      double eps) {
  const A off = A(eps / double(C)), on = A(1 - eps);
  parallel_for(0, B, std::max<int64_t>(1, 16384 / std::max<int64_t>(C, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b) {
      const T* row = x + b * C;
      T* drow = dx + b * C;
      const A d = A(dloss[b]), l = lse[b];
      for (int64_t c = 0; c < C; ++c) drow[c] = T(d * (std::exp(A(row[c]) - l) - off));
      drow[y[b]] = T(A(drow[y[b]]) - d * on);
    }
  });
}

}  // namespace strata::cpu
