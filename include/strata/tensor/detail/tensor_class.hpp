// Tensor: a runtime-typed, reference-counted view of a Storage.
//
// A Tensor is a handle (shared_ptr<TensorImpl>): copying it shares the data, like PyTorch. The impl
// holds dtype, shape, strides (in elements), an element offset into the storage, and the autograd
// fields: requires_grad, grad, grad_fn (the Node that made it), hooks. Views (view, permute,
// narrow, expand, ...) make a new impl over the same storage. Ops are free functions in namespace
// strata (`strata::exp(x)`), and the usual ones are also methods (`x.exp()`), defined in
// tensor/methods.hpp. Users include strata/tensor/tensor.hpp, which brings both; op headers include
// this one, so that any header can be included first.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "strata/core/dtype.hpp"
#include "strata/core/device.hpp"
#include "strata/core/error.hpp"
#include "strata/core/shape.hpp"
#include "strata/core/storage.hpp"

namespace strata {

class Tensor;
struct Node;
using TensorHook = std::function<Tensor(const Tensor&)>;

/// The shared state behind a Tensor handle.
struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  Strides strides;     // in elements
  DType dtype = DType::f32;

  // autograd
  bool requires_grad = false;
  bool retains_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<Node> grad_fn;      // null for leaves
  std::vector<TensorHook> hooks;      // leaf hooks (non-leaf hooks live on grad_fn)
};

/// How a dense tensor's elements are laid out in memory (PyTorch's names). channels_last is for
/// 4-D [B, C, H, W] tensors stored as [B, H, W, C]: strides (H*W*C, 1, W*C, C).
enum class MemoryFormat { contiguous, channels_last };

/// The strides of a dense tensor of `shape` in `format` (channels_last needs 4 dims).
inline Strides format_strides(const Shape& shape, MemoryFormat format, std::string_view op = "memory_format") {
  if (format == MemoryFormat::contiguous) return contiguous_strides(shape);
  STRATA_CHECK(shape.size() == 4, op, "got shape ", shape,
               " with channels_last, expected 4 dims [B, C, H, W] (channels_last is 4-D only)");
  const int64_t C = std::max<int64_t>(shape[1], 1), H = std::max<int64_t>(shape[2], 1),
                W = std::max<int64_t>(shape[3], 1);
  return Strides{H * W * C, 1, W * C, C};
}

