// 01_fashion_mnist: the flagship. A small ResNet learns Fashion-MNIST with fit_one_cycle, the way
// fastai's course does it, and reports DAWNBench-style numbers: test accuracy, wall time, time to
// first reach the target accuracy, training images/s. Writes the loss and schedule plots as PNG,
// then interprets the model (fastai's ClassificationInterpretation): confusion_matrix.png,
// top_losses.png, the most confused pairs and the classification report, and saliency.png (which
// pixels the first test image's predicted class score is most sensitive to).
//
//   example_01_fashion_mnist                 5 epochs on the 60k images, test on the 10k (the default)
//   example_01_fashion_mnist --lr-find       also runs lr_find first and plots it (lr_find.png)
//   example_01_fashion_mnist --quick         a few seconds on a subset (CI): asserts the loss falls,
//                                            accuracy passes 70%, and save/load predicts identically
//   example_01_fashion_mnist --bf16          bf16 mixed precision (learn.to_bf16())
//   example_01_fashion_mnist --channels-last channels-last batches (learn.to_channelslast())
//   example_01_fashion_mnist --cuda          trains on the cuda device (learn.to(kCUDA)): a GPU when
//                                            built with STRATA_CUDA, else the emulator (slow: for checks)
//   example_01_fashion_mnist --cuda --fp16   fp16 mixed precision with loss scaling (learn.to_fp16())
//   options: --epochs N  --lr X  --bs N  --target X  --out DIR
// Data: Debian's dataset-fashion-mnist, or $STRATA_FASHION_MNIST_DIR.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include <strata/strata.hpp>
#include <strata/backend/cuda.hpp>  // the cuda device (--cuda): a GPU with STRATA_CUDA, else the emulator

using namespace strata;

struct Args {
  int epochs = 5, bs = 128;
  double lr = 1e-2, target = 0.925;
  bool quick = false, find_lr = false, bf16 = false, fp16 = false, channels_last = false, cuda = false;
  std::string out = ".";
};

/// fastai course's ResNet: a stem conv, three stride-2 ResBlocks (28 -> 14 -> 7 -> 4), pool, linear.
nn::ModulePtr fashion_resnet() {
  auto model = std::make_shared<nn::Sequential>(
      nn::ConvLayer({.in = 1, .out = 16}),                                                // 16 x 28 x 28
      nn::ResBlock(1, 16, 32, 2), nn::ResBlock(1, 32, 64, 2), nn::ResBlock(1, 64, 128, 2),  // 128 x 4 x 4
      nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Linear(128, 10));
  nn::init_cnn(*model);
  return model;
}

