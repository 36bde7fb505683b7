// Trackers, CSVLogger and the EMA of weights. The monitored values come from a scripted metric (a
// preset value per epoch), so which epochs improve is known and the number of epochs run, the lrs
// and the saved weights are checked against fastai's rules worked out by hand here. The EMA is
// checked against an EMA of the parameter trajectory computed in double from what a spy saw after
// each step; its validation against validate() on the EMA weights. CSVLogger's lines are parsed
// back and compared with the Recorder's numbers. One fit on a Fashion-MNIST subset runs them all.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "strata/data/fashion_mnist.hpp"
#include "strata/learn/callbacks/csv_logger.hpp"
#include "strata/learn/callbacks/ema.hpp"
#include "strata/learn/callbacks/tracker.hpp"
#include "strata/learn/learn.hpp"
#include "strata/nn/nn.hpp"

namespace test_tracker {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;
namespace fs = std::filesystem;

namespace {

/// Which epoch the scripted metric is in (set at before_epoch, before everything else).
struct Script {
  std::vector<double> vals;
  int epoch = 0;
};
struct ScriptEpoch : Callback {
  std::shared_ptr<Script> s;
  explicit ScriptEpoch(std::shared_ptr<Script> s_) : s(std::move(s_)) { order = -50; }
  void before_epoch() override { s->epoch = learn->epoch; }
};

/// A blob classifier whose metric `metric_name` takes vals[epoch] at each epoch; quiet.
std::unique_ptr<Learner> scripted_learner(const std::string& metric_name, std::vector<double> vals,
                                          LearnerOptions o = {}) {
  auto s = std::make_shared<Script>();
  s->vals = std::move(vals);
  o.metrics.push_back(Metric::avg(metric_name, [s](const Tensor&, const Tensor&) {
    return scalar_tensor(s->vals.at(size_t(s->epoch)), {.dtype = DType::f64});
  }));
  o.cbs.push_back(std::make_shared<ScriptEpoch>(s));
  manual_seed(3);
  auto learn = std::make_unique<Learner>(th::blob_dls(16, 8, 8), std::make_shared<nn::Linear>(2, 2),
                                         nn::CrossEntropyLossFlat(), std::move(o));
  learn->remove_cb<ProgressCallback>();
  return learn;
}

/// Captures std::cout for its lifetime.
struct CaptureCout {
  std::ostringstream ss;
  std::streambuf* old;
  CaptureCout() : old(std::cout.rdbuf(ss.rdbuf())) {}
  ~CaptureCout() { std::cout.rdbuf(old); }
  std::string str() const { return ss.str(); }
};

using State = std::map<std::string, std::vector<double>>;
State state_of(nn::Module& m) {
  State s;
  for (auto& [k, t] : m.state_dict()) s[k] = th::values(t);
  return s;
}
double max_diff(const State& a, const State& b) {
  double d = 0;
  for (auto& [k, v] : a)
    for (size_t i = 0; i < v.size(); ++i) d = std::max(d, std::abs(v[i] - b.at(k).at(i)));
  return d;
}

/// Records the model's state after each step, at each epoch end, and the lrs after each epoch.
struct StateSpy : Callback {
  State initial;
  std::vector<State> after_step_states, epoch_states, before_validate_states;
  std::vector<std::vector<double>> lrs;
  explicit StateSpy(int order_ = 70) { order = order_; }
  void before_fit() override { initial = state_of(*learn->model); }
  void after_step() override { after_step_states.push_back(state_of(*learn->model)); }
  void before_validate() override { before_validate_states.push_back(state_of(*learn->model)); }
  void after_epoch() override {
    epoch_states.push_back(state_of(*learn->model));
    std::vector<double> l;
    for (const Hypers& h : learn->opt->hypers()) l.push_back(h.at("lr"));
    lrs.push_back(l);
  }
};

int64_t epochs_run(Learner& learn) { return int64_t(learn.recorder().values.size()); }

int64_t early_stop_epochs(const std::string& monitor, std::vector<double> vals, EarlyStoppingOptions o,
                          std::string* out = nullptr) {
  auto learn = scripted_learner(monitor, vals);
  o.monitor = monitor;
  CaptureCout cap;
  learn->fit(int(vals.size()), 1e-3, {}, {std::make_shared<EarlyStoppingCallback>(o)});
  if (out) *out = cap.str();
  return epochs_run(*learn);
}

}  // namespace

// ---------------------------------------------------------------- TrackerCallback

TEST_CASE("TrackerCallback: fastai's default comp, min_delta sign, best, and a clear error for a bad monitor",
          "[tracker]") {
  CHECK(TrackerCallback({.monitor = "valid_loss"}).comp == Comp::less);
  CHECK(TrackerCallback({.monitor = "error_rate"}).comp == Comp::less);
  CHECK(TrackerCallback({.monitor = "accuracy"}).comp == Comp::greater);
  CHECK(TrackerCallback({.monitor = "valid_loss", .min_delta = 0.1}).min_delta == -0.1);
  CHECK(TrackerCallback({.monitor = "accuracy", .min_delta = 0.1}).min_delta == 0.1);
  CHECK(TrackerCallback({.monitor = "accuracy", .comp = Comp::less, .min_delta = 0.1}).min_delta == -0.1);
  // both spellings: designated options and fastai's positional arguments
  CHECK(EarlyStoppingCallback({.patience = 2}).patience == 2);
  CHECK(EarlyStoppingCallback("accuracy", Comp::less, 0.5, 3).min_delta == -0.5);
  CHECK(SaveModelCallback({.fname = "best"}).fname == "best");
  CHECK(SaveModelCallback(std::string("accuracy"), {}, 0, "best").comp == Comp::greater);
  CHECK(ReduceLROnPlateau({.factor = 2}).factor == 2);
  CHECK(ReduceLROnPlateau("valid_loss", {}, 0, 2, 5.0, 1e-6).min_lr == 1e-6);
  CHECK(EMACallback({.decay = 0.5}).decay == 0.5);
  CHECK(EMACallback(0.25, 2).start_epoch == 2);

  auto learn = scripted_learner("score", {0.5, 0.7, 0.6});
  auto t = std::make_shared<TrackerCallback>(TrackerOptions{.monitor = "score"});
  learn->fit(3, 1e-3, {}, {t});
  CHECK(t->best == 0.7);
  CHECK_FALSE(t->new_best);
  CHECK(t->last_value == 0.6);
  // reset_on_fit = false keeps the best across fits
  auto keep = std::make_shared<TrackerCallback>(TrackerOptions{.monitor = "score", .reset_on_fit = false});
  learn->add_cb(keep);
  learn->fit(1, 1e-3);  // score 0.5
  CHECK(keep->best == 0.5);
  learn->fit(2, 1e-3);  // 0.5, 0.7
  CHECK(keep->best == 0.7);
  learn->fit(1, 1e-3);  // 0.5 < 0.7: no new best
  CHECK(keep->best == 0.7);
  CHECK_FALSE(keep->new_best);
  // validate() runs no training: the tracker leaves best alone
  learn->validate();
  CHECK(keep->best == 0.7);
  learn->remove_cb(keep);
  // lr_find() trains, but it is no fit to track: a tracker of train_loss stays off (best never set)
  auto tl = std::make_shared<TrackerCallback>(TrackerOptions{.monitor = "train_loss"});
  learn->add_cb(tl);
  learn->lr_find(1e-5, 1e-1, 6, true, "");  // no plot
  CHECK(std::isnan(tl->best));
  learn->remove_cb(tl);

  th::check_throws([&] { learn->fit(1, 1e-3, {}, {std::make_shared<EarlyStoppingCallback>("nope")}); },
                   {"EarlyStoppingCallback", "\"nope\"", "train_loss", "valid_loss", "score"});
  th::check_throws([&] { learn->fit(1, 1e-3, {}, {std::make_shared<EarlyStoppingCallback>("time")}); },
                   {"\"time\""});
}

// ---------------------------------------------------------------- EarlyStopping

TEST_CASE("EarlyStopping: stops after patience epochs without improvement (less, greater, min_delta)", "[tracker]") {
  const std::vector<double> loss{1.0, 0.9, 0.95, 0.97, 0.8, 0.85, 0.9, 0.7};
  std::string msg;
  // patience 1: epoch 2 does not improve on epoch 1
  CHECK(early_stop_epochs("score_loss", loss, {.patience = 1}, &msg) == 3);
  CHECK(msg == "No improvement since epoch 1: early stopping\n");
  // patience 2: epochs 2 and 3 stall
  CHECK(early_stop_epochs("score_loss", loss, {.patience = 2}, &msg) == 4);
  CHECK(msg == "No improvement since epoch 1: early stopping\n");
  // patience 3: epoch 4 improves, 5, 6 stall, 7 improves: all 8 run
  CHECK(early_stop_epochs("score_loss", loss, {.patience = 3}) == 8);
  const std::vector<double> loss2{1.0, 0.9, 0.95, 0.85, 0.9, 0.91, 0.5};
  CHECK(early_stop_epochs("score_loss", loss2, {.patience = 2}, &msg) == 6);
  CHECK(msg == "No improvement since epoch 3: early stopping\n");

  // min_delta: 0.95 and 0.92 beat 1.0 but not by 0.1
  const std::vector<double> slow{1.0, 0.95, 0.92, 0.5};
  CHECK(early_stop_epochs("score_loss", slow, {.patience = 2}) == 4);
  CHECK(early_stop_epochs("score_loss", slow, {.min_delta = 0.1, .patience = 2}) == 3);
  CHECK(early_stop_epochs("score_loss", slow, {.min_delta = 0.04, .patience = 1}) == 3);  // 0.95 counts, 0.92 not

  // greater (the default for a name without loss/error), and an explicit comp
  const std::vector<double> acc{0.5, 0.6, 0.55, 0.7};
  CHECK(early_stop_epochs("score", acc, {.patience = 1}) == 3);
  CHECK(early_stop_epochs("score", acc, {.patience = 2}) == 4);
  CHECK(early_stop_epochs("score", acc, {.comp = Comp::less, .patience = 1}) == 2);
  CHECK(early_stop_epochs("score", {0.5, 0.52, 0.6, 0.61}, {.min_delta = 0.05, .patience = 1}) == 2);
  // a NaN never improves
  CHECK(early_stop_epochs("score", {0.5, NAN, 0.9}, {.patience = 1}) == 2);
  // the real valid loss
  auto learn = scripted_learner("score", std::vector<double>(6, 0.0));
  CaptureCout cap;
  learn->fit(6, 0.0, {}, {std::make_shared<EarlyStoppingCallback>()});  // lr 0: valid_loss never changes
  CHECK(epochs_run(*learn) == 2);
}

// ---------------------------------------------------------------- SaveModel

TEST_CASE("SaveModel: the best epoch's weights are saved and loaded back at the end; every_epoch files",
          "[tracker]") {
  th::TempDir dir("strata_tracker");
  const std::vector<double> vals{0.5, 0.3, 0.4, 0.35, 0.6};
  {
    auto learn = scripted_learner("score_loss", vals, {.opt_func = SGD(), .path = dir.path.string()});
    auto spy = std::make_shared<StateSpy>();
    auto save = std::make_shared<SaveModelCallback>("score_loss");
    CaptureCout cap;
    learn->fit(5, 0.5, {}, {save, spy});
    CHECK(cap.str() == "Better model found at epoch 0 with score_loss value: 0.5.\n"
                       "Better model found at epoch 1 with score_loss value: 0.3.\n");
    REQUIRE(spy->epoch_states.size() == 5);
    REQUIRE(max_diff(spy->epoch_states[1], spy->epoch_states[4]) > 1e-3);  // training moved the weights
    CHECK(max_diff(state_of(*learn->model), spy->epoch_states[1]) == 0);
    CHECK(fs::exists(dir.path / "models" / "model.safetensors"));
    CHECK(save->last_saved_path == (dir.path / "models" / "model.safetensors").string());
  }
  {  // every_epoch: fname_<epoch> each epoch, no load at the end
    auto learn = scripted_learner("score_loss", vals, {.opt_func = SGD(), .path = dir.path.string()});
    auto spy = std::make_shared<StateSpy>();
    learn->fit(5, 0.5, {}, {std::make_shared<SaveModelCallback>(SaveModelOptions{.fname = "ep", .every_epoch = 2}),
                            spy});
    CHECK(max_diff(state_of(*learn->model), spy->epoch_states[4]) == 0);
    for (int e = 0; e < 5; ++e)
      CHECK(fs::exists(dir.path / "models" / ("ep_" + std::to_string(e) + ".safetensors")) == (e % 2 == 0));
    State saved;
    for (auto& [k, t] : load_safetensors((dir.path / "models" / "ep_2.safetensors").string())) saved[k] = th::values(t);
    CHECK(max_diff(saved, spy->epoch_states[2]) == 0);
    // at_end: saves the final model, no load
    auto at_end =
        std::make_shared<SaveModelCallback>(SaveModelOptions{.monitor = "score_loss", .fname = "last", .at_end = true});
    CaptureCout cap;
    learn->fit(5, 0.5, {}, {at_end, spy});
    State last;
    for (auto& [k, t] : load_safetensors((dir.path / "models" / "last.safetensors").string())) last[k] = th::values(t);
    CHECK(max_diff(last, state_of(*learn->model)) == 0);
    CHECK(max_diff(last, spy->epoch_states.back()) == 0);
  }
  {  // a file left on disk by an earlier fit, and a fit that never improves (NaN values): the model stays as trained
    const double nan = std::numeric_limits<double>::quiet_NaN();
    auto learn = scripted_learner("score_loss", {nan, nan, nan}, {.opt_func = SGD(), .path = dir.path.string()});
    learn->save("stale");  // the initial weights
    auto spy = std::make_shared<StateSpy>();
    auto save = std::make_shared<SaveModelCallback>(SaveModelOptions{.monitor = "score_loss", .fname = "stale"});
    CaptureCout cap;
    learn->fit(3, 0.5, {}, {save, spy});
    CHECK(cap.str().empty());
    CHECK(save->last_saved_path.empty());
    REQUIRE(fs::exists(dir.path / "models" / "stale.safetensors"));
    REQUIRE(max_diff(spy->initial, spy->epoch_states.back()) > 1e-3);  // training moved the weights
    CHECK(max_diff(state_of(*learn->model), spy->epoch_states.back()) == 0);
  }
  th::check_throws([] { SaveModelCallback({.every_epoch = 1, .at_end = true}); }, {"SaveModelCallback", "at_end"});
}

// ---------------------------------------------------------------- ReduceLROnPlateau

TEST_CASE("ReduceLROnPlateau: divides every group's lr by factor after patience stalled epochs, not below min_lr",
          "[tracker]") {
  const std::vector<double> vals{1.0, 0.9, 0.95, 0.96, 0.97, 0.8, 0.85};
  auto run = [&](ReduceLROnPlateauOptions o, std::string* out = nullptr) {
    LearnerOptions lo{.opt_func = SGD()};
    lo.splitter = [](nn::Module& m) {
      auto p = m.parameters();
      return ParamGroups{{p[0]}, {p[1]}};
    };
    auto learn = scripted_learner("score_loss", vals, std::move(lo));
    auto spy = std::make_shared<StateSpy>();
    o.monitor = "score_loss";
    CaptureCout cap;
    learn->fit(int(vals.size()), 1e-2, {}, {std::make_shared<ReduceLROnPlateau>(o), spy});
    if (out) *out = cap.str();
    std::vector<double> lr;
    for (auto& l : spy->lrs) {
      CHECK(l.size() == 2);
      CHECK(l[0] == l[1]);
      lr.push_back(l[1]);
    }
    return lr;
  };
  auto close = [](const std::vector<double>& got, const std::vector<double>& want) {
    th::check_close(got, want, 0, 1e-12, "lr after each epoch");
  };
  std::string msg;
  close(run({.patience = 1}, &msg), {1e-2, 1e-2, 1e-3, 1e-4, 1e-5, 1e-5, 1e-6});
  CHECK(msg.find("Epoch 2: reducing lr to 0.001\n") != std::string::npos);
  const size_t at6 = msg.find("Epoch 6: reducing lr to ");
  REQUIRE(at6 != std::string::npos);
  CHECK(std::strtod(msg.c_str() + at6 + 24, nullptr) == Approx(1e-6).epsilon(1e-12));
  close(run({.patience = 1, .min_lr = 5e-5}, &msg), {1e-2, 1e-2, 1e-3, 1e-4, 5e-5, 5e-5, 5e-5});
  CHECK(msg.find("Epoch 5") == std::string::npos);  // at min_lr: nothing to report
  close(run({.patience = 2}), {1e-2, 1e-2, 1e-2, 1e-3, 1e-3, 1e-3, 1e-3});
  close(run({.patience = 1, .factor = 2}), {1e-2, 1e-2, 5e-3, 2.5e-3, 1.25e-3, 1.25e-3, 6.25e-4});
}

// ---------------------------------------------------------------- CSVLogger

namespace {
std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}
std::vector<std::string> fields(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  for (std::string f; std::getline(in, f, ',');) out.push_back(f);
  return out;
}
std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
/// Checks the rows against the Recorder's epochs and values (numbers parsed back exactly).
void check_rows(const std::vector<std::string>& rows, const Recorder& rec) {
  REQUIRE(rows.size() == rec.values.size());
  for (size_t e = 0; e < rows.size(); ++e) {
    const auto f = fields(rows[e]);
    REQUIRE(f.size() == rec.values[e].size() + 2);
    CHECK(std::stoll(f[0]) == rec.epochs[e]);
    for (size_t j = 0; j < rec.values[e].size(); ++j) {
      const double v = std::strtod(f[j + 1].c_str(), nullptr), want = rec.values[e][j];
      INFO("row " << e << " column " << j << ": " << f[j + 1]);
      CHECK(((std::isnan(v) && std::isnan(want)) || v == want));
    }
    CHECK(f.back().size() == 5);  // mm:ss
    CHECK(f.back()[2] == ':');
  }
}
struct ThrowAt : Callback {
  int epoch;
  explicit ThrowAt(int e) : epoch(e) {}
  void before_epoch() override {
    if (learn->epoch == epoch) throw std::runtime_error("boom");
  }
};
}  // namespace

