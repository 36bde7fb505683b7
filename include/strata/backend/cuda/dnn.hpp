// conv2d's cuda path: cuDNN on a GPU, the CPU conv kernels under the emulator.
//
// Fills tensor/conv.hpp's cuda_conv2d_fwd_hook and cuda_conv2d_bwd_hook, so conv2d, conv2d_relu
// and their backward run on cuda tensors (include <strata/backend/cuda.hpp>). The contract is the
// hooks' (tensor/conv.hpp): x with any strides, w and b contiguous, out and dx contiguous NCHW or
// channels-last, all of one floating dtype; float16/bfloat16 accumulate in float32.
//
// Native (STRATA_CUDA): cuDNN's legacy convolution API (deprecated in cuDNN 9 but complete; the
// graph API is the way on):
//   forward   cudnnConvolutionForward (beta 0), then the bias and conv2d_relu's ReLU in one pass in
//             place (kernels/cuda/bias_act.cuh's bias_act_channels_fwd; ReLU keeps NaN, as the CPU)
//   backward  cudnnConvolutionBackwardData (dx), cudnnConvolutionBackwardFilter (dw),
//             cudnnConvolutionBackwardBias (db)
// Every tensor gets a 4-D descriptor with its real strides (cudnnSetTensor4dDescriptorEx), so
// channels-last and strided x need no copy; the filter is NCHW, or NHWC (a permuted copy of w, and
// dw through one) when x is channels-last, as PyTorch gives cuDNN. Math: float32 in FMA math (no TF32,
// as matmul), float16/bfloat16 in tensor-op math with float32 compute, float64 in double. The
// algorithm is the first the cudnnGet*Algorithm_v7 heuristics rank as supported; its workspace comes
// from the caching allocator for the call (stream order makes the reuse safe: every op runs on the
// default stream). One cudnnHandle_t per device, made on first use and kept for the process. Every
// status is checked; a failure throws strata::Error naming the op and the call.
// Emulator (STRATA_CUDA_EMULATE): device memory is host memory, so cpu::conv2d_fwd_kernel /
// conv2d_bwd_kernel run on it (float, double); the forward runs without bias and ReLU, and the same
// bias_act launch as natively adds them on the device (so CI runs that kernel). float16/bfloat16
// are widened to float32 on the device, run the same way and rounded once into the result (what
// the CPU op does).
#pragma once

#include <climits>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/cpu/conv.hpp"
#include "kernels/cuda/bias_act.cuh"
#include "strata/backend/device_allocator.hpp"
#include "strata/backend/runtime.hpp"
#include "strata/tensor/conv.hpp"
#include "strata/tensor/tensor.hpp"

#if !defined(STRATA_CUDA_EMULATE)
#include <cudnn.h>
#endif

namespace strata::cuda::detail {

/// A tensor's first element as a typed pointer (emulator) or untyped (cuDNN); nullptr if undefined.
template <class T>
const T* dnn_cptr(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.storage()->data()) + t.offset() : nullptr;
}
template <class T>
T* dnn_ptr(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.storage()->data()) + t.offset() : nullptr;
}

inline const void* dnn_cvoid(const Tensor& t) {
  return t.defined() ? static_cast<const char*>(t.storage()->data()) + t.offset() * itemsize(t.dtype()) : nullptr;
}
inline void* dnn_void(const Tensor& t) {
  return t.defined() ? static_cast<char*>(t.storage()->data()) + t.offset() * itemsize(t.dtype()) : nullptr;
}

inline void conv_check(const Tensor& ref, std::initializer_list<const Tensor*> ts, const char* op) {
  const DType t = ref.dtype();
  STRATA_CHECK(t == DType::f32 || t == DType::f64 || t == DType::f16 || t == DType::bf16, op, "got dtype ", t, " on ",
               ref.device(), ", expected float32, float64, float16 or bfloat16");
  for (const Tensor* x : ts)
    if (x->defined())
      STRATA_CHECK(x->dtype() == t && x->device() == ref.device(), op, "got a ", x->dtype(), " tensor on ",
                   x->device(), ", expected ", t, " on ", ref.device());
}

