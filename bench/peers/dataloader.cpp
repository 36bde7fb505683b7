// DataLoader throughput peer, strata side: images/s of one epoch over an ImageNet-style folder of
// JPEGs (DIR/<class>/*.jpg) through a DataBlock: get_image_files, parent_label, RandomResizedCrop(128)
// and FlipItem on the items, IntToFloat on the batch, bs 64, 2 worker threads, shuffled, every image
// in the training split. bench/peers/dataloader.py times the same with torchvision's ImageFolder,
// RandomResizedCrop(128), RandomHorizontalFlip and ToTensor in PyTorch's DataLoader (2 workers);
// run_dataloader.sh makes the folder and runs both alternately.
// The first batch is the warm-up (workers start, first decodes); the clock runs from there to the
// end of the epoch. Output: "strata IMAGES_PER_S N CPU_MS_PER_IMAGE" (N = images timed; the CPU time,
// user + sys of all threads over the timed part, per image, is what a busy shared machine disturbs least).
//   g++ -std=c++20 -O2 -march=native -Iinclude -I. bench/peers/dataloader.cpp -o dl -pthread -lz && ./dl DIR
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <strata/data/datablock.hpp>
#include <strata/data/normalize.hpp>
#include <strata/data/resize.hpp>
#include <strata/data/sources.hpp>

using namespace strata;
namespace fs = std::filesystem;

/// User + system CPU seconds of this process, all threads.
static double cpu_seconds() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return double(r.ru_utime.tv_sec + r.ru_stime.tv_sec) + 1e-6 * double(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR [workers]   (DIR/<class>/*.jpg)\n", argv[0]);
    return 2;
  }
  const fs::path dir = argv[1];
  const int workers = argc > 2 ? std::atoi(argv[2]) : 2;
  try {
    const auto dblock = DataBlock<fs::path>{
        .blocks = {ImageBlock(), CategoryBlock()},
        .get_items = [](const fs::path& d) { return get_image_files(d); },
        .get_y = [](const fs::path& p) -> Raw { return parent_label(p); },
        .splitter = IndexSplitter({}),  // every image is trained on, as ImageFolder gives them all
        .item_tfms = {make_transform(RandomResizedCrop({.size = 128})), make_transform(FlipItem())},
        .batch_tfms = {make_transform(IntToFloat{})}};
    DataLoaders dls = dblock.dataloaders(dir, {.bs = 64, .num_workers = workers, .seed = 1});

    int64_t n = 0, batches = 0;
    auto t0 = std::chrono::steady_clock::now();
    double c0 = 0;
    for (Batch& b : dls.train) {
      if (batches++ == 0) {  // warm-up batch: check what came out, then start the clock
        const Tensor& x = b.xb[0];
        STRATA_CHECK(x.dim() == 4 && x.size(1) == 3 && x.size(2) == 128 && x.size(3) == 128 &&
                         x.dtype() == DType::f32,
                     "bench dataloader", "got a batch of shape ", x.shape(), " and dtype ", x.dtype(),
                     ", expected [64, 3, 128, 128] f32");
        const double mean = x.mean().item<double>();
        STRATA_CHECK(mean > 0.1 && mean < 0.9, "bench dataloader", "got a batch of mean ", mean,
                     ", expected pixels in [0, 1] around 0.5 (decoded images)");
        t0 = std::chrono::steady_clock::now();
        c0 = cpu_seconds();
        continue;
      }
      n += b.xb[0].size(0);
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double cpu = cpu_seconds() - c0;
    std::printf("strata %.1f %lld %.3f\n", double(n) / s, static_cast<long long>(n), cpu * 1e3 / double(n));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench dataloader: %s\n", e.what());
    return 1;
  }
  return 0;
}
