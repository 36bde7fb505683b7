// Gradient unscaling and the dynamic loss scaler of fp16 mixed precision (PyTorch's
// torch.cuda.amp.GradScaler; fastai's MixedPrecision uses it for to_fp16()).
//
//   GradScaler scaler;                                  // scale 2^16, x2 after 2000 clean steps, /2 on overflow
//   scaler.scale(loss).backward();                      // loss * scale: small fp16 gradients stay representable
//   if (scaler.unscale_(grads)) skip the step;          // grads / scale in place; true if any was inf/NaN
//   scaler.update(found_inf);                           // halve on overflow, else count toward growth
//
// unscale_(grads, inv_scale) is one pass per gradient: x <- x * inv_scale and "was any element
// inf or NaN" in the same read (kernels/cpu/amp.hpp on the CPU; on cuda kernels/cuda/amp.cuh, one
// launch per dtype over the whole list, the flag read back once). The scaling is in float (double
// for double gradients); the result is rounded to the gradient's dtype.
// Defaults follow PyTorch: init_scale 65536, growth_factor 2, backoff_factor 0.5, growth_interval 2000.
#pragma once

#include <span>
#include <vector>

#include "kernels/cpu/amp.hpp"
#include "strata/tensor/tensor.hpp"

namespace strata {

namespace detail {
/// The cuda path of unscale_ (include/strata/backend/cuda/amp.hpp): contiguous floating cuda
/// gradients, one dtype; returns whether any element was inf or NaN.
inline CudaHook<bool(std::span<const Tensor> grads, double inv_scale)> cuda_amp_unscale_hook{"unscale_"};
}  // namespace detail

/// grads *= inv_scale in place (undefined ones skipped); returns true if any element was inf or NaN
/// before scaling. Gradients must be contiguous and floating.
inline bool unscale_(std::span<Tensor> grads, double inv_scale) {
  bool found = false;
  std::vector<Tensor> on_cuda[4];  // by dtype: f32, f64, f16, bf16
  for (Tensor& g : grads) {
    if (!g.defined()) continue;
    STRATA_CHECK(g.is_floating_point() && g.is_contiguous(), "unscale_", "got a gradient of dtype ", g.dtype(),
                 " and strides ", g.strides(), " for shape ", g.shape(), ", expected a contiguous floating tensor");
    if (g.device().is_cuda()) {
      on_cuda[int(g.dtype())].push_back(g);
      continue;
    }
    dispatch_float(g.dtype(), "unscale_", [&]<class T>(type_tag<T>) {
      found |= cpu::amp_unscale<T>(g.data_ptr<T>(), g.numel(), float(inv_scale));
    });
    g.storage()->bump_version();
  }
  for (auto& list : on_cuda)
    if (!list.empty()) found |= detail::cuda_amp_unscale_hook(list, inv_scale);
  return found;
}

/// Options of a GradScaler (PyTorch's defaults).
struct GradScalerOptions {
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
};

/// Dynamic loss scaling: multiply the loss by scale(), unscale the gradients before the step, skip
/// the step and halve the scale when a gradient overflowed, double it after growth_interval clean steps.
class GradScaler {
 public:
  explicit GradScaler(GradScalerOptions o = {}) : opts_(o), scale_(o.init_scale) {
    STRATA_CHECK(o.init_scale > 0 && o.growth_factor > 1 && o.backoff_factor > 0 && o.backoff_factor < 1 &&
                     o.growth_interval > 0,
                 "GradScaler", "got init_scale=", o.init_scale, " growth_factor=", o.growth_factor,
                 " backoff_factor=", o.backoff_factor, " growth_interval=", o.growth_interval,
                 ", expected init_scale > 0, growth_factor > 1, 0 < backoff_factor < 1, growth_interval > 0");
  }

  /// loss * scale (recorded: the backward carries the scale into every gradient).
  Tensor scale(const Tensor& loss) const { return mul(loss, scale_); }
  /// Divides the gradients by the scale in place; true if any was inf or NaN (skip this step).
  bool unscale_(std::span<Tensor> grads) const { return strata::unscale_(grads, 1.0 / scale_); }
  /// After a step (or a skipped one): halve the scale on overflow, grow it after growth_interval clean steps.
  void update(bool found_inf) {
    if (found_inf) {
      scale_ *= opts_.backoff_factor;
      clean_steps_ = 0;
      ++skipped_;
    } else if (++clean_steps_ == opts_.growth_interval) {
      scale_ *= opts_.growth_factor;
      clean_steps_ = 0;
    }
  }
  double get_scale() const { return scale_; }
  /// Steps skipped because of inf/NaN gradients so far.
  int64_t skipped_steps() const { return skipped_; }
  /// Clean steps since the scale last changed.
  int64_t growth_tracker() const { return clean_steps_; }

 private:
  GradScalerOptions opts_;
  double scale_;
  int64_t clean_steps_ = 0, skipped_ = 0;
};

}  // namespace strata