int run(const Args& a) {
  manual_seed(42);
  auto dls = fashion_mnist({.bs = a.bs, .n_train = a.quick ? 6144 : 0, .n_valid = a.quick ? 2000 : 0});
  Learner learn(dls, fashion_resnet(), nn::CrossEntropyLossFlat(), {.metrics = {accuracy()}, .path = a.out});
  if (a.cuda) learn.to(Device::cuda(0));
  if (a.bf16) learn.to_bf16();
  if (a.fp16) learn.to_fp16();
  if (a.channels_last) learn.to_channelslast();

  if (a.find_lr) {
    const LRFindResult r = learn.lr_find(1e-7, 10, 100, true, a.out + "/lr_find.png");
    std::printf("lr_find: valley at lr %.2e (plot: %s/lr_find.png)\n", r.valley, a.out.c_str());
  }
  auto tta = std::make_shared<TimeToAccuracy>(a.target);
  learn.add_cb(tta);
  learn.fit_one_cycle(a.epochs, a.lr);

  learn.recorder().plot_loss(a.out + "/fashion_mnist_loss.png");
  learn.recorder().plot_sched(a.out + "/fashion_mnist_sched.png");
  std::printf("DAWNBench | Fashion-MNIST %lld test images | %s\n", (long long)dls.valid.n(), tta->summary().c_str());

  // where the model goes wrong, and what it looks at
  const auto interp = ClassificationInterpretation::from_learner(learn);
  interp.plot_confusion_matrix(a.out + "/confusion_matrix.png");
  interp.plot_top_losses(a.out + "/top_losses.png", 9);
  plot_saliency(a.out + "/saliency.png", learn, DataLoader(dls.valid).one_batch().xb[0].select(0, 0));
  std::printf("most confused (actual, predicted, count):\n");
  const auto confused = interp.most_confused();
  for (size_t i = 0; i < confused.size() && i < 5; ++i)
    std::printf("  %-12s %-12s %lld\n", confused[i].actual.c_str(), confused[i].predicted.c_str(),
                (long long)confused[i].count);
  interp.print_classification_report();
  STRATA_CHECK(interp.confusion_matrix().sum().item<int64_t>() == dls.valid.n(), "01_fashion_mnist",
               "got a confusion matrix that does not count every test image once");

  if (!a.quick) return tta->final_value >= a.target ? 0 : 1;
  // CI checks on real data: the loss fell, accuracy passed the bar, save/load predicts identically.
  const auto& losses = learn.recorder().smooth_losses;
  STRATA_CHECK(losses.size() > 10 && losses.back() < 0.6 * losses[5], "01_fashion_mnist",
               "got smoothed loss ", losses[5], " -> ", losses.back(), ", expected it to fall by 40%");
  STRATA_CHECK(tta->final_value >= 0.70, "01_fashion_mnist", "got accuracy ", tta->final_value,
               ", expected >= 0.70 after the quick run");
  const Tensor before = learn.get_preds().first;
  const std::string file = learn.save("fashion_mnist_quick");
  Learner other(dls, fashion_resnet(), nn::CrossEntropyLossFlat(), {.metrics = {accuracy()}, .path = a.out});
  if (a.cuda) other.to(Device::cuda(0));
  if (a.bf16) other.to_bf16();  // the same device, precision and layout as learn
  if (a.fp16) other.to_fp16();
  if (a.channels_last) other.to_channelslast();
  other.load("fashion_mnist_quick");
  const Tensor after = other.get_preds().first;
  STRATA_CHECK((before == after).to(DType::i64).sum().item<int64_t>() == before.numel(), "01_fashion_mnist", "got different predictions after load from ", file);
  STRATA_CHECK(std::abs(interp.class_stats().accuracy - tta->final_value) < 1e-6, "01_fashion_mnist", "got report accuracy ",
               interp.class_stats().accuracy, ", expected the metric's ", tta->final_value);
  std::printf("quick checks passed: loss %.3f -> %.3f, accuracy %.4f, save/load predictions identical (%s)\n",
              losses[5], losses.back(), tta->final_value, file.c_str());
  return 0;
}

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    auto next = [&] { return i + 1 < argc ? argv[++i] : (std::fprintf(stderr, "%s needs a value\n", argv[i]), "0"); };
    if (!std::strcmp(argv[i], "--quick")) a.quick = true, a.epochs = 1;
    else if (!std::strcmp(argv[i], "--lr-find")) a.find_lr = true;
    else if (!std::strcmp(argv[i], "--bf16")) a.bf16 = true;
    else if (!std::strcmp(argv[i], "--fp16")) a.fp16 = true;
    else if (!std::strcmp(argv[i], "--cuda")) a.cuda = true;
    else if (!std::strcmp(argv[i], "--channels-last")) a.channels_last = true;
    else if (!std::strcmp(argv[i], "--epochs")) a.epochs = std::atoi(next());
    else if (!std::strcmp(argv[i], "--bs")) a.bs = std::atoi(next());
    else if (!std::strcmp(argv[i], "--lr")) a.lr = std::atof(next());
    else if (!std::strcmp(argv[i], "--target")) a.target = std::atof(next());
    else if (!std::strcmp(argv[i], "--out")) a.out = next();
    else return std::fprintf(stderr, "unknown option %s (see the top of 01_fashion_mnist.cpp)\n", argv[i]), 2;
  }
  std::filesystem::create_directories(a.out);
  try {
    return run(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
