// Callback: the base of everything that hooks into the Learner's training loop, the loop's events,
// and the exceptions that cancel a part of it (fastai v2, callback/core.py).
//
// The Learner runs its loop as a sequence of named events (see learner.hpp for the exact order):
//
//   before_fit
//     before_epoch
//       before_train
//         before_batch  after_pred  after_loss  before_backward  after_backward  before_step  after_step  after_batch
//       after_train
//       before_validate
//         before_batch  after_pred  after_loss  after_batch
//       after_validate
//     after_epoch
//   after_fit
//
// At each event the Learner calls every callback, sorted by `order`, through operator()(Event).
// A callback overrides only the events it uses and reads or changes anything the Learner holds
// through `learn` (batch, xb, yb, pred, loss, opt, model, ...). Throwing a Cancel*Exception skips
// the rest of a batch, step, backward, training phase, validation, epoch or the whole fit; the
// Learner then runs after_cancel_<x> and after_<x>. run_train / run_valid switch a callback off
// for the inner-loop events of the training or validation phase (fastai's _inner_loop), and
// `run = false` switches it off until the end of the current fit. When a fit ends by an exception
// that is not a Cancel*Exception, no event runs; each callback's after_exception() is called instead.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <typeinfo>

#if __has_include(<cxxabi.h>)
#include <cxxabi.h>
#define STRATA_HAS_CXXABI 1
#endif

namespace strata {

/// The Learner's events, in fastai's names.
enum class Event {
  before_fit,
  before_epoch,
  before_train,
  before_batch,
  after_pred,
  after_loss,
  before_backward,
  after_backward,
  before_step,
  after_step,
  after_cancel_batch,
  after_batch,
  after_cancel_train,
  after_train,
  before_validate,
  after_cancel_validate,
  after_validate,
  after_cancel_epoch,
  after_epoch,
  after_cancel_fit,
  after_fit,
  after_cancel_backward,
  after_cancel_step,
};

/// "before_fit", "after_batch", ...
inline const char* event_name(Event e) {
  switch (e) {
    case Event::before_fit: return "before_fit";
    case Event::before_epoch: return "before_epoch";
    case Event::before_train: return "before_train";
    case Event::before_batch: return "before_batch";
    case Event::after_pred: return "after_pred";
    case Event::after_loss: return "after_loss";
    case Event::before_backward: return "before_backward";
    case Event::after_backward: return "after_backward";
    case Event::before_step: return "before_step";
    case Event::after_step: return "after_step";
    case Event::after_cancel_batch: return "after_cancel_batch";
    case Event::after_batch: return "after_batch";
    case Event::after_cancel_train: return "after_cancel_train";
    case Event::after_train: return "after_train";
    case Event::before_validate: return "before_validate";
    case Event::after_cancel_validate: return "after_cancel_validate";
    case Event::after_validate: return "after_validate";
    case Event::after_cancel_epoch: return "after_cancel_epoch";
    case Event::after_epoch: return "after_epoch";
    case Event::after_cancel_fit: return "after_cancel_fit";
    case Event::after_fit: return "after_fit";
    case Event::after_cancel_backward: return "after_cancel_backward";
    case Event::after_cancel_step: return "after_cancel_step";
  }
  return "unknown_event";
}

/// Events of the per-batch loop: the ones run_train / run_valid filter (fastai's _inner_loop).
inline bool is_inner_loop_event(Event e) {
  switch (e) {
    case Event::before_batch:
    case Event::after_pred:
    case Event::after_loss:
    case Event::before_backward:
    case Event::after_cancel_backward:
    case Event::after_backward:
    case Event::before_step:
    case Event::after_step:
    case Event::after_cancel_step:
    case Event::after_batch:
    case Event::after_cancel_batch: return true;
    default: return false;
  }
}

// ---- cancel exceptions: control flow, not errors. Each is caught by the loop level it names.
/// The common base of the Cancel*Exception types.
struct CancelException : std::exception {
  const char* what() const noexcept override { return "CancelException"; }
};
/// Skips the rest of the current batch (after_cancel_batch, after_batch still run).
struct CancelBatchException : CancelException {
  const char* what() const noexcept override { return "CancelBatchException"; }
};
/// Skips the optimizer step of the current batch (zero_grad still runs).
struct CancelStepException : CancelException {
  const char* what() const noexcept override { return "CancelStepException"; }
};
/// Skips the backward pass of the current batch.
struct CancelBackwardException : CancelException {
  const char* what() const noexcept override { return "CancelBackwardException"; }
};
/// Skips the rest of the training phase of the epoch; validation still runs.
struct CancelTrainException : CancelException {
  const char* what() const noexcept override { return "CancelTrainException"; }
};
/// Skips the rest of the validation phase.
struct CancelValidException : CancelException {
  const char* what() const noexcept override { return "CancelValidException"; }
};
/// Skips the rest of the epoch.
struct CancelEpochException : CancelException {
  const char* what() const noexcept override { return "CancelEpochException"; }
};
/// Stops the fit (after_cancel_fit, after_fit still run).
struct CancelFitException : CancelException {
  const char* what() const noexcept override { return "CancelFitException"; }
};

class Learner;

/// The base of every callback: override the events you need.
class Callback {
 public:
  virtual ~Callback() = default;

