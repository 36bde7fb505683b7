// cuda device tensors (core/device.hpp, core/storage.hpp, backend/device_allocator.hpp,
// tensor/to_device.hpp): Device::cuda(i), device storage through the caching allocator, to(device).
// Round trips cpu -> cuda -> cpu for six dtypes and for strided, offset, expanded and channels-last
// sources, against values read with a plain strided loop (and some written out by hand); under
// the emulator also the device bytes themselves. The allocator's size classes, block reuse and
// counters; the gradient of to(device) on its way back to the leaf's device; the errors: a CPU op
// on a cuda tensor, a device index out of range, no registered backend.
#include <catch2/catch.hpp>

#include <sstream>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "strata/backend/cuda.hpp"  // the device allocator and the ops' cuda kernels (strata_tests links them anyway)
#include "strata/tensor/tensor.hpp"

namespace test_cuda_tensor {

using namespace strata;

/// All elements of a cpu tensor in row-major order, as double: a plain loop over the strides.
inline std::vector<double> host_values(const Tensor& t) {
  REQUIRE(t.device() == kCPU);
  return th::values(t);  // tests/helpers.hpp: a plain loop over the strides
}

/// The elements of a contiguous cuda tensor read straight from device memory (emulator only:
/// there device memory is host memory).
inline std::vector<double> device_bytes_as_values(const Tensor& t) {
  REQUIRE(t.device().is_cuda());
  REQUIRE(t.is_contiguous());
  std::vector<double> out;
  dispatch_all(t.dtype(), "device_bytes_as_values", [&]<class T>(type_tag<T>) {
    const T* base = static_cast<const T*>(t.storage()->data()) + t.offset();
    for (int64_t i = 0; i < t.numel(); ++i) out.push_back(cast_value<double>(base[i]));
  });
  return out;
}

/// 0, 1, 2, ... (small integers: exact in every dtype up to 255) as a contiguous cpu tensor.
inline Tensor counting(const Shape& shape, DType dtype) {
  return arange(double(numel(shape)), {.dtype = dtype}).view(shape);
}

using th::error_of;

/// src -> cuda -> cpu: the cuda copy is contiguous with src's dtype and shape and holds src's
/// values, and so does the copy back.
inline void check_round_trip(const Tensor& src) {
  const std::vector<double> want = host_values(src);
  const Tensor dev = src.to(kCUDA);
  CHECK(dev.device() == Device::cuda(0));
  CHECK(dev.dtype() == src.dtype());
  CHECK(dev.shape() == src.shape());
  CHECK(dev.strides() == contiguous_strides(src.shape()));
  if (cuda::kEmulated) CHECK(device_bytes_as_values(dev) == want);
  const Tensor back = dev.to(kCPU);
  CHECK(back.device() == kCPU);
  CHECK(back.dtype() == src.dtype());
  CHECK(back.shape() == src.shape());
  CHECK(back.is_contiguous());
  CHECK(back.storage() != src.storage());
  CHECK(host_values(back) == want);
}

TEST_CASE("Device::cuda names a device and prints as cuda:i", "[cuda_tensor]") {
  CHECK(Device::cuda() == kCUDA);
  CHECK(Device::cuda(2).index == 2);
  CHECK(Device::cuda(2).is_cuda());
  CHECK(Device::cpu() == kCPU);
  CHECK(Device::cuda(0) != kCPU);
  std::ostringstream os;
  os << Device::cuda(1) << ' ' << Device::cpu();
  CHECK(os.str() == "cuda:1 cpu");
}

TEST_CASE("to(device) round trips every dtype", "[cuda_tensor]") {
  for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i64, DType::u8}) {
    INFO(dt);
    check_round_trip(counting({3, 5}, dt));
    check_round_trip(counting({}, dt));      // a scalar
    check_round_trip(counting({0, 4}, dt));  // no elements
  }
  // values that need every bit of an f32 and of an f64
  const Tensor f = from_vector<float>({1.0f / 3, -2.5e-30f, 3.4e38f, -0.0f});
  check_round_trip(f);
  const Tensor d = from_vector<double>({1.0 / 3, -1e-300, 1.7e308});
  check_round_trip(d);
}