TEST_CASE("CSVLogger: header and one line per epoch equal to the Recorder's values; append; survives a crash",
          "[tracker]") {
  th::TempDir dir("strata_csv");
  auto learn = scripted_learner("score", {0.25, 0.5, 1.0 / 3}, {.metrics = {accuracy()}, .path = dir.path.string()});
  auto csv = std::make_shared<CSVLogger>("logs/history.csv");
  learn->fit(3, 1e-2, {}, {csv});
  const fs::path file = dir.path / "logs" / "history.csv";
  REQUIRE(fs::exists(file));
  const std::string text = read_text(file);
  CHECK(csv->read_log() == text);
  auto lines = lines_of(text);
  REQUIRE(lines.size() == 4);
  CHECK(lines[0] == "epoch,train_loss,valid_loss,accuracy,score,time");
  check_rows({lines.begin() + 1, lines.end()}, learn->recorder());
  CHECK(fields(lines[2])[4] == "0.5");
  CHECK(fields(lines[3])[4] == "0.3333333333333333");
  CHECK(text == learn->recorder().csv());

  // append: the old lines stay, no second header; without append the file starts over
  learn->fit(2, 1e-2, {}, {std::make_shared<CSVLogger>("logs/history.csv", true)});
  lines = lines_of(read_text(file));
  REQUIRE(lines.size() == 6);
  CHECK(lines[0] == "epoch,train_loss,valid_loss,accuracy,score,time");
  check_rows({lines.begin() + 4, lines.end()}, learn->recorder());
  learn->fit(1, 1e-2, {}, {std::make_shared<CSVLogger>("logs/history.csv")});
  CHECK(lines_of(read_text(file)).size() == 2);
  // append to a file that does not exist yet writes the header
  learn->fit(1, 1e-2, {}, {std::make_shared<CSVLogger>("new.csv", true)});
  CHECK(lines_of(read_text(dir.path / "new.csv")).at(0) == "epoch,train_loss,valid_loss,accuracy,score,time");

  // a fit that dies in epoch 2 keeps the lines of epochs 0 and 1; validate() writes nothing
  auto keep = std::make_shared<CSVLogger>("crash.csv");
  CHECK_THROWS_WITH(learn->fit(3, 1e-2, {}, {keep, std::make_shared<ThrowAt>(2)}), "boom");
  CHECK(lines_of(read_text(dir.path / "crash.csv")).size() == 3);
  CHECK_FALSE(keep->is_open());  // closed by after_exception
  learn->add_cb(keep);
  learn->validate();
  learn->get_preds();
  CHECK(lines_of(read_text(dir.path / "crash.csv")).size() == 3);
  learn->remove_cb(keep);
}

