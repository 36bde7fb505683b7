// The cuda path of the elementwise ops: binary and unary ops, comparisons, where, the fused
// activation backwards, copy_ (with dtype conversion) and fill_.
//
// Fills tensor/iter.hpp's hooks (cuda_elementwise_hook, cuda_copy_hook, cuda_fill_hook), so
// add(a, b), relu(x), where(c, a, b), x.to(DType::f16), contiguous(x), zeros(..., cuda) and
// everything built from them run on a cuda tensor. Included by <strata/backend/cuda.hpp>.
//
// How: the operands' strides (broadcast dims get stride 0, tensor/iter.hpp's broadcast_strides)
// go into one cuda::Indexer (kernels/cuda/indexer.cuh), its dims ordered outermost first by the
// operands' strides as the CPU loop orders them (a channels-last output is walked in memory
// order), and one kernel template, kernels/cuda/elementwise.cuh's elementwise_kernel, runs the op.
// The op is picked from the EwOp that the CPU functor names (ops::Add::cuda_op = EwOp::add) and
// the dtype from the inputs (all of the op's compute dtype: tensor/binary.hpp has already
// converted them, as on the CPU). Results equal the CPU's bit for bit for the arithmetic ops and
// within a few ulp for the libm functions (exp, log, tanh, erf, ...).
#pragma once

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "kernels/cuda/elementwise.cuh"
#include "strata/backend/device_allocator.hpp"
#include "strata/tensor/iter.hpp"

