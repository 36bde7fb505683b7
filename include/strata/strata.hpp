// strata: the whole library in one include.
#pragma once

#include "strata/core/dtype.hpp"
#include "strata/core/error.hpp"
#include "strata/core/parallel.hpp"
#include "strata/core/random.hpp"
#include "strata/core/shape.hpp"
#include "strata/core/storage.hpp"
#include "strata/tensor/tensor.hpp"
#include "strata/autograd/engine.hpp"
#if __has_include("strata/autograd/gradcheck.hpp")
#include "strata/autograd/gradcheck.hpp"
#endif
