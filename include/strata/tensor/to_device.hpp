// to(x, device): a copy of x on another device (cpu <-> cuda), differentiable.
//
//   Tensor xc = to(x, Device::cuda());   // or x.to(kCUDA)
//   Tensor y = xc.to(kCPU);
// Keeps dtype and shape; the result is contiguous, whatever x's layout (a channels-last or
// strided x comes back contiguous); x itself when it is already on `device`. The gradient goes
// back to x's device. cuda needs a registered backend (include <strata/backend/device_allocator.hpp>).
//
// How: the bytes move with the backend's copy (cuda::memcpy), and all re-layout happens on the
// host, so no device kernel is needed: cpu -> cuda makes x contiguous on the host first; cuda ->
// any copies the span of storage that x views to the host and makes that view contiguous there.
// Later: pinned host staging and async copies on a stream (the copy is synchronous now).
#pragma once

#include <algorithm>

#include "strata/autograd/node.hpp"
#include "strata/tensor/copy.hpp"

namespace strata {

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

/// x on `device` (x itself when already there); contiguous, same dtype; gradient goes back to x's device.
inline Tensor to(const Tensor& x, Device device) {
  if (x.device() == device) return x;
  Tensor out = detail::copy_to_device(x, device);
  const Device from = x.device();
  return record("to_device_backward", out, {x},
                [from](const Tensor& dout) { return std::vector{detail::copy_to_device(dout, from)}; });
}

}  // namespace strata
