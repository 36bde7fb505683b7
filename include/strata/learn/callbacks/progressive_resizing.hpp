// ProgressiveResizing: train on smaller images first and grow them to full size as training goes
// on (fastbook ch. 7's progressive resizing, as a callback the way fastxtend's ProgressiveResize
// does it; fast.ai's DAWNBench ImageNet entry trained at 128 px, then 224, then 288).
//
//   learn.add_cb(std::make_shared<ProgressiveResizing>(ProgressiveResizingOptions{.initial_scale = 0.5}));
//   learn.fit_one_cycle(10, 1e-3);
//
// Schedule over the fit (pct = learn.pct_train): the first `start` of training uses initial_scale x
// the batch's own size, then the size grows linearly to full size at `finish`, rounded down to a
// multiple of `increase_by` pixels; from `finish` on, batches pass untouched. The training batch
// xb[0] ([B, C, H, W], floating) is resampled in before_batch with one bilinear resize (PyTorch's
// interpolate, align_corners=False). Validation always sees full-size images. The model must accept
// any input size (an adaptive pool before its head, as every vision_learner model has).
#include "strata/learn/learner.hpp"

#ifndef STRATA_LEARN_CALLBACKS_PROGRESSIVE_RESIZING_HPP
#define STRATA_LEARN_CALLBACKS_PROGRESSIVE_RESIZING_HPP

#include <algorithm>
#include <cmath>

#include "strata/data/resize.hpp"

namespace strata {

struct ProgressiveResizingOptions {
  double initial_scale = 0.5;  // the first size as a fraction of the full size
  double start = 0.5;          // pct_train where the size starts growing
  double finish = 0.75;        // pct_train where it reaches full size
  int64_t increase_by = 4;     // sizes are multiples of this (and at least this)
};

class ProgressiveResizing : public Callback {
 public:
  ProgressiveResizingOptions o;
  int64_t current_h = 0, current_w = 0;  // the size of the last resized training batch (0: untouched)

  explicit ProgressiveResizing(ProgressiveResizingOptions opts = {}) : o(opts) {
    STRATA_CHECK(o.initial_scale > 0 && o.initial_scale <= 1 && o.start >= 0 && o.start <= o.finish &&
                     o.finish <= 1 && o.increase_by >= 1,
                 "ProgressiveResizing", "got initial_scale = ", o.initial_scale, ", start = ", o.start,
                 ", finish = ", o.finish, ", increase_by = ", o.increase_by,
                 ", expected 0 < initial_scale <= 1, 0 <= start <= finish <= 1, increase_by >= 1");
    order = -5;  // before anything that reads the batch
  }
  std::string name() const override { return "ProgressiveResizing"; }

  /// The scale of the full size used at training progress pct.
  double scale_at(double pct) const {
    if (pct >= o.finish) return 1.0;
    if (pct <= o.start) return o.initial_scale;
    return o.initial_scale + (1.0 - o.initial_scale) * (pct - o.start) / (o.finish - o.start);
  }
  /// The side used for a full side n at training progress pct.
  int64_t side_at(int64_t n, double pct) const {
    const double s = scale_at(pct);
    if (s >= 1.0) return n;
    const int64_t m = std::max<int64_t>(o.increase_by, int64_t(std::floor(n * s / double(o.increase_by))) * o.increase_by);
    return std::min(m, n);
  }

  void before_batch() override {
    current_h = current_w = 0;
    if (!learn->training || learn->xb.empty()) return;
    Tensor& x = learn->xb[0];
    STRATA_CHECK(x.dim() == 4 && x.is_floating_point(), "ProgressiveResizing", "got an input batch of shape ",
                 x.shape(), " and dtype ", x.dtype(), ", expected a floating [B, C, H, W] image batch");
    const int64_t H = x.size(2), W = x.size(3);
    const int64_t h = side_at(H, learn->pct_train), w = side_at(W, learn->pct_train);
    if (h == H && w == W) return;
    NoGrad ng;
    x = resample_bilinear(x, {.y0 = 0, .x0 = 0, .h = double(H), .w = double(W), .OH = h, .OW = w,
                              .pad = PadMode::border});
    current_h = h, current_w = w;
  }
};

}  // namespace strata

#endif  // STRATA_LEARN_CALLBACKS_PROGRESSIVE_RESIZING_HPP
