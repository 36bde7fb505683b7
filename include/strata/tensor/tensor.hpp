// Tensor with all its ops and methods: the header users include for tensors (or strata/strata.hpp).
#pragma once

#include "strata/tensor/detail/tensor_class.hpp"
#include "strata/tensor/methods.hpp"
