// vision_learner: a pretrained (or fresh) convnet body, fastai's head, a body/head splitter, and a
// Learner that is frozen when the body is pretrained (fastai v2, vision/learner.py).
//
//   auto learn = vision_learner(dls, arch::resnet18(), {.pretrained = "resnet18.safetensors",
//                                                       .learner = {.metrics = {accuracy()}}});
//   learn.fine_tune(3, 2e-3);
//
// model = Sequential(body, head) (fastai's layout: model[0] body, model[1] head):
//   body = create_body(arch.make(n_in), arch.cut): the model's children before the cut, under the
//          names they had in the model ("conv1", "layer1", ... for torchvision's ResNet; "0".."7" for
//          XResNet), so the body's state_dict keys are the model's own: "conv1.weight",
//          "layer4.1.bn2.running_var"; in the Learner's model they are prefixed "0.".
//   head = create_head(nf, n_out, o.head) (nf: the body's output channels, found by running a dummy
//          [1, n_in, 32, 32] input, doubling the size while the body refuses it; fastai's
//          num_features_model), initialised by fastai's apply_init(kaiming_normal_) unless !init_head.
//   splitter = arch.split (resnets: body[:6], body[6:], head; xresnets: body[:3], body[3:], head;
//          others: body, head) unless o.learner.splitter is set.
//   pretrained: the body's weights are loaded (load_body) and learn.freeze() trains only the head.
//
// create_head (fastai's, with LinBnDrop's layers spliced in), for lin_ftrs = {512}, ps = 0.5:
//   AdaptiveConcatPool2d, Flatten, BatchNorm1d(2nf), Dropout(0.25), Linear(2nf, 512, bias=False), ReLU,
//   BatchNorm1d(512), Dropout(0.5), Linear(512, n_out, bias=False)
//   (batch norms: weight 1, bias 1e-3 as fastai's BatchNorm(); a Dropout of p = 0 is left out;
//   lin_first puts Dropout(ps[0]) first and each Linear before its act/BN/Dropout, ending with a
//   Linear(lin_ftrs[-2], n_out) with bias; bn_final: BatchNorm1d(n_out, momentum 0.01); y_range:
//   SigmoidRange(lo, hi)).
// create_body(model, cut, n_in): cut = nullopt takes fastai's has_pool_type rule (cut before the last
//   child that is or holds a *Pool1d/2d/3d layer); an int is a Python index into the children (-2:
//   all but the last two). n_in != 0 and != the first layer's in-channels replaces the first conv's
//   weight [out, c, kh, kw] by fastai's _load_pretrained_weights rule, generalised from c = 3:
//   n_in = 1: the sum over the c channels; n_in < c: the first n_in channels * c / n_in (1.5 for 2);
//   n_in > c: the c channels, then zeros.
//
// Pretrained files (load_body): a safetensors file holding
//   - the FULL arch's state_dict (torchvision keys, as tools/convert_torchvision.py writes them):
//     every body key must be there; the keys of the cut-off layers (fc.weight, fc.bias) are ignored,
//   - a body saved by save_body(learn, path) ("format": "strata.body"), or
//   - a Learner checkpoint of a vision_learner model (learn.save(name), "format": "strata.Learner"):
//     its "0.*" tensors are the body, its head "1.*" and optimizer state "opt/*" are ignored.
//   A missing key, an unknown key or a wrong shape throws strata::Error naming the file, the key and
//   both shapes; nothing is copied until every check passed. The head never comes from the file.
//   When the file's first conv has c in-channels and the model n_in, the weight is adapted as above.
// Transfer between tasks (pretrain, then fine-tune on other classes):
//   auto a = vision_learner(dls_0_4, arch::fashion_resnet());  a.fit_one_cycle(3, 1e-2);
//   save_body(a, "models/body.safetensors");
//   auto b = vision_learner(dls_5_9, arch::fashion_resnet(), {.pretrained = "models/body.safetensors"});
//   b.fine_tune(5, 1e-2);
//
// Unlike fastai: vision_learner returns a VisionLearner (a Learner with body()/head()), because a
// Learner cannot be moved out of a function after freeze(); the imagenet Normalize is not added to
// the loaders (add it to the data pipeline); cut is std::optional<int> (nullopt = fastai's None).
// Reference: fastai/vision/learner.py (create_body, create_head, create_vision_model, model_meta,
// _resnet_split, _xresnet_split, _update_first_layer, vision_learner), fastai/layers.py (LinBnDrop).
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "strata/io/safetensors.hpp"
#include "strata/learn/learner.hpp"
#include "strata/nn/layers.hpp"
#include "strata/nn/loss.hpp"
#include "strata/nn/models/resnet.hpp"
#include "strata/nn/models/xresnet.hpp"

