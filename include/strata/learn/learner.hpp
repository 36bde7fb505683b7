// Learner: a model, its data, loss and optimizer, and fastai v2's training loop made of events that
// callbacks hook into (fastai/learner.py).
//
//   Learner learn(dls, model, nn::CrossEntropyLossFlat(), {.metrics = {accuracy()}});
//   learn.fit_one_cycle(3, 1e-3);
//   auto [probs, targs] = learn.get_preds();
//
// The loop. Every step is fastai's _with_events(f, name, CancelNameException):
//   try { event(before_name); f(); } catch (CancelNameException) { event(after_cancel_name); }
//   event(after_name);
// nested as
//   fit:      for each epoch: epoch
//   epoch:    train (dl = dls.train, all batches), then validate (dl = dls.valid, all batches, NoGrad)
//   batch:    pred = model(xb); after_pred; loss = loss_func(pred, yb) if there are targets; after_loss;
//             when training: backward (loss_grad.backward()), step (opt.step()), then opt.zero_grad()
// so a CancelBatchException skips the rest of a batch (after_cancel_batch and after_batch still run),
// CancelStep / CancelBackward skip only the step / the backward pass, CancelTrain skips the rest of
// the training phase (validation still runs), CancelValid the validation, CancelEpoch the rest of an
// epoch, CancelFit the rest of the fit (after_cancel_fit, after_fit still run). Any other exception
// propagates out of fit() after the Learner drops the batch, its graph and the partial gradients,
// calls every callback's after_exception() (so each puts back what it changed) and removes the
// callbacks given to this fit; grad mode and data loader workers are restored by RAII.
//
// State a callback reads and changes has fastai's names: dls, model, loss_func, opt, cbs, dl, batch,
// xb, yb, pred, loss_grad (what backward uses), loss (its detached copy, for logging), epoch,
// n_epoch, iter, n_iter, train_iter, pct_train, training, lr, wd.
// Callbacks run in increasing `order` at each event (ties: insertion order). Default callbacks, as
// fastai's: TrainEvalCallback (-10), Recorder (50) and ProgressCallback (60) when their headers exist.
//
// validate(), get_preds() and predict() run fastai's validation context: before_fit, before_epoch,
// the validation phase, after_epoch, after_fit, with `logging` off (the progress callback prints
// nothing); on an exception only the cleanup runs (fastai would still send after_epoch/after_fit).
// Checkpoints: save()/load() write path/model_dir/<name>.safetensors (atomically): the model's
// state_dict under its own names and, with_opt, the optimizer's state_dict under "opt/<key>".
#pragma once

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "strata/autograd/grad_mode.hpp"
#include "strata/data/dataloader.hpp"
#include "strata/data/dataset.hpp"
#include "strata/io/safetensors.hpp"
#include "strata/learn/callback.hpp"
#include "strata/learn/metrics.hpp"
#include "strata/nn/loss.hpp"
#include "strata/nn/module.hpp"
#include "strata/nn/norm.hpp"
#include "strata/optim/optimizers.hpp"
#include "strata/tensor/amp.hpp"
#include "strata/tensor/tensor.hpp"