TEST_CASE("to(device) of strided, offset, expanded and channels-last sources is contiguous", "[cuda_tensor]") {
  const Tensor x = counting({2, 3}, DType::f32);
  // the transpose written out by hand
  const Tensor xt_back = x.t().to(kCUDA).to(kCPU);
  CHECK(host_values(xt_back) == std::vector<double>{0, 3, 1, 4, 2, 5});

  const Tensor big = counting({4, 6, 5}, DType::f64);
  check_round_trip(big.permute({2, 0, 1}));
  check_round_trip(big.slice(1, 1, 6, 2));        // step 2 from an offset
  check_round_trip(big.narrow(0, 2, 2));          // offset, contiguous
  check_round_trip(big.select(2, 3));             // offset, strided
  check_round_trip(counting({3}, DType::bf16).view({1, 3}).expand({4, 3}));  // stride 0

  const Tensor nchw = counting({2, 3, 4, 5}, DType::f16);
  const Tensor cl = nchw.contiguous(MemoryFormat::channels_last);
  REQUIRE(!cl.is_contiguous());
  check_round_trip(cl);
  CHECK(host_values(cl.to(kCUDA).to(kCPU)) == host_values(nchw));
}

TEST_CASE("views of a cuda tensor come back with their own layout", "[cuda_tensor]") {
  const Tensor x = counting({4, 6}, DType::i64);
  const Tensor dev = x.to(kCUDA);
  // views only touch metadata, so they work on cuda; to(kCPU) reads the span they cover
  CHECK(host_values(dev.t().to(kCPU)) == host_values(x.t()));
  CHECK(host_values(dev.slice(1, 1, 6, 2).to(kCPU)) == host_values(x.slice(1, 1, 6, 2)));
  CHECK(host_values(dev.narrow(0, 3, 1).to(kCPU)) == std::vector<double>{18, 19, 20, 21, 22, 23});
  CHECK(host_values(dev.select(1, 5).to(kCPU)) == std::vector<double>{5, 11, 17, 23});
  CHECK(dev.select(1, 5).to(kCPU).is_contiguous());
}

TEST_CASE("to(device) returns x itself when it is already there", "[cuda_tensor]") {
  const Tensor x = counting({3}, DType::f32);
  CHECK(x.to(kCPU).is_same(x));
  CHECK(to(x, Device::cpu()).is_same(x));
  const Tensor dev = x.to(kCUDA);
  CHECK(dev.to(Device::cuda(0)).is_same(dev));
  CHECK(!dev.is_same(x));
  CHECK(dev.select(0, 1).item<double>() == 1);
  CHECK(dev.select(0, 2).item<float>() == 2.0f);  // item() brings the one element over
  // printing reads a host copy and names the device, as PyTorch does
  CHECK(to_string(from_vector<float>({1, 2.5}).to(kCUDA)) == "tensor([1.0000, 2.5000], device='cuda:0')");
  CHECK(to_string(counting({2, 2}, DType::i64).t().to(kCUDA).t()) == "tensor([[0, 1],\n        [2, 3]], device='cuda:0')");
}