// ---------------------------------------------------------------- EMA

namespace {
/// The EMA of a trajectory of states, in double: e = w0; e = decay e + (1 - decay) w_k for k >= first,
/// e = w_k before.
State hand_ema(const State& w0, const std::vector<State>& steps, double decay, size_t first = 0,
               const std::vector<std::string>& copied = {}) {
  State e = w0;
  for (size_t k = 0; k < steps.size(); ++k)
    for (auto& [name, v] : e) {
      const bool copy = k < first || std::find(copied.begin(), copied.end(), name) != copied.end();
      for (size_t i = 0; i < v.size(); ++i)
        v[i] = copy ? steps[k].at(name)[i] : decay * v[i] + (1 - decay) * steps[k].at(name)[i];
    }
  return e;
}
State ema_state(const EMACallback& cb) {
  State s;
  for (auto& [k, t] : cb.ema) s[k] = th::values(t);
  return s;
}
std::unique_ptr<Learner> bn_learner(std::vector<CallbackPtr> cbs = {}) {
  manual_seed(5);
  auto model = std::make_shared<nn::Sequential>(nn::Linear(2, 4), nn::BatchNorm1d(4), nn::ReLU(), nn::Linear(4, 2));
  auto learn = std::make_unique<Learner>(th::blob_dls(32, 16, 8), model, nn::CrossEntropyLossFlat(),
                                         LearnerOptions{.opt_func = SGD(0.9), .cbs = std::move(cbs)});
  learn->remove_cb<ProgressCallback>();
  return learn;
}
struct ThrowInValid : Callback {
  int epoch;
  bool cancel;
  ThrowInValid(int e, bool c) : epoch(e), cancel(c) { order = 80; }
  void after_batch() override {
    if (learn->training || learn->epoch != epoch) return;
    if (cancel) throw CancelValidException();
    throw std::runtime_error("valid boom");
  }
};
}  // namespace

