// Every public Tensor op and nn layer on cuda, once each, against the cpu: the sweep that catches an
// op with no cuda path (the family tests, test_cuda_*.cpp, check each kernel in depth: dtypes,
// layouts, edge values). Each case runs f on the cpu inputs and on copies of them on cuda (strided
// inputs keep their strides), then backward from the same random dout on both, and compares the
// outputs and every input's gradient. f64 with tolerance 1e-9 unless the op is only defined for
// other dtypes (the emulator runs the cuda kernels on the host with the same float arithmetic, so
// most agree to the last bits; the bound leaves room for reordered sums).
#include <catch2/catch.hpp>

#include <functional>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "strata/backend/cuda.hpp"
#include "strata/nn/nn.hpp"

namespace test_cuda_sweep {

using namespace strata;
using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

/// f on the cpu inputs and on their cuda copies: outputs and input gradients agree within tol.
inline void check_op(const std::string& name, const std::vector<Tensor>& cpu_in, const Fn& f, double tol = 1e-9) {
  INFO("op " << name);
  std::vector<Tensor> a, b;
  for (const Tensor& t : cpu_in) {
    Tensor c = t.detach();
    Tensor g = to(c, kCUDA);
    const bool grad = c.is_floating_point();
    if (grad) c.requires_grad_(), g.requires_grad_();
    a.push_back(c), b.push_back(g);
  }
  // strided cuda views of a contiguous copy: move the whole storage instead, then view it the same way
  for (size_t k = 0; k < cpu_in.size(); ++k) {
    const Tensor& t = cpu_in[k];
    if (t.is_contiguous()) continue;
    const Tensor base = t.detach().as_strided_({t.storage()->nbytes() / t.element_size()}, {1}, 0);
    Tensor g = to(base.contiguous(), kCUDA).as_strided_(t.shape(), t.strides(), t.offset());
    if (t.is_floating_point()) g.requires_grad_();
    b[k] = g;
  }
  const Tensor yc = f(a), yg = f(b);
  REQUIRE(yg.device().is_cuda());
  REQUIRE(yg.shape() == yc.shape());
  REQUIRE(yg.dtype() == yc.dtype());
  th::check_close(to(yg.detach(), kCPU), yc.detach(), tol, tol, name + " forward");
  if (!yc.requires_grad()) return;
  Generator gen(17);
  const Tensor dout = randn(yc.shape(), {.dtype = yc.dtype()}, gen);
  yc.backward(dout);
  yg.backward(to(dout, kCUDA));
  for (size_t k = 0; k < a.size(); ++k) {
    if (!a[k].grad().defined()) continue;
    REQUIRE(b[k].grad().defined());
    CHECK(b[k].grad().device().is_cuda());
    th::check_close(to(b[k].grad(), kCPU), a[k].grad(), tol, tol, name + " grad of input " + std::to_string(k));
  }
}

inline Tensor rnd(const Shape& s, uint64_t seed, double lo = -2, double hi = 2) {
  Generator gen(seed);
  return add(mul(rand(s, {.dtype = DType::f64}, gen), hi - lo), lo);
}
inline Tensor ints(const Shape& s, int64_t hi, uint64_t seed) {
  Generator gen(seed);
  return randint(0, hi, s, {.dtype = DType::i64}, gen);
}

TEST_CASE("sweep: tensor ops on cuda equal the cpu, forward and backward", "[cuda][sweep]") {
  const Tensor x = rnd({4, 6}, 1), y = rnd({4, 6}, 2), r = rnd({6}, 3), pos = rnd({4, 6}, 4, 0.5, 2);
  const Tensor xt = rnd({6, 4}, 5).transpose(0, 1);  // strided
  const Tensor img = rnd({2, 3, 7, 7}, 6), w = rnd({4, 3, 3, 3}, 7), bias = rnd({4}, 8);
  const Tensor idx = ints({5}, 4, 9), idx2 = ints({4, 3}, 6, 10), lbl = ints({4}, 6, 11);
  const Tensor mask = gt(rnd({4, 6}, 12), 0.0);

  // elementwise and broadcasting
  check_op("add/sub/mul/div", {x, y, r}, [](auto v) { return div(mul(sub(add(v[0], v[1]), v[2]), v[1]), add(v[2], 3.0)); });
  check_op("strided operand", {xt, x}, [](auto v) { return mul(v[0], v[1]); });
  check_op("pow/maximum/minimum", {pos, y}, [](auto v) { return add(pow(v[0], 1.5), sub(maximum(v[0], v[1]), minimum(v[0], v[1]))); });
  check_op("clamp/neg/square/sign", {x}, [](auto v) { return add(clamp(neg(square(v[0])), -2.0, -0.5), sign(v[0])); });
  check_op("exp/log/sin/cos", {pos}, [](auto v) { return add(log(v[0]), mul(sin(v[0]), cos(exp(v[0])))); });
  check_op("sigmoid/leaky_relu", {x}, [](auto v) { return add(sigmoid(v[0]), leaky_relu(v[0], 0.1)); });
  check_op("where/masked_fill", {x, y, mask}, [](auto v) { return add(where(v[2], v[0], v[1]), masked_fill(v[0], v[2], 0.5)); });
  check_op("comparisons", {x, y}, [](auto v) { return add(to(lt(v[0], v[1]), DType::f64), to(eq(v[0], v[0]), DType::f64)); });
  check_op("casts", {x}, [](auto v) { return to(to(to(v[0], DType::f32), DType::bf16), DType::f64); }, 1e-2);

  // views, copies, joins
  check_op("views", {rnd({2, 3, 4}, 13)}, [](auto v) {
    return flatten(squeeze(unsqueeze(permute(narrow(select(expand(unsqueeze(v[0], 0), {2, 2, 3, 4}), 0, 1), 2, 1, 2), {2, 0, 1}), 0)), 0, 1);
  });
  check_op("reshape/view/transpose/contiguous", {x}, [](auto v) { return contiguous(transpose(reshape(view(v[0], {2, 12}), {3, 8}), 0, 1)); });
  check_op("clone/copy_", {x}, [](auto v) {
    Tensor out = zeros({4, 6}, options_of(v[0]));
    NoGrad ng;
    copy_(out, v[0].detach());
    return add(out, clone(v[0]));
  });
  check_op("cat/stack/split/chunk/unbind", {x, y}, [](auto v) {
    const Tensor c = cat({v[0], v[1]}, 1), s = stack({v[0], v[1]}, 0);
    return add(add(split(c, 6, 1)[1], chunk(s, 2, 0)[0].squeeze(0)), unbind(s, 0)[1]);
  });

  // reductions
  check_op("sum/mean", {x}, [](auto v) { return add(sum(v[0], {1}), mean(v[0], {1})); });
  check_op("amax/amin/max/min", {x}, [](auto v) { return add(add(amax(v[0], {0}), amin(v[0], {0})), add(max(v[0]), min(v[0]))); });
  check_op("argmax/argmin", {x}, [](auto v) { return add(argmax(v[0], 1), argmin(v[0], 0).sum()); });
  check_op("var/std/logsumexp", {x}, [](auto v) { return add(add(var(v[0], {1}).sum(), strata::std(v[0], {0}).sum()), logsumexp(v[0], {1}).sum()); });
  check_op("softmax/log_softmax", {x}, [](auto v) { return add(softmax(v[0], 1), log_softmax(v[0], 0)); });

  // linear algebra
  check_op("matmul/mm/bmm/dot", {x, rnd({6, 5}, 14), rnd({3, 4, 6}, 15), r}, [](auto v) {
    const Tensor m = mm(v[0], v[1]);
    return add(add(m.sum(), matmul(v[2], v[1]).sum()), add(bmm(v[2], v[2].transpose(1, 2)).sum(), dot(v[3], v[3])));
  });
  check_op("linear", {x, rnd({3, 6}, 16), rnd({3}, 17)}, [](auto v) { return linear(v[0], v[1], v[2]); });

  // indexing
  check_op("index_select/gather", {x, idx, idx2}, [](auto v) { return add(index_select(v[0], 0, v[1]).sum(), gather(v[0], 1, v[2]).sum()); });
  check_op("index_add/scatter_add", {x, rnd({5, 6}, 18), idx, idx2, rnd({4, 3}, 19)}, [](auto v) {
    return add(index_add(v[0], 0, v[2], v[1]), scatter_add(v[0], 1, v[3], v[4]));
  });
  check_op("one_hot", {lbl}, [](auto v) { return one_hot(v[0], 6); });

  // convolution, normalization, pooling
  check_op("conv2d/conv2d_relu", {img, w, bias}, [](auto v) {
    return add(conv2d(v[0], v[1], v[2], {1, 1}, {1, 1}), conv2d_relu(v[0], v[1], v[2], {1, 1}, {1, 1}));
  });
  check_op("batch_norm/layer_norm", {img, rnd({3}, 20), rnd({3}, 21), rnd({7}, 22), rnd({7}, 23)}, [](auto v) {
    const Tensor bn = batch_norm(v[0], Tensor(), Tensor(), v[1], v[2], true, 0.1, 1e-5);
    return add(bn, layer_norm(v[0], {7}, v[3], v[4], 1e-5));
  });
  check_op("pools", {img}, [](auto v) {
    return add(add(max_pool2d(v[0], {2, 2}, {2, 2}).sum(), avg_pool2d(v[0], {3, 3}, {2, 2}).sum()),
               add(adaptive_avg_pool2d(v[0], {2, 2}).sum(), adaptive_max_pool2d(v[0], {3, 3}).sum()));
  });
}

TEST_CASE("sweep: nn layers and losses on cuda equal the cpu", "[cuda][sweep]") {
  const Tensor x = rnd({4, 6}, 31), logits = rnd({4, 5}, 32), target = rnd({4, 5}, 33), prob = rnd({4, 5}, 34, 0.05, 0.95);
  const Tensor lbl = ints({4}, 5, 35), tok = ints({3, 2}, 7, 36);

  check_op("mse/l1", {logits, target}, [](auto v) { return add(nn::mse_loss(v[0], v[1]), nn::l1_loss(v[0], v[1])); });
  check_op("cross_entropy (+label smoothing)", {logits, lbl}, [](auto v) {
    return add(nn::cross_entropy(v[0], v[1]), nn::cross_entropy(v[0], v[1], 0.1));
  });
  check_op("cross_entropy soft targets", {logits, softmax(target, 1)}, [](auto v) { return nn::cross_entropy(v[0], v[1]); });
  check_op("nll_loss", {log_softmax(logits, 1), lbl}, [](auto v) { return nn::nll_loss(v[0], v[1]); });
  check_op("binary_cross_entropy_with_logits", {logits, prob}, [](auto v) { return nn::binary_cross_entropy_with_logits(v[0], v[1]); });

  // layers: the same module (same init) on both devices
  for (const std::string which : {"GELU", "SiLU", "Tanh", "LeakyReLU", "Embedding", "LayerNorm", "Linear"}) {
    auto make = [&which] {  // the same init on both devices: seeded before each construction
      manual_seed(40);
      return which == "GELU"        ? nn::ModulePtr(std::make_shared<nn::GELU>())
             : which == "SiLU"      ? nn::ModulePtr(std::make_shared<nn::SiLU>())
             : which == "Tanh"      ? nn::ModulePtr(std::make_shared<nn::Tanh>())
             : which == "LeakyReLU" ? nn::ModulePtr(std::make_shared<nn::LeakyReLU>(0.2))
             : which == "Embedding" ? nn::ModulePtr(std::make_shared<nn::Embedding>(7, 6, 0))
             : which == "LayerNorm" ? nn::ModulePtr(std::make_shared<nn::LayerNorm>(6))
                                    : nn::ModulePtr(std::make_shared<nn::Linear>(6, 3));
    };
    nn::ModulePtr cpu_m = make(), gpu_m = make();
    gpu_m->to(kCUDA);
    Tensor in_c = which == "Embedding" ? tok : to(x, DType::f32), in_g = to(in_c, kCUDA);
    if (in_c.is_floating_point()) in_c.requires_grad_(), in_g.requires_grad_();
    INFO(which);
    const Tensor yc = (*cpu_m)(in_c), yg = (*gpu_m)(in_g);
    th::check_close(to(yg.detach(), kCPU), yc.detach(), 1e-5, 1e-5, which);
    const Tensor dout = rnd(yc.shape(), 41).to(yc.dtype());
    yc.backward(dout);
    yg.backward(to(dout, kCUDA));
    if (in_c.requires_grad()) th::check_close(to(in_g.grad(), kCPU), in_c.grad(), 1e-5, 1e-5, which + " input grad");
    const auto pc = cpu_m->parameters(), pg = gpu_m->parameters();
    REQUIRE(pc.size() == pg.size());
    for (size_t k = 0; k < pc.size(); ++k)
      th::check_close(to(pg[k].grad(), kCPU), pc[k].grad(), 1e-5, 1e-5, which + " param grad " + std::to_string(k));
  }
}

}  // namespace test_cuda_sweep
