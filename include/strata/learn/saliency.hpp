// saliency: which input pixels the model's class score is most sensitive to (Simonyan, Vedaldi,
// Zisserman 2014, "Deep Inside Convolutional Networks", https://arxiv.org/abs/1312.6034).
//
//   Tensor s = saliency(learn, x);                 // x [C, H, W] as the valid loader gives it -> [H, W]
//   plot_saliency("saliency.png", learn, x);       // the image and its heat map side by side
//
// Math: for logits z = model(x) (before softmax) and class c (default: argmax_k z_k, the predicted
// class), the map is M[h, w] = max_ch |dz_c / dx[ch, h, w]|. For a linear model z = W x + b this is
// max_ch |W[c, ch, h, w]|. A batch x [B, C, H, W] gives [B, H, W], each item for its own class
// (one target given: the same class for every item); the items do not interact in eval mode.
// Contract: the model runs in eval mode (BatchNorm uses its running stats, Dropout is off) with
// grad recording on even inside NoGrad; every module's training flag and every parameter's
// requires_grad and .grad are as they were afterwards (parameters do not require grad during the
// pass, so no parameter gradient is made). x is not changed. Callbacks do not run (the model is
// called directly).
// plot_saliency: one row per item, two cells of show_tuples' grid: the image (a normalized one
// min-max scaled, as show_batch does) titled with the class name, and the map divided by its 99th
// percentile and clipped at 1 (a few extreme pixels, often at the borders, would leave the rest of
// a max-scaled map dark), coloured with matplotlib's "inferno" and blended at alpha 0.5 over the
// grey image: 0.5 * grey + 0.5 * inferno(t); titled "saliency: <name>". Not in fastai; reference:
// the paper's section 3.1.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "strata/data/show.hpp"
#include "strata/learn/learner.hpp"

