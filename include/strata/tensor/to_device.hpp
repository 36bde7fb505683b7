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
// Pinned memory (PyTorch's pin_memory): x.pin_memory() copies a cpu tensor into page-locked host
// memory (backend/device_allocator.hpp caches those blocks), which the GPU reads and writes by DMA at
// full bus speed instead of through the driver's pageable staging; DataLoaderOptions.pin_memory
// makes every batch there, on the loader's workers, so the training thread's copy is a plain DMA.
// The copies are synchronous (the default stream); async copies overlapping compute come later.
#pragma once

#include <algorithm>
#include <cstring>
#include <memory>

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

/// A contiguous copy of cpu tensor x in page-locked host memory (x itself when it is pinned already);
/// needs a cuda backend (include <strata/backend/device_allocator.hpp>); the gradient passes through.
inline Tensor pin_memory(const Tensor& x) {
  STRATA_CHECK(x.defined(), "pin_memory", "got an undefined tensor, expected a cpu tensor");
  STRATA_CHECK(x.device().is_cpu(), "pin_memory", "got a tensor on ", x.device(),
               ", expected a cpu tensor (only host memory is pinned)");
  if (x.is_pinned() && x.is_contiguous()) return x;
  const Tensor src = contiguous(detach(x));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(src.numel() * src.element_size(), Storage::Pinned{});
  impl->shape = src.shape();
  impl->strides = src.strides();
  impl->dtype = src.dtype();
  Tensor out(std::move(impl));
  if (src.numel() > 0) std::memcpy(out.raw_data(), src.raw_data(), size_t(src.numel() * src.element_size()));
  return record("pin_memory_backward", out, {x}, [](const Tensor& dout) { return std::vector{dout}; });
}

}  // namespace strata