/// The convolution's epilogue in place: out = relu(out + b) (relu) or out + b, one bias_act launch;
/// b [Cout] per channel or undefined (no bias); out contiguous NCHW ([B, Cout, OH*OW]) or
/// channels-last ([B*OH*OW, Cout]). Nothing to do without a bias and a ReLU.
inline void conv_bias_act(const Tensor& out, const Tensor& b, bool relu, bool channels_last) {
  if ((!b.defined() && !relu) || out.numel() == 0) return;
  const DeviceGuard guard(out.device().index);
  const int64_t B = out.size(0), C = out.size(1), S = out.size(2) * out.size(3);
  const cpu::BiasAct act = relu ? cpu::BiasAct::relu : cpu::BiasAct::none;
  dispatch_device_floating(out.dtype(), "conv2d", [&]<class E>(type_tag<E>) {
    E* y = dnn_ptr<E>(out);
    bias_act_channels_fwd<E>(y, dnn_cptr<E>(b), y, channels_last ? B * S : B, C, channels_last ? 1 : S, act);
  });
}

#if defined(STRATA_CUDA_EMULATE)

/// An f32 tensor of t's shape laid out like t (channels-last or contiguous), undefined for undefined.
inline Tensor conv_f32_like(const Tensor& t, bool channels_last) {
  if (!t.defined()) return t;
  if (channels_last && t.dim() == 4)
    return Tensor::empty({t.size(0), t.size(2), t.size(3), t.size(1)}, DType::f32, t.device()).permute({0, 3, 1, 2});
  return Tensor::empty(t.shape(), DType::f32, t.device());
}
inline Tensor conv_widen(const Tensor& t) { return t.defined() ? to(t, DType::f32) : t; }
inline void conv_round_into(const Tensor& dst, const Tensor& src) {
  if (!dst.defined()) return;
  Tensor d = dst;
  copy_(d, src);
}
inline cpu::ConvStrides conv_strides(const Tensor& x) {
  return x.defined() ? cpu::ConvStrides{x.stride(0), x.stride(1), x.stride(2), x.stride(3)} : cpu::ConvStrides{};
}

inline void cuda_conv2d_fwd_impl(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& b,
                                 const cpu::Conv2dParams& p, cpu::ConvEpilogue ep) {
  conv_check(out, {&x, &w, &b}, "conv2d");
  if (out.dtype() == DType::f16 || out.dtype() == DType::bf16) {  // float32 on the device, rounded once
    const Tensor of = conv_f32_like(out, ep.channels_last);
    cuda_conv2d_fwd_impl(of, conv_widen(x), conv_widen(w), conv_widen(b), p, ep);
    conv_round_into(out, of);
    return;
  }
  dispatch_float(out.dtype(), "conv2d", [&]<class T>(type_tag<T>) {  // the convolution alone, then the epilogue
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
      cpu::conv2d_fwd_kernel<T>(p, dnn_cptr<T>(x), conv_strides(x), dnn_cptr<T>(w), nullptr, dnn_ptr<T>(out),
                                cpu::ConvAlgo::automatic, {.channels_last = ep.channels_last, .relu = false});
  });
  conv_bias_act(out, b, ep.relu, ep.channels_last);
}

inline void cuda_conv2d_bwd_impl(const Tensor& dout, const Tensor& x, const Tensor& w, const Tensor& dx,
                                 const Tensor& dw, const Tensor& db, const cpu::Conv2dParams& p, bool channels_last) {
  conv_check(dout, {&x, &w, &dx, &dw, &db}, "conv2d_backward");
  if (dout.dtype() == DType::f16 || dout.dtype() == DType::bf16) {
    const Tensor dxf = conv_f32_like(dx, channels_last), dwf = conv_f32_like(dw, false), dbf = conv_f32_like(db, false);
    cuda_conv2d_bwd_impl(conv_widen(dout), conv_widen(x), conv_widen(w), dxf, dwf, dbf, p, channels_last);
    conv_round_into(dx, dxf);
    conv_round_into(dw, dwf);
    conv_round_into(db, dbf);
    return;
  }
  dispatch_float(dout.dtype(), "conv2d_backward", [&]<class T>(type_tag<T>) {
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
      cpu::conv2d_bwd_kernel<T>(p, dnn_cptr<T>(x), conv_strides(x), dnn_cptr<T>(w), dnn_cptr<T>(dout), dnn_ptr<T>(dx),
                                dnn_ptr<T>(dw), dnn_ptr<T>(db), cpu::ConvAlgo::automatic, channels_last);
  });
}

#else  // cuDNN

inline void check_cudnn(cudnnStatus_t s, const char* op, const char* call) {
  if (s == CUDNN_STATUS_SUCCESS) [[likely]]
    return;
  throw Error(std::string(op) + ": got " + cudnnGetErrorString(s) + " from " + call + ", expected CUDNN_STATUS_SUCCESS");
}