namespace strata {

class TrainEvalCallback;  // callbacks/train_eval.hpp
class Recorder;           // callbacks/recorder.hpp
class ProgressCallback;   // callbacks/progress.hpp
struct LRFindResult;      // callbacks/lr_finder.hpp
enum class Uncertainty;   // uncertainty.hpp (entropy = 0, margin, least_confidence)
struct UncertaintyResult; // uncertainty.hpp
struct DistributedOptions; // callbacks/distributed.hpp (needs <strata/dist.hpp>, MPI)

namespace detail {
#if __has_include("strata/learn/callbacks/recorder.hpp")
using DefaultRecorder = Recorder;
#else
using DefaultRecorder = void;
#endif
#if __has_include("strata/learn/callbacks/progress.hpp")
using DefaultProgress = ProgressCallback;
#else
using DefaultProgress = void;
#endif
}  // namespace detail

/// Parameters split into groups for the optimizer (fastai's splitter).
using Splitter = std::function<ParamGroups(nn::Module&)>;

/// The Learner's options (fastai's Learner arguments), for designated initializers.
struct LearnerOptions {
  OptFunc opt_func = Adam();
  double lr = 1e-3;
  std::optional<double> wd = {};        // set on the optimizer at each fit when given
  std::vector<Metric> metrics = {};
  std::vector<CallbackPtr> cbs = {};    // added after the default callbacks
  Splitter splitter = {};               // default: one group of the parameters that require grad
  std::string path = ".";
  std::string model_dir = "models";
  bool wd_bn_bias = false;              // false: no weight decay on norm layers' params and biases
  bool train_bn = true;                 // norm layers' params keep training when their group is frozen
  std::vector<double> moms = {0.95, 0.85, 0.95};
};

class Learner {
 public:
  // ---- state (fastai's names; callbacks may read and change all of it)
  DataLoaders dls;
  nn::ModulePtr model;
  nn::Loss loss_func;
  std::unique_ptr<Optimizer> opt;  // made by create_opt() at the first fit
  OptFunc opt_func;
  Splitter splitter;
  std::vector<Metric> metrics;
  std::vector<CallbackPtr> cbs;
  DataLoader* dl = nullptr;     // the loader of the current phase
  Batch batch;                  // the current batch, as the loader gave it
  std::vector<Tensor> xb, yb;   // its inputs and targets (a callback may replace them in before_batch)
  Device device = kCPU;         // where batches go and the model lives (learn.to(device))
  Tensor pred, loss, loss_grad;
  int epoch = 0, n_epoch = 1;
  int64_t iter = 0, n_iter = 0, train_iter = 0;
  double pct_train = 0;
  bool training = false;
  double lr;
  std::optional<double> wd;
  std::vector<double> moms;
  bool wd_bn_bias, train_bn;
  std::string path, model_dir;
  /// false while validate / get_preds / predict run (fastai's no_logging + no_mbar): progress stays quiet.
  bool logging = true;
  /// This process's place in a data-parallel run (set by to_distributed(); 0 and 1 otherwise).
  int rank = 0, world_size = 1;
  /// Whether this process prints, plots and saves (rank 0; fastai's rank_distrib() == 0): progress, CSVLogger,
  /// the trackers' messages, save(), the Recorder's plots and lr_find's plot do nothing on the other ranks.
  bool is_main_process() const { return rank == 0; }

  /// The default callbacks are TrainEvalCallback, Recorder and ProgressCallback (template parameters
  /// only so that this header does not need their definitions; leave them at their defaults).
  template <class TrainEval = TrainEvalCallback, class Rec = detail::DefaultRecorder,
            class Prog = detail::DefaultProgress>
  Learner(DataLoaders dls_, nn::ModulePtr model_, nn::Loss loss_func_, LearnerOptions o = {})
      : dls(std::move(dls_)),
        model(std::move(model_)),
        loss_func(std::move(loss_func_)),
        opt_func(std::move(o.opt_func)),
        splitter(std::move(o.splitter)),
        metrics(std::move(o.metrics)),
        lr(o.lr),
        wd(o.wd),
        moms(std::move(o.moms)),
        wd_bn_bias(o.wd_bn_bias),
        train_bn(o.train_bn),
        path(std::move(o.path)),
        model_dir(std::move(o.model_dir)) {
    STRATA_CHECK(model != nullptr, "Learner", "got a null model, expected a module");
    STRATA_CHECK(loss_func.fn != nullptr, "Learner", "got loss_func \"", loss_func.name,
                 "\" without a function, expected e.g. nn::CrossEntropyLossFlat()");
    STRATA_CHECK(opt_func != nullptr, "Learner", "got an empty opt_func, expected e.g. Adam()");
    add_cb(std::make_shared<TrainEval>());
    if constexpr (!std::is_void_v<Rec>) add_cb(std::make_shared<Rec>());
    if constexpr (!std::is_void_v<Prog>) add_cb(std::make_shared<Prog>());
    for (auto& cb : o.cbs) add_cb(cb);
  }
  // Callbacks point back at their Learner: it stays where it was made.
  Learner(const Learner&) = delete;
  Learner& operator=(const Learner&) = delete;
  ~Learner() {
    for (auto& cb : cbs)
      if (cb && cb->learn == this) cb->learn = nullptr;
  }

