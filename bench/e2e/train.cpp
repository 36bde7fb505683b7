// End-to-end throughput, strata side: trains a model on Fashion-MNIST for N batches and evaluates it
// for N batches (or --eval-batches M), and prints one line of images/s, peak RSS and the last training batch's loss.
// bench/e2e/train.py is the same run in PyTorch (same model, init scheme, data, batch, optimizer,
// threads); bench/run.sh runs both alternately and prints the table.
//
//   bench_e2e_train --model cnn|resnet9|fashion_resnet [--bs 256] [--threads 2] [--batches 20]
//                   [--warmup 3] [--eval-batches N] [--bf16] [--channels-last] [--eval-only]
// --eval-batches: timed eval batches (default --batches): eval batches are ~4x cheaper than training
// ones, so a slow model (resnet9) can time few training batches and enough eval batches to be stable.
// Output: "strata model=cnn bs=256 threads=2 bf16=0 channels_last=0 train_ips=... eval_ips=...
//          peak_rss_mb=... start_rss_mb=... final_loss=..."
// Run: data = the first (warmup + batches) * bs training images, normalized, in memory; batches are
// slices of it, so both sides time the model and the optimizer, not a data pipeline. Training: AdamW
// (lr 1e-3, mom 0.9, sqr_mom 0.99, eps 1e-5, wd 0.01 decoupled, on every parameter) = PyTorch's
// AdamW(betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01). --bf16: forward, loss and backward (and the
// eval forward) inside Autocast(bf16), i.e. PyTorch's torch.autocast("cpu", dtype=torch.bfloat16).
// --channels-last: each batch converted with contiguous(x, MemoryFormat::channels_last) inside the timed
// loop (PyTorch: the model and each batch to torch.channels_last).
// Init: cnn and resnet9 keep PyTorch's default init (strata's Conv2d/Linear/BatchNorm2d have it);
// fashion_resnet is example 01's model with fastai's ConvLayer/ResBlock init then init_cnn.
// peak_rss_mb is getrusage's ru_maxrss: the whole process (data, model, allocator caches) at its peak;
// start_rss_mb the same at the start of main (train.py: after importing torch, ~230 MB).
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include <strata/strata.hpp>

using namespace strata;

/// The flagship-sized CNN: conv3x3 32-32-64-64 with BN and ReLU, 2 max-pools, a 256-unit hidden layer.
static nn::ModulePtr flagship_cnn() {
  auto cbr = [](int64_t in, int64_t out) {
    return std::make_shared<nn::Sequential>(nn::Conv2d({.in = in, .out = out, .k = 3, .pad = 1, .bias = false}),
                                            nn::BatchNorm2d(out), nn::ReLU());
  };
  return std::make_shared<nn::Sequential>(cbr(1, 32), cbr(32, 32), nn::MaxPool2d(2),            // 32 x 14 x 14
                                          cbr(32, 64), cbr(64, 64), nn::MaxPool2d(2),           // 64 x 7 x 7
                                          nn::Flatten(), nn::Linear(64 * 7 * 7, 256), nn::ReLU(),
                                          nn::Linear(256, 10));
}

static nn::ModulePtr fashion_resnet() {
  auto model = std::make_shared<nn::Sequential>(
      nn::ConvLayer({.in = 1, .out = 16}), nn::ResBlock(1, 16, 32, 2), nn::ResBlock(1, 32, 64, 2),
      nn::ResBlock(1, 64, 128, 2), nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Linear(128, 10));
  nn::init_cnn(*model);
  return model;
}

static double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// The batch as the model takes it: NCHW, or channels-last (NHWC memory, the same NCHW shape), which
/// the convolutions, batch norms and pools then keep (learn.to_channelslast() does the same per batch).
static Tensor to_layout(const Tensor& x, bool channels_last) {
  return channels_last ? contiguous(x, MemoryFormat::channels_last) : x;
}

/// ru_maxrss of this process so far, in MB.
static double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;
}

