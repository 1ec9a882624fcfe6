// Shared by both fused CPU attention kernels (short_attention.cpp, short_attention_portable.cpp): the layout
// of the gradients their backward returns. polyhead.attention.cpu hashes this file with the sources.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <tuple>

namespace polyhead_short_attention {

// Gradient buffers for q, k, v. Where they are the heads of one self-attention projection (views of a
// (B, L, 3 * H * D) tensor, polyhead's mha), the three gradients are the parts of one tensor of that layout,
// so the projection's split finds them adjacent and needs no concatenation (polyhead.attention.functional.split_last);
// otherwise each has its input's layout where that is dense, else the forward output's (B, L, H, D) order.
inline std::tuple<at::Tensor, at::Tensor, at::Tensor> grads_like(const at::Tensor& q, const at::Tensor& k,
                                                          const at::Tensor& v) {
  const int64_t B = q.size(0), H = q.size(1), L = q.size(2), D = q.size(3), HD = H * D;
  const bool packed = k.sizes() == q.sizes() && v.sizes() == q.sizes() && k.strides() == q.strides() &&
                      v.strides() == q.strides() && q.is_alias_of(k) && q.is_alias_of(v) && HD > 0 &&
                      k.storage_offset() - q.storage_offset() == HD && v.storage_offset() - k.storage_offset() == HD &&
                      q.stride(3) == 1 && q.stride(1) == D && q.stride(2) == 3 * HD && q.stride(0) == L * 3 * HD;
  if (packed) {
    const at::Tensor buf = at::empty({B, L, 3 * HD}, q.options());
    auto part = [&](int64_t i) { return buf.narrow(2, i * HD, HD).view({B, L, H, D}).transpose(1, 2); };
    return {part(0), part(1), part(2)};
  }
  auto like = [](const at::Tensor& t) {
    if (t.is_non_overlapping_and_dense()) return at::empty_like(t);
    return at::empty({t.size(0), t.size(2), t.size(1), t.size(3)}, t.options()).transpose(1, 2);
  };
  return {like(q), like(k), like(v)};
}

}  // namespace polyhead_short_attention