TEST_CASE("EMACallback: the EMA equals a hand-computed EMA of the parameter trajectory", "[ema]") {
  SECTION("params averaged, BatchNorm buffers copied (ema_bn = false)") {
    auto spy = std::make_shared<StateSpy>();
    auto ema = std::make_shared<EMACallback>(EMAOptions{.decay = 0.9, .validate_ema = false});
    auto learn = bn_learner();
    learn->fit(3, 0.1, {}, {ema, spy});
    REQUIRE(spy->after_step_states.size() == 12);
    CHECK(ema->n_updates == 12);
    const State want = hand_ema(spy->initial, spy->after_step_states, 0.9, 0,
                                {"1.running_mean", "1.running_var", "1.num_batches_tracked"});
    const State got = ema_state(*ema);
    CHECK(got.size() == want.size());
    CHECK(max_diff(want, got) < 1e-5);
    CHECK(max_diff(got, spy->after_step_states.back()) > 1e-3);  // the average is not the last weights
    CHECK(got.at("1.running_mean") == spy->after_step_states.back().at("1.running_mean"));
    CHECK(got.at("1.num_batches_tracked") == std::vector<double>{12});
    CHECK(max_diff(state_of(*learn->model), spy->after_step_states.back()) == 0);  // no replace_weights
  }
  SECTION("ema_bn averages the running stats; start_epoch copies the weights until then; replace_weights") {
    auto spy = std::make_shared<StateSpy>();
    auto ema = std::make_shared<EMACallback>(0.8, 1, true, false, true);
    auto learn = bn_learner();
    learn->fit(3, 0.1, {}, {ema, spy});
    CHECK(ema->n_updates == 8);
    const State want = hand_ema(spy->initial, spy->after_step_states, 0.8, 4, {"1.num_batches_tracked"});
    CHECK(max_diff(want, ema_state(*ema)) < 1e-5);
    CHECK(std::abs(want.at("1.running_mean")[0] - spy->after_step_states.back().at("1.running_mean")[0]) > 1e-4);
    CHECK(max_diff(state_of(*learn->model), ema_state(*ema)) == 0);  // replace_weights
    th::check_close(th::values(ema->ema_of("0.weight")), want.at("0.weight"), 1e-5, 0, "ema_of");
    th::check_throws([&] { ema->ema_of("nope"); }, {"EMACallback", "nope", "0.weight"});
  }
}

