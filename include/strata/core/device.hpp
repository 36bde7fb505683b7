// Device: where a tensor's storage lives: the CPU or CUDA device i.
//
//   Device::cpu()  (== kCPU)     Device::cuda(1)  (Device::cuda() == kCUDA, device 0)
//   std::cout << Device::cuda(1);   // "cuda:1"
// Naming a cuda device is always allowed; allocating on it needs a registered backend
// (core/storage.hpp, backend/device_allocator.hpp), which also checks the index.
#pragma once

#include <cstdint>
#include <ostream>

namespace strata {

enum class DeviceType : uint8_t { cpu, cuda };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;
  /// The host.
  static constexpr Device cpu() { return {DeviceType::cpu, 0}; }
  /// CUDA device `index` (the emulator has one: 0).
  static constexpr Device cuda(int index = 0) { return {DeviceType::cuda, index}; }
  bool is_cpu() const { return type == DeviceType::cpu; }
  bool is_cuda() const { return type == DeviceType::cuda; }
  friend bool operator==(Device, Device) = default;
};

inline constexpr Device kCPU{DeviceType::cpu, 0};
inline constexpr Device kCUDA{DeviceType::cuda, 0};

inline std::ostream& operator<<(std::ostream& os, Device d) {
  if (d.is_cpu()) return os << "cpu";
  return os << "cuda:" << d.index;
}

}  // namespace strata
