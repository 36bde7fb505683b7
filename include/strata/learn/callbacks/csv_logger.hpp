// CSVLogger: the Recorder's per-epoch rows written to a CSV file as training goes (fastai v2,
// callback/progress.py).
//
//   auto csv = std::make_shared<CSVLogger>("history.csv");
//   learn.fit(5, 1e-3, {}, {csv});
//   std::cout << csv->read_log();
//
// The file is learn.path / fname. before_fit writes the header (the Recorder's metric_names:
// epoch, train_loss, valid_loss, metrics..., time); each after_epoch appends the epoch's row and
// flushes, so the lines of finished epochs survive a crash; a fit that ends by an exception closes the
// file (after_exception). The lines are the Recorder's csv_header() / csv_row(), those of
// Recorder::csv() / to_csv (Recorder::shortest numbers, "nan", time as format_time's mm:ss).
// append = true keeps the file's lines and adds to them. Differs from fastai: in append mode the
// header is written only when the file is new or empty (fastai repeats it at every fit, which makes
// the file no longer one table); read_log() returns the text (fastai returns a pandas DataFrame).
// Order 60, after the Recorder (50), whose after_epoch writes the row this one copies. Like the
// trackers it stays off in validate(), get_preds(), predict() and lr_find().
#pragma once

#include "strata/learn/learner.hpp"
#include "strata/learn/callbacks/recorder.hpp"
#include "strata/learn/callbacks/tracker.hpp"  // detail::is_non_training_fit

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace strata {

class CSVLogger : public Callback {
 public:
  std::string fname;
  bool append;
  std::string file_path;  // learn.path / fname, set at before_fit

  explicit CSVLogger(std::string fname_ = "history.csv", bool append_ = false)
      : fname(std::move(fname_)), append(append_) {
    STRATA_CHECK(!fname.empty(), "CSVLogger", "got an empty fname, expected a file name such as \"history.csv\"");
    order = 60;
  }
  std::string name() const override { return "CSVLogger"; }

  /// Whether the file is open (during a fit; closed at its end, also when it ends by an exception).
  bool is_open() const { return file_.is_open(); }
  /// The file's text (header and rows); throws when it was never written.
  std::string read_log() const {
    std::ifstream in(file_path, std::ios::binary);
    STRATA_CHECK(!file_path.empty() && in.good(), "CSVLogger", "got no log file to read at \"", file_path,
                 "\", expected read_log() after a fit");
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  void before_fit() override {
    run = !detail::is_non_training_fit(*learn) && learn->is_main_process();  // distributed: rank 0 writes
    if (!run) return;
    trained_ = false;
    const std::filesystem::path p = std::filesystem::path(learn->path) / fname;
    file_path = p.string();
    if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
    std::error_code ec;
    const bool had_lines = append && std::filesystem::exists(p, ec) && std::filesystem::file_size(p, ec) > 0;
    if (file_.is_open()) file_.close();  // a fit that ended by an exception never reached after_fit
    file_.clear();
    file_.open(file_path, append ? std::ios::app : std::ios::trunc);
    STRATA_CHECK(file_.good(), "CSVLogger", "got a file \"", file_path, "\" that cannot be opened for writing, ",
                 "expected a writable path (learn.path / fname)");
    if (!had_lines) {
      file_ << learn->recorder().csv_header() << "\n";
      file_.flush();
    }
  }
  void after_train() override { trained_ = true; }
  void after_epoch() override {
    const Recorder& rec = learn->recorder();
    // the Recorder writes a row from the fit's first training phase on
    if (!trained_ || rec.values.empty() || !file_.is_open()) return;
    file_ << rec.csv_row(rec.values.size() - 1) << "\n";
    file_.flush();
    STRATA_CHECK(file_.good(), "CSVLogger", "got a write error on \"", file_path, "\", expected the row written");
  }
  void after_fit() override {
    if (file_.is_open()) file_.close();
  }
  /// A fit that ends by an exception (not a cancel): the file is closed at once, its lines so far kept.
  void after_exception() override {
    if (file_.is_open()) file_.close();
  }

 private:
  std::ofstream file_;
  bool trained_ = false;
};

}  // namespace strata
