// The learn layer in one include: Learner, Callback and its events, metrics, the callbacks
// (TrainEvalCallback, Recorder, ProgressCallback, ParamScheduler with fit_one_cycle / fit_flat_cos,
// LRFinder with lr_find, the training tricks, trackers, CSVLogger, EMA, ActivationStats), hooks,
// interpretation, saliency and uncertainty (active learning).
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
#include "strata/learn/callbacks/mixup.hpp"
#include "strata/learn/callbacks/gradient_clip.hpp"
#include "strata/learn/callbacks/mixed_precision.hpp"
#include "strata/learn/callbacks/channels_last.hpp"
#include "strata/learn/callbacks/gradient_accumulation.hpp"
#include "strata/learn/callbacks/bn_freeze.hpp"
#include "strata/learn/callbacks/terminate_on_nan.hpp"
#include "strata/learn/callbacks/short_epoch.hpp"
#include "strata/learn/callbacks/tracker.hpp"
#include "strata/learn/callbacks/csv_logger.hpp"
#include "strata/learn/callbacks/ema.hpp"
#include "strata/learn/callbacks/activation_stats.hpp"
#include "strata/learn/hook.hpp"
#include "strata/learn/interpretation.hpp"
#include "strata/learn/saliency.hpp"
#include "strata/learn/uncertainty.hpp"
#include "strata/learn/show_results.hpp"
#include "strata/learn/tta.hpp"