int main(int argc, char** argv) {
  const double start_rss_mb = peak_rss_mb();
  std::string model_name = "cnn";
  int64_t bs = 256, batches = 20, warmup = 3, eval_batches = -1;
  int threads = 2;
  bool bf16 = false, channels_last = false, eval_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return std::string(i + 1 < argc ? argv[++i] : ""); };
    if (a == "--model") model_name = next();
    else if (a == "--bs") bs = std::stoll(next());
    else if (a == "--threads") threads = std::stoi(next());
    else if (a == "--batches") batches = std::stoll(next());
    else if (a == "--warmup") warmup = std::stoll(next());
    else if (a == "--eval-batches") eval_batches = std::stoll(next());
    else if (a == "--bf16") bf16 = true;
    else if (a == "--channels-last") channels_last = true;
    else if (a == "--eval-only") eval_only = true;
    else { std::fprintf(stderr, "bench_e2e_train: unknown argument '%s'\n", a.c_str()); return 2; }
  }
  if (eval_batches < 0) eval_batches = batches;
  set_num_threads(threads);
  manual_seed(0);
  nn::ModulePtr model = model_name == "cnn" ? flagship_cnn()
                        : model_name == "resnet9" ? nn::ModulePtr(nn::resnet9(1, 10))
                        : model_name == "fashion_resnet" ? fashion_resnet()
                        : nullptr;
  if (!model) { std::fprintf(stderr, "bench_e2e_train: unknown model '%s'\n", model_name.c_str()); return 2; }

  const int64_t n = std::min<int64_t>(60000, (warmup + std::max(batches, eval_batches)) * bs);
  const std::string dir = fashion_mnist_dir();
  const Tensor images = ((read_idx(detail::fashion_mnist_file(dir, "train-images-idx3-ubyte"), n)
                              .to(DType::f32) / 255.0 - kFashionMnistMean) / kFashionMnistStd)
                            .reshape({n, 1, 28, 28}).contiguous();
  const Tensor labels = read_idx(detail::fashion_mnist_file(dir, "train-labels-idx1-ubyte"), n).to(DType::i64);
  const int64_t n_batches = n / bs;
  auto batch = [&](int64_t i) {
    const int64_t lo = (i % n_batches) * bs;
    return std::pair{to_layout(images.slice(0, lo, lo + bs), channels_last), labels.slice(0, lo, lo + bs)};
  };
  // f32: autocast off, so one code path times both
  const DType ac_dtype = bf16 ? DType::bf16 : DType::f32;

  double train_ips = 0, final_loss = std::nan("");
  if (!eval_only) {
    auto opt = adamw(model->parameters(), 1e-3);  // mom 0.9, sqr_mom 0.99, eps 1e-5, wd 0.01 (decoupled)
    model->train();
    double t0 = 0;
    for (int64_t i = 0; i < warmup + batches; ++i) {
      if (i == warmup) t0 = now_s();
      auto [xb, yb] = batch(i);
      {
        Autocast ac(ac_dtype, bf16);
        Tensor loss = nn::cross_entropy((*model)(xb), yb);
        loss.backward();
        if (i + 1 == warmup + batches) final_loss = loss.item<double>();
      }
      opt->step();
      opt->zero_grad();
    }
    train_ips = double(batches * bs) / (now_s() - t0);
  }
  model->eval();
  double t0 = 0;
  {
    NoGrad ng;
    Autocast ac(ac_dtype, bf16);
    for (int64_t i = 0; i < warmup + eval_batches; ++i) {
      if (i == warmup) t0 = now_s();
      (void)(*model)(batch(i).first);
    }
  }
  const double eval_ips = double(eval_batches * bs) / (now_s() - t0);
  std::printf("strata model=%s bs=%lld threads=%d bf16=%d channels_last=%d train_ips=%.1f eval_ips=%.1f "
              "peak_rss_mb=%.1f start_rss_mb=%.1f final_loss=%.4f\n",
              model_name.c_str(), (long long)bs, threads, int(bf16), int(channels_last), train_ips, eval_ips,
              peak_rss_mb(), start_rss_mb, final_loss);
  return 0;
}