namespace strata::detail {

/// The first element of cuda tensor t as S (device memory; host memory under the emulator).
template <class S>
S* cuda_ptr(const Tensor& t) {
  using Raw = std::remove_const_t<S>;
  return static_cast<S*>(static_cast<Raw*>(t.storage()->data()) + t.offset());
}

/// The indexer of an elementwise op: operand 0 is `out`, then `ins` broadcast to out's shape;
/// dims ordered outermost first in the operands' memory order (make_loop's rule).
template <int N>
cuda::Indexer<N> cuda_indexer(const Tensor& out, const std::array<const Tensor*, N - 1>& ins, std::string_view op) {
  const Shape& shape = out.shape();
  const int nd = int(shape.size());
  std::array<Strides, N> st;
  st[0] = out.strides();
  for (int k = 1; k < N; ++k) st[size_t(k)] = broadcast_strides(*ins[size_t(k - 1)], shape, op);
  std::vector<int> perm;
  for (int d = 0; d < nd; ++d) perm.push_back(d);
  auto inner_of = [&](int a, int b) {  // true when dim a should be iterated inside dim b
    for (int k = 0; k < N; ++k) {
      const int64_t sa = st[size_t(k)][size_t(a)], sb = st[size_t(k)][size_t(b)];
      if (sa == 0 || sb == 0 || sa == sb) continue;
      return sa < sb;
    }
    return false;
  };
  for (size_t i = 1; i < perm.size(); ++i)  // stable insertion sort, outermost first
    for (size_t j = i; j > 0 && inner_of(perm[j - 1], perm[j]); --j) std::swap(perm[j - 1], perm[j]);
  std::vector<int64_t> ps(static_cast<size_t>(nd));
  std::array<std::vector<int64_t>, N> pst;
  for (int k = 0; k < N; ++k) pst[size_t(k)].resize(size_t(nd));
  for (int i = 0; i < nd; ++i) {
    ps[size_t(i)] = shape[size_t(perm[size_t(i)])];
    for (int k = 0; k < N; ++k) pst[size_t(k)][size_t(i)] = st[size_t(k)][size_t(perm[size_t(i)])];
  }
  return cuda::make_indexer<N>(ps, pst);
}

/// Launches op over out and the inputs, of device element types O and I...
template <class O, class... I, class Op>
void cuda_ew_launch(Op op, const Tensor& out, const std::array<const Tensor*, sizeof...(I)>& ins, std::string_view name) {
  constexpr int N = int(sizeof...(I)) + 1;
  const cuda::DeviceGuard guard(out.device().index);  // launch on the tensors' device
  const cuda::Indexer<N> ix = cuda_indexer<N>(out, ins, name);
  [&]<size_t... Is>(std::index_sequence<Is...>) {
    cuda::cuda_elementwise<O>(op, out.numel(), ix, cuda_ptr<O>(out), cuda_ptr<const I>(*ins[Is])...);
  }(std::index_sequence_for<I...>{});
}

inline const char* ew_name(EwOp op) {
  static constexpr const char* names[] = {
      "add", "sub", "mul", "div", "maximum", "minimum", "pow", "eq", "ne", "lt", "le", "gt", "ge",
      "neg", "abs", "relu", "exp", "log", "log1p", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid", "silu", "gelu",
      "softplus", "sign", "clamp", "leaky_relu",
      "relu_backward", "sigmoid_backward", "tanh_backward", "silu_backward", "gelu_backward", "clamp_backward",
      "where"};
  return names[int(op)];
}

/// cuda_elementwise_hook's implementation.
inline void cuda_elementwise_impl(EwOp op, EwParams p, const Tensor& out, std::initializer_list<const Tensor*> ins_list) {
  const char* name = ew_name(op);
  const std::vector<const Tensor*> ins(ins_list);
  for (const Tensor* t : ins)
    STRATA_CHECK(t->device() == out.device(), name, "got an input on ", t->device(), " and the output on ",
                 out.device(), ", expected one device");
  namespace ew = cuda::ew;
  if (op == EwOp::where) {
    STRATA_CHECK(ins.size() == 3 && ins[0]->dtype() == DType::b8, name, "got ", ins.size(),
                 " inputs, expected (bool condition, a, b)");
    cuda::dispatch_device(out.dtype(), name, [&]<class S>(type_tag<S>) {
      cuda_ew_launch<S, bool, S, S>(ew::Where{}, out, {ins[0], ins[1], ins[2]}, name);
    });
    return;
  }
  const size_t arity = op < EwOp::neg ? 2 : op < EwOp::relu_bwd ? 1 : 2;
  STRATA_CHECK(ins.size() == arity, name, "got ", ins.size(), " inputs, expected ", arity);
  const DType ct = ins.back()->dtype();
  cuda::dispatch_device(ct, name, [&]<class S>(type_tag<S>) {
    constexpr bool fl = cuda::is_floating_storage<S>;
    if constexpr (std::is_same_v<S, bool>) {
      bad_dtype(name, ct, "a numeric dtype (not bool)");
    } else {
      auto bin = [&](auto f) { cuda_ew_launch<S, S, S>(f, out, {ins[0], ins[1]}, name); };
      auto cmp = [&](auto f) { cuda_ew_launch<bool, S, S>(f, out, {ins[0], ins[1]}, name); };
      auto un = [&](auto f) { cuda_ew_launch<S, S>(f, out, {ins[0]}, name); };
      switch (op) {
        case EwOp::add: return bin(ew::Add{});
        case EwOp::sub: return bin(ew::Sub{});
        case EwOp::mul: return bin(ew::Mul{});
        case EwOp::div: return bin(ew::Div{});
        case EwOp::max: return bin(ew::Max{});
        case EwOp::min: return bin(ew::Min{});
        case EwOp::pow: return bin(ew::Pow{});
        case EwOp::eq: return cmp(ew::Eq{});
        case EwOp::ne: return cmp(ew::Ne{});
        case EwOp::lt: return cmp(ew::Lt{});
        case EwOp::le: return cmp(ew::Le{});
        case EwOp::gt: return cmp(ew::Gt{});
        case EwOp::ge: return cmp(ew::Ge{});
        case EwOp::neg: return un(ew::Neg{});
        case EwOp::abs: return un(ew::Abs{});
        case EwOp::relu: return un(ew::Relu{});
        case EwOp::sign: return un(ew::Sign{});
        case EwOp::clamp: return un(ew::Clamp{p.p0, p.p1});
        default: break;
      }
      if constexpr (fl) {  // the floating functions (integers were promoted to f32 before the hook)
        switch (op) {
          case EwOp::exp: return un(ew::Exp{});
          case EwOp::log: return un(ew::Log{});
          case EwOp::log1p: return un(ew::Log1p{});
          case EwOp::sqrt: return un(ew::Sqrt{});
          case EwOp::rsqrt: return un(ew::Rsqrt{});
          case EwOp::sin: return un(ew::Sin{});
          case EwOp::cos: return un(ew::Cos{});
          case EwOp::tanh: return un(ew::Tanh{});
          case EwOp::sigmoid: return un(ew::Sigmoid{});
          case EwOp::silu: return un(ew::Silu{});
          case EwOp::gelu: return un(ew::Gelu{});
          case EwOp::softplus: return un(ew::Softplus{});
          case EwOp::leaky_relu: return un(ew::LeakyRelu{p.p0});
          case EwOp::relu_bwd: return bin(ew::ReluBwd{});
          case EwOp::sigmoid_bwd: return bin(ew::SigmoidBwd{});
          case EwOp::tanh_bwd: return bin(ew::TanhBwd{});
          case EwOp::silu_bwd: return bin(ew::SiluBwd{});
          case EwOp::gelu_bwd: return bin(ew::GeluBwd{});
          case EwOp::clamp_bwd: return bin(ew::ClampBwd{p.p0, p.p1});
          default: break;
        }
      }
      bad_dtype(name, ct, "a floating dtype on cuda");
    }
  });
}

/// cuda_copy_hook's implementation: dst = src (broadcast), converting the dtype.
inline void cuda_copy_impl(const Tensor& dst, const Tensor& src) {
  STRATA_CHECK(dst.device() == src.device(), "copy_", "got devices ", dst.device(), " and ", src.device(),
               ", expected the same device");
  cuda::dispatch_device(dst.dtype(), "copy_", [&]<class To>(type_tag<To>) {
    cuda::dispatch_device(src.dtype(), "copy_", [&]<class From>(type_tag<From>) {
      cuda_ew_launch<To, From>(cuda::ew::Identity{}, dst, {&src}, "copy_");
    });
  });
}

/// cuda_fill_hook's implementation: the value converted on the host exactly as the CPU's fill_.
inline void cuda_fill_impl(const Tensor& t, double value) {
  dispatch_all(t.dtype(), "fill_", [&]<class H>(type_tag<H>) {
    using S = cuda::device_type<H>;
    const H hv = cast_value<H>(value);
    S v;
    std::memcpy(&v, &hv, sizeof(S));
    const cuda::DeviceGuard guard(t.device().index);
    cuda::cuda_fill<S>(t.numel(), cuda_indexer<1>(t, {}, "fill_"), cuda_ptr<S>(t), v);
  });
}

inline const bool cuda_elementwise_registered = [] {
  cuda_elementwise_hook.fn = &cuda_elementwise_impl;
  cuda_copy_hook.fn = &cuda_copy_impl;
  cuda_fill_hook.fn = &cuda_fill_impl;
  return true;
}();

}  // namespace strata::detail