/// A device's cuDNN handle, made on first use and kept for the process.
inline cudnnHandle_t cudnn_handle(int device) {
  static std::mutex mutex;
  static auto* handles = new std::vector<cudnnHandle_t>();  // never destroyed (like the allocator)
  std::lock_guard lock(mutex);
  if (size_t(device) >= handles->size()) handles->resize(size_t(device) + 1, nullptr);
  cudnnHandle_t& h = (*handles)[size_t(device)];
  if (!h) check_cudnn(cudnnCreate(&h), "conv2d", "cudnnCreate");
  return h;
}

// descriptors that destroy themselves
struct DnnTensorDesc {
  cudnnTensorDescriptor_t p = nullptr;
  DnnTensorDesc() { check_cudnn(cudnnCreateTensorDescriptor(&p), "conv2d", "cudnnCreateTensorDescriptor"); }
  ~DnnTensorDesc() { cudnnDestroyTensorDescriptor(p); }
  DnnTensorDesc(const DnnTensorDesc&) = delete;
  DnnTensorDesc& operator=(const DnnTensorDesc&) = delete;
};
struct DnnFilterDesc {
  cudnnFilterDescriptor_t p = nullptr;
  DnnFilterDesc() { check_cudnn(cudnnCreateFilterDescriptor(&p), "conv2d", "cudnnCreateFilterDescriptor"); }
  ~DnnFilterDesc() { cudnnDestroyFilterDescriptor(p); }
  DnnFilterDesc(const DnnFilterDesc&) = delete;
  DnnFilterDesc& operator=(const DnnFilterDesc&) = delete;
};
struct DnnConvDesc {
  cudnnConvolutionDescriptor_t p = nullptr;
  DnnConvDesc() { check_cudnn(cudnnCreateConvolutionDescriptor(&p), "conv2d", "cudnnCreateConvolutionDescriptor"); }
  ~DnnConvDesc() { cudnnDestroyConvolutionDescriptor(p); }
  DnnConvDesc(const DnnConvDesc&) = delete;
  DnnConvDesc& operator=(const DnnConvDesc&) = delete;
};
/// Scratch device memory for one call, from the caching allocator.
struct DnnWorkspace {
  void* p = nullptr;
  size_t bytes = 0;
  int device = 0;
  DnnWorkspace(size_t n, int dev) : bytes(n), device(dev) {
    if (n) p = cuda_caching_allocator().allocate(n, dev);
  }
  ~DnnWorkspace() { cuda_caching_allocator().release(p, bytes, device); }
  DnnWorkspace(const DnnWorkspace&) = delete;
  DnnWorkspace& operator=(const DnnWorkspace&) = delete;
};

inline cudnnDataType_t cudnn_type(DType t) {
  switch (t) {
    case DType::f32: return CUDNN_DATA_FLOAT;
    case DType::f64: return CUDNN_DATA_DOUBLE;
    case DType::f16: return CUDNN_DATA_HALF;
    default: return CUDNN_DATA_BFLOAT16;
  }
}

inline int dnn_int(int64_t v, const char* op) {
  STRATA_CHECK(v >= 0 && v <= INT_MAX, op, "got a size or stride ", v, ", expected one cuDNN's int holds");
  return int(v);
}

/// A 4-D tensor descriptor with t's sizes and strides ([1, C, 1, 1] for a 1-D bias).
inline void dnn_describe(DnnTensorDesc& d, const Tensor& t, const char* op) {
  int64_t n[4], s[4];
  if (t.dim() == 1) {
    n[0] = 1, n[1] = t.size(0), n[2] = 1, n[3] = 1;
    s[0] = t.size(0), s[1] = 1, s[2] = 1, s[3] = 1;
  } else {
    for (int i = 0; i < 4; ++i) n[i] = t.size(i), s[i] = t.size(i) == 1 ? 1 : t.stride(i);
  }
  check_cudnn(cudnnSetTensor4dDescriptorEx(d.p, cudnn_type(t.dtype()), dnn_int(n[0], op), dnn_int(n[1], op),
                                           dnn_int(n[2], op), dnn_int(n[3], op), dnn_int(s[0], op), dnn_int(s[1], op),
                                           dnn_int(s[2], op), dnn_int(s[3], op)),
              op, "cudnnSetTensor4dDescriptorEx");
}