  // ---- callbacks
  /// Attaches cb (it runs at every event from now on).
  Learner& add_cb(CallbackPtr cb) {
    STRATA_CHECK(cb != nullptr, "add_cb", "got a null callback, expected a callback");
    STRATA_CHECK(std::find(cbs.begin(), cbs.end(), cb) == cbs.end(), "add_cb", "got callback ", cb->name(),
                 " a second time, expected each callback once");
    cb->learn = this;
    cbs.push_back(std::move(cb));
    return *this;
  }
  Learner& add_cbs(const std::vector<CallbackPtr>& cs) {
    for (const auto& cb : cs) add_cb(cb);
    return *this;
  }
  /// Detaches cb (no-op when it is not attached).
  Learner& remove_cb(const CallbackPtr& cb) {
    auto it = std::find(cbs.begin(), cbs.end(), cb);
    if (it != cbs.end()) {
      (*it)->learn = nullptr;
      cbs.erase(it);
    }
    return *this;
  }
  Learner& remove_cbs(const std::vector<CallbackPtr>& cs) {
    for (const auto& cb : cs) remove_cb(cb);
    return *this;
  }
  /// Detaches every callback of type C.
  template <class C>
  Learner& remove_cb() {
    while (auto cb = get_cb<C>()) remove_cb(cb);
    return *this;
  }
  /// The first attached callback of type C (or derived from it), or null.
  template <class C>
  std::shared_ptr<C> get_cb() const {
    for (const auto& cb : cbs)
      if (auto c = std::dynamic_pointer_cast<C>(cb)) return c;
    return nullptr;
  }
  /// The Recorder (one of the default callbacks).
  template <class R = Recorder>
  R& recorder() const {
    auto r = get_cb<R>();
    STRATA_CHECK(r != nullptr, "recorder", "got a Learner without a Recorder callback, expected one (it is a default)");
    return *r;
  }
  /// Runs event e on every callback, in increasing order (fastai's learn(event_name)).
  void operator()(Event e) {
    for (const auto& cb : sorted_cbs()) (*cb)(e);
  }
  /// The callbacks in the order they run (a copy: a callback may add or remove callbacks).
  std::vector<CallbackPtr> sorted_cbs() const {
    std::vector<CallbackPtr> s = cbs;
    std::stable_sort(s.begin(), s.end(), [](const CallbackPtr& a, const CallbackPtr& b) { return a->order < b->order; });
    return s;
  }

  // ---- optimizer
  /// opt = opt_func(splitter(model), lr); flags norm params force_train (train_bn) and norm params
  /// and biases do_wd = false (unless wd_bn_bias), as fastai's create_opt.
  void create_opt() {
    ParamGroups groups = splitter ? splitter(*model) : ParamGroups{trainable_params(*model)};
    opt = opt_func(std::move(groups), lr);
    STRATA_CHECK(opt != nullptr, "create_opt", "got a null optimizer from opt_func, expected an optimizer");
    std::unordered_set<const TensorImpl*> norm, bias;
    collect_norm_bias(*model, norm, bias);
    for (size_t g = 0; g < opt->param_groups.size(); ++g) {
      std::vector<ParamState>& states = opt->state_for(g);
      for (size_t i = 0; i < states.size(); ++i) {
        const TensorImpl* p = &opt->param_groups[g].params[i].impl();
        if (!wd_bn_bias && (norm.count(p) || bias.count(p))) states[i].do_wd = false;
        if (train_bn && norm.count(p)) states[i].force_train = true;
      }
    }
  }
  /// Groups before n stop training (norm layers keep training when train_bn); n < 0 counts from the end.
  void freeze_to(int n) {
    if (!opt) create_opt();
    opt->freeze_to(n);
    opt->clear_state();
  }
  /// Trains only the last parameter group.
  void freeze() { freeze_to(-1); }
  void unfreeze() { freeze_to(0); }

  // ---- training
  /// fastai's _with_events: before_x, f, after_cancel_x if f threw Cancel, then after_x.
  template <class Cancel, class F>
  void with_events(F&& f, Event before, Event after_cancel, Event after) {
    try {
      (*this)(before);
      f();
    } catch (const Cancel&) {
      (*this)(after_cancel);
    }
    (*this)(after);
  }