TEST_CASE("EMACallback: validation runs on the EMA weights; the model's own come back (also on cancel/exception)",
          "[ema]") {
  auto spy = std::make_shared<StateSpy>();
  auto ema = std::make_shared<EMACallback>(EMAOptions{.decay = 0.7});
  auto learn = bn_learner();
  learn->fit(2, 0.1, {}, {ema, spy});
  const double recorded = learn->recorder().values.back()[1];
  // the model keeps its own weights: after each epoch's validation (4 steps an epoch) and after the fit
  REQUIRE(spy->epoch_states.size() == 2);
  REQUIRE(spy->after_step_states.size() == 8);
  CHECK(max_diff(spy->epoch_states[0], spy->after_step_states[3]) == 0);
  CHECK(max_diff(spy->epoch_states[1], spy->after_step_states[7]) == 0);
  CHECK(max_diff(state_of(*learn->model), spy->after_step_states.back()) == 0);
  // during validation the model held the EMA (the spy runs after the EMA callback)
  CHECK(max_diff(spy->before_validate_states.back(), ema_state(*ema)) == 0);
  const double own = learn->validate()[0];
  auto other = bn_learner();
  ema->copy_to(*other->model);
  const double with_ema = other->validate()[0];
  CHECK(std::abs(recorded - with_ema) < 1e-6);
  CHECK(std::abs(recorded - own) > 1e-4);
  CHECK(max_diff(state_of(*learn->model), spy->after_step_states.back()) == 0);

  // a cancelled validation and an exception during validation leave the model's own weights
  for (const bool cancel : {true, false}) {
    auto l = bn_learner();
    auto s = std::make_shared<StateSpy>();
    std::weak_ptr<EMACallback> weak;
    {
      auto e = std::make_shared<EMACallback>(EMAOptions{.decay = 0.5});
      weak = e;
      std::vector<CallbackPtr> cbs{e, s, std::make_shared<ThrowInValid>(1, cancel)};
      e.reset();
      if (cancel) l->fit(2, 0.1, {}, std::move(cbs));
      else CHECK_THROWS_WITH(l->fit(2, 0.1, {}, std::move(cbs)), "valid boom");
    }
    INFO("cancel " << cancel);
    CHECK(weak.expired());
    CHECK(max_diff(state_of(*l->model), s->after_step_states.back()) == 0);
    if (cancel) CHECK(max_diff(s->epoch_states.at(1), s->after_step_states.back()) == 0);
  }
  // a user-held callback after an exception: restored at once (after_exception)
  auto l = bn_learner();
  auto s = std::make_shared<StateSpy>();
  auto e = std::make_shared<EMACallback>(EMAOptions{.decay = 0.5});
  CHECK_THROWS_WITH(l->fit(2, 0.1, {}, {e, s, std::make_shared<ThrowInValid>(1, false)}), "valid boom");
  CHECK_FALSE(e->swapped());
  CHECK(max_diff(state_of(*l->model), s->after_step_states.back()) == 0);
}

