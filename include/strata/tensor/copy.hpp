// Copies and casts: copy_, fill_, zero_, clone, contiguous (and contiguous(MemoryFormat)), to(dtype), detach.
//
// copy_(dst, src) broadcasts src to dst's shape and converts the dtype; it is the one kernel under
// clone, contiguous and to. The autograd versions: clone, contiguous and to pass the gradient
// straight back (cast back to the input's dtype for `to`); detach cuts the graph and shares data.
// copy_ also copies across devices (cpu <-> cuda), moving src's values over first.
#pragma once

#include "strata/autograd/node.hpp"
#include "strata/tensor/iter.hpp"

namespace strata {

namespace detail {
/// An in-place write target must not have several elements at one address (an expanded view).
inline void check_writable(const Tensor& t, const char* op) {
  for (int d = 0; d < t.dim(); ++d)
    STRATA_CHECK(t.strides()[d] != 0 || t.shape()[d] <= 1, op, "got a target of shape ", t.shape(),
                 " and strides ", t.strides(), ", expected no expanded (stride 0) dims: several "
                 "elements would share one memory location (call contiguous() first)");
}
/// `src` itself, or a private copy when it shares memory with `dst` in another layout
/// (x.copy_(x.t()) must read x before writing it).
inline Tensor unaliased(const Tensor& src, const Tensor& dst) {
  if (src.storage() != dst.storage()) return src;
  if (src.offset() == dst.offset() && src.strides() == dst.strides() && src.shape() == dst.shape()) return src;
  Tensor copy = Tensor::empty(src.shape(), src.dtype(), src.device());
  if (copy.device().is_cuda()) {
    cuda_copy_hook(copy, src);
    return copy;
  }
  auto L = make_loop<2>({&copy, &src}, "copy_");
  dispatch_all(src.dtype(), "copy_", [&]<class T>(type_tag<T>) {
    cpu::copy_kernel<T, T>(L, copy.data_ptr<T>(), static_cast<const T*>(src.raw_data()));
  });
  return copy;
}
}  // namespace detail

namespace detail {
inline Tensor copy_as(const Tensor& x, DType dtype, bool keep_layout = false);
}  // namespace detail

namespace detail {
/// A contiguous copy of x on `device` (no autograd); x itself when it is there already.
inline Tensor copy_to_device(const Tensor& x, Device device) {
  if (x.device() == device) return x;
  Tensor host = x;
  if (!x.device().is_cpu()) {
    // the element span [lo, hi] that x views, brought over whole, then viewed on the host
    int64_t lo = 0, hi = 0;
    for (int d = 0; d < x.dim(); ++d) {
      if (x.shape()[d] == 0) return Tensor::empty(x.shape(), x.dtype(), device);
      const int64_t reach = (x.shape()[d] - 1) * x.strides()[d];
      (reach < 0 ? lo : hi) += reach;
    }
    const int64_t span = hi - lo + 1, item = x.element_size();
    Tensor buf = Tensor::empty({span}, x.dtype(), kCPU);
    const auto& b = require_cuda_backend("to", x.device());
    b.copy(buf.storage()->data(), static_cast<const char*>(x.storage()->data()) + (x.offset() + lo) * item,
           size_t(span * item));
    host = buf.as_strided_(x.shape(), x.strides(), -lo);
  }
  if (!host.is_contiguous()) host = copy_as(host, host.dtype());
  if (device.is_cpu()) return host;
  Tensor out = Tensor::empty(x.shape(), x.dtype(), device);
  const auto& b = require_cuda_backend("to", device);
  b.copy(out.storage()->data(), host.raw_data(), size_t(host.numel() * host.element_size()));
  return out;
}
}  // namespace detail

/// dst[...] = src[...] (broadcast, converting dtype); in place, not recorded.
inline Tensor& copy_(Tensor& dst, const Tensor& src_in) {
  detail::check_writable(dst, "copy_");
  // across devices (load_state_dict into a cuda model): src's values moved over first, as PyTorch's copy_
  const Tensor src = src_in.device() == dst.device() ? detail::unaliased(src_in, dst)
                                                     : detail::copy_to_device(src_in, dst.device());
  if (dst.device().is_cuda()) {
    detail::cuda_copy_hook(dst, src);
    dst.storage()->bump_version();
    return dst;
  }
  auto L = make_loop<2>({&dst, &src}, "copy_");
  dispatch_all(dst.dtype(), "copy_", [&]<class To>(type_tag<To>) {
    dispatch_all(src.dtype(), "copy_", [&]<class From>(type_tag<From>) {
      cpu::copy_kernel<To, From>(L, static_cast<To*>(dst.raw_data()),
                                 static_cast<const From*>(src.raw_data()));
    });
  });
  dst.storage()->bump_version();
  return dst;
}

/// Sets every element to `value` (converted to the dtype).
inline Tensor& fill_(Tensor& t, double value) {
  detail::check_writable(t, "fill_");
  if (t.device().is_cuda()) {
    detail::cuda_fill_hook(t, value);
    t.storage()->bump_version();
    return t;
  }
  auto L = make_loop<1>({&t}, "fill_");
  dispatch_all(t.dtype(), "fill_", [&]<class T>(type_tag<T>) {
    cpu::fill_kernel<T>(L, static_cast<T*>(t.raw_data()), cast_value<T>(value));
  });
  t.storage()->bump_version();
  return t;
}

/// A new tensor sharing data but cut from the graph.
inline Tensor detach(const Tensor& t) { return t.as_strided_(t.shape(), t.strides(), t.offset()); }

namespace detail {
/// A copy of x in `dtype`: contiguous, or with x's strides when `keep_layout` and x is dense.
inline Tensor copy_as(const Tensor& x, DType dtype, bool keep_layout) {
  Tensor out = keep_layout ? empty_output(x.shape(), dtype, x.device(), {&x}) : Tensor::empty(x.shape(), dtype, x.device());
  copy_(out, x);
  return out;
}
}  // namespace detail

/// A contiguous copy with its own storage; gradient flows back unchanged.
inline Tensor clone(const Tensor& x) {
  Tensor out = detail::copy_as(x, x.dtype());
  return record("clone_backward", out, {x}, [](const Tensor& dout) { return std::vector{dout}; });
}

/// x itself when contiguous, else a contiguous copy.
inline Tensor contiguous(const Tensor& x) { return x.is_contiguous() ? x : clone(x); }

/// Whether x is dense in `format` (channels_last: a 4-D [B, C, H, W] stored as [B, H, W, C]).
inline bool is_contiguous(const Tensor& x, MemoryFormat format) { return x.is_contiguous(format); }

/// x itself when already dense in `format`, else a copy laid out in it; gradient flows back
/// unchanged. channels_last needs a 4-D x.
inline Tensor contiguous(const Tensor& x, MemoryFormat format) {
  if (format == MemoryFormat::contiguous) return contiguous(x);
  STRATA_CHECK(x.dim() == 4, "contiguous", "got shape ", x.shape(),
               " with channels_last, expected 4 dims [B, C, H, W] (channels_last is 4-D only)");
  if (x.is_contiguous(format)) {
    // Dense already, but size-1 dims may carry other strides (a [B, 1, H, W] from NCHW has
    // stride(1) == H*W): restride them as a view, so kernels that read the strides see the layout.
    const Shape& s = x.shape();
    const Strides canon{s[1] * s[2] * s[3], 1, s[3] * s[1], s[1]};
    if (x.strides() == canon) return x;
    Tensor out = x.as_strided_(s, canon, x.offset());
    return record("contiguous_backward", out, {x}, [](const Tensor& dout) { return std::vector{dout}; });
  }
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device(), format);
  copy_(out, x);
  return record("contiguous_backward", out, {x}, [](const Tensor& dout) { return std::vector{dout}; });
}

/// x converted to `dtype` (x itself when it already has it); a dense x keeps its layout
/// (channels-last stays channels-last), anything else gives a contiguous result.
inline Tensor to(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  Tensor out = detail::copy_as(x, dtype, true);
  if (!is_floating(dtype)) return out;  // integer results carry no gradient
  const DType in = x.dtype();
  return record("to_backward", out, {x},
                [in](const Tensor& dout) { return std::vector{detail::copy_as(dout, in, true)}; });
}

}  // namespace strata