/// The filter and convolution descriptors of problem p in dtype t; nhwc: the filter's memory is
/// [Cout, kH, kW, Cin/groups] (what channels-last convolutions run fastest with), else NCHW.
inline void dnn_describe_conv(DnnFilterDesc& f, DnnConvDesc& c, const cpu::Conv2dParams& p, DType t, bool nhwc,
                              const char* op) {
  check_cudnn(cudnnSetFilter4dDescriptor(f.p, cudnn_type(t), nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW,
                                         dnn_int(p.Cout, op), dnn_int(p.Cin / p.groups, op), dnn_int(p.kH, op),
                                         dnn_int(p.kW, op)),
              op, "cudnnSetFilter4dDescriptor");
  check_cudnn(cudnnSetConvolution2dDescriptor(c.p, dnn_int(p.padding[0], op), dnn_int(p.padding[1], op),
                                              dnn_int(p.stride[0], op), dnn_int(p.stride[1], op),
                                              dnn_int(p.dilation[0], op), dnn_int(p.dilation[1], op),
                                              CUDNN_CROSS_CORRELATION,
                                              t == DType::f64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT),
              op, "cudnnSetConvolution2dDescriptor");
  check_cudnn(cudnnSetConvolutionGroupCount(c.p, dnn_int(p.groups, op)), op, "cudnnSetConvolutionGroupCount");
  const cudnnMathType_t math = t == DType::f32   ? CUDNN_FMA_MATH  // no TF32
                               : t == DType::f64 ? CUDNN_DEFAULT_MATH
                                                 : CUDNN_TENSOR_OP_MATH;
  check_cudnn(cudnnSetConvolutionMathType(c.p, math), op, "cudnnSetConvolutionMathType");
}

/// The first result a cudnnGet*Algorithm_v7 heuristic marks as supported.
template <class Perf>
const Perf& dnn_pick(const Perf* perf, int n, const char* op, const char* call) {
  for (int i = 0; i < n; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS) return perf[i];
  strata::detail::fail(op, "got no supported algorithm from ", call, ", expected at least one");
}

/// alpha = 1 and beta = 0 in the scaling type cuDNN reads for dtype t (double for double).
struct DnnScale {
  float f1 = 1.f, f0 = 0.f;
  double d1 = 1.0, d0 = 0.0;
  bool dbl;
  explicit DnnScale(DType t) : dbl(t == DType::f64) {}
  const void* one() const { return dbl ? static_cast<const void*>(&d1) : static_cast<const void*>(&f1); }
  const void* zero() const { return dbl ? static_cast<const void*>(&d0) : static_cast<const void*>(&f0); }
};

inline void cuda_conv2d_fwd_impl(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& b,
                                 const cpu::Conv2dParams& p, cpu::ConvEpilogue ep) {
  constexpr const char* op = "conv2d";
  conv_check(out, {&x, &w, &b}, op);
  if (out.numel() == 0) return;
  const int device = out.device().index;
  const DeviceGuard guard(device);  // cuDNN runs on the current device
  cudnnHandle_t h = cudnn_handle(device);
  const DType t = out.dtype();
  DnnTensorDesc xd, yd;
  DnnFilterDesc wd;
  DnnConvDesc cd;
  dnn_describe(xd, x, op);
  dnn_describe(yd, out, op);
  const bool nhwc = conv2d_channels_last(x);
  const Tensor wf = nhwc ? contiguous(w.permute({0, 2, 3, 1})) : w;  // the filter in x's layout
  dnn_describe_conv(wd, cd, p, t, nhwc, op);
  cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  int found = 0;
  check_cudnn(cudnnGetConvolutionForwardAlgorithm_v7(h, xd.p, wd.p, cd.p, yd.p, CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
                                                     &found, perf),
              op, "cudnnGetConvolutionForwardAlgorithm_v7");
  const auto& algo = dnn_pick(perf, found, op, "cudnnGetConvolutionForwardAlgorithm_v7");
  size_t bytes = 0;
  check_cudnn(cudnnGetConvolutionForwardWorkspaceSize(h, xd.p, wd.p, cd.p, yd.p, algo.algo, &bytes), op,
              "cudnnGetConvolutionForwardWorkspaceSize");
  DnnWorkspace ws(bytes, device);
  const DnnScale s(t);
  void* y = dnn_void(out);
  check_cudnn(cudnnConvolutionForward(h, s.one(), xd.p, dnn_cvoid(x), wd.p, dnn_cvoid(wf), cd.p, algo.algo, ws.p,
                                      ws.bytes, s.zero(), yd.p, y),
              op, "cudnnConvolutionForward");
  conv_bias_act(out, b, ep.relu, ep.channels_last);  // one pass, on the default stream after the convolution
}