TEST_CASE("the caching allocator rounds sizes, reuses freed blocks and counts", "[cuda_tensor]") {
  CHECK(CudaCachingAllocator::round_size(1) == 512);
  CHECK(CudaCachingAllocator::round_size(512) == 512);
  CHECK(CudaCachingAllocator::round_size(513) == 1024);
  CHECK(CudaCachingAllocator::round_size(size_t(1) << 20) == size_t(1) << 20);
  // above 1 MiB: steps of a quarter of the power of two below
  CHECK(CudaCachingAllocator::round_size((size_t(1) << 20) + 1) == (size_t(1) << 20) + (size_t(1) << 18));
  CHECK(CudaCachingAllocator::round_size(3 << 20) == size_t(3) << 20);

  cuda_empty_cache();
  const MemoryStats s0 = cuda_memory_stats();
  CHECK(s0.cached == 0);
  void* first = nullptr;
  {
    const Tensor a = Tensor::empty({1000}, DType::f32, kCUDA);  // 4000 bytes -> a 4096-byte block
    first = a.storage()->data();
    const MemoryStats s1 = cuda_memory_stats();
    CHECK(s1.in_use == s0.in_use + 4096);
    CHECK(s1.peak >= s1.in_use);
    CHECK(s1.cached == 0);
  }
  const MemoryStats s2 = cuda_memory_stats();
  CHECK(s2.in_use == s0.in_use);
  CHECK(s2.cached == 4096);
  {
    // 4090 bytes rounds to the same class: the cached block comes back
    const Tensor b = Tensor::empty({4090}, DType::u8, kCUDA);
    CHECK(b.storage()->data() == first);
    const MemoryStats s3 = cuda_memory_stats();
    CHECK(s3.cached == 0);
    CHECK(s3.in_use == s0.in_use + 4096);
    // another size class: a new block; the peak sees both
    const Tensor c = Tensor::empty({3, 1000}, DType::f64, kCUDA);  // 24000 -> 24064
    CHECK(c.storage()->data() != first);
    CHECK(cuda_memory_stats().in_use == s0.in_use + 4096 + 24064);
    CHECK(cuda_memory_stats().peak >= s0.in_use + 4096 + 24064);
  }
  CHECK(cuda_memory_stats().cached == 4096 + 24064);
  cuda_reset_peak_memory_stats();
  CHECK(cuda_memory_stats().peak == s0.in_use);
  cuda_empty_cache();
  CHECK(cuda_memory_stats().cached == 0);
  CHECK(cuda_memory_stats().in_use == s0.in_use);
  // a tensor with no elements holds no block
  const Tensor none = Tensor::empty({0, 7}, DType::f32, kCUDA);
  CHECK(cuda_memory_stats().in_use == s0.in_use);
  CHECK(none.to(kCPU).shape() == Shape{0, 7});
}

TEST_CASE("the gradient of to(device) goes back to the input's device", "[cuda_tensor]") {
  // sum(w * cpu(cuda(x))): dx = w, on the cpu
  Tensor x = from_vector<double>({1, -2, 3, 0.5, 7, -1}, {2, 3}).requires_grad_();
  const Tensor w = from_vector<double>({2, 3, -1, 4, 0.25, 10}, {2, 3});
  const Tensor dev = x.to(kCUDA);
  CHECK(dev.requires_grad());
  const Tensor y = dev.to(kCPU);
  (y * w).sum().backward();
  REQUIRE(x.grad().defined());
  CHECK(x.grad().device() == kCPU);
  CHECK(x.grad().dtype() == DType::f64);
  CHECK(host_values(x.grad()) == host_values(w));

  // a cuda root: the gradient given on cuda arrives on the cpu leaf; a non-contiguous leaf view
  Tensor z = counting({3, 2}, DType::f32).requires_grad_();
  const Tensor zc = z.t().to(kCUDA);  // [2, 3]
  const Tensor g = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3}).to(kCUDA);
  zc.backward(g);
  REQUIRE(z.grad().defined());
  CHECK(z.grad().device() == kCPU);
  CHECK(host_values(z.grad()) == std::vector<double>{1, 4, 2, 5, 3, 6});  // g transposed back

  // no gradient for a tensor that does not require one
  CHECK(!counting({2}, DType::f32).to(kCUDA).requires_grad());
}

TEST_CASE("ops without a cuda kernel refuse cuda tensors, naming the device", "[cuda_tensor]") {
  const Tensor dev = counting({2, 3}, DType::f32).to(kCUDA);
  // the CPU kernels' way into memory refuses device memory
  CHECK(error_of([&] { (void)dev.data_ptr<float>(); }).rfind("data_ptr: got a tensor on cuda:0", 0) == 0);
  CHECK(error_of([&] { (void)dev.raw_data(); }).rfind("raw_data: got a tensor on cuda:0", 0) == 0);
  // an op whose cuda kernel is not registered stops there with an Error naming it, not a crash
  const strata::detail::CudaHook<void(const Tensor&)> unfilled{"some_op"};
  const std::string e_hook = error_of([&] { unfilled(dev); });
  CHECK(e_hook.rfind("some_op: got tensors on a cuda device", 0) == 0);
  CHECK(e_hook.find("strata/backend/cuda.hpp") != std::string::npos);
}