namespace strata {

// ---------------------------------------------------------------------------------------------
// Layers the head and body need

/// A Sequential whose children keep the names they had in the model they were cut from.
class NamedSequential : public nn::Sequential {
 public:
  std::vector<std::string> names;  // names[i] for layers[i] (a layer added later is named by its index)
  NamedSequential(std::vector<std::string> names_, std::vector<nn::ModulePtr> layers_)
      : nn::Sequential(std::move(layers_)), names(std::move(names_)) {
    STRATA_CHECK(names.size() == layers.size(), "NamedSequential", "got ", names.size(), " names for ", layers.size(),
                 " layers, expected one name per layer");
  }
  void visit(nn::Visitor& v) override {
    for (size_t i = 0; i < layers.size(); ++i) v.child(i < names.size() ? names[i] : std::to_string(i), *layers[i]);
  }
};

/// fastai's SigmoidRange: lo + (hi - lo) * sigmoid(x).
class SigmoidRange : public nn::Module {
 public:
  double lo, hi;
  SigmoidRange(double lo_, double hi_) : lo(lo_), hi(hi_) {}
  Tensor forward(const Tensor& x) override { return sigmoid(x) * (hi - lo) + lo; }
  std::string type_name() const override { return "SigmoidRange"; }
  std::string extra_repr() const override { return "low=" + std::to_string(lo) + ", high=" + std::to_string(hi); }
};

// ---------------------------------------------------------------------------------------------
// Body

/// fastai's has_pool_type: m is a pooling layer (type name ending in Pool1d/2d/3d) or holds one.
inline bool has_pool_type(nn::Module& m) {
  const std::string t = m.type_name();
  for (const char* s : {"Pool1d", "Pool2d", "Pool3d"})
    if (t.size() >= 6 && t.compare(t.size() - 6, 6, s) == 0) return true;
  for (auto& [n, c] : m.named_children())
    if (has_pool_type(*c)) return true;
  return false;
}

/// The module that owns m's first parameter, with its dotted name (fastai's _get_first_layer).
inline std::pair<std::string, nn::Module*> first_layer(nn::Module& m) {
  const nn::NamedTensors ps = m.named_parameters();
  STRATA_CHECK(!ps.empty(), "first_layer", "got a ", m.type_name(), " without parameters, expected a model");
  const std::string& p = ps.front().first;
  const std::string owner = p.rfind('.') == std::string::npos ? "" : p.substr(0, p.rfind('.'));
  for (auto& [name, mod] : m.named_modules())
    if (name == owner) return {owner, mod};
  detail::fail("first_layer", "got parameter ", p, " without its module, expected one");
}

/// A first conv weight [out, c, kh, kw] adapted to n_in input channels (fastai's
/// _load_pretrained_weights, generalised from c = 3): 1: sum over c; < c: first n_in * c / n_in;
/// > c: the c channels then zeros.
inline Tensor adapt_first_conv_weight(const Tensor& w, int64_t n_in) {
  STRATA_CHECK(w.dim() == 4, "adapt_first_conv_weight", "got a weight of shape ", w.shape(),
               ", expected a conv weight [out, in, kh, kw]");
  STRATA_CHECK(n_in >= 1, "adapt_first_conv_weight", "got n_in = ", n_in, ", expected n_in >= 1");
  NoGrad ng;
  const int64_t c = w.size(1);
  if (n_in == c) return w.detach().clone();
  if (n_in == 1) return sum(w, {1}, true);
  if (n_in < c) return slice(w, 1, 0, n_in) * (double(c) / double(n_in));
  return cat({w.detach(), zeros({w.size(0), n_in - c, w.size(2), w.size(3)}, {.dtype = w.dtype()})}, 1);
}

/// fastai's _update_first_layer: gives the first layer (a Conv2d) n_in input channels, its weight
/// adapted from the current one (adapt_first_conv_weight). No-op when it already has n_in.
inline void update_first_layer(nn::Module& model, int64_t n_in) {
  auto [name, layer] = first_layer(model);
  auto* conv = dynamic_cast<nn::Conv2d*>(layer);
  STRATA_CHECK(conv != nullptr, "update_first_layer", "got a first layer \"", name, "\" of type ", layer->type_name(),
               ", expected a Conv2d (changing the input channels needs one)");
  STRATA_CHECK(conv->options.groups == 1, "update_first_layer", "got a first conv with groups = ",
               conv->options.groups, ", expected groups = 1");
  if (conv->options.in == n_in) return;
  Tensor w = adapt_first_conv_weight(conv->weight, n_in).contiguous();
  w.requires_grad_(conv->weight.requires_grad());
  conv->weight = w;
  conv->options.in = n_in;
}

/// The body of `model`: its children before `cut` (nullopt: before the last child that has a pooling
/// layer; an int: a Python index, -2 = all but the last two), under their own names. n_in != 0 first
/// gives the model's first conv n_in input channels (update_first_layer). The body shares the
/// model's layers.
inline std::shared_ptr<NamedSequential> create_body(nn::ModulePtr model, std::optional<int> cut = {},
                                                    int64_t n_in = 0) {
  STRATA_CHECK(model != nullptr, "create_body", "got a null model, expected a module");
  if (n_in != 0) update_first_layer(*model, n_in);
  const auto kids = model->named_children();
  const int n = int(kids.size());
  int c = 0;
  if (!cut) {
    c = -1;
    for (int i = n - 1; i >= 0 && c < 0; --i)
      if (has_pool_type(*kids[size_t(i)].second)) c = i;
    STRATA_CHECK(c >= 0, "create_body", "got a ", model->type_name(),
                 " without a pooling child, expected one (or pass cut, e.g. -2)");
  } else {
    c = *cut < 0 ? n + *cut : *cut;
    STRATA_CHECK(c >= 1 && c <= n, "create_body", "got cut = ", *cut, " for a ", model->type_name(), " with ", n,
                 " children, expected a Python index in [", -(n - 1), ", ", n, "] that keeps at least one");
  }
  std::vector<std::string> names;
  std::vector<nn::ModulePtr> layers;
  for (int i = 0; i < c; ++i) {
    auto& [name, m] = kids[size_t(i)];
    nn::ModulePtr p;
    try {
      p = m->shared_from_this();
    } catch (const std::bad_weak_ptr&) {
      detail::fail("create_body", "got child \"", name, "\" of ", model->type_name(),
                   " not held by a shared_ptr, expected children held as shared_ptr members");
    }
    names.push_back(name);
    layers.push_back(std::move(p));
  }
  return std::make_shared<NamedSequential>(std::move(names), std::move(layers));
}

/// Output channels of `body` (fastai's num_features_model): one dummy [1, n_in, s, s] input in eval
/// mode, s = 32, 64, ... 2048 until the body takes it. Training flags are restored.
inline int64_t num_features_model(nn::Module& body, int64_t n_in) {
  std::vector<std::pair<nn::Module*, bool>> flags;
  body.apply([&](nn::Module& m) { flags.emplace_back(&m, m.training); });
  struct Restore {
    std::vector<std::pair<nn::Module*, bool>>& f;
    ~Restore() {
      for (auto& [m, t] : f) m->training = t;
    }
  } restore{flags};
  body.eval();
  NoGrad ng;
  for (int64_t s = 32;; s *= 2) {
    try {
      const Tensor out = body(zeros({1, n_in, s, s}));
      STRATA_CHECK(out.dim() >= 2, "num_features_model", "got a body output of shape ", out.shape(),
                   ", expected [B, C, ...]");
      return out.size(1);
    } catch (const Error&) {
      if (s >= 2048) throw;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Head

/// create_head's options (fastai's arguments and defaults).
struct HeadOptions {
  std::vector<int64_t> lin_ftrs = {512};  // hidden sizes between 2nf (or nf) and n_out
  double ps = 0.5;                        // last dropout; the others get ps / 2
  bool pool = true;                       // pool and flatten first (false: the body gives [B, nf])
  bool concat_pool = true;                // AdaptiveConcatPool2d (2nf features), else AdaptiveAvgPool2d
  bool first_bn = true;                   // batch norm before the first Linear
  bool bn_final = false;                  // BatchNorm1d(n_out, momentum 0.01) at the end
  bool lin_first = false;                 // Linear before its batch norm and dropout
  std::optional<std::pair<double, double>> y_range = {};  // SigmoidRange(lo, hi) at the end
};

namespace detail {
/// fastai's BatchNorm(nf, ndim=1): weight 1, bias 1e-3.
inline nn::ModulePtr head_bn(int64_t nf) {
  auto bn = std::make_shared<nn::BatchNorm1d>(nf);
  nn::init::constant_(bn->bias, 1e-3);
  return bn;
}
}  // namespace detail

/// fastai's create_head: nf features from the body, n_out outputs (layers at the top of this file).
inline std::shared_ptr<nn::Sequential> create_head(int64_t nf, int64_t n_out, HeadOptions o = {}) {
  STRATA_CHECK(nf >= 1 && n_out >= 1, "create_head", "got nf = ", nf, " and n_out = ", n_out, ", expected both >= 1");
  STRATA_CHECK(o.ps >= 0 && o.ps <= 1, "create_head", "got ps = ", o.ps, ", expected a probability");
  if (o.pool && o.concat_pool) nf *= 2;
  std::vector<int64_t> ftrs{nf};
  ftrs.insert(ftrs.end(), o.lin_ftrs.begin(), o.lin_ftrs.end());
  ftrs.push_back(n_out);
  const size_t n_lin = ftrs.size() - 1;
  std::vector<double> ps(n_lin - 1, o.ps / 2);  // fastai: [ps/2] * (len(lin_ftrs) - 2) + [ps]
  ps.push_back(o.ps);
  auto head = std::make_shared<nn::Sequential>();
  if (o.pool) {
    if (o.concat_pool) head->add(nn::AdaptiveConcatPool2d(1));
    else head->add(nn::AdaptiveAvgPool2d(1));
    head->add(nn::Flatten());
  }
  size_t first_p = 0;
  if (o.lin_first) {
    head->add(nn::Dropout(ps[0]));  // ps.pop(0): the loop below then runs one Linear less (zip)
    first_p = 1;
  }
  for (size_t i = 0; i + first_p < ps.size(); ++i) {
    const int64_t ni = ftrs[i], no = ftrs[i + 1];
    const bool bn = i == 0 ? o.first_bn : true;
    const double p = ps[i + first_p];
    const bool act = i + 1 < n_lin;
    // fastai's LinBnDrop(ni, no, bn, p, act, lin_first)
    if (o.lin_first) {
      head->add(nn::Linear(ni, no, !bn));
      if (act) head->add(nn::ReLU());
      if (bn) head->add(detail::head_bn(no));
      if (p != 0) head->add(nn::Dropout(p));
    } else {
      if (bn) head->add(detail::head_bn(ni));
      if (p != 0) head->add(nn::Dropout(p));
      head->add(nn::Linear(ni, no, !bn));
      if (act) head->add(nn::ReLU());
    }
  }
  if (o.lin_first) head->add(nn::Linear(ftrs[n_lin - 1], n_out));
  if (o.bn_final) head->add(nn::BatchNorm1d(n_out, {.momentum = 0.01}));
  if (o.y_range) head->add(SigmoidRange(o.y_range->first, o.y_range->second));
  return head;
}

/// fastai's apply_init(m, kaiming_normal_): every layer but norm layers gets kaiming_normal_ weights
/// and zero biases (layers whose parameters do not require grad are left as they are).
inline void apply_init(nn::Module& m) {
  m.apply([](nn::Module& l) {
    if (dynamic_cast<nn::BatchNormBase*>(&l) || dynamic_cast<nn::LayerNorm*>(&l)) return;
    nn::Visitor v;
    bool trainable = false, first = true;
    v.on_param = [&](const std::string&, Tensor& t) {
      if (first) trainable = t.requires_grad();
      first = false;
    };
    l.visit(v);
    if (!trainable) return;
    v.on_param = [](const std::string& name, Tensor& t) {
      if (name == "weight" && t.dim() >= 2) nn::init::kaiming_normal_(t);
      if (name == "bias") nn::init::zeros_(t);
    };
    l.visit(v);
  });
}

// ---------------------------------------------------------------------------------------------
// Architectures (fastai's model_meta)

/// The parameters of layers [lo, hi) of a Sequential (hi clamped to its size).
inline std::vector<Tensor> params_of(const nn::Sequential& s, size_t lo, size_t hi = SIZE_MAX) {
  std::vector<Tensor> out;
  for (size_t i = lo; i < std::min(hi, s.size()); ++i)
    for (auto& p : s[i].parameters()) out.push_back(p);
  return out;
}

namespace detail {
inline const nn::Sequential& as_sequential(nn::Module& m, const char* op) {
  auto* s = dynamic_cast<nn::Sequential*>(&m);
  STRATA_CHECK(s != nullptr, op, "got a ", m.type_name(), ", expected a Sequential body");
  return *s;
}
}  // namespace detail

/// How vision_learner builds and splits an architecture.
struct VisionArch {
  std::string name;
  std::function<nn::ModulePtr(int64_t n_in)> make;  // the whole classifier, for n_in input channels
  std::optional<int> cut = {};                      // create_body's cut (nullopt: the has_pool_type rule)
  /// Parameter groups from (body, head); empty: default_split.
  std::function<ParamGroups(nn::Module& body, nn::Module& head)> split = {};
};

/// fastai's default_split: {body, head}.
inline ParamGroups default_split(nn::Module& body, nn::Module& head) { return {body.parameters(), head.parameters()}; }
/// fastai's _resnet_split: {body[:6], body[6:], head}.
inline ParamGroups resnet_split(nn::Module& body, nn::Module& head) {
  const nn::Sequential& b = detail::as_sequential(body, "resnet_split");
  return {params_of(b, 0, 6), params_of(b, 6), head.parameters()};
}
/// fastai's _xresnet_split: {body[:3] (the stem), body[3:], head}.
inline ParamGroups xresnet_split(nn::Module& body, nn::Module& head) {
  const nn::Sequential& b = detail::as_sequential(body, "xresnet_split");
  return {params_of(b, 0, 3), params_of(b, 3), head.parameters()};
}

namespace arch {
/// torchvision's resnet18 (cut -2: before avgpool and fc; 3 groups).
inline VisionArch resnet18() {
  return {"resnet18", [](int64_t n_in) { return nn::ModulePtr(nn::resnet18(1000, n_in)); }, -2, resnet_split};
}
inline VisionArch resnet34() {
  return {"resnet34", [](int64_t n_in) { return nn::ModulePtr(nn::resnet34(1000, n_in)); }, -2, resnet_split};
}
/// fastai's xresnets (cut -4: before pool, flatten, dropout, linear; 3 groups: stem, rest, head).
inline VisionArch xresnet18() {
  return {"xresnet18", [](int64_t n_in) { return nn::ModulePtr(nn::xresnet18(1000, n_in)); }, -4, xresnet_split};
}
inline VisionArch xresnet34() {
  return {"xresnet34", [](int64_t n_in) { return nn::ModulePtr(nn::xresnet34(1000, n_in)); }, -4, xresnet_split};
}
inline VisionArch xresnet50() {
  return {"xresnet50", [](int64_t n_in) { return nn::ModulePtr(nn::xresnet50(1000, n_in)); }, -4, xresnet_split};
}
/// The flagship's small ResNet for 28x28 grey images (examples/01_fashion_mnist.cpp): ConvLayer(n_in, 16),
/// ResBlock(1, 16, 32, 2), ResBlock(1, 32, 64, 2), ResBlock(1, 64, 128, 2) (128 x 4 x 4) | pool, flatten,
/// Linear(128, 10); cut -3 (the body gives 128 channels), 2 groups: body, head.
inline VisionArch fashion_resnet() {
  return {"fashion_resnet",
          [](int64_t n_in) {
            auto m = std::make_shared<nn::Sequential>(
                nn::ConvLayer({.in = n_in, .out = 16}), nn::ResBlock(1, 16, 32, 2), nn::ResBlock(1, 32, 64, 2),
                nn::ResBlock(1, 64, 128, 2), nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Linear(128, 10));
            nn::init_cnn(*m);
            return nn::ModulePtr(m);
          },
          -3, default_split};
}
}  // namespace arch

// ---------------------------------------------------------------------------------------------
// Saving and loading bodies

/// The body of a vision_learner model (model[0] of Sequential(body, head)).
inline nn::Module& body_of(const Learner& learn) {
  auto* s = dynamic_cast<nn::Sequential*>(learn.model.get());
  STRATA_CHECK(s != nullptr && s->size() == 2, "body_of", "got a model of type ", learn.model->type_name(),
               ", expected Sequential(body, head) as vision_learner makes");
  return (*s)[0];
}

/// The head of a vision_learner model (model[1]).
inline nn::Module& head_of(const Learner& learn) {
  body_of(learn);  // the same checks
  return (*static_cast<nn::Sequential*>(learn.model.get()))[1];
}

/// Writes the body's state_dict to `path` (safetensors, "format": "strata.body", atomically); returns path.
inline std::string save_body(nn::Module& body, const std::string& path) {
  const std::filesystem::path p(path);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
  std::vector<std::pair<std::string, Tensor>> ts;
  for (auto& [k, t] : body.state_dict()) ts.emplace_back(k, t);
  save_safetensors(path, ts, {{"format", "strata.body"}});
  return path;
}
/// Writes the body of a vision_learner's model to `path`.
inline std::string save_body(const Learner& learn, const std::string& path) { return save_body(body_of(learn), path); }

/// Loads a pretrained file into `body` (the formats and checks are at the top of this file).
/// ignored: keys the file may hold that are not the body's (the cut-off layers of the full model).
inline void load_body(nn::Module& body, const std::string& path, const std::vector<std::string>& ignored = {}) {
  STRATA_CHECK(std::filesystem::exists(path), "load_body", "got pretrained file ", path,
               ", which does not exist; expected a safetensors file");
  SafetensorsFile f = read_safetensors(path);
  const bool learner_fmt = f.metadata.count("format") && f.metadata.at("format") == "strata.Learner";
  std::map<std::string, Tensor> file;
  for (auto& [k, t] : f.tensors) {
    if (!learner_fmt) file[k] = t;
    else if (k.rfind("0.", 0) == 0) file[k.substr(2)] = t;  // the body; head "1.*" and "opt/*" are ignored
  }
  nn::NamedTensors mine = body.state_dict();
  const std::string first = body.named_parameters().empty() ? "" : body.named_parameters().front().first;
  std::set<std::string> mine_keys;
  nn::NamedTensors sd;
  for (auto& [k, t] : mine) {
    mine_keys.insert(k);
    auto it = file.find(k);
    STRATA_CHECK(it != file.end(), "load_body", "got pretrained file ", path, " without \"", k, "\" (of shape ",
                 t.shape(), "), expected every key of the body (", mine.size(), " tensors)");
    Tensor v = it->second;
    if (k == first && v.dim() == 4 && t.dim() == 4 && v.size(1) != t.size(1) && v.size(0) == t.size(0) &&
        v.size(2) == t.size(2) && v.size(3) == t.size(3))
      v = adapt_first_conv_weight(v, t.size(1));  // fastai's _update_first_layer on pretrained weights
    STRATA_CHECK(v.shape() == t.shape(), "load_body", "got \"", k, "\" of shape ", v.shape(), " in pretrained file ",
                 path, ", expected shape ", t.shape(), " (the body's)");
    sd.emplace_back(k, v);
  }
  const std::set<std::string> ok(ignored.begin(), ignored.end());
  for (auto& [k, t] : file)
    STRATA_CHECK(mine_keys.count(k) || ok.count(k), "load_body", "got \"", k, "\" in pretrained file ", path,
                 ", which is not a key of the body, expected only the body's keys",
                 ignored.empty() ? std::string() : std::string(" and those of the layers cut off"));
  body.load_state_dict(sd, true);
}

// ---------------------------------------------------------------------------------------------
// The learner

/// vision_learner's options.
struct VisionLearnerOptions {
  std::string pretrained = "";  // safetensors file of the full arch, of a saved body, or a Learner checkpoint
  int64_t n_out = 0;            // 0: dls.c
  int64_t n_in = 0;             // 0: the channels of the train loader's first image
  HeadOptions head = {};
  nn::Loss loss_func = {};      // default: CrossEntropyLossFlat when dls.c > 0
  LearnerOptions learner = {};  // learner.splitter overrides the arch's
  bool init_head = true;        // fastai's apply_init(head, kaiming_normal_)
  std::optional<int> cut = {};  // overrides arch.cut
};

/// A Learner over Sequential(body, head), made by vision_learner.
class VisionLearner : public Learner {
 public:
  VisionArch arch;

  VisionLearner(DataLoaders dls_, VisionArch arch_, VisionLearnerOptions o = {})
      : VisionLearner(build(dls_, arch_, o), arch_, !o.pretrained.empty()) {}

  /// model[0] and model[1] (checked: a callback may have replaced the model).
  nn::Module& body() const { return body_of(*this); }
  nn::Module& head() const { return head_of(*this); }

 private:
  struct Parts {
    DataLoaders dls;
    nn::ModulePtr model;
    nn::Loss loss;
    LearnerOptions opts;
  };

  VisionLearner(Parts p, VisionArch a, bool pretrained)
      : Learner(std::move(p.dls), std::move(p.model), std::move(p.loss), std::move(p.opts)), arch(std::move(a)) {
    if (pretrained) freeze();
  }

  static int64_t first_image_channels(const DataLoaders& dls) {
    STRATA_CHECK(dls.train.dataset_ptr() != nullptr && dls.train.n() > 0, "vision_learner",
                 "got an empty train loader and n_in = 0, expected data or VisionLearnerOptions::n_in");
    DataLoaderOptions lo = dls.train.options();
    lo.bs = 1;
    lo.shuffle = false;
    lo.drop_last = false;
    lo.num_workers = 0;
    const Batch b = dls.train.new_with(std::move(lo)).one_batch();
    STRATA_CHECK(!b.xb.empty() && b.xb[0].dim() == 4, "vision_learner", "got a first input of shape ",
                 b.xb.empty() ? std::string("(none)") : to_string(b.xb[0].shape()),
                 ", expected images [B, C, H, W] (or set VisionLearnerOptions::n_in)");
    return b.xb[0].size(1);
  }

  static Parts build(const DataLoaders& dls, const VisionArch& a, const VisionLearnerOptions& o) {
    STRATA_CHECK(a.make != nullptr, "vision_learner", "got arch \"", a.name, "\" without make, expected a function");
    const int64_t n_out = o.n_out ? o.n_out : dls.c;
    STRATA_CHECK(n_out > 0, "vision_learner", "got n_out = ", o.n_out, " and dls.c = ", dls.c,
                 ", expected one of them > 0 (set dls.c or VisionLearnerOptions::n_out)");
    nn::Loss loss = o.loss_func;
    if (!loss.fn) {
      STRATA_CHECK(dls.c > 0, "vision_learner", "got no loss_func and dls.c = 0, expected a loss_func (the default, "
                   "CrossEntropyLossFlat, needs a classification with dls.c > 0)");
      loss = nn::CrossEntropyLossFlat();
    }
    const int64_t n_in = o.n_in ? o.n_in : first_image_channels(dls);
    const bool pretrained = !o.pretrained.empty();
    nn::ModulePtr full;
    {
      std::optional<nn::init::NoInit> skip;  // the body is overwritten and the rest cut off: no random draws
      if (pretrained) skip.emplace();
      full = a.make(n_in);
    }
    STRATA_CHECK(full != nullptr, "vision_learner", "got a null model from arch \"", a.name, "\", expected a module");
    std::shared_ptr<NamedSequential> body = create_body(full, o.cut ? o.cut : a.cut);
    if (pretrained) {
      std::set<std::string> body_keys;
      for (auto& [k, t] : body->state_dict()) body_keys.insert(k);
      std::vector<std::string> cut_off;
      for (auto& [k, t] : full->state_dict())
        if (!body_keys.count(k)) cut_off.push_back(k);
      load_body(*body, o.pretrained, cut_off);
    }
    const int64_t nf = num_features_model(*body, n_in);
    auto head = create_head(nf, n_out, o.head);
    if (o.init_head) apply_init(*head);
    auto model = std::make_shared<nn::Sequential>(nn::ModulePtr(body), nn::ModulePtr(head));
    LearnerOptions lo = o.learner;
    if (!lo.splitter) {
      auto split = a.split ? a.split : default_split;
      lo.splitter = [split](nn::Module& m) {
        const nn::Sequential& s = detail::as_sequential(m, "vision_learner splitter");
        STRATA_CHECK(s.size() == 2, "vision_learner splitter", "got a model with ", s.size(),
                     " children, expected Sequential(body, head)");
        return split(s[0], s[1]);
      };
    }
    return {dls, model, std::move(loss), std::move(lo)};
  }
};

/// fastai's vision_learner: body of arch (pretrained when o.pretrained names a file), fastai's head,
/// the arch's splitter; frozen (only the head trains) when pretrained.
inline VisionLearner vision_learner(DataLoaders dls, VisionArch arch, VisionLearnerOptions o = {}) {
  return VisionLearner(std::move(dls), std::move(arch), std::move(o));
}

}  // namespace strata