/// Argument bundle for creation ops: `zeros({2, 3}, {.dtype = DType::f64})`.
struct TensorOptions {
  DType dtype = DType::f32;
  Device device = kCPU;
  bool requires_grad = false;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  /// Fresh dense tensor with uninitialised memory, laid out in `format`.
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = kCPU,
                      MemoryFormat format = MemoryFormat::contiguous) {
    for (int64_t d : shape)
      STRATA_CHECK(d >= 0, "empty", "got shape ", shape, ", expected sizes >= 0");
    auto impl = std::make_shared<TensorImpl>();
    impl->storage = std::make_shared<Storage>(strata::numel(shape) * itemsize(dtype), device);
    impl->shape = shape;
    impl->strides = format_strides(shape, format, "empty");
    impl->dtype = dtype;
    return Tensor(std::move(impl));
  }

  /// Fresh tensor with the given strides: a permutation of a dense layout (each element at its own
  /// address, no gaps), e.g. the strides of another dense tensor; uninitialised memory.
  static Tensor empty_strided(const Shape& shape, const Strides& strides, DType dtype = DType::f32,
                              Device device = kCPU) {
    STRATA_CHECK(shape.size() == strides.size(), "empty_strided", "got shape ", shape, " and strides ",
                 strides, ", expected one stride per dim");
    int64_t span = 1;  // 1 + the largest element offset
    for (size_t d = 0; d < shape.size(); ++d) {
      STRATA_CHECK(shape[d] >= 0 && strides[d] >= 0, "empty_strided", "got shape ", shape, " and strides ",
                   strides, ", expected sizes and strides >= 0");
      if (shape[d] == 0) span = 0;
      if (span) span += (shape[d] - 1) * strides[d];
    }
    auto impl = std::make_shared<TensorImpl>();
    impl->storage = std::make_shared<Storage>(span * itemsize(dtype), device);
    impl->shape = shape;
    impl->strides = strides;
    impl->dtype = dtype;
    return Tensor(std::move(impl));
  }

  /// A view of this tensor's storage with other sizes, strides and offset (no checks, no autograd).
  Tensor as_strided_(const Shape& shape, const Strides& strides, int64_t offset) const {
    auto impl = std::make_shared<TensorImpl>();
    impl->storage = impl_->storage;
    impl->offset = offset;
    impl->shape = shape;
    impl->strides = strides;
    impl->dtype = impl_->dtype;
    return Tensor(std::move(impl));
  }

  // ---- metadata ----
  bool defined() const { return impl_ != nullptr; }
  explicit operator bool() const = delete;  // ambiguous: is it "defined" or "nonzero"? say which
  const Shape& shape() const { return impl().shape; }
  const Shape& sizes() const { return impl().shape; }
  int64_t size(int64_t d) const { return impl().shape[wrap_indexed_dim(d, dim(), "size")]; }
  const Strides& strides() const { return impl().strides; }
  int64_t stride(int64_t d) const { return impl().strides[wrap_indexed_dim(d, dim(), "stride")]; }
  int dim() const { return int(impl().shape.size()); }
  int64_t numel() const { return strata::numel(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  int64_t offset() const { return impl().offset; }
  int64_t element_size() const { return itemsize(dtype()); }
  bool is_floating_point() const { return is_floating(dtype()); }
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  bool is_contiguous() const {
    if (numel() == 0) return true;  // as in PyTorch: no element is out of place
    int64_t expect = 1;
    for (int i = dim() - 1; i >= 0; --i) {
      if (impl().shape[i] == 1) continue;
      if (impl().strides[i] != expect) return false;
      expect *= impl().shape[i];
    }
    return true;
  }
  /// Dense in `format`, ignoring size-1 dims (PyTorch's is_contiguous(memory_format)).
  bool is_contiguous(MemoryFormat format) const {
    if (format == MemoryFormat::contiguous) return is_contiguous();
    if (dim() != 4) return false;
    if (numel() == 0) return true;
    int64_t expect = 1;
    for (int d : {1, 3, 2, 0}) {
      if (impl().shape[d] == 1) continue;
      if (impl().strides[d] != expect) return false;
      expect *= impl().shape[d];
    }
    return true;
  }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }

  /// Pointer to the first element for CPU code; T must match the dtype. A cuda tensor is refused
  /// (the CPU kernels would read device memory): cuda code uses storage()->data() + offset().
  template <class T>
  T* data_ptr() const {
    STRATA_CHECK(dtype_v<T> == dtype(), "data_ptr", "got a request for ", dtype_v<T>,
                 " data from a tensor of dtype ", dtype(), ", expected the same dtype");
    check_cpu("data_ptr");
    return static_cast<T*>(impl().storage->data()) + impl().offset;
  }
  void* raw_data() const {
    check_cpu("raw_data");
    return static_cast<char*>(impl().storage->data()) + impl().offset * element_size();
  }
  /// Error naming `op` unless on the cpu (op runs a CPU kernel and has no cuda kernel yet).
  void check_cpu(std::string_view op) const {
    STRATA_CHECK(device().is_cpu(), op, "got a tensor on ", device(),
                 ", expected cpu: the op runs a CPU kernel and has no cuda kernel yet (move the tensor "
                 "with to(kCPU))");
  }
  /// The value of a one-element tensor, converted to T.
  template <class T>
  T item() const;

  // ---- autograd ----
  bool requires_grad() const { return impl().requires_grad; }
  Tensor& requires_grad_(bool on = true) {
    STRATA_CHECK(!on || is_floating_point(), "requires_grad_", "got dtype ", dtype(),
                 ", expected a floating dtype (only floating tensors have gradients)");
    STRATA_CHECK(is_leaf() || on, "requires_grad_",
                 "got a non-leaf tensor, expected a leaf (use detach() first)");
    impl().requires_grad = on;
    return *this;
  }
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  const std::shared_ptr<Node>& grad_fn() const { return impl().grad_fn; }
  /// The accumulated gradient (undefined until backward reaches this tensor).
  Tensor grad() const { return Tensor(impl().grad); }
  void set_grad(const Tensor& g) { impl().grad = g.impl_; }
  /// Keep the gradient of a non-leaf tensor in grad() after backward.
  void retain_grad();
  /// hook(grad) runs when this tensor's gradient is computed; it may return a replacement.
  void register_hook(TensorHook hook);
  /// Backpropagates from this tensor; a scalar needs no gradient argument.
  void backward(const Tensor& gradient = Tensor()) const;

  // ---- methods forwarding to ops (defined in tensor/methods.hpp) ----
  Tensor detach() const;
  Tensor clone() const;
  Tensor contiguous() const;
  Tensor contiguous(MemoryFormat format) const;
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;
  Tensor pin_memory() const;
  /// Whether this is a cpu tensor in page-locked host memory (see pin_memory).
  bool is_pinned() const { return defined() && impl().storage && impl().storage->pinned(); }
  Tensor view(const Shape& shape) const;
  Tensor reshape(const Shape& shape) const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor expand(const Shape& shape) const;
  Tensor expand_as(const Tensor& other) const;
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;

  Tensor neg() const;
  Tensor abs() const;
  Tensor exp() const;
  Tensor log() const;
  Tensor sqrt() const;
  Tensor rsqrt() const;
  Tensor sin() const;
  Tensor cos() const;
  Tensor tanh() const;
  Tensor sigmoid() const;
  Tensor relu() const;
  Tensor pow(double exponent) const;
  Tensor pow(const Tensor& exponent) const;
  Tensor clamp(double lo, double hi) const;

  Tensor sum() const;
  Tensor sum(const std::vector<int64_t>& dims, bool keepdim = false) const;
  Tensor mean() const;
  Tensor mean(const std::vector<int64_t>& dims, bool keepdim = false) const;
  Tensor max() const;
  Tensor max(int64_t dim, bool keepdim = false) const;
  Tensor min() const;
  Tensor min(int64_t dim, bool keepdim = false) const;
  Tensor argmax() const;
  Tensor argmax(int64_t dim, bool keepdim = false) const;
  Tensor var(const std::vector<int64_t>& dims = {}, bool unbiased = true, bool keepdim = false) const;
  Tensor std(const std::vector<int64_t>& dims = {}, bool unbiased = true, bool keepdim = false) const;
  Tensor softmax(int64_t dim) const;
  Tensor log_softmax(int64_t dim) const;
  Tensor matmul(const Tensor& other) const;

  // in place (no autograd through them: use them on data, not on tensors that require grad)
  Tensor& add_(const Tensor& other, double alpha = 1.0);
  Tensor& add_(double value);
  Tensor& sub_(const Tensor& other);
  Tensor& sub_(double value);
  Tensor& mul_(const Tensor& other);
  Tensor& mul_(double value);
  Tensor& div_(const Tensor& other);
  Tensor& div_(double value);
  Tensor& zero_();
  Tensor& fill_(double value);
  Tensor& copy_(const Tensor& src);

  TensorImpl& impl() const {
    STRATA_CHECK(impl_ != nullptr, "Tensor", "got an undefined tensor, expected a defined one");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

}  // namespace strata
