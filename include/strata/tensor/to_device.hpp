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
#include "strata/tensor/copy.hpp"  // detail::copy_to_device

namespace strata {


/// x on `device` (x itself when already there); contiguous, same dtype; gradient goes back to x's device.
inline Tensor to(const Tensor& x, Device device) {
  if (x.device() == device) return x;
  Tensor out = detail::copy_to_device(x, device);
  const Device from = x.device();
  return record("to_device_backward", out, {x},
                [from](const Tensor& dout) { return std::vector{detail::copy_to_device(dout, from)}; });
}

}  // namespace strata