TEST_CASE("pin_memory: page-locked host copies, cached, and copied to the device", "[cuda_tensor]") {
  const Tensor x = counting({3, 4}, DType::f32).transpose(0, 1);  // strided: pinned copies are contiguous
  CHECK_FALSE(x.is_pinned());
  const MemoryStats before = cuda_pinned_memory_stats();
  {
    const Tensor p = x.pin_memory();
    CHECK(p.is_pinned());
    CHECK(p.device().is_cpu());
    CHECK(p.is_contiguous());
    CHECK(p.shape() == x.shape());
    CHECK(host_values(p) == host_values(x));
    CHECK(p.pin_memory().is_same(p));  // pinned already
    CHECK(cuda_pinned_memory_stats().in_use == before.in_use + 512);  // 48 bytes in a 512-byte block
    const Tensor d = p.to(kCUDA);
    CHECK(host_values(d.to(kCPU)) == host_values(x));
    CHECK_FALSE(d.to(kCPU).is_pinned());
    CHECK_FALSE((p + 1).is_pinned());  // results of ops live in ordinary memory
  }
  const MemoryStats after = cuda_pinned_memory_stats();
  CHECK(after.in_use == before.in_use);  // released to the cache, which the next pin reuses
  CHECK(after.cached >= 512);
  { const Tensor q = counting({100}, DType::f32).pin_memory(); CHECK(cuda_pinned_memory_stats().cached == after.cached - 512); }
  // the gradient passes through
  Tensor w = counting({5}, DType::f64).requires_grad_();
  sum(w.pin_memory() * 2).backward();
  CHECK(host_values(w.grad()) == std::vector<double>(5, 2.0));
  CHECK(error_of([&] { (void)zeros({2}, {.device = kCUDA}).pin_memory(); }).rfind("pin_memory: got a tensor on cuda:0", 0) == 0);
}

TEST_CASE("DataLoader pin_memory: 2 workers make the same batches in pinned memory", "[cuda_tensor]") {
  const auto ds = th::blobs(40, 3);
  DataLoader plain(ds, {.bs = 8, .shuffle = true, .num_workers = 2, .seed = 5});
  DataLoader pinned(ds, {.bs = 8, .shuffle = true, .num_workers = 2, .seed = 5, .pin_memory = true});
  std::vector<std::vector<double>> want;
  for (Batch& b : plain) want.push_back(host_values(b.xb[0]));
  size_t k = 0;
  for (Batch& b : pinned) {
    REQUIRE(k < want.size());
    CHECK(b.xb[0].is_pinned());
    CHECK(b.yb[0].is_pinned());
    CHECK(host_values(b.xb[0].to(kCUDA).to(kCPU)) == want[k++]);  // the DMA path
  }
  CHECK(k == want.size());
}

TEST_CASE("cuda device errors: index out of range, no backend registered", "[cuda_tensor]") {
  const int n = cuda::device_count();
  const std::string e_range = error_of([&] { (void)Tensor::empty({4}, DType::f32, Device::cuda(n)); });
  CHECK(e_range.find("cuda:" + std::to_string(n)) != std::string::npos);
  CHECK(e_range.find("[0, " + std::to_string(n) + ")") != std::string::npos);
  CHECK(error_of([&] { (void)counting({2}, DType::f32).to(Device::cuda(-1)); }).find("cuda:-1") !=
        std::string::npos);

  // without the backend header's registration a cuda Storage says what to include
  const DeviceBackend saved = cuda_backend();
  const Tensor kept = counting({2}, DType::f32).to(kCUDA);  // allocated before: freed with its own release
  cuda_backend() = DeviceBackend{};
  const std::string e_none = error_of([&] { (void)Tensor::empty({4}, DType::f32, kCUDA); });
  const std::string e_to = error_of([&] { (void)counting({2}, DType::f32).to(kCUDA); });
  cuda_backend() = saved;
  CHECK(e_none.find("Storage") != std::string::npos);
  CHECK(e_none.find("device_allocator.hpp") != std::string::npos);
  CHECK(e_to.find("device_allocator.hpp") != std::string::npos);
  CHECK(host_values(kept.to(kCPU)) == std::vector<double>{0, 1});
}

}  // namespace test_cuda_tensor
