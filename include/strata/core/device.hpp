// Device: where a tensor's storage lives. Only the CPU exists today; the CUDA issue adds kCUDA.
#pragma once

#include <ostream>

namespace strata {

enum class DeviceType : uint8_t { cpu, cuda };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;
  bool is_cpu() const { return type == DeviceType::cpu; }
  bool is_cuda() const { return type == DeviceType::cuda; }
  friend bool operator==(Device, Device) = default;
};

inline constexpr Device kCPU{DeviceType::cpu, 0};

inline std::ostream& operator<<(std::ostream& os, Device d) {
  if (d.is_cpu()) return os << "cpu";
  return os << "cuda:" << d.index;
}

}  // namespace strata