  /// The Learner this callback is attached to (set by Learner::add_cb).
  Learner* learn = nullptr;
  /// Callbacks run in increasing order (TrainEvalCallback -10, Recorder 50, ...); ties keep insertion order.
  int order = 0;
  /// Whether the inner-loop events run during training / validation.
  bool run_train = true, run_valid = true;
  /// false switches the callback off until the end of the current fit (reset to true after after_fit).
  bool run = true;

  /// The class name without namespace, e.g. "Recorder", "TrainEvalCallback".
  virtual std::string name() const {
    std::string n = typeid(*this).name();
#ifdef STRATA_HAS_CXXABI
    int status = 0;
    char* d = abi::__cxa_demangle(n.c_str(), nullptr, nullptr, &status);
    if (status == 0 && d) n = d;
    std::free(d);
#endif
    if (auto p = n.rfind("::"); p != std::string::npos) n = n.substr(p + 2);
    return n;
  }

  virtual void before_fit() {}
  virtual void before_epoch() {}
  virtual void before_train() {}
  virtual void before_batch() {}
  virtual void after_pred() {}
  virtual void after_loss() {}
  virtual void before_backward() {}
  virtual void after_backward() {}
  virtual void before_step() {}
  virtual void after_step() {}
  virtual void after_cancel_batch() {}
  virtual void after_batch() {}
  virtual void after_cancel_train() {}
  virtual void after_train() {}
  virtual void before_validate() {}
  virtual void after_cancel_validate() {}
  virtual void after_validate() {}
  virtual void after_cancel_epoch() {}
  virtual void after_epoch() {}
  virtual void after_cancel_fit() {}
  virtual void after_fit() {}
  virtual void after_cancel_backward() {}
  virtual void after_cancel_step() {}

  /// Not an event of the loop: called once when fit / validate / get_preds / predict ends by an
  /// exception that escapes it (any exception but the Cancel*Exceptions the loop catches; no after_*
  /// event runs then, as in fastai), before it propagates. A callback that changed the Learner or the model for the length of a fit or a phase
  /// (a loss, weights, hooks) puts it back here. What it throws is swallowed.
  virtual void after_exception() {}

  /// What the Learner calls: runs the event's method unless run / run_train / run_valid say not to
  /// (fastai's Callback.__call__). Defined in learner.hpp, where the Learner's `training` is known.
  void operator()(Event e);

