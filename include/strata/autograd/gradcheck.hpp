// gradcheck: compares autograd gradients with central finite differences in float64.
//
// For f: inputs -> one tensor, it draws a fixed random cotangent v (so non-scalar outputs are
// covered) and checks d<v, f(x)>/dx_i against (<v, f(x + eps e_i)> - <v, f(x - eps e_i)>) / 2eps
// for every element of every input that requires grad. Inputs must be float64 leaves. Returns a
// result with the worst mismatch, so tests can print where it failed.
// Reference: torch.autograd.gradcheck (same idea, one random projection instead of full Jacobians).
#pragma once

#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "strata/tensor/tensor.hpp"

namespace strata {

struct GradcheckResult {
  bool ok = true;
  std::string message;  // the first mismatch: input, element, analytic and numeric values
  explicit operator bool() const { return ok; }
};

/// Checks the gradients of f at `inputs` (float64 leaves; those with requires_grad are checked).
inline GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                 std::vector<Tensor> inputs, double eps = 1e-6, double atol = 1e-5,
                                 double rtol = 1e-3) {
  for (const Tensor& x : inputs)
    STRATA_CHECK(!x.requires_grad() || (x.dtype() == DType::f64 && x.is_leaf()), "gradcheck",
                 "got an input of dtype ", x.dtype(), ", expected float64 leaves");
  Tensor out = f(inputs);
  Generator gen(1234);
  const Tensor v = randn(out.shape(), {.dtype = DType::f64}, gen);
  auto project = [&](const Tensor& y) { return sum(mul(to(y, DType::f64), v)).item<double>(); };

  for (Tensor& x : inputs)
    if (x.requires_grad()) x.set_grad(Tensor());
  Tensor y = f(inputs);
  STRATA_CHECK(y.requires_grad(), "gradcheck", "got an output that does not require grad, expected f to use its inputs");
  y.backward(to(v, y.dtype()));

  GradcheckResult result;
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& x = inputs[k];
    if (!x.requires_grad()) continue;
    const Tensor analytic = x.grad().defined() ? contiguous(x.grad()) : zeros_like(x);
    // perturb a contiguous copy element by element; f sees it through the same leaf handle
    Tensor base = contiguous(detach(x)).clone();
    double* p = base.data_ptr<double>();
    const double* a = analytic.data_ptr<double>();
    for (int64_t i = 0; i < base.numel(); ++i) {
      const double orig = p[i];
      std::vector<Tensor> shifted = inputs;
      p[i] = orig + eps;
      shifted[k] = base.clone();
      double fp, fm;
      {
        NoGrad ng;
        fp = project(f(shifted));
        p[i] = orig - eps;
        shifted[k] = base.clone();
        fm = project(f(shifted));
      }
      p[i] = orig;
      const double numeric = (fp - fm) / (2 * eps);
      if (std::abs(numeric - a[i]) > atol + rtol * std::abs(numeric)) {
        std::ostringstream os;
        os << "gradcheck: input " << k << " (shape " << x.shape() << ") element " << i << ": analytic "
           << a[i] << ", numeric " << numeric;
        return {false, os.str()};
      }
    }
  }
  return result;
}

}  // namespace strata