  /// Trains for n_epoch epochs at lr (default: the Learner's lr); wd, when given or set on the
  /// Learner, goes to the optimizer; cbs run during this fit only; reset_opt makes a new optimizer.
  void fit(int n_epoch_, std::optional<double> lr_ = {}, std::optional<double> wd_ = {},
           std::vector<CallbackPtr> cbs_ = {}, bool reset_opt = false) {
    STRATA_CHECK(n_epoch_ >= 0, "fit", "got n_epoch = ", n_epoch_, ", expected n_epoch >= 0");
    AddedCbs added(*this, std::move(cbs_));
    if (reset_opt || !opt) create_opt();
    if (!wd_) wd_ = wd;
    if (wd_) opt->set_hyper("wd", *wd_);
    opt->set_hyper("lr", lr_ ? *lr_ : lr);
    n_epoch = n_epoch_;
    guarded([&] {
      with_events<CancelFitException>([&] { do_fit(); }, Event::before_fit, Event::after_cancel_fit, Event::after_fit);
    });
  }
  /// One cycle of lr (lr_max/div -> lr_max -> lr_max/div_final, cosine) and momentum (moms); lr_max defaults to
  /// the Learner's lr, as in fastai. In param_scheduler.hpp.
  void fit_one_cycle(int n_epoch, std::optional<std::variant<double, Slice>> lr_max = {}, double div = 25, double div_final = 1e5,
                     double pct_start = 0.25, std::optional<double> wd = {}, std::vector<double> moms = {},
                     std::vector<CallbackPtr> cbs = {}, bool reset_opt = false);
  /// fastai's fine_tune: freeze(), fit_one_cycle(freeze_epochs, slice(base_lr), pct_start = 0.99), base_lr /= 2,
  /// unfreeze(), fit_one_cycle(epochs, Slice{base_lr / lr_mult, base_lr}, div, pct_start); wd and cbs go to both
  /// fits (fastai's **kwargs). In param_scheduler.hpp.
  void fine_tune(int epochs, double base_lr = 2e-3, int freeze_epochs = 1, double lr_mult = 100, double pct_start = 0.3,
                 double div = 5.0, std::optional<double> wd = {}, std::vector<CallbackPtr> cbs = {});
  /// Flat lr for pct_start of the fit, then cosine down to lr/div_final (lr defaults to the Learner's lr).
  /// In param_scheduler.hpp.
  void fit_flat_cos(int n_epoch, std::optional<std::variant<double, Slice>> lr = {}, double div_final = 1e5,
                    double pct_start = 0.75, std::optional<double> wd = {}, std::vector<CallbackPtr> cbs = {},
                    bool reset_opt = false);
  /// The lr range test (exponential lr from start_lr to end_lr). In lr_finder.hpp.
  LRFindResult lr_find(double start_lr = 1e-7, double end_lr = 10, int num_it = 100, bool stop_div = true,
                       std::string plot_path = "lr_find.png");

  // ---- precision and layout
  /// Trains and predicts on `device` (PyTorch's model.to(device) plus fastai's dls.device): moves the
  /// model's parameters and buffers there now, and makes the loaders' batches there (dls.to(d): the
  /// collated batch moves before the batch transforms, so augmentation and Normalize run on the
  /// device too); a batch still elsewhere (a loader given later) is moved before before_batch, so
  /// callbacks see device tensors. Call it before fitting; an optimizer made already is rebuilt.
  /// get_preds() still returns cpu tensors. cuda needs <strata/backend/cuda.hpp>.
  Learner& to(Device d) {
    model->to(d);
    dls.to(d);
    device = d;
    if (opt) create_opt();
    return *this;
  }
  /// bf16 mixed precision (fastai's to_bf16): adds a MixedPrecision callback (replacing one already
  /// there); matmuls and convolutions then run in bf16 with fp32 accumulation and fp32 master weights.
  /// In callbacks/mixed_precision.hpp.
  Learner& to_bf16();
  /// fp16 mixed precision with dynamic loss scaling (fastai's to_fp16), for a cuda Learner: adds a
  /// MixedPrecision(f16) callback with a GradScaler. In callbacks/mixed_precision.hpp.
  Learner& to_fp16(GradScalerOptions scaling = {});
  /// Plain float32 again (fastai's to_fp32): removes the MixedPrecision callback. In callbacks/mixed_precision.hpp.
  Learner& to_fp32();
  /// Channels-last batches (fastai's to_channelslast): adds a ChannelsLast callback (replacing one
  /// already there), which lays every 4-D float input out as [B, H, W, C]. In callbacks/channels_last.hpp.
  Learner& to_channelslast();
  /// Data-parallel training over the processes of an MPI job (fastai's to_distributed): adds a
  /// DistributedTrainer callback (replacing one already there; it starts the process group if needed).
  /// Defined in callbacks/distributed.hpp, which needs <strata/dist.hpp> (MPI); this header includes nothing MPI.
  Learner& to_distributed();
  Learner& to_distributed(const DistributedOptions& o);

