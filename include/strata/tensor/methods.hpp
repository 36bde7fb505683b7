// Tensor's member functions, forwarding to the free-function ops (x.exp() == strata::exp(x)).
// Included at the end of tensor/tensor.hpp, after the class is complete. Families written in their
// own headers define their methods there (reduce, softmax, matmul, ...).
#pragma once

#include "strata/tensor/unary.hpp"
#if __has_include("strata/tensor/reduce.hpp")
#include "strata/tensor/reduce.hpp"
#endif
#if __has_include("strata/tensor/softmax.hpp")
#include "strata/tensor/softmax.hpp"
#endif
#if __has_include("strata/tensor/matmul.hpp")
#include "strata/tensor/matmul.hpp"
#endif
#if __has_include("strata/tensor/join.hpp")
#include "strata/tensor/join.hpp"
#endif
#if __has_include("strata/tensor/index.hpp")
#include "strata/tensor/index.hpp"
#endif
#if __has_include("strata/tensor/print.hpp")
#include "strata/tensor/print.hpp"
#endif
#include "strata/tensor/to_device.hpp"
#include "strata/autograd/engine.hpp"

namespace strata {

template <class T>
T Tensor::item() const {
  STRATA_CHECK(numel() == 1, "item", "got a tensor of shape ", shape(), ", expected exactly one element");
  if (!device().is_cpu()) return strata::to(*this, kCPU).item<T>();  // one element over the bus
  return dispatch_all(dtype(), "item", [&]<class U>(type_tag<U>) { return cast_value<T>(*data_ptr<U>()); });
}

inline Tensor Tensor::detach() const { return strata::detach(*this); }
inline Tensor Tensor::clone() const { return strata::clone(*this); }
inline Tensor Tensor::contiguous() const { return strata::contiguous(*this); }
inline Tensor Tensor::contiguous(MemoryFormat f) const { return strata::contiguous(*this, f); }
inline Tensor Tensor::to(DType d) const { return strata::to(*this, d); }
inline Tensor Tensor::to(Device d) const { return strata::to(*this, d); }
inline Tensor Tensor::pin_memory() const { return strata::pin_memory(*this); }
inline Tensor Tensor::view(const Shape& s) const { return strata::view(*this, s); }
inline Tensor Tensor::reshape(const Shape& s) const { return strata::reshape(*this, s); }
inline Tensor Tensor::permute(const std::vector<int64_t>& d) const { return strata::permute(*this, d); }
inline Tensor Tensor::transpose(int64_t a, int64_t b) const { return strata::transpose(*this, a, b); }
inline Tensor Tensor::t() const {
  STRATA_CHECK(dim() <= 2, "t", "got shape ", shape(), ", expected at most 2 dims");
  return dim() < 2 ? *this : strata::transpose(*this, 0, 1);
}
inline Tensor Tensor::narrow(int64_t d, int64_t s, int64_t n) const { return strata::narrow(*this, d, s, n); }
inline Tensor Tensor::slice(int64_t d, int64_t s, int64_t e, int64_t st) const { return strata::slice(*this, d, s, e, st); }
inline Tensor Tensor::select(int64_t d, int64_t i) const { return strata::select(*this, d, i); }
inline Tensor Tensor::expand(const Shape& s) const { return strata::expand(*this, s); }
inline Tensor Tensor::expand_as(const Tensor& o) const { return strata::expand_as(*this, o); }
inline Tensor Tensor::squeeze() const { return strata::squeeze(*this); }
inline Tensor Tensor::squeeze(int64_t d) const { return strata::squeeze(*this, d); }
inline Tensor Tensor::unsqueeze(int64_t d) const { return strata::unsqueeze(*this, d); }
inline Tensor Tensor::flatten(int64_t a, int64_t b) const { return strata::flatten(*this, a, b); }

inline Tensor Tensor::neg() const { return strata::neg(*this); }
inline Tensor Tensor::abs() const { return strata::abs(*this); }
inline Tensor Tensor::exp() const { return strata::exp(*this); }
inline Tensor Tensor::log() const { return strata::log(*this); }
inline Tensor Tensor::sqrt() const { return strata::sqrt(*this); }
inline Tensor Tensor::rsqrt() const { return strata::rsqrt(*this); }
inline Tensor Tensor::sin() const { return strata::sin(*this); }
inline Tensor Tensor::cos() const { return strata::cos(*this); }
inline Tensor Tensor::tanh() const { return strata::tanh(*this); }
inline Tensor Tensor::sigmoid() const { return strata::sigmoid(*this); }
inline Tensor Tensor::relu() const { return strata::relu(*this); }
inline Tensor Tensor::pow(double e) const { return strata::pow(*this, e); }
inline Tensor Tensor::pow(const Tensor& e) const { return strata::pow(*this, e); }
inline Tensor Tensor::clamp(double lo, double hi) const { return strata::clamp(*this, lo, hi); }

inline Tensor& Tensor::add_(const Tensor& o, double alpha) { return strata::add_(*this, o, alpha); }
inline Tensor& Tensor::add_(double v) { return strata::add_(*this, detail::wrap_scalar(v, *this)); }
inline Tensor& Tensor::sub_(const Tensor& o) { return strata::sub_(*this, o); }
inline Tensor& Tensor::sub_(double v) { return strata::sub_(*this, detail::wrap_scalar(v, *this)); }
inline Tensor& Tensor::mul_(const Tensor& o) { return strata::mul_(*this, o); }
inline Tensor& Tensor::mul_(double v) { return strata::mul_(*this, detail::wrap_scalar(v, *this)); }
inline Tensor& Tensor::div_(const Tensor& o) { return strata::div_(*this, o); }
inline Tensor& Tensor::div_(double v) { return strata::div_(*this, detail::wrap_scalar(v, *this)); }
inline Tensor& Tensor::zero_() { return strata::zero_(*this); }
inline Tensor& Tensor::fill_(double v) {
  detail::check_inplace(*this, "fill_");
  return strata::fill_(*this, v);
}
inline Tensor& Tensor::copy_(const Tensor& src) {
  detail::check_inplace(*this, "copy_");
  return strata::copy_(*this, src);
}

}  // namespace strata
