// Every layer: linear, conv (and fastai's ConvLayer), norms, activations, dropout, pooling, flatten,
// embedding, and the initializers they use.
#pragma once

#include "strata/nn/activation.hpp"
#include "strata/nn/conv.hpp"
#include "strata/nn/dropout.hpp"
#include "strata/nn/embedding.hpp"
#include "strata/nn/flatten.hpp"
#include "strata/nn/init.hpp"
#include "strata/nn/linear.hpp"
#include "strata/nn/module.hpp"
#include "strata/nn/norm.hpp"
#include "strata/nn/pooling.hpp"
