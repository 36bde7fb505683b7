// Callbacks: ParamScheduler's one-cycle and flat-cos values read from the optimizer during real
// fits against fastai's formulas written out here; the Recorder's smoothed loss against the
// debiased EMA of the raw losses, its per-epoch values against losses and accuracy computed from
// what a spy saw; plot_loss / plot_sched / lr_find PNGs read back with stb_image; to_csv parsed
// back; lr_find's exponential lrs, its divergence stop against the 4 x best rule, the weights it
// restores, and fastai's valley rule on hand-made curves; ProgressCallback's table on a stream
// that is not a terminal.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <sstream>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "strata/learn/learn.hpp"
#include "strata/nn/linear.hpp"

#include <strata/io/image.hpp>

namespace test_callbacks {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;
namespace fs = std::filesystem;

namespace {

using th::blobs;
using th::blob_dls;

/// A classifier on the blobs, without the progress callback (tests print nothing).
std::unique_ptr<Learner> blob_learner(int64_t n_train, int64_t n_valid, int64_t bs, LearnerOptions o = {}) {
  auto learn = std::make_unique<Learner>(blob_dls(n_train, n_valid, bs), std::make_shared<nn::Linear>(2, 2),
                                         nn::CrossEntropyLossFlat(), std::move(o));
  learn->remove_cb<ProgressCallback>();
  return learn;
}

/// Sees the optimizer's hypers at every training step, and the losses, predictions and targets.
struct Spy : Callback {
  std::vector<std::vector<double>> lr, mom;  // [step][group]
  std::vector<double> train_losses;
  std::vector<std::vector<double>> valid_losses, valid_bs, valid_correct;  // [epoch][batch]
  std::vector<std::vector<double>> params_after_step;
  Spy() { order = 70; }
  void before_step() override {
    std::vector<double> l, m;
    for (const Hypers& h : learn->opt->hypers()) {
      l.push_back(h.at("lr"));
      m.push_back(h.count("mom") ? h.at("mom") : NAN);
    }
    lr.push_back(l);
    mom.push_back(m);
  }
  void after_step() override {
    std::vector<double> p;
    for (auto& t : learn->model->parameters())
      for (double v : th::values(t)) p.push_back(v);
    params_after_step.push_back(p);
  }
  void before_validate() override {
    valid_losses.emplace_back();
    valid_bs.emplace_back();
    valid_correct.emplace_back();
  }
  void after_loss() override {
    if (learn->training) return train_losses.push_back(th::values(learn->loss)[0]);
    valid_losses.back().push_back(th::values(learn->loss)[0]);
    const std::vector<double> p = th::values(learn->pred), y = th::values(learn->yb[0]);
    double correct = 0;
    for (size_t i = 0; i < y.size(); ++i) correct += double(p[2 * i + 1] > p[2 * i]) == y[i];
    valid_bs.back().push_back(double(y.size()));
    valid_correct.back().push_back(correct);
  }
};

/// fastai's sched_cos(start, end)(pos) and combined_cos, written out.
double cos_anneal(double start, double end, double pos) {
  return start + (1 + std::cos(std::numbers::pi * (1 - pos))) * (end - start) / 2;
}
double two_phase(double pct, double start, double middle, double end, double pos) {
  return pos < pct ? cos_anneal(start, middle, pos / pct) : cos_anneal(middle, end, (pos - pct) / (1 - pct));
}

fs::path scratch_dir() {
  const fs::path dir = fs::temp_directory_path() / ("strata_test_callbacks_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

struct Png {
  int w = 0, h = 0, c = 0;
  int64_t non_white = 0, blue = 0, red = 0;  // pixels: not white, tab10 blue lines, the marker's red
};
Png read_png(const fs::path& path) {
  Png im;
  const Tensor t = read_image(path.string(), 3);
  im.w = int(t.size(2)), im.h = int(t.size(1)), im.c = 3;
  const uint8_t* p = t.data_ptr<uint8_t>();
  const int64_t n = int64_t(im.w) * im.h;
  for (int64_t i = 0; i < n; ++i) {
    const unsigned char r = p[i], g = p[n + i], b = p[2 * n + i];
    im.non_white += !(r == 255 && g == 255 && b == 255);
    im.blue += r < 90 && g > 90 && g < 150 && b > 150;  // (31, 119, 180) and its antialiased edge
    im.red += r > 200 && g < 40 && b < 40;
  }
  return im;
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream is(s);
  for (std::string l; std::getline(is, l);) out.push_back(l);
  return out;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out{""};
  for (char ch : s)
    if (ch == sep) out.emplace_back();
    else out.back().push_back(ch);
  return out;
}

}  // namespace

TEST_CASE("ParamScheduler: fit_one_cycle sets fastai's one-cycle lr and mom at every training step", "[callbacks]") {
  auto learn = blob_learner(32, 16, 8);  // 4 batches per epoch
  auto spy = std::make_shared<Spy>();
  learn->add_cb(spy);
  const double lr_max = 0.01;
  learn->fit_one_cycle(2, lr_max);
  const int total = 8;
  REQUIRE(spy->lr.size() == size_t(total));
  for (int k = 0; k < total; ++k) {
    const double pos = double(k) / total;
    INFO("step " << k);
    CHECK(spy->lr[size_t(k)][0] == Approx(two_phase(0.25, lr_max / 25, lr_max, lr_max / 1e5, pos)).epsilon(1e-12));
    CHECK(spy->mom[size_t(k)][0] == Approx(two_phase(0.25, 0.95, 0.85, 0.95, pos)).epsilon(1e-12));
  }
  CHECK(spy->lr[0][0] == Approx(lr_max / 25).epsilon(1e-12));  // start: lr_max / div
  CHECK(spy->mom[0][0] == Approx(0.95).epsilon(1e-12));
  CHECK(spy->lr[2][0] == Approx(lr_max).epsilon(1e-12));  // pos = pct_start: the peak
  CHECK(spy->mom[2][0] == Approx(0.85).epsilon(1e-12));
  // the last step is 1/8 before the end: cosine from lr_max toward lr_max / 1e5 at 5/6 of that phase
  CHECK(spy->lr[7][0] == Approx(lr_max / 1e5 + (lr_max - lr_max / 1e5) * (1 + std::cos(std::numbers::pi * 5 / 6)) / 2)
                             .epsilon(1e-12));
  // the Recorder and the scheduler saw the same values
  const Recorder& rec = learn->recorder();
  REQUIRE(rec.lrs.size() == size_t(total));
  for (int k = 0; k < total; ++k) {
    CHECK(rec.lrs[size_t(k)] == spy->lr[size_t(k)][0]);
    CHECK(rec.moms[size_t(k)] == spy->mom[size_t(k)][0]);
  }
  // the scheduler is gone after the fit; a plain fit trains at the Learner's lr
  CHECK(learn->get_cb<ParamScheduler>() == nullptr);
}

TEST_CASE("ParamScheduler: discriminative one-cycle over 2 groups, other div / pct_start / moms", "[callbacks]") {
  auto learn = blob_learner(24, 8, 8, {.splitter = [](nn::Module& m) {
    auto& l = dynamic_cast<nn::Linear&>(m);
    return ParamGroups{{l.weight}, {l.bias}};
  }});  // 3 batches per epoch
  auto spy = std::make_shared<Spy>();
  learn->fit_one_cycle(2, Slice{1e-3, 1e-1}, 10, 1e3, 0.5, {}, {0.9, 0.8, 0.7}, {spy});
  REQUIRE(spy->lr.size() == 6);
  const double maxes[2] = {1e-3, 1e-1};  // even_mults(1e-3, 1e-1, 2)
  for (int k = 0; k < 6; ++k)
    for (int g = 0; g < 2; ++g) {
      INFO("step " << k << " group " << g);
      const double pos = k / 6.0, m = maxes[g];
      CHECK(spy->lr[size_t(k)][size_t(g)] == Approx(two_phase(0.5, m / 10, m, m / 1e3, pos)).epsilon(1e-12));
      CHECK(spy->mom[size_t(k)][size_t(g)] == Approx(two_phase(0.5, 0.9, 0.8, 0.7, pos)).epsilon(1e-12));
    }
}

TEST_CASE("ParamScheduler: fit_flat_cos keeps lr flat for pct_start, then cosine to lr / div_final", "[callbacks]") {
  auto learn = blob_learner(32, 16, 8, {.opt_func = SGD(0.9)});
  auto spy = std::make_shared<Spy>();
  learn->add_cb(spy);
  learn->fit_flat_cos(2, 0.05);
  REQUIRE(spy->lr.size() == 8);
  for (int k = 0; k < 8; ++k) {
    const double pos = k / 8.0;
    const double want = pos < 0.75 ? 0.05 : cos_anneal(0.05, 0.05 / 1e5, (pos - 0.75) / 0.25);
    INFO("step " << k);
    CHECK(spy->lr[size_t(k)][0] == Approx(want).epsilon(1e-12));
    CHECK(spy->mom[size_t(k)][0] == 0.9);  // not scheduled
  }
  CHECK(spy->lr[5][0] == 0.05);
  CHECK(spy->lr[7][0] == Approx(0.05 / 1e5 + (0.05 - 0.05 / 1e5) * 0.5).epsilon(1e-12));  // pos 7/8: half-way down
  // a custom schedule through the callback itself, one for every group
  auto spy2 = std::make_shared<Spy>();
  auto lin = std::make_shared<ParamScheduler>(std::map<std::string, Schedule>{{"lr", sched_lin(0.1, 0.5)}});
  learn->fit(1, {}, {}, {lin, spy2});
  REQUIRE(spy2->lr.size() == 4);
  for (int k = 0; k < 4; ++k) CHECK(spy2->lr[size_t(k)][0] == Approx(0.1 + 0.4 * k / 4.0).epsilon(1e-12));
  CHECK(lin->hps["lr"] == std::vector<double>{spy2->lr[0][0], spy2->lr[1][0], spy2->lr[2][0], spy2->lr[3][0]});
  ParamScheduler braced({{"mom", sched_no(0.9, 0.9)}});  // one schedule per name, from braces
  CHECK(braced.scheds.at("mom").size() == 1);
  th::check_throws(
      [&] { learn->fit_one_cycle(1, 0.01, 25, 1e5, 0.25, {}, {0.9, 0.8}); }, {"fit_one_cycle", "2 moms", "expected 3"});
}

TEST_CASE("Recorder: raw and smoothed losses, lrs, per-epoch values and metrics", "[callbacks]") {
  auto learn = blob_learner(40, 20, 8, {.opt_func = SGD(0.9), .lr = 0.05, .metrics = {accuracy()}});
  auto spy = std::make_shared<Spy>();
  learn->add_cb(spy);
  learn->fit(3);
  const Recorder& rec = learn->recorder();
  CHECK(rec.metric_names == std::vector<std::string>{"epoch", "train_loss", "valid_loss", "accuracy", "time"});
  // per batch: 5 training batches x 3 epochs
  REQUIRE(spy->train_losses.size() == 15);
  REQUIRE(rec.losses.size() == 15);
  REQUIRE(rec.smooth_losses.size() == 15);
  double v = 0;
  for (size_t i = 0; i < 15; ++i) {
    CHECK(rec.losses[i] == spy->train_losses[i]);
    v = 0.98 * v + 0.02 * rec.losses[i];
    const double debiased = v / (1 - std::pow(0.98, double(i + 1)));
    CHECK(rec.smooth_losses[i] == Approx(debiased).epsilon(1e-12));
    CHECK(rec.lrs[i] == 0.05);
    CHECK(rec.moms[i] == 0.9);
  }
  CHECK(rec.smooth_loss() == rec.smooth_losses.back());
  // per epoch
  REQUIRE(rec.values.size() == 3);
  CHECK(rec.iters == std::vector<int64_t>{5, 10, 15});
  CHECK(rec.epochs == std::vector<int64_t>{0, 1, 2});
  REQUIRE(rec.times.size() == 3);
  REQUIRE(spy->valid_losses.size() == 3);
  for (size_t e = 0; e < 3; ++e) {
    INFO("epoch " << e);
    REQUIRE(rec.values[e].size() == 3);
    CHECK(rec.values[e][0] == rec.smooth_losses[5 * e + 4]);
    double total = 0, n = 0, correct = 0;
    for (size_t b = 0; b < spy->valid_losses[e].size(); ++b) {
      total += spy->valid_losses[e][b] * spy->valid_bs[e][b];
      n += spy->valid_bs[e][b];
      correct += spy->valid_correct[e][b];
    }
    CHECK(n == 20);
    CHECK(rec.values[e][1] == Approx(total / n).epsilon(1e-12));
    CHECK(rec.values[e][2] == Approx(correct / n).epsilon(1e-12));
    CHECK(rec.times[e] >= 0);
    CHECK(rec.times[e] < 60);
  }
  // validate() reports the same valid loss, and leaves the history of the fit alone
  const std::vector<double> val = learn->validate();
  CHECK(val[0] == Approx(rec.values[2][1]).epsilon(1e-9));
  CHECK(rec.values.size() == 3);
  CHECK(rec.losses.size() == 15);
  // a new fit starts a new history
  learn->fit(1);
  CHECK(rec.values.size() == 1);
  CHECK(rec.losses.size() == 5);
  CHECK(rec.smooth_losses[0] == rec.losses[0]);  // debiased EMA of one loss is the loss
}

TEST_CASE("Recorder: a cancelled validation gives NaN valid values; fit without a valid set", "[callbacks]") {
  struct NoValid : Callback {
    void before_validate() override { throw CancelValidException(); }
  };
  auto learn = blob_learner(16, 8, 8, {.metrics = {accuracy()}});
  learn->fit(1, {}, {}, {std::make_shared<NoValid>()});
  const Recorder& rec = learn->recorder();
  REQUIRE(rec.values.size() == 1);
  CHECK(std::isfinite(rec.values[0][0]));
  CHECK(std::isnan(rec.values[0][1]));
  CHECK(std::isnan(rec.values[0][2]));
  Learner no_valid({.train = DataLoader(blobs(16, 1), {.bs = 8})}, std::make_shared<nn::Linear>(2, 2),
                   nn::CrossEntropyLossFlat());
  no_valid.remove_cb<ProgressCallback>();
  no_valid.fit(2);
  REQUIRE(no_valid.recorder().values.size() == 2);
  CHECK(std::isnan(no_valid.recorder().values[1][1]));
  CHECK(no_valid.recorder().losses.size() == 4);
}

TEST_CASE("Recorder: to_csv writes fastai's CSVLogger columns; format_time; shortest numbers", "[callbacks]") {
  CHECK(format_time(0) == "00:00");
  CHECK(format_time(65.9) == "01:05");
  CHECK(format_time(3725) == "1:02:05");
  CHECK(Recorder::shortest(0.1) == "0.1");
  CHECK(Recorder::shortest(1e-5) == "1e-05");
  CHECK(Recorder::shortest(NAN) == "nan");

  auto learn = blob_learner(16, 8, 8, {.metrics = {accuracy(), error_rate()}});
  learn->fit(2);
  const Recorder& rec = learn->recorder();
  const fs::path file = scratch_dir() / "history.csv";
  rec.to_csv(file.string());
  std::ifstream in(file);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text == rec.csv());
  const auto lines = lines_of(text);
  REQUIRE(lines.size() == 3);
  CHECK(lines[0] == "epoch,train_loss,valid_loss,accuracy,error_rate,time");
  for (size_t e = 0; e < 2; ++e) {
    const auto cells = split(lines[e + 1], ',');
    REQUIRE(cells.size() == 6);
    CHECK(cells[0] == std::to_string(e));
    for (size_t c = 0; c < 4; ++c) CHECK(std::stod(cells[c + 1]) == rec.values[e][c]);  // exact round trip
    CHECK(cells[5] == "00:00");
  }
  CHECK(rec.values[1][2] + rec.values[1][3] == Approx(1.0));
}

TEST_CASE("Recorder: plot_loss and plot_sched write PNGs", "[callbacks]") {
  auto learn = blob_learner(64, 16, 8);
  learn->fit_one_cycle(2, 0.01);
  const fs::path dir = scratch_dir();
  const Recorder& rec = learn->recorder();
  rec.plot_loss((dir / "loss.png").string());
  const Png loss = read_png(dir / "loss.png");
  CHECK(loss.w == 800);
  CHECK(loss.h == 500);
  CHECK(loss.non_white > 2000);
  CHECK(loss.blue > 100);  // the train curve
  rec.plot_sched((dir / "sched.png").string());
  const Png sched = read_png(dir / "sched.png");
  CHECK(sched.w == 1200);  // lr and mom side by side
  CHECK(sched.h == 400);
  CHECK(sched.blue > 200);
  th::check_throws([&] { rec.plot_loss((dir / "x.png").string(), -1); }, {"plot_loss", "skip_start = -1"});
  Recorder empty;
  th::check_throws([&] { empty.plot_loss((dir / "x.png").string()); }, {"plot_loss", "no training batches"});
}

TEST_CASE("lr_find: exponential lrs, num_it batches, weights and optimizer restored, a PNG", "[callbacks]") {
  auto learn = blob_learner(32, 16, 8, {.lr = 3e-3});  // 4 batches per epoch: 20 batches take 6 epochs
  auto spy = std::make_shared<Spy>();
  learn->add_cb(spy);
  std::vector<double> before;
  for (auto& p : learn->model->parameters())
    for (double v : th::values(p)) before.push_back(v);
  const fs::path png = scratch_dir() / "lr_find.png";
  const LRFindResult r = learn->lr_find(1e-5, 1e-1, 20, true, png.string());
  REQUIRE(r.lrs.size() == 20);
  REQUIRE(r.losses.size() == 20);
  for (size_t k = 0; k < 20; ++k) CHECK(r.lrs[k] == Approx(1e-5 * std::pow(1e4, double(k) / 20)).epsilon(1e-12));
  for (size_t k = 0; k < 20; ++k) CHECK(spy->lr[k][0] == r.lrs[k]);
  CHECK(spy->valid_losses.empty());  // no validation
  // the weights moved during the run and were put back after it
  REQUIRE(spy->params_after_step.size() == 20);
  CHECK(spy->params_after_step.back() != before);
  std::vector<double> after;
  for (auto& p : learn->model->parameters())
    for (double v : th::values(p)) after.push_back(v);
  CHECK(after == before);
  CHECK(learn->opt->hypers().back().at("lr") == 3e-3);
  CHECK(learn->get_cb<LRFinder>() == nullptr);
  CHECK(learn->logging);
  // the suggestion is fastai's valley on losses[20 // 10 : -5]
  const std::vector<double> mid(r.losses.begin() + 2, r.losses.end() - 5);
  const size_t idx = valley_index(mid);
  CHECK(r.valley == r.lrs[2 + idx]);
  CHECK(r.valley_loss == r.losses[2 + idx]);
  const Png im = read_png(png);
  CHECK(im.w == 800);
  CHECK(im.h == 500);
  CHECK(im.blue > 100);
  CHECK(im.red > 20);  // the suggestion's marker
  th::check_throws([&] { learn->lr_find(0, 1); }, {"lr_find", "start_lr = 0"});
}

TEST_CASE("lr_find: stops when the smoothed loss passes 4 x its best (SGD on a quadratic diverges above lr 1)",
          "[callbacks]") {
  // pred = w x with x = 1 and noisy targets y: loss = mean (w - y)^2, SGD multiplies w - y by 1 - 2 lr,
  // so the loss explodes once lr > 1.
  manual_seed(3);
  const int64_t n = 16;
  auto ds = std::make_shared<TensorDataset>(std::vector<Tensor>{ones({n, 1})}, std::vector<Tensor>{randn({n, 1})});
  Learner learn({.train = DataLoader(ds, {.bs = 4, .shuffle = true, .seed = 1})},
                std::make_shared<nn::Linear>(1, 1, false), nn::MSELossFlat(), {.opt_func = SGD()});
  learn.remove_cb<ProgressCallback>();
  const std::vector<double> w0 = th::values(learn.model->parameters()[0]);
  const LRFindResult r = learn.lr_find(1e-4, 1e2, 100, true, "");
  INFO("stopped after " << r.lrs.size() << " batches at lr " << r.lrs.back());
  REQUIRE(r.lrs.size() > 10);
  CHECK(r.lrs.size() < 100);
  CHECK(r.lrs.back() > 1.0);
  // the rule, checked on the returned smoothed losses: no earlier batch passed 4 x the best so far, the last did
  double best = INFINITY;
  for (size_t k = 0; k + 1 < r.losses.size(); ++k) {
    best = std::min(best, r.losses[k]);
    CHECK(r.losses[k] <= 4 * best);
  }
  CHECK(r.losses.back() > 4 * best);
  CHECK(th::values(learn.model->parameters()[0]) == w0);
  CHECK(std::isfinite(r.valley));
  CHECK(r.valley < 1.0);
  // without stop_div it runs all num_it batches
  CHECK(learn.lr_find(1e-4, 1e-2, 30, false, "").lrs.size() == 30);
}

TEST_CASE("valley: fastai's longest-valley rule on hand-made curves", "[callbacks]") {
  // lds = 1 2 2 3 4 4 5 6 3 1; the longest valley ends at 7 (lds 6), starts at 7 - 6 = 1;
  // sections = 6 / 3 = 2; idx = 1 + 2 + 1 = 4
  CHECK(valley_index({5, 4, 4.5, 3, 2, 2.5, 1, 0.5, 3, 6}) == 4);
  // strictly decreasing, 4 points: max_end 3, max_start 3 - 4 = -1, sections 4/3: idx = -1 + 1 + 0 = 0
  CHECK(valley_index({4, 3, 2, 1}) == 0);
  // 2 points: idx = -1 + 0 + 0 = -1, Python's last element
  CHECK(valley_index({2, 1}) == 1);
  // flat or rising: no valley, idx 0
  CHECK(valley_index({1, 1, 1}) == 0);
  CHECK(valley_index({1, 2, 3}) == 0);
  CHECK(valley_index({7}) == 0);
  // U shape with noise: lds 1 2 3 3 4 5 6 6 1 1 1 -> valley 0..6 (the first lds 6), sections 2, idx 0 + 2 + 1 = 3
  CHECK(valley_index({9, 8, 7, 7.5, 6, 5, 4, 4.5, 9, 10, 12}) == 3);
  th::check_throws([] { valley_index({}); }, {"valley", "no losses"});
}

TEST_CASE("ProgressCallback: on a stream that is not a terminal, a header and one line per epoch", "[callbacks]") {
  auto learn = blob_learner(32, 16, 8, {.metrics = {accuracy()}});
  std::ostringstream os;
  learn->add_cb(std::make_shared<ProgressCallback>(os));
  learn->fit(3);
  const auto lines = lines_of(os.str());
  REQUIRE(lines.size() == 4);
  CHECK(os.str().find('\r') == std::string::npos);
  // fastprogress's console table: names padded to 8, 2 spaces apart; cells padded to their column
  CHECK(lines[0] == "epoch     train_loss  valid_loss  accuracy  time    ");
  const Recorder& rec = learn->recorder();
  for (size_t e = 0; e < 3; ++e) {
    char want[256];
    std::snprintf(want, sizeof want, "%-10zu%-12.6f%-12.6f%-10.6f%-10s", e, rec.values[e][0], rec.values[e][1],
                  rec.values[e][2], format_time(rec.times[e]).c_str());
    CHECK(lines[e + 1] == want);
  }
  // quiet in validate / get_preds / lr_find
  os.str("");
  learn->validate();
  learn->get_preds();
  learn->lr_find(1e-5, 1e-1, 8, true, "");
  CHECK(os.str().empty());
  // forced live bars: drawn with '\r', erased, then the same table
  std::ostringstream live;
  auto prog = learn->get_cb<ProgressCallback>();
  learn->remove_cb(prog);
  learn->add_cb(std::make_shared<ProgressCallback>(ProgressOptions{.out = &live, .live = true, .refresh_s = 0}));
  learn->fit(1);
  CHECK(live.str().find("epoch 1/1 train |") != std::string::npos);
  CHECK(live.str().find("100.00% [4/4 ") != std::string::npos);
  CHECK(live.str().find("epoch 1/1 valid |") != std::string::npos);
  CHECK(live.str().find(" loss ") != std::string::npos);
  const auto live_lines = lines_of(live.str());
  REQUIRE(live_lines.size() == 2);
  CHECK(live_lines[1].rfind('\r') != std::string::npos);
  CHECK(live_lines[1].substr(live_lines[1].rfind('\r') + 1).rfind("0         ", 0) == 0);
  fs::remove_all(scratch_dir());
}

}  // namespace test_callbacks