namespace strata {

namespace detail {

/// Puts back every module's training flag and every parameter's requires_grad when it goes away.
struct ModelStateGuard {
  nn::Module& model;
  std::vector<bool> training, requires_grad;
  std::vector<Tensor> params;
  explicit ModelStateGuard(nn::Module& m) : model(m), params(m.parameters()) {
    model.apply([&](nn::Module& mod) { training.push_back(mod.training); });
    for (Tensor& p : params) requires_grad.push_back(p.requires_grad());
  }
  ~ModelStateGuard() {
    size_t i = 0;
    model.apply([&](nn::Module& mod) {
      if (i < training.size()) mod.training = training[i++];
    });
    for (size_t k = 0; k < params.size(); ++k) params[k].requires_grad_(requires_grad[k]);
  }
  ModelStateGuard(const ModelStateGuard&) = delete;
  ModelStateGuard& operator=(const ModelStateGuard&) = delete;
};

/// (map [B, H, W], class [B]) for x [B, C, H, W].
inline std::pair<Tensor, Tensor> saliency_batch(Learner& learn, const Tensor& x, std::optional<int64_t> target) {
  const char* op = "saliency";
  ModelStateGuard guard(*learn.model);
  learn.model->eval();
  for (Tensor& p : guard.params) p.requires_grad_(false);
  EnableGrad eg;
  Tensor xi = to(x.detach(), learn.device).clone();  // on the model's device
  xi.requires_grad_(true);
  const Tensor z = learn.model->forward_batch({xi});
  STRATA_CHECK(z.defined() && z.dim() == 2 && z.size(0) == x.size(0), op, "got model output of shape ",
               z.defined() ? to_string(z.shape()) : std::string("(undefined)"), " for ", x.size(0),
               " items, expected logits [B, n_classes]");
  const int64_t K = z.size(1);
  Tensor cls;
  if (target) {
    STRATA_CHECK(*target >= 0 && *target < K, op, "got target ", *target, " for ", K,
                 " classes, expected a class index in [0, ", K, ")");
    cls = full({x.size(0)}, double(*target), {.dtype = DType::i64, .device = z.device()});
  } else {
    cls = argmax(z.detach(), 1).to(DType::i64);
  }
  // the sum of each item's own class score: d(sum)/dx_b = dz_b[c_b]/dx_b, items being independent;
  // the class picked by a one-hot mask (z * [k == c_b]) rather than gather, so it runs on any device
  const Tensor hit = eq(arange(double(K), {.dtype = DType::i64, .device = z.device()}).unsqueeze(0), cls.unsqueeze(1));
  const Tensor score = sum(mul(z, hit.to(z.dtype())));
  STRATA_CHECK(score.requires_grad(), op, "got class scores that do not depend on the input, expected a model of x");
  score.backward();
  NoGrad ng;
  const Tensor g = xi.grad().defined() ? xi.grad() : zeros_like(xi);
  return {to(amax(abs(g.to(DType::f32)), {1}), kCPU), to(cls, kCPU)};
}

/// Checks x and gives it as [B, C, H, W].
inline Tensor saliency_input(const Tensor& x, const char* op) {
  STRATA_CHECK(x.defined() && (x.dim() == 3 || x.dim() == 4) && x.numel() > 0, op, "got x of shape ",
               x.defined() ? to_string(x.shape()) : std::string("(undefined)"),
               ", expected one item [C, H, W] or a batch [B, C, H, W] as the valid loader gives it");
  STRATA_CHECK(x.is_floating_point(), op, "got x of dtype ", x.dtype(),
               ", expected a floating input (as the valid loader's transforms give it)");
  return x.dim() == 3 ? x.unsqueeze(0) : x;
}

}  // namespace detail

/// |d score_c / dx| maxed over channels: x [C, H, W] -> [H, W], x [B, C, H, W] -> [B, H, W]; c is
/// target, else each item's predicted class (the raw logit, before softmax).
inline Tensor saliency(Learner& learn, const Tensor& x, std::optional<int64_t> target = {}) {
  const Tensor xb = detail::saliency_input(x, "saliency");
  const Tensor m = detail::saliency_batch(learn, xb, target).first;
  return x.dim() == 3 ? m.select(0, 0) : m;
}

/// The image(s) and the saliency heat map over them, side by side, as a PNG (see the top of this file).
inline void plot_saliency(const std::string& path, Learner& learn, const Tensor& x, std::optional<int64_t> target = {},
                          int cell = 224) {
  const char* op = "plot_saliency";
  const Tensor xb = detail::saliency_input(x, op);
  STRATA_CHECK(xb.size(1) == 1 || xb.size(1) == 3, op, "got x with ", xb.size(1),
               " channels, expected 1 or 3 (an image to draw)");
  auto [maps, cls] = detail::saliency_batch(learn, xb, target);
  NoGrad ng;
  const int64_t B = xb.size(0), H = xb.size(2), W = xb.size(3);
  std::vector<Tuple> cells;
  std::vector<std::string> titles;
  for (int64_t b = 0; b < B; ++b) {
    const Tensor img = detail::display_range(xb.select(0, b).detach()).to(DType::f32).clamp(0.0, 1.0);
    const Tensor grey = mean(img, {0}).contiguous();  // [H, W]
    const Tensor m = maps.select(0, b).contiguous();
    std::vector<float> sorted(m.data_ptr<float>(), m.data_ptr<float>() + H * W);
    const auto k = sorted.begin() + std::ptrdiff_t(0.99 * double(H * W - 1));
    std::nth_element(sorted.begin(), k, sorted.end());
    const float top = *k > 0 ? *k : amax(m).item<float>();  // the 99th percentile (the max when it is 0)
    Tensor over = empty({3, H, W}, {.dtype = DType::u8});
    const float *gp = grey.data_ptr<float>(), *mp = m.data_ptr<float>();
    uint8_t* op8 = over.data_ptr<uint8_t>();
    for (int64_t p = 0; p < H * W; ++p) {
      const Color c = inferno(top > 0 ? std::min(1.0, double(mp[p]) / top) : 0.0);
      const double g = gp[p] * 255.0, rgb[3] = {double(c.r), double(c.g), double(c.b)};
      for (int k = 0; k < 3; ++k) op8[k * H * W + p] = uint8_t(std::lround(0.5 * g + 0.5 * rgb[k]));
    }
    const int64_t c = cls.data_ptr<int64_t>()[b];
    const std::string name = c < int64_t(learn.dls.vocab.size()) ? learn.dls.vocab[size_t(c)] : std::to_string(c);
    cells.push_back({Image{img}});
    cells.push_back({Image{over}});
    titles.push_back((target ? "target: " : "pred: ") + name);
    titles.push_back("saliency: " + name);
  }
  show_tuples(path, cells, {.max_n = int(cells.size()), .ncols = 2, .cell = cell, .titles = titles});
}

}  // namespace strata
