// strata::nn in one include: Module and Sequential, every layer, the initializers, the losses and
// the models (simple_cnn, resnet18/34, xresnet18, resnet9).
#pragma once

#include "strata/nn/layers.hpp"
#include "strata/nn/loss.hpp"
#include "strata/nn/models/resnet.hpp"
#include "strata/nn/models/resnet9.hpp"
#include "strata/nn/models/simple_cnn.hpp"
#include "strata/nn/models/xresnet.hpp"
