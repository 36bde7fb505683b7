// The learn layer in one include: Learner, Callback and its events, metrics, and the callbacks
// (TrainEvalCallback, Recorder, ProgressCallback, ParamScheduler with fit_one_cycle / fit_flat_cos,
// LRFinder with lr_find).
//
//   #include <strata/learn/learn.hpp>
//   Learner learn(dls, model, nn::CrossEntropyLossFlat(), {.metrics = {accuracy()}});
//   auto found = learn.lr_find();
//   learn.fit_one_cycle(3, found.valley);
//   learn.recorder().plot_loss("loss.png");
#pragma once

#include "strata/learn/callback.hpp"
#include "strata/learn/learner.hpp"
#include "strata/learn/metrics.hpp"
#include "strata/learn/callbacks/train_eval.hpp"
#include "strata/learn/callbacks/recorder.hpp"
#include "strata/learn/callbacks/progress.hpp"
#include "strata/learn/callbacks/param_scheduler.hpp"
#include "strata/learn/callbacks/lr_finder.hpp"
#include "strata/learn/callbacks/time_to_accuracy.hpp"
#include "strata/learn/callbacks/progressive_resizing.hpp"
#include "strata/learn/show_results.hpp"
#include "strata/learn/tta.hpp"
