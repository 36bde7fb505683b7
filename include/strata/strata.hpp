// strata: the whole library in one include.
#pragma once

#include "strata/core/dtype.hpp"
#include "strata/core/error.hpp"
#include "strata/core/parallel.hpp"
#include "strata/core/random.hpp"
#include "strata/core/shape.hpp"
#include "strata/core/storage.hpp"
#include "strata/tensor/tensor.hpp"
#include "strata/tensor/conv.hpp"
#include "strata/tensor/dropout.hpp"
#include "strata/tensor/norm.hpp"
#include "strata/tensor/pool.hpp"
#include "strata/autograd/engine.hpp"
#if __has_include("strata/autograd/gradcheck.hpp")
#include "strata/autograd/gradcheck.hpp"
#endif
#include "strata/nn/nn.hpp"
#include "strata/optim/optimizers.hpp"
#include "strata/optim/schedule.hpp"
#include "strata/data/dataloader.hpp"
#include "strata/data/fashion_mnist.hpp"
#include "strata/data/idx.hpp"
#include "strata/data/normalize.hpp"
#include "strata/io/plot.hpp"
#include "strata/io/png.hpp"
#include "strata/io/safetensors.hpp"
#include "strata/learn/learn.hpp"
