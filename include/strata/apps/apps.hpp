// The applications layer (fastai's applications): a task's Learner in a few lines.
//   vision_learner (apps/vision_learner.hpp): a pretrained body, fastai's head, fine_tune.
#pragma once

#include "strata/apps/vision_learner.hpp"