  // ---- evaluation
  /// Active learning: how unsure the model is about each of items [N, ...] (inputs as the model takes
  /// them, batched by bs, 0: dls.valid's bs), most uncertain first; method defaults to entropy
  /// (Uncertainty{} = Uncertainty::entropy). In uncertainty.hpp.
  UncertaintyResult uncertainty(const Tensor& items, Uncertainty method = Uncertainty{}, int64_t bs = 0);
  /// The same on every item of dl (its batches' xb; targets are ignored). In uncertainty.hpp.
  UncertaintyResult uncertainty(DataLoader& dl, Uncertainty method = Uncertainty{});
  /// [valid_loss, metrics...] on dl (default: dls.valid), averaged over items.
  std::vector<double> validate(DataLoader* dl_ = nullptr) {
    auto stats = std::make_shared<ValidStats>(metrics);
    validation_context({stats}, [&] { do_epoch_validate(dl_); });
    std::vector<double> out{stats->count ? stats->total / double(stats->count)
                                         : std::numeric_limits<double>::quiet_NaN()};
    for (const Metric& m : stats->metrics) out.push_back(m.value());
    return out;
  }
  /// (predictions, targets) on every item of dl (default: dls.valid) in dataset order (as fastai, a
  /// shuffling or drop_last loader is walked unshuffled and whole). Predictions go through
  /// loss_func.activation (probabilities) when act; with_decoded gives loss_func.decodes of them
  /// instead (labels). Targets are undefined when the loader has none.
  std::pair<Tensor, Tensor> get_preds(DataLoader* dl_ = nullptr, bool with_decoded = false, bool act = true) {
    DataLoader* src = dl_ ? dl_ : &dls.valid;
    std::optional<DataLoader> ordered;
    if (src->options().shuffle || src->options().drop_last) {
      DataLoaderOptions o = src->options();
      o.shuffle = false;
      o.drop_last = false;
      ordered.emplace(src->new_with(std::move(o)));
      src = &*ordered;
    }
    auto gather = std::make_shared<GatherPreds>();
    validation_context({gather}, [&] { do_epoch_validate(src); });
    NoGrad ng;
    Tensor preds = gather->preds.empty() ? Tensor() : cat(gather->preds, 0);
    Tensor targs = gather->targs.empty() ? Tensor() : cat(gather->targs, 0);
    if (preds.defined() && act && loss_func.activation) preds = loss_func.activation(preds);
    if (preds.defined() && with_decoded && loss_func.decodes) preds = loss_func.decodes(preds);
    return {preds, targs};
  }
  /// One item x (no batch dim) through the valid loader's transforms and the model:
  /// (decoded prediction, probabilities), both without batch dim.
  std::pair<Tensor, Tensor> predict(const Tensor& x) {
    STRATA_CHECK(x.defined(), "predict", "got an undefined tensor, expected one item");
    DataLoaderOptions o = dls.valid.options();
    o.bs = 1;
    o.shuffle = false;
    o.drop_last = false;
    o.num_workers = 0;
    DataLoader one(std::make_shared<TensorDataset>(std::vector<Tensor>{x.unsqueeze(0)}, std::vector<Tensor>{}), o);
    auto [probs, targs] = get_preds(&one);
    NoGrad ng;
    Tensor decoded = loss_func.decodes ? loss_func.decodes(probs) : probs;
    return {decoded.select(0, 0), probs.select(0, 0)};
  }

  // ---- checkpoints
  /// Writes path/model_dir/<name>.safetensors (model state, and optimizer state when with_opt); returns its path.
  /// Only the main process writes (is_main_process()); the others return the path.
  std::string save(const std::string& name, bool with_opt = true) {
    const std::filesystem::path file = checkpoint_file(name);
    if (!is_main_process()) return file.string();  // distributed: rank 0 writes (as fastai)
    std::filesystem::create_directories(file.parent_path());
    std::vector<std::pair<std::string, Tensor>> ts;
    for (auto& [k, t] : model->state_dict()) ts.emplace_back(k, t);
    const bool has_opt = with_opt && opt;
    if (has_opt)
      for (auto& [k, t] : opt->state_dict()) ts.emplace_back(std::string(kOptPrefix) + k, t);
    save_safetensors(file.string(), ts, {{"format", "strata.Learner"}, {"with_opt", has_opt ? "1" : "0"}});
    return file.string();
  }
  /// Loads path/model_dir/<name>.safetensors into the model (strict: every key must match) and,
  /// with_opt, into the optimizer (made first if needed).
  void load(const std::string& name, bool with_opt = true, bool strict = true) {
    const std::string file = checkpoint_file(name).string();
    nn::NamedTensors model_sd;
    std::map<std::string, Tensor> opt_sd;
    for (auto& [k, t] : load_safetensors(file)) {
      if (k.rfind(kOptPrefix, 0) == 0) opt_sd[k.substr(std::string(kOptPrefix).size())] = t;
      else model_sd.emplace_back(k, t);
    }
    // the model as it is, to put back if the optimizer state is refused (a failed load changes nothing)
    nn::NamedTensors backup;
    if (with_opt && !opt_sd.empty())
      for (auto& [k, t] : model->state_dict()) backup.emplace_back(k, t.detach().clone());
    try {
      model->load_state_dict(model_sd, strict);
    } catch (const Error& e) {
      throw Error(std::string("load: ") + file + ": " + e.what());
    }
    if (!with_opt) return;
    if (opt_sd.empty()) {
      std::cerr << "load: " << file << " has no optimizer state; the optimizer keeps its own\n";
      return;
    }
    if (!opt) create_opt();
    try {
      opt->load_state_dict(opt_sd);
    } catch (const Error& e) {
      if (strict) {
        model->load_state_dict(backup);
        throw Error(std::string("load: ") + file + ": " + e.what());
      }
      std::cerr << "load: could not load the optimizer state of " << file << ": " << e.what() << "\n";
    }
  }