inline void cuda_conv2d_bwd_impl(const Tensor& dout, const Tensor& x, const Tensor& w, const Tensor& dx,
                                 const Tensor& dw, const Tensor& db, const cpu::Conv2dParams& p, bool channels_last) {
  constexpr const char* op = "conv2d_backward";
  conv_check(dout, {&x, &w, &dx, &dw, &db}, op);
  const int device = dout.device().index;
  const DeviceGuard guard(device);  // cuDNN runs on the current device
  const DType t = dout.dtype();
  const DnnScale s(t);
  if (dout.numel() == 0) {  // no output: the gradients of w and b are zeros, dx too
    for (const Tensor* g : {&dx, &dw, &db})
      if (g->defined() && g->numel() > 0) strata::cuda::memset(dnn_void(*g), 0, size_t(g->numel() * itemsize(t)));
    return;
  }
  cudnnHandle_t h = cudnn_handle(device);
  DnnTensorDesc dyd;
  DnnFilterDesc wd;
  DnnConvDesc cd;
  dnn_describe(dyd, dout, op);
  dnn_describe_conv(wd, cd, p, t, channels_last, op);  // channels-last: w and dw as [Cout, kH, kW, Cin/groups]
  if (dx.defined() && dx.numel() > 0) {
    DnnTensorDesc dxd;
    dnn_describe(dxd, dx, op);
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int found = 0;
    check_cudnn(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, wd.p, dyd.p, cd.p, dxd.p,
                                                            CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &found, perf),
                op, "cudnnGetConvolutionBackwardDataAlgorithm_v7");
    const auto& algo = dnn_pick(perf, found, op, "cudnnGetConvolutionBackwardDataAlgorithm_v7");
    size_t bytes = 0;
    check_cudnn(cudnnGetConvolutionBackwardDataWorkspaceSize(h, wd.p, dyd.p, cd.p, dxd.p, algo.algo, &bytes), op,
                "cudnnGetConvolutionBackwardDataWorkspaceSize");
    DnnWorkspace ws(bytes, device);
    const Tensor wf = channels_last ? contiguous(w.permute({0, 2, 3, 1})) : w;
    check_cudnn(cudnnConvolutionBackwardData(h, s.one(), wd.p, dnn_cvoid(wf), dyd.p, dnn_cvoid(dout), cd.p,
                                             algo.algo, ws.p, ws.bytes, s.zero(), dxd.p, dnn_void(dx)),
                op, "cudnnConvolutionBackwardData");
  }
  if (dw.defined()) {
    DnnTensorDesc xd;
    dnn_describe(xd, x, op);
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int found = 0;
    check_cudnn(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, xd.p, dyd.p, cd.p, wd.p,
                                                              CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &found, perf),
                op, "cudnnGetConvolutionBackwardFilterAlgorithm_v7");
    const auto& algo = dnn_pick(perf, found, op, "cudnnGetConvolutionBackwardFilterAlgorithm_v7");
    size_t bytes = 0;
    check_cudnn(cudnnGetConvolutionBackwardFilterWorkspaceSize(h, xd.p, dyd.p, cd.p, wd.p, algo.algo, &bytes), op,
                "cudnnGetConvolutionBackwardFilterWorkspaceSize");
    DnnWorkspace ws(bytes, device);
    const Tensor dwf = channels_last ? Tensor::empty({p.Cout, p.kH, p.kW, p.Cin / p.groups}, t, dw.device()) : dw;
    check_cudnn(cudnnConvolutionBackwardFilter(h, s.one(), xd.p, dnn_cvoid(x), dyd.p, dnn_cvoid(dout), cd.p,
                                               algo.algo, ws.p, ws.bytes, s.zero(), wd.p, dnn_void(dwf)),
                op, "cudnnConvolutionBackwardFilter");
    if (channels_last) {  // back to dw's contiguous [Cout, Cin/groups, kH, kW]
      Tensor d = dw;
      copy_(d, dwf.permute({0, 3, 1, 2}));
    }
  }
  if (db.defined()) {
    DnnTensorDesc bd;
    dnn_describe(bd, db, op);
    check_cudnn(cudnnConvolutionBackwardBias(h, s.one(), dyd.p, dnn_cvoid(dout), s.zero(), bd.p, dnn_void(db)),
                op, "cudnnConvolutionBackwardBias");
  }
}

#endif

inline const bool conv2d_registered = (strata::cuda_conv2d_fwd_hook.fn = &cuda_conv2d_fwd_impl,
                                       strata::cuda_conv2d_bwd_hook.fn = &cuda_conv2d_bwd_impl, true);

}  // namespace strata::cuda::detail
