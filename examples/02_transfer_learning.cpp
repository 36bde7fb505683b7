// 02_transfer_learning: why pretrained weights matter when labels are scarce. A small ResNet learns
// Fashion-MNIST classes 0-4 (T-shirt, Trouser, Pullover, Dress, Coat: 30k images), its body is saved,
// then it is fine_tuned on classes 5-9 (Sandal, Shirt, Sneaker, Bag, Ankle boot) from only 30 labelled
// images per class. The baseline is the same network trained from scratch on the same 150 images with
// the same budget: 4 epochs of 5 batches (fine_tune(3): 1 frozen + 3 unfrozen; fit_one_cycle(4)), each
// at the lr that scored best for it (see README). Both are scored on every test image of classes 5-9.
// With long training the baseline catches up (~0.90 after 40 epochs): transfer buys speed here.
//
//   example_02_transfer_learning            the full run: seeds 1-3 from one pretrained body; asserts the
//                                           mean fine-tuned >= mean from scratch + 10 points
//   example_02_transfer_learning --quick    CI: pretrains on 6k images for 1 epoch, scores on 1000 test
//                                           images; asserts fine-tuned >= from scratch + 3 points
//   options: --pre-epochs N  --epochs N  --lr X  --scratch-lr X  --lr-mult X  --seeds N  --out DIR
//            --body FILE (skip pretraining: fine-tune a body saved by an earlier run)
// Data: Debian's dataset-fashion-mnist, or $STRATA_FASHION_MNIST_DIR.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <random>
#include <string>

#include <strata/strata.hpp>

using namespace strata;

struct Args {
  int pre_epochs = 2, epochs = 3, seeds = 3, n_pre = 0, n_test = 0;  // the check is on the mean over seeds
  double pre_lr = 1e-2, lr = 1e-2, lr_mult = 1, scratch_lr = 1e-2, min_gap = 0.10;
  bool quick = false;
  std::string out = ".", body = "";  // body: a saved body to start from instead of pretraining
};

/// The images (u8 [N, 1, 28, 28]) and labels (i64 [N]) a Fashion-MNIST loader holds, in file order.
struct Images {
  Tensor x, y;
  explicit Images(const DataLoader& dl) {
    const auto& ds = dynamic_cast<const TensorDataset&>(*dl.dataset_ptr());
    x = ds.xs()[0], y = ds.ys()[0];
  }
  int label(int64_t i) const { return int(y.data_ptr<int64_t>()[i]); }
};

/// Loaders over train images `train_ids` and test images `test_ids` of classes [first, first + 5),
/// labelled 0..4. Items are ids: i >= 0 is train image i, i < 0 is test image -1 - i.
DataLoaders loaders(const Images& train, const Images& test, std::vector<int64_t> ids, int first, int64_t bs,
                    bool augment, uint64_t seed) {
  auto image = [&](int64_t i) -> const Images& { return i >= 0 ? train : test; };
  auto row = [](int64_t i) { return i >= 0 ? i : -1 - i; };
  const std::vector<std::string> names = fashion_mnist_classes();
  std::vector<std::shared_ptr<Transform>> batch_tfms;
  if (augment) batch_tfms = aug_transforms({.max_rotate = 10, .max_warp = 0, .pad_mode = PadMode::zeros});
  batch_tfms.push_back(make_transform(Normalize::from_stats({kFashionMnistMean}, {kFashionMnistStd})));
  DataBlock<int64_t> dblock{
      .blocks = {ImageBlock({.channels = 1}), CategoryBlock({.vocab = {names.begin() + first, names.begin() + first + 5}})},
      .get_x = [=](const int64_t& i) -> Raw { return image(i).x.select(0, row(i)); },
      .get_y = [=](const int64_t& i) -> Raw { return int64_t(image(i).label(row(i)) - first); },
      .splitter = FuncSplitter([](int64_t i) { return i < 0; }),
      .batch_tfms = batch_tfms};
  return dblock.dataloaders(ids, {.bs = bs, .seed = seed, .drop_last = true});
}

/// Ids of classes [first, first + 5): n_per_class train images per class (the first ones in a seeded
/// shuffle; 0: all of them, at most n_train), and the test images (the first n_test; 0: all).
std::vector<int64_t> pick(const Images& train, const Images& test, int first, int n_per_class, uint64_t seed,
                          int64_t n_train = 0, int64_t n_test = 0) {
  std::vector<int64_t> order(size_t(train.y.numel())), ids;
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(seed));
  std::vector<int> count(10, 0);
  for (int64_t i : order) {
    const int c = train.label(i);
    if (c < first || c >= first + 5 || (n_per_class && count[c] >= n_per_class)) continue;
    if (n_train && int64_t(ids.size()) >= n_train) break;
    ++count[c], ids.push_back(i);
  }
  const size_t n_ids = ids.size();
  for (int64_t i = 0; i < test.y.numel() && (!n_test || int64_t(ids.size() - n_ids) < n_test); ++i)
    if (test.label(i) >= first && test.label(i) < first + 5) ids.push_back(-1 - i);
  return ids;
}

