#include <strata/strata.hpp>
#include <cmath>
#include <cstdio>
int main() {
  strata::manual_seed(0);
  strata::Tensor x = strata::randn({3, 4}).requires_grad_();
  strata::Tensor y = (x * x).sum();
  y.backward();
  strata::Tensor expect = x.detach() * 2.0;
  double err = (x.grad() - expect).abs().max().item<double>();
  std::printf("find_package(strata) ok: y=%g max|dx-2x|=%g\n", y.item<double>(), err);
  return err < 1e-6 ? 0 : 1;
}