// ---------------------------------------------------------------- real data

TEST_CASE("Fashion-MNIST: EarlyStopping + SaveModel + CSVLogger on a small subset with a tiny model", "[tracker]") {
  REQUIRE(fs::exists(fashion_mnist_dir() + "/train-images-idx3-ubyte.gz"));  // tools/setup.sh installs it
  th::TempDir dir("strata_fmnist_tracker");
  DataLoaders dls = fashion_mnist({.bs = 128, .num_workers = 0, .n_train = 1024, .n_valid = 256});
  manual_seed(1);
  auto model = std::make_shared<nn::Sequential>(nn::Flatten(), nn::Linear(784, 32), nn::ReLU(), nn::Linear(32, 10));
  Learner learn(dls, model, nn::CrossEntropyLossFlat(), {.metrics = {accuracy()}, .path = dir.path.string()});
  learn.remove_cb<ProgressCallback>();
  auto spy = std::make_shared<StateSpy>(55);  // before EarlyStopping (63) ends the last epoch
  auto csv = std::make_shared<CSVLogger>();
  const int n = 6;
  CaptureCout cap;
  learn.fit(n, 3e-2, {}, {std::make_shared<EarlyStoppingCallback>("accuracy", std::nullopt, 0.0, 1),
                          std::make_shared<SaveModelCallback>(), csv, spy});
  const Recorder& rec = learn.recorder();
  const size_t ran = rec.values.size();
  // EarlyStopping's rule on the recorded accuracies: stop at the first epoch that does not beat the best
  size_t want_ran = n;
  double best_acc = -1;
  for (size_t e = 0; e < size_t(n); ++e) {
    if (!(rec.values.size() > e) ) break;
    if (rec.values[e][2] > best_acc) best_acc = rec.values[e][2];
    else {
      want_ran = e + 1;
      break;
    }
  }
  CHECK(ran == want_ran);
  // SaveModel: the model is the state of the epoch with the lowest valid loss
  size_t best = 0;
  for (size_t e = 1; e < ran; ++e)
    if (rec.values[e][1] < rec.values[best][1]) best = e;
  CHECK(max_diff(state_of(*learn.model), spy->epoch_states.at(best)) == 0);
  CHECK(fs::exists(dir.path / "models" / "model.safetensors"));
  CHECK(lines_of(read_text(dir.path / "history.csv")).size() == ran + 1);
  const auto log = lines_of(csv->read_log());
  check_rows({log.begin() + 1, log.end()}, rec);
  CHECK(learn.validate()[0] == Approx(rec.values[best][1]).epsilon(1e-6));
  CHECK(rec.values[best][2] > 0.6);  // it learned something
}

}  // namespace test_tracker