int run(const Args& a) {
  manual_seed(42);
  const DataLoaders fashion = fashion_mnist();
  const Images train(fashion.train), test(fashion.valid);
  const LearnerOptions opts{.metrics = {accuracy()}, .path = a.out};

  // 1. Pretrain on classes 0-4 and keep the body.
  std::string body = a.body;
  if (body.empty()) {
    auto pre = vision_learner(loaders(train, test, pick(train, test, 0, 0, 1, a.n_pre, a.n_test), 0, 128, false, 1),
                              arch::fashion_resnet(), {.learner = opts});
    pre.fit_one_cycle(a.pre_epochs, a.pre_lr);
    body = save_body(pre, a.out + "/models/fashion_0_4_body.safetensors");
  }

  // 2. Classes 5-9 from 30 images each: fine-tune the pretrained body, or train the same net from scratch.
  double sum_ft = 0, sum_sc = 0, sq_gap = 0;
  for (int s = 1; s <= a.seeds; ++s) {
    auto dls = loaders(train, test, pick(train, test, 5, 30, 100 + s, 0, a.n_test), 5, 30, true, s);
    manual_seed(s);  // the same head init for both, whatever ran before
    auto ft = vision_learner(dls, arch::fashion_resnet(), {.pretrained = body, .learner = opts});
    ft.fine_tune(a.epochs, a.lr, 1, a.lr_mult);
    manual_seed(s);
    auto sc = vision_learner(dls, arch::fashion_resnet(), {.learner = opts});
    sc.fit_one_cycle(a.epochs + 1, a.scratch_lr);
    const double acc_ft = ft.validate()[1], acc_sc = sc.validate()[1];
    std::printf("seed %d: %lld test images of classes 5-9 | fine-tuned %.4f | from scratch %.4f | gap %.1f points\n",
                s, (long long)dls.valid.n(), acc_ft, acc_sc, 100 * (acc_ft - acc_sc));
    sum_ft += acc_ft, sum_sc += acc_sc, sq_gap += (acc_ft - acc_sc) * (acc_ft - acc_sc);
  }
  const double ft = sum_ft / a.seeds, sc = sum_sc / a.seeds, gap = ft - sc;
  std::printf("transfer | fine-tuned %.4f | from scratch %.4f | gap %.1f points", ft, sc, 100 * gap);
  if (a.seeds > 1) std::printf(" (sd %.1f over %d seeds)", 100 * std::sqrt(std::max(0.0, sq_gap / a.seeds - gap * gap)), a.seeds);
  std::printf("\n");
  STRATA_CHECK(gap >= a.min_gap, "02_transfer_learning", "got fine-tuned ", ft, " vs from scratch ", sc,
               ", expected a gap of at least ", a.min_gap);
  return 0;
}

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    auto next = [&] { return i + 1 < argc ? argv[++i] : (std::fprintf(stderr, "%s needs a value\n", argv[i]), "0"); };
    if (!std::strcmp(argv[i], "--quick")) a.quick = true, a.pre_epochs = 1, a.seeds = 1, a.n_pre = 6000, a.n_test = 1000, a.min_gap = 0.03;
    else if (!std::strcmp(argv[i], "--pre-epochs")) a.pre_epochs = std::atoi(next());
    else if (!std::strcmp(argv[i], "--epochs")) a.epochs = std::atoi(next());
    else if (!std::strcmp(argv[i], "--seeds")) a.seeds = std::atoi(next());
    else if (!std::strcmp(argv[i], "--lr")) a.lr = std::atof(next());
    else if (!std::strcmp(argv[i], "--lr-mult")) a.lr_mult = std::atof(next());
    else if (!std::strcmp(argv[i], "--scratch-lr")) a.scratch_lr = std::atof(next());
    else if (!std::strcmp(argv[i], "--out")) a.out = next();
    else if (!std::strcmp(argv[i], "--body")) a.body = next();
    else return std::fprintf(stderr, "unknown option %s (see the top of 02_transfer_learning.cpp)\n", argv[i]), 2;
  }
  std::filesystem::create_directories(a.out);
  try {
    return run(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
