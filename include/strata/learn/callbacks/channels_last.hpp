// ChannelsLast: feeds the model channels-last batches (fastai v2, callback/channelslast.py, and
// learn.to_channelslast()).
//
//   learn.to_channelslast().fit_one_cycle(5, 1e-2);     // or: learn.add_cb(std::make_shared<ChannelsLast>())
//
// At before_batch every 4-D floating-point input of xb becomes channels-last: the same [B, C, H, W]
// tensor stored as [B, H, W, C] (contiguous(x, MemoryFormat::channels_last), strides
// {H*W*C, 1, W*C, C}). conv2d keeps a channels-last input's layout in its output, so the network's
// activations stay channels-last and the convolutions skip their NCHW <-> NHWC transposes. Values do
// not change. Other inputs (labels, 2-D features) pass untouched.
// Differences from fastai: PyTorch needs the model converted too (model.to(memory_format=...)); here
// the weights keep their layout (the convolution picks how it reads them), so the optimizer and
// checkpoints see the same parameters. fastai's to_channelslast also turns on fp16 mixed precision
// by default; here precision is separate: learn.to_channelslast().to_bf16().
// Order 1: after the callbacks that replace xb at before_batch (MixUp, CutMix, ProgressiveResizing, order 0).
#pragma once

#include <string>

#include "strata/learn/learner.hpp"

namespace strata {

/// Makes every 4-D floating-point input channels-last at before_batch (fastai's ChannelsLast).
class ChannelsLast : public Callback {
 public:
  ChannelsLast() { order = 1; }
  std::string name() const override { return "ChannelsLast"; }

  void before_batch() override {
    for (Tensor& x : learn->xb)
      if (x.defined() && x.dim() == 4 && is_floating(x.dtype())) x = contiguous(x, MemoryFormat::channels_last);
  }
};

inline Learner& Learner::to_channelslast() {
  remove_cb<ChannelsLast>();
  return add_cb(std::make_shared<ChannelsLast>());
}

}  // namespace strata
