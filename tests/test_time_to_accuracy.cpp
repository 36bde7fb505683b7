// TimeToAccuracy: the DAWNBench numbers of a fit, checked against the Recorder's rows.
#include <catch2/catch.hpp>

#include <cmath>

#include "helpers.hpp"
#include "strata/learn/learn.hpp"

namespace test_time_to_accuracy {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

namespace {
/// n points on a line, class = x > 0; a Linear(1, 2) separates them within a few epochs.
DataLoaders line_dls(int64_t n, int64_t bs) {
  auto make = [&](uint64_t seed) {
    manual_seed(seed);
    const Tensor x = randn({n, 1});
    const Tensor y = gt(x, scalar_tensor(0.0)).to(DType::i64).reshape({n});
    return std::make_shared<TensorDataset>(std::vector<Tensor>{x}, std::vector<Tensor>{y});
  };
  return {.train = DataLoader(make(1), {.bs = bs, .shuffle = true, .seed = 3}), .valid = DataLoader(make(2), {.bs = bs}),
          .c = 2};
}
}  // namespace

TEST_CASE("TimeToAccuracy: first epoch at or above the target, items counted, summary line") {
  Learner learn(line_dls(64, 16), std::make_shared<nn::Linear>(1, 2), nn::CrossEntropyLossFlat(),
                {.metrics = {accuracy()}});
  learn.remove_cb<ProgressCallback>();
  auto tta = std::make_shared<TimeToAccuracy>(0.9);
  learn.add_cb(tta);
  learn.fit(4, 0.1);

  const auto& values = learn.recorder().values;  // {train_loss, valid_loss, accuracy}
  REQUIRE(values.size() == 4);
  int first = -1;
  for (int e = 0; e < 4 && first < 0; ++e)
    if (values[e][2] >= 0.9) first = e + 1;
  REQUIRE(first > 0);  // the line is separable: it must get there
  CHECK(tta->epoch_reached == first);
  CHECK(tta->reached());
  CHECK(tta->final_value == values.back()[2]);
  CHECK(tta->train_items == 4 * 64);
  CHECK(tta->time_to_target_s <= tta->wall_s);
  CHECK(tta->train_s <= tta->wall_s);
  CHECK(tta->items_per_s() > 0);
  CHECK_THAT(tta->summary(), Catch::Contains("accuracy ") && Catch::Contains("target 0.9 reached at epoch " +
                                                                              std::to_string(first)));

  // validate() and get_preds() after the fit leave the numbers alone
  const double wall = tta->wall_s, reached_at = tta->time_to_target_s;
  learn.validate();
  learn.get_preds();
  CHECK(tta->wall_s == wall);
  CHECK(tta->time_to_target_s == reached_at);
  CHECK(tta->epoch_reached == first);
  CHECK(tta->train_items == 4 * 64);

  // fit_one_cycle and fit_flat_cos default to the Learner's lr, as in fastai
  learn.lr = 0.02;
  learn.fit_one_cycle(1);
  CHECK_THAT(*std::max_element(learn.recorder().lrs.begin(), learn.recorder().lrs.end()),
             Catch::WithinRel(0.02, 1e-3));
  learn.fit_flat_cos(1);
  CHECK(learn.recorder().lrs.front() == Approx(0.02));

  auto never = std::make_shared<TimeToAccuracy>(1.5);
  learn.remove_cb(tta).add_cb(never);
  learn.fit(1, 0.1);
  CHECK_FALSE(never->reached());
  CHECK(std::isnan(never->time_to_target_s));
  CHECK_THAT(never->summary(), Catch::Contains("not reached"));

  learn.remove_cb(never).add_cb(std::make_shared<TimeToAccuracy>(0.5, "f1"));
  th::check_throws([&] { learn.fit(1, 0.1); }, {"TimeToAccuracy", "f1"});
}

}  // namespace test_time_to_accuracy
