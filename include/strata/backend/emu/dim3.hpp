// dim3 and uint3 for the CUDA emulator, as CUDA's vector_types.h declares them (global namespace).
//
// dim3 is a launch shape (grid or block): unspecified dimensions are 1, so dim3(256) is 256 x 1 x 1.
// uint3 is the type of threadIdx and blockIdx. Only the emulator includes this file; under nvcc the
// CUDA headers provide both.
#pragma once

struct uint3 {
  unsigned int x, y, z;
};

struct dim3 {
  unsigned int x = 1, y = 1, z = 1;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}  // NOLINT: implicit, as in CUDA
  constexpr operator uint3() const { return {x, y, z}; }
};
