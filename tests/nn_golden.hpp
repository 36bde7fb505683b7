// Reader for the nn golden files made by tools/make_nn_golden.py (format described there):
// records "<name> <dtype> <ndim> <sizes...>" followed by a line of values ("-": values not kept).
#pragma once

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include <strata/strata.hpp>

namespace th {

/// Every tensor of tests/golden/<file>, by name, in file order too (the list keeps the order).
struct Golden {
  std::map<std::string, strata::Tensor> by_name;
  std::vector<std::pair<std::string, strata::Tensor>> in_order;
  const strata::Tensor& operator[](const std::string& name) const {
    auto it = by_name.find(name);
    if (it == by_name.end()) throw std::runtime_error("golden: no tensor named " + name);
    return it->second;
  }
  bool has(const std::string& name) const { return by_name.count(name) > 0; }
};

inline std::filesystem::path golden_path(const std::string& file) {
  const auto beside = std::filesystem::path(__FILE__).parent_path() / "golden" / file;
  return std::filesystem::exists(beside) ? beside : std::filesystem::path("tests/golden") / file;
}

inline Golden load_golden(const std::string& file) {
  using namespace strata;
  std::ifstream in(golden_path(file));
  if (!in) throw std::runtime_error("golden: cannot open " + golden_path(file).string());
  Golden g;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream hs(line);
    std::string name, dt;
    int ndim = 0;
    hs >> name >> dt >> ndim;
    Shape shape;
    for (int i = 0; i < ndim; ++i) {
      int64_t s;
      hs >> s;
      shape.push_back(s);
    }
    std::getline(in, line);
    std::istringstream vs(line);
    Tensor t;
    const DType dtype = dt == "i64" ? DType::i64 : dt == "f32" ? DType::f32 : DType::f64;
    if (line == "-") {  // only the name, dtype and shape were kept
      t = zeros(shape, {.dtype = dtype});
    } else if (dt == "i64") {
      std::vector<int64_t> v(size_t(numel(shape)));
      for (auto& x : v) vs >> x;
      t = from_vector(v, shape);
    } else {
      std::vector<double> v(size_t(numel(shape)));
      for (auto& x : v) {
        std::string tok;
        vs >> tok;
        x = std::stod(tok);  // handles inf
      }
      t = from_vector(v, shape, {.dtype = dtype});
    }
    g.by_name[name] = t;
    g.in_order.emplace_back(name, t);
  }
  return g;
}

}  // namespace th