  /// Whether this callback's class overrides the method for e (show_training_loop lists only those,
  /// like fastai's hasattr(cb, event)). Reads the vtable under the Itanium C++ ABI (GCC, Clang);
  /// elsewhere it answers true for every event.
  bool overrides(Event e) const {
    switch (e) {
      case Event::before_fit: return overrides_(&Callback::before_fit);
      case Event::before_epoch: return overrides_(&Callback::before_epoch);
      case Event::before_train: return overrides_(&Callback::before_train);
      case Event::before_batch: return overrides_(&Callback::before_batch);
      case Event::after_pred: return overrides_(&Callback::after_pred);
      case Event::after_loss: return overrides_(&Callback::after_loss);
      case Event::before_backward: return overrides_(&Callback::before_backward);
      case Event::after_backward: return overrides_(&Callback::after_backward);
      case Event::before_step: return overrides_(&Callback::before_step);
      case Event::after_step: return overrides_(&Callback::after_step);
      case Event::after_cancel_batch: return overrides_(&Callback::after_cancel_batch);
      case Event::after_batch: return overrides_(&Callback::after_batch);
      case Event::after_cancel_train: return overrides_(&Callback::after_cancel_train);
      case Event::after_train: return overrides_(&Callback::after_train);
      case Event::before_validate: return overrides_(&Callback::before_validate);
      case Event::after_cancel_validate: return overrides_(&Callback::after_cancel_validate);
      case Event::after_validate: return overrides_(&Callback::after_validate);
      case Event::after_cancel_epoch: return overrides_(&Callback::after_cancel_epoch);
      case Event::after_epoch: return overrides_(&Callback::after_epoch);
      case Event::after_cancel_fit: return overrides_(&Callback::after_cancel_fit);
      case Event::after_fit: return overrides_(&Callback::after_fit);
      case Event::after_cancel_backward: return overrides_(&Callback::after_cancel_backward);
      case Event::after_cancel_step: return overrides_(&Callback::after_cancel_step);
    }
    return true;
  }

  /// Calls the method for e unconditionally.
  void call(Event e) {
    switch (e) {
      case Event::before_fit: return before_fit();
      case Event::before_epoch: return before_epoch();
      case Event::before_train: return before_train();
      case Event::before_batch: return before_batch();
      case Event::after_pred: return after_pred();
      case Event::after_loss: return after_loss();
      case Event::before_backward: return before_backward();
      case Event::after_backward: return after_backward();
      case Event::before_step: return before_step();
      case Event::after_step: return after_step();
      case Event::after_cancel_batch: return after_cancel_batch();
      case Event::after_batch: return after_batch();
      case Event::after_cancel_train: return after_cancel_train();
      case Event::after_train: return after_train();
      case Event::before_validate: return before_validate();
      case Event::after_cancel_validate: return after_cancel_validate();
      case Event::after_validate: return after_validate();
      case Event::after_cancel_epoch: return after_cancel_epoch();
      case Event::after_epoch: return after_epoch();
      case Event::after_cancel_fit: return after_cancel_fit();
      case Event::after_fit: return after_fit();
      case Event::after_cancel_backward: return after_cancel_backward();
      case Event::after_cancel_step: return after_cancel_step();
    }
  }

 private:
  bool overrides_(void (Callback::*method)()) const;
};

using CallbackPtr = std::shared_ptr<Callback>;

inline bool Callback::overrides_(void (Callback::*method)()) const {
#if defined(__GNUC__) || defined(__clang__)
  // Itanium ABI: a pointer to a virtual member function is {1 + byte offset of its vtable slot, this
  // adjustment} ({offset, 2 * adjustment + 1} on ARM). Compare this object's slot with Callback's own.
  struct Rep {
    std::ptrdiff_t ptr, adj;
  };
  static_assert(sizeof(method) == sizeof(Rep));
  Rep r;
  std::memcpy(&r, &method, sizeof r);
#if defined(__arm__) || defined(__aarch64__)
  if (!(r.adj & 1)) return true;
  const std::ptrdiff_t offset = r.ptr;
#else
  if (!(r.ptr & 1)) return true;
  const std::ptrdiff_t offset = r.ptr - 1;
#endif
  static const Callback base;
  auto slot = [offset](const Callback& cb) {
    const char* vtable = *reinterpret_cast<const char* const*>(static_cast<const void*>(&cb));
    const void* fn;
    std::memcpy(&fn, vtable + offset, sizeof fn);
    return fn;
  };
  return slot(*this) != slot(base);
#else
  (void)method;
  return true;
#endif
}

}  // namespace strata

#undef STRATA_HAS_CXXABI