  /// Which callbacks run at each event, in fastai's layout; printed to std::cout and returned.
  std::string show_training_loop() const {
    static const char* const loop[] = {
        "Start Fit", "before_fit", "Start Epoch Loop", "before_epoch", "Start Train", "before_train",
        "Start Batch Loop", "before_batch", "after_pred", "after_loss", "before_backward", "after_cancel_backward",
        "after_backward", "before_step", "after_cancel_step", "after_step", "after_cancel_batch", "after_batch",
        "End Batch Loop", "End Train", "after_cancel_train", "after_train", "Start Valid", "before_validate",
        "Start Batch Loop", "**CBs same as train batch**", "End Batch Loop", "End Valid", "after_cancel_validate",
        "after_validate", "End Epoch Loop", "after_cancel_epoch", "after_epoch", "End Fit", "after_cancel_fit",
        "after_fit"};
    const std::vector<CallbackPtr> sorted = sorted_cbs();
    std::ostringstream os;
    int indent = 0;
    for (const std::string s : loop) {
      if (s.rfind("Start", 0) == 0) {
        os << std::string(indent, ' ') << s << "\n";
        indent += 2;
      } else if (s.rfind("End", 0) == 0) {
        indent -= 2;
        os << std::string(indent, ' ') << s << "\n";
      } else {
        std::string padded = s;
        if (padded.size() < 15) padded.resize(15, ' ');
        os << std::string(indent, ' ') << " - " << padded << ": [";
        bool first = true;
        for (const auto& cb : sorted)
          if (const auto e = event_from_name(s); e && cb->overrides(*e)) {
            os << (first ? "" : ", ") << cb->name();
            first = false;
          }
        os << "]\n";
      }
    }
    std::cout << os.str();
    return os.str();
  }

  /// The parameters that require grad, in one group (fastai's trainable_params, the default splitter).
  static std::vector<Tensor> trainable_params(nn::Module& m) {
    std::vector<Tensor> out;
    for (auto& p : m.parameters())
      if (p.requires_grad()) out.push_back(p);
    return out;
  }

