// Grad mode: whether ops record the graph. `NoGrad guard;` turns recording off for a scope
// (torch.no_grad()); `EnableGrad` turns it back on inside one. Per thread, like PyTorch.
#pragma once

namespace strata {

namespace detail {
inline thread_local bool grad_enabled = true;
}

inline bool is_grad_enabled() { return detail::grad_enabled; }
inline void set_grad_enabled(bool on) { detail::grad_enabled = on; }

/// RAII scope without graph recording.
class NoGrad {
 public:
  NoGrad() : prev_(detail::grad_enabled) { detail::grad_enabled = false; }
  ~NoGrad() { detail::grad_enabled = prev_; }
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  bool prev_;
};

/// RAII scope with graph recording, even inside a NoGrad scope.
class EnableGrad {
 public:
  EnableGrad() : prev_(detail::grad_enabled) { detail::grad_enabled = true; }
  ~EnableGrad() { detail::grad_enabled = prev_; }
  EnableGrad(const EnableGrad&) = delete;
  EnableGrad& operator=(const EnableGrad&) = delete;

 private:
  bool prev_;
};

}  // namespace strata
