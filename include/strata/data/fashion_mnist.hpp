// fashion_mnist: the Fashion-MNIST DataLoaders (Xiao, Rasul, Vollgraf 2017,
// https://github.com/zalandoresearch/fashion-mnist): 60k train and 10k test 28x28 grey images,
// 10 clothing classes.
//
//   DataLoaders dls = fashion_mnist({.bs = 256, .n_train = 2048});   // a quick subset
//   for (Batch& b : dls.train) ...   // b.xb[0]: f32 [bs, 1, 28, 28] normalized, b.yb[0]: i64 [bs]
//
// Files: {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz (or without .gz) in the first of
//   .path, $STRATA_FASHION_MNIST_DIR, /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist).
// Train = the 60k train images, shuffled each epoch (seeded); valid = the 10k test images, in order.
// Images stay u8 [N, 1, 28, 28] in memory (47 MB); the after_batch transforms turn each batch into
// float32 / 255 and, with .normalize, (x - 0.2860) / 0.3530 (the train set's mean and std).
// Labels are int64 [N]. c = 10; vocab = the class names. n_train / n_valid > 0 keep only the first
// that many images (read without inflating the rest). Train drops its last partial batch (fastai's
// default) when .drop_last and the train set holds at least one full batch.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "strata/data/dataloader.hpp"
#include "strata/data/dataset.hpp"
#include "strata/data/idx.hpp"
#include "strata/data/normalize.hpp"

namespace strata {

struct FashionMnistOptions {
  std::string path = "";     // directory of the idx files; "" = $STRATA_FASHION_MNIST_DIR or Debian's
  int64_t bs = 256;
  int num_workers = 1;
  uint64_t seed = 42;        // train shuffle seed (0: from strata's default generator)
  int64_t n_train = 0;       // 0 = all 60000
  int64_t n_valid = 0;       // 0 = all 10000
  bool normalize = true;     // false: images as float32 in [0, 1]
  bool drop_last = true;     // drop the last partial train batch
};

inline constexpr double kFashionMnistMean = 0.2860, kFashionMnistStd = 0.3530;
inline constexpr const char* kFashionMnistDefaultDir = "/usr/share/datasets/fashion-mnist";

/// The 10 class names, by label.
inline std::vector<std::string> fashion_mnist_classes() {
  return {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
}

/// The directory fashion_mnist reads: `path`, else $STRATA_FASHION_MNIST_DIR, else Debian's.
inline std::string fashion_mnist_dir(const std::string& path = "") {
  if (!path.empty()) return path;
  if (const char* env = std::getenv("STRATA_FASHION_MNIST_DIR"); env && *env) return env;
  return kFashionMnistDefaultDir;
}

namespace detail {

/// dir/name.gz, else dir/name; a missing file throws with the path tried and how to get it.
inline std::string fashion_mnist_file(const std::string& dir, const std::string& name) {
  const std::string gz = (std::filesystem::path(dir) / (name + ".gz")).string();
  const std::string plain = (std::filesystem::path(dir) / name).string();
  std::error_code ec;
  if (std::filesystem::is_regular_file(gz, ec)) return gz;
  if (std::filesystem::is_regular_file(plain, ec)) return plain;
  fail("fashion_mnist", "got no file '", gz, "' (nor '", plain,
       "'), expected the Fashion-MNIST idx files there: apt install dataset-fashion-mnist, or set "
       "STRATA_FASHION_MNIST_DIR / pass .path to the directory holding them");
}

/// Images u8 [N, 1, 28, 28] and labels i64 [N] from one split ("train" or "t10k").
inline std::shared_ptr<TensorDataset> fashion_mnist_split(const std::string& dir, const std::string& split,
                                                           int64_t n, int64_t full) {
  STRATA_CHECK(n >= 0 && n <= full, "fashion_mnist", "got n_", split == "train" ? "train" : "valid", "=", n,
               ", expected 0 (all) or a count in [1, ", full, "]");
  const std::string img_path = fashion_mnist_file(dir, split + "-images-idx3-ubyte");
  const std::string lbl_path = fashion_mnist_file(dir, split + "-labels-idx1-ubyte");
  const int64_t max_items = n > 0 ? n : -1;
  Tensor images = read_idx(img_path, max_items);
  Tensor labels = read_idx(lbl_path, max_items);
  STRATA_CHECK(images.dtype() == DType::u8 && images.dim() == 3 && images.size(1) == 28 && images.size(2) == 28,
               "fashion_mnist", "got images of dtype ", images.dtype(), " and shape ", images.shape(), " in '",
               img_path, "', expected uint8 [N, 28, 28]");
  STRATA_CHECK(labels.dtype() == DType::u8 && labels.dim() == 1 && labels.size(0) == images.size(0),
               "fashion_mnist", "got labels of dtype ", labels.dtype(), " and shape ", labels.shape(), " in '",
               lbl_path, "', expected uint8 [", images.size(0), "] (one per image)");
  const uint8_t* l = labels.data_ptr<uint8_t>();
  for (int64_t i = 0; i < labels.numel(); ++i)
    STRATA_CHECK(l[i] < 10, "fashion_mnist", "got label ", int(l[i]), " at entry ", i, " of '", lbl_path,
                 "', expected labels in [0, 10)");
  return std::make_shared<TensorDataset>(std::vector{images.reshape({images.size(0), 1, 28, 28})},
                                         std::vector{labels.to(DType::i64)});
}

}  // namespace detail

/// Fashion-MNIST as train (shuffled) and valid loaders with c = 10 and the class names as vocab.
inline DataLoaders fashion_mnist(FashionMnistOptions o = {}) {
  const std::string dir = fashion_mnist_dir(o.path);
  auto train = detail::fashion_mnist_split(dir, "train", o.n_train, 60000);
  auto valid = detail::fashion_mnist_split(dir, "t10k", o.n_valid, 10000);

  std::vector<BatchTransform> tfms{IntToFloat{}.as_transform()};
  if (o.normalize) tfms.push_back(Normalize::from_stats({kFashionMnistMean}, {kFashionMnistStd}).as_transform());
  DataLoaderOptions to{.bs = o.bs, .shuffle = true, .drop_last = o.drop_last && train->size() >= o.bs,
                       .num_workers = o.num_workers, .seed = o.seed, .after_batch = tfms};
  DataLoaderOptions vo = to;
  vo.shuffle = false;
  vo.drop_last = false;
  return {.train = DataLoader(train, std::move(to)), .valid = DataLoader(valid, std::move(vo)), .c = 10,
          .vocab = fashion_mnist_classes()};
}

}  // namespace strata