  // ---- the loop's pieces (fastai's names; public so that a callback or a subclass can reuse them)
  void do_fit() {
    for (int e = 0; e < n_epoch; ++e) {
      epoch = e;
      with_events<CancelEpochException>([&] { do_epoch(); }, Event::before_epoch, Event::after_cancel_epoch,
                                        Event::after_epoch);
    }
  }
  void do_epoch() {
    do_epoch_train();
    do_epoch_validate();
  }
  void do_epoch_train() {
    dl = &dls.train;
    with_events<CancelTrainException>([&] { all_batches(); }, Event::before_train, Event::after_cancel_train,
                                      Event::after_train);
  }
  /// The validation phase on d (default dls.valid), without graph recording.
  void do_epoch_validate(DataLoader* d = nullptr) {
    dl = d ? d : &dls.valid;
    NoGrad ng;
    with_events<CancelValidException>([&] { all_batches(); }, Event::before_validate,
                                      Event::after_cancel_validate, Event::after_validate);
  }
  void all_batches() {
    n_iter = dl->dataset_ptr() ? dl->size() : 0;
    if (n_iter == 0) return;  // also a DataLoaders without a valid set
    int64_t i = 0;
    for (Batch& b : *dl) one_batch(i++, b);
  }
  void one_batch(int64_t i, const Batch& b) {
    iter = i;
    batch = b;
    xb = b.xb;
    yb = b.yb;
    if (!device.is_cpu()) {  // made elsewhere (dls.to(device) makes them here): moved before any callback
      for (Tensor& t : xb) t = strata::to(t, device);
      for (Tensor& t : yb) t = strata::to(t, device);
    }
    with_events<CancelBatchException>([&] { do_one_batch(); }, Event::before_batch, Event::after_cancel_batch,
                                      Event::after_batch);
  }
  void do_one_batch() {
    pred = model->forward_batch(xb);
    (*this)(Event::after_pred);
    if (!yb.empty()) {
      loss_grad = compute_loss();
      NoGrad ng;
      loss = loss_grad.detach().clone();
    }
    (*this)(Event::after_loss);
    if (!training || yb.empty()) return;
    do_grad_opt();
  }
  void do_grad_opt() {
    with_events<CancelBackwardException>([&] { loss_grad.backward(); }, Event::before_backward,
                                         Event::after_cancel_backward, Event::after_backward);
    with_events<CancelStepException>([&] { opt->step(); }, Event::before_step, Event::after_cancel_step,
                                     Event::after_step);
    opt->zero_grad();
  }

 private:
  static constexpr const char* kOptPrefix = "opt/";

  /// Adds callbacks for one call and removes them when it ends, however it ends.
  struct AddedCbs {
    Learner& learn;
    std::vector<CallbackPtr> cbs;
    AddedCbs(Learner& l, std::vector<CallbackPtr> cs) : learn(l), cbs(std::move(cs)) { learn.add_cbs(cbs); }
    ~AddedCbs() { learn.remove_cbs(cbs); }
    AddedCbs(const AddedCbs&) = delete;
    AddedCbs& operator=(const AddedCbs&) = delete;
  };

  /// Runs f; on any exception, drops the batch, its graph and partial gradients, then rethrows.
  template <class F>
  void guarded(F&& f) {
    try {
      f();
    } catch (...) {
      if (opt) opt->zero_grad();
      for (const auto& cb : sorted_cbs()) {
        try {
          cb->after_exception();
        } catch (...) {  // the first exception is the one to report
        }
      }
      for (auto& cb : cbs) cb->run = true;
      end_cleanup();
      throw;
    }
    end_cleanup();
  }
  void end_cleanup() {
    dl = nullptr;
    batch = Batch{};
    xb.clear();
    yb.clear();
    pred = Tensor();
    loss = Tensor();
    loss_grad = Tensor();
  }

  /// fastai's validation_context: extra callbacks, logging off, before_fit/before_epoch, f,
  /// after_epoch/after_fit.
  template <class F>
  void validation_context(std::vector<CallbackPtr> extra, F&& f) {
    AddedCbs added(*this, std::move(extra));
    struct Quiet {
      bool& flag;
      bool old;
      ~Quiet() { flag = old; }
    } quiet{logging, logging};
    logging = false;
    guarded([&] {
      (*this)(Event::before_fit);
      (*this)(Event::before_epoch);
      f();
      (*this)(Event::after_epoch);
      (*this)(Event::after_fit);
    });
  }

  Tensor compute_loss() {
    STRATA_CHECK(yb.size() == 1, "Learner", "got a batch with ", yb.size(), " targets, expected 1 (loss_func \"",
                 loss_func.name, "\" takes (pred, y))");
    Tensor l;
    try {
      l = loss_func(pred, yb[0]);
    } catch (const Error& e) {
      throw Error("Learner: loss_func \"" + loss_func.name + "\" got predictions of shape " + to_string(pred.shape()) +
                  " and targets of shape " + to_string(yb[0].shape()) + ": " + e.what());
    }
    STRATA_CHECK(l.defined() && l.numel() == 1, "Learner", "got a loss of shape ",
                 l.defined() ? to_string(l.shape()) : std::string("(undefined)"), " from loss_func \"", loss_func.name,
                 "\", expected a scalar (a reduced loss)");
    return l;
  }

  std::filesystem::path checkpoint_file(const std::string& name) const {
    STRATA_CHECK(!name.empty(), "save", "got an empty checkpoint name, expected a name such as \"stage1\"");
    return std::filesystem::path(path) / model_dir / (name + ".safetensors");
  }

