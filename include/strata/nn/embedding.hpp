// Embedding: a lookup table, out[..., :] = weight[idx[...], :]; idx int64/int32 of any shape,
// weight [num_embeddings, embedding_dim] initialised N(0, 1) as PyTorch's nn.Embedding.
//
// padding_idx (optional): that row gets no gradient (its output still reads the row, which starts
// at zero), as in PyTorch.
#pragma once

#include <optional>
#include <string>

#include "strata/nn/init.hpp"
#include "strata/nn/module.hpp"

namespace strata::nn {

class Embedding : public Module {
 public:
  Tensor weight;  // [num_embeddings, embedding_dim]
  int64_t num_embeddings, embedding_dim;
  std::optional<int64_t> padding_idx;

  Embedding(int64_t num, int64_t dim, std::optional<int64_t> padding = std::nullopt)
      : num_embeddings(num), embedding_dim(dim), padding_idx(padding) {
    STRATA_CHECK(num >= 0 && dim >= 0, "Embedding", "got num_embeddings=", num, " embedding_dim=", dim,
                 ", expected sizes >= 0");
    if (padding_idx && *padding_idx < 0) *padding_idx += num;
    STRATA_CHECK(!padding_idx || (*padding_idx >= 0 && *padding_idx < num), "Embedding", "got padding_idx=",
                 padding.value_or(0), ", expected an index in [-", num, ", ", num, ")");
    weight = make_param(empty({num, dim}));
    init::normal_(weight);
    if (padding_idx) {
      NoGrad ng;
      weight.select(0, *padding_idx).zero_();
    }
  }

  Tensor forward(const Tensor& idx) override {
    STRATA_CHECK(idx.dtype() == DType::i64 || idx.dtype() == DType::i32, "Embedding", "got indices of dtype ",
                 idx.dtype(), ", expected int64 (or int32)");
    Shape out_shape = idx.shape();
    out_shape.push_back(embedding_dim);
    const Tensor flat = reshape(idx, {idx.numel()});
    Tensor out = index_select(weight, 0, flat);
    if (padding_idx) out = where(unsqueeze(ne(flat, *padding_idx), 1), out, detach(out));
    return reshape(out, out_shape);
  }
  void visit(Visitor& v) override { v.param("weight", weight); }
  std::string type_name() const override { return "Embedding"; }
  std::string extra_repr() const override {
    std::string s = std::to_string(num_embeddings) + ", " + std::to_string(embedding_dim);
    if (padding_idx) s += ", padding_idx=" + std::to_string(*padding_idx);
    return s;
  }
};

}  // namespace strata::nn
