// ProgressCallback: what a fit is doing, on a stream (fastai v2's ProgressCallback with
// fastprogress's console bars). One of the Learner's default callbacks (order 60, after the Recorder).
//
// Every fit prints fastai's table: a header of the Recorder's metric_names, then one row per epoch
// (epoch, train_loss, valid_loss, metrics with 6 decimals, time as mm:ss), columns laid out as
// fastprogress does (names padded to 8 characters, two spaces between columns).
// On a terminal it also draws a live bar for each phase, redrawn in place with '\r' at most every
// refresh_s seconds:   epoch 1/3 train |██████------| 50.00% [6/12 00:03<00:03 loss 0.4321]
// and erased before the epoch's row is printed. Written to a stream that is not a terminal (a
// file, a pipe, a std::ostringstream) the output is the table alone: nothing per batch.
// Nothing is printed while the Learner's `logging` is off (validate, get_preds, predict, lr_find).
//
//   learn.remove_cb<ProgressCallback>();
//   learn.add_cb(std::make_shared<ProgressCallback>(ProgressOptions{.out = &log_file}));
//
// Included by learner.hpp's last lines (after recorder.hpp); see recorder.hpp for the include guard.
#include "strata/learn/learner.hpp"

#ifndef STRATA_LEARN_CALLBACKS_PROGRESS_HPP
#define STRATA_LEARN_CALLBACKS_PROGRESS_HPP

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#if __has_include(<unistd.h>)
#include <unistd.h>
#endif

#include "strata/learn/callbacks/recorder.hpp"

namespace strata {

struct ProgressOptions {
  std::ostream* out = nullptr;    // null: std::cout
  std::optional<bool> live = {};  // live bars; default: out is std::cout / std::cerr on a terminal
  double refresh_s = 0.1;         // at most one redraw per refresh_s (the last item always draws)
  int bar_width = 30;
};

class ProgressCallback : public Callback {
 public:
  ProgressCallback() : ProgressCallback(ProgressOptions{}) {}
  explicit ProgressCallback(std::ostream& os) : ProgressCallback(ProgressOptions{.out = &os}) {}
  explicit ProgressCallback(ProgressOptions o) : opts(o) {
    order = 60;
    if (!opts.out) opts.out = &std::cout;
  }
  std::string name() const override { return "ProgressCallback"; }

  ProgressOptions opts;

  /// Whether bars are drawn: opts.live, or else whether out is a terminal.
  bool live() const {
    if (opts.live) return *opts.live;
#if __has_include(<unistd.h>)
    if (opts.out == &std::cout) return ::isatty(STDOUT_FILENO) == 1;
    if (opts.out == &std::cerr || opts.out == &std::clog) return ::isatty(STDERR_FILENO) == 1;
#endif
    return false;
  }

  void before_fit() override {
    active_ = learn->logging && learn->is_main_process();  // distributed: rank 0 prints
    live_ = active_ && live();
    names_.clear();
    if (!active_) return;
    if (auto rec = learn->get_cb<Recorder>()) {
      for (const std::string& n : rec->metric_names)
        names_.push_back(n.size() < 8 ? n + std::string(8 - n.size(), ' ') : n);
      std::string line;
      for (size_t i = 0; i < names_.size(); ++i) line += (i ? "  " : "") + names_[i];
      write_line(line);
    }
  }
  void before_epoch() override {
    if (auto rec = learn->get_cb<Recorder>()) logged_ = rec->epochs_logged;
  }
  void before_train() override { launch("train"); }
  void before_validate() override { launch("valid"); }
  void after_batch() override {
    if (!live_ || total_ <= 0) return;
    done_ = learn->iter + 1;
    const double now = seconds();
    if (now - last_draw_ >= opts.refresh_s || done_ >= total_) draw(now);
  }
  void after_train() override { clear_bar(); }
  void after_validate() override { clear_bar(); }
  void after_epoch() override {
    if (!active_) return;
    clear_bar();
    auto rec = learn->get_cb<Recorder>();
    if (!rec || rec->epochs_logged == logged_ || rec->values.empty()) return;
    std::vector<std::string> cells{std::to_string(rec->epochs.back())};
    for (double v : rec->values.back()) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.6f", v);
      cells.push_back(buf);
    }
    if (rec->add_time) cells.push_back(format_time(rec->times.back()));
    std::string line;
    for (size_t i = 0; i < cells.size(); ++i) {
      const size_t width = (i < names_.size() ? names_[i].size() : cells[i].size()) + 2;
      line += cells[i] + std::string(width > cells[i].size() ? width - cells[i].size() : 0, ' ');
    }
    write_line(line);
  }
  void after_fit() override {
    clear_bar();
    if (active_) opts.out->flush();
  }

 private:
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }
  void write_line(const std::string& line) { *opts.out << line << "\n" << std::flush; }  // a log shows each epoch as it ends
  void launch(const char* phase) {
    if (!live_) return;
    phase_ = phase;
    total_ = learn->dl ? learn->dl->size() : 0;
    done_ = 0;
    t0_ = std::chrono::steady_clock::now();
    last_draw_ = -1e300;
    if (total_ > 0) draw(0);
  }
  void draw(double now) {
    last_draw_ = now;
    const double frac = total_ > 0 ? std::min(1.0, double(done_) / double(total_)) : 0;
    const int filled = int(frac * opts.bar_width);
    std::string bar;
    for (int i = 0; i < opts.bar_width; ++i) bar += i < filled ? "\u2588" : "-";
    char pct[32];
    std::snprintf(pct, sizeof pct, "%.2f%%", 100 * frac);
    const std::string eta = done_ > 0 ? format_time(now / double(done_) * double(total_ - done_)) : "?";
    std::string s = "epoch " + std::to_string(learn->epoch + 1) + "/" + std::to_string(learn->n_epoch) + " " + phase_ +
                    " |" + bar + "| " + pct + " [" + std::to_string(done_) + "/" + std::to_string(total_) + " " +
                    format_time(now) + "<" + eta;
    if (learn->training)
      if (auto rec = learn->get_cb<Recorder>(); rec && rec->smooth.count > 0) {
        char loss[48];
        std::snprintf(loss, sizeof loss, " loss %.4f", rec->smooth_loss());
        s += loss;
      }
    s += "]";
    size_t cols = 0;  // columns: UTF-8 lead bytes
    for (unsigned char c : s) cols += (c & 0xC0) != 0x80;
    *opts.out << "\r" << s << std::string(drawn_ > cols ? drawn_ - cols : 0, ' ') << std::flush;
    drawn_ = std::max(drawn_, cols);
  }
  void clear_bar() {
    if (!drawn_) return;
    *opts.out << "\r" << std::string(drawn_, ' ') << "\r" << std::flush;
    drawn_ = 0;
  }

  bool active_ = false, live_ = false;
  std::vector<std::string> names_;
  int64_t logged_ = 0, total_ = 0, done_ = 0;
  std::string phase_;
  std::chrono::steady_clock::time_point t0_{};
  double last_draw_ = 0;
  size_t drawn_ = 0;
};

}  // namespace strata

#endif  // STRATA_LEARN_CALLBACKS_PROGRESS_HPP