  /// Params of norm layers (BatchNorm, LayerNorm, InstanceNorm, GroupNorm) and biases of every layer (fastai's norm_bias_params).
  static void collect_norm_bias(nn::Module& root, std::unordered_set<const TensorImpl*>& norm,
                                std::unordered_set<const TensorImpl*>& bias) {
    root.apply([&](nn::Module& m) {
      const bool is_norm = is_norm_layer(m);
      nn::Visitor v;
      v.on_param = [&](const std::string& n, Tensor& t) {
        if (is_norm) norm.insert(&t.impl());
        if (n == "bias") bias.insert(&t.impl());
      };
      m.visit(v);
    });
  }
  static bool is_norm_layer(nn::Module& m) {
    if (dynamic_cast<nn::BatchNormBase*>(&m) || dynamic_cast<nn::LayerNorm*>(&m)) return true;
    const std::string t = m.type_name();  // norm layers without a common base (InstanceNorm, GroupNorm)
    for (const char* n : {"BatchNorm", "LayerNorm", "InstanceNorm", "GroupNorm"})
      if (t.rfind(n, 0) == 0) return true;
    return false;
  }

  static std::optional<Event> event_from_name(const std::string& s) {
    for (int e = 0; e <= int(Event::after_cancel_step); ++e)
      if (s == event_name(Event(e))) return Event(e);
    return std::nullopt;
  }

  /// validate(): the item-weighted mean loss and the metrics, on copies of the Learner's metrics.
  struct ValidStats : Callback {
    std::vector<Metric> metrics;
    double total = 0;
    int64_t count = 0;
    explicit ValidStats(std::vector<Metric> ms) : metrics(std::move(ms)) { run_train = false; }
    std::string name() const override { return "ValidStats"; }
    void before_validate() override {
      total = 0;
      count = 0;
      for (Metric& m : metrics) m.reset();
    }
    // defined in the class: an out-of-class inline definition would make it the key function and
    // emit the vtable (and all it calls) in every translation unit
    void after_batch() override {
      if (!learn->loss.defined() || learn->yb.empty()) return;
      const int64_t bs = find_bs(learn->yb);
      total += learn->loss.to(DType::f64).item<double>() * double(bs);
      count += bs;
      for (Metric& m : metrics) m.accumulate(*learn);
    }
  };
  /// get_preds(): every batch's predictions and targets.
  struct GatherPreds : Callback {
    std::vector<Tensor> preds, targs;
    GatherPreds() { run_train = false; }
    std::string name() const override { return "GatherPreds"; }
    void before_validate() override {
      preds.clear();
      targs.clear();
    }
    void after_batch() override {
      if (!learn->pred.defined()) return;
      preds.push_back(strata::to(learn->pred.detach(), kCPU));  // collected on the host, as fastai's to_detach
      if (!learn->yb.empty()) targs.push_back(strata::to(learn->yb[0].detach(), kCPU));
    }
  };
};

inline void Callback::operator()(Event e) {
  const bool training = learn ? learn->training : false;
  const bool ok = !is_inner_loop_event(e) || (run_train && training) || (run_valid && !training);
  if (run && ok) call(e);
  if (e == Event::after_fit) run = true;
}


}  // namespace strata

#include "strata/learn/callbacks/train_eval.hpp"
#if __has_include("strata/learn/callbacks/recorder.hpp")
#include "strata/learn/callbacks/recorder.hpp"
#endif
#if __has_include("strata/learn/callbacks/progress.hpp")
#include "strata/learn/callbacks/progress.hpp"
#endif
#if __has_include("strata/learn/callbacks/param_scheduler.hpp")
#include "strata/learn/callbacks/param_scheduler.hpp"
#endif
#if __has_include("strata/learn/callbacks/lr_finder.hpp")
#include "strata/learn/callbacks/lr_finder.hpp"
#endif
#if __has_include("strata/learn/callbacks/time_to_accuracy.hpp")
#include "strata/learn/callbacks/time_to_accuracy.hpp"
#endif
#if __has_include("strata/learn/callbacks/mixed_precision.hpp")
#include "strata/learn/callbacks/mixed_precision.hpp"  // defines Learner::to_bf16, to_fp32
#endif
#if __has_include("strata/learn/callbacks/channels_last.hpp")
#include "strata/learn/callbacks/channels_last.hpp"  // defines Learner::to_channelslast
#endif
#if __has_include("strata/learn/uncertainty.hpp")
#include "strata/learn/uncertainty.hpp"  // defines Learner::uncertainty
#endif
