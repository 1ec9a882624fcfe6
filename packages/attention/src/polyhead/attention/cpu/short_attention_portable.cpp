// Fused CPU attention for many short sequences, written once over ATen's portable vector type
// (at::vec::Vectorized<float>), forward and backward.
//
// The same algorithm as short_attention.cpp (the AVX-512 intrinsics kernel): each (batch, head) pair is done
// in one go with its keys, values and scores in L1, only the softmax weights P (float32) are kept for the
// backward. The buffers are query-major: vectors run over queries in chunks of W = Vectorized<float>::size()
// lanes (16 for AVX-512, 8 for AVX2 and the scalar DEFAULT build, 4 for NEON), so the softmax over keys is
// elementwise across rows (no horizontal reductions), and over the head dimension, padded to a multiple of W.
//
// polyhead.attention.cpu compiles this file once per CPU capability (CPU_CAPABILITY=AVX512 | AVX2 | DEFAULT
// with the matching -m flags, as PyTorch builds its own kernels), so one source serves x86 with or without
// AVX-512 and ARM. Computation is float32; inputs and outputs are float32 or bfloat16.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "short_attention_grads.h"

namespace {

using Vec = at::vec::Vectorized<float>;
constexpr int64_t W = Vec::size();

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Rows of T (row stride `stride`, n columns) into float rows of width w (zero padding), times `mul`.
template <typename T>
inline void load_rows(const T* src, int64_t stride, int64_t rows, int64_t n, float* dst, int64_t w, float mul) {
  for (int64_t r = 0; r < rows; ++r) {
    float* d = dst + r * w;
    const T* s = src + r * stride;
    for (int64_t c = 0; c < n; ++c) d[c] = static_cast<float>(s[c]) * mul;
    for (int64_t c = n; c < w; ++c) d[c] = 0.f;
  }
}

// Transpose rows of T (rows x n) into float columns dst[c * w + r], times `mul` (w >= rows; padding zeroed).
template <typename T>
inline void load_cols(const T* src, int64_t stride, int64_t rows, int64_t n, float* dst, int64_t w, float mul) {
  std::fill(dst, dst + n * w, 0.f);
  for (int64_t r = 0; r < rows; ++r) {
    const T* s = src + r * stride;
    for (int64_t c = 0; c < n; ++c) dst[c * w + r] = static_cast<float>(s[c]) * mul;
  }
}

// The inverse: rows r < rows of T (n columns) from float columns src[c * w + r].
template <typename T>
inline void store_cols(const float* src, int64_t w, int64_t rows, int64_t n, T* dst, int64_t stride) {
  for (int64_t r = 0; r < rows; ++r) {
    T* d = dst + r * stride;
    for (int64_t c = 0; c < n; ++c) d[c] = static_cast<T>(src[c * w + r]);
  }
}

// Query-major products over NB query chunks for KJ rows a_t of A (element d of a_t at A[t * at + d * ad]):
// acc[t][cb] = sum_{d < D} a_t[d] * X[d * w + cb * W]. Each X vector is loaded once for the KJ rows; KJ * NB
// independent sums hide the FMA latency.
template <int NB, int KJ>
inline void cols_dot(const float* A, int64_t at, int64_t ad, int64_t D, const float* X, int64_t w, Vec (*acc)[NB]) {
  for (int t = 0; t < KJ; ++t)
    for (int c = 0; c < NB; ++c) acc[t][c] = Vec(0.f);
  for (int64_t d = 0; d < D; ++d) {
    Vec x[NB];
    for (int c = 0; c < NB; ++c) x[c] = Vec::loadu(X + d * w + c * W);
    for (int t = 0; t < KJ; ++t) {
      const Vec a(A[t * at + d * ad]);
      for (int c = 0; c < NB; ++c) acc[t][c] = at::vec::fmadd(a, x[c], acc[t][c]);
    }
  }
}

// Rows per call of cols_dot: at least 8 independent sums (two FMA units of 4 cycles' latency) with the NB
// loaded X vectors, within AVX2's 16 vector registers (W = 8), or AVX-512's and NEON's 32, where more rows
// per loaded vector measured faster (AVX-512 build, 1 thread, best of 12 rounds, forward / backward ms: B 1024,
// H 2, L 39, D 8: 4.24 / 7.09 with 2 rows, 3.97 / 6.60 with 4; B 32, H 4, L 128, D 32: 5.21 / 8.14, 4.44 / 6.65).
template <int NB>
constexpr int rows_for() { return W == 8 ? (NB >= 3 ? 2 : 8 / NB) : (NB >= 3 ? 4 : 16 / NB); }

// f(j, acc) for every row j < S of A (row width aw): acc[c] = the products of row j with the NB query chunks.
template <int NB, typename F>
inline void for_rows_dot(const float* A, int64_t aw, int64_t S, int64_t D, const float* X, int64_t w, F&& f) {
  constexpr int KJ = rows_for<NB>();
  Vec acc[KJ][NB];
  int64_t j = 0;
  for (; j + KJ <= S; j += KJ) {
    cols_dot<NB, KJ>(A + j * aw, aw, 1, D, X, w, acc);
    for (int t = 0; t < KJ; ++t) f(j + t, acc[t]);
  }
  for (; j < S; ++j) {
    cols_dot<NB, 1>(A + j * aw, aw, 1, D, X, w, acc);
    f(j, acc[0]);
  }
}

// Output rows per block of rows_times_cols: 4 x NB accumulators + NB loads fit 32 vector registers (AVX-512,
// NEON); AVX2's 16 take 2 rows at a time.
constexpr int64_t RT = W == 8 ? 2 : 4;

// out[e * w + cb * W] = sum_j R[j * rw + e] * M[j * w + cb * W] for e < E (E a multiple of RT, R's rows zero
// padded to it): cols_dot over the columns of R, RT of them at a time.
template <int NB>
inline void rows_times_cols(const float* R, int64_t rw, int64_t E, const float* M, int64_t w, int64_t n, float* out) {
  for (int64_t e0 = 0; e0 < E; e0 += RT) {
    Vec acc[RT][NB];
    cols_dot<NB, RT>(R + e0, 1, rw, n, M, w, acc);
    for (int t = 0; t < RT; ++t)
      for (int c = 0; c < NB; ++c) acc[t][c].store(out + (e0 + t) * w + c * W);
  }
}

// For K consecutive rows p_t = P + t * pstride: Y[t][0:wd] = sum_i p_t[i] * R[i][0:wd] over i < n (R rows of
// width wd, a multiple of W).
template <int K>
inline void weighted_rows_k(const float* P, int64_t pstride, const float* R, int64_t n, int64_t wd, float* Yout) {
  for (int64_t c = 0; c < wd; c += W) {
    Vec e[K], o[K];
    for (int t = 0; t < K; ++t) e[t] = o[t] = Vec(0.f);
    int64_t i = 0;
    for (; i + 1 < n; i += 2) {
      const Vec r0 = Vec::loadu(R + i * wd + c), r1 = Vec::loadu(R + (i + 1) * wd + c);
      for (int t = 0; t < K; ++t) {
        e[t] = at::vec::fmadd(Vec(P[t * pstride + i]), r0, e[t]);
        o[t] = at::vec::fmadd(Vec(P[t * pstride + i + 1]), r1, o[t]);
      }
    }
    if (i < n) {
      const Vec r0 = Vec::loadu(R + i * wd + c);
      for (int t = 0; t < K; ++t) e[t] = at::vec::fmadd(Vec(P[t * pstride + i]), r0, e[t]);
    }
    for (int t = 0; t < K; ++t) (e[t] + o[t]).store(Yout + t * wd + c);
  }
}

// Rows j < rows of T (n columns, row stride `stride`) = sum_i P[j * pstride + i] * R[i] over i < m.
template <typename T>
inline void weighted_rows_out(const float* P, int64_t pstride, int64_t rows, const float* R, int64_t m, int64_t wd,
                              float* ybuf, T* dst, int64_t stride, int64_t n) {
  for (int64_t j = 0; j < rows; j += 4) {
    const int64_t k = std::min<int64_t>(4, rows - j);
    switch (k) {
      case 1: weighted_rows_k<1>(P + j * pstride, pstride, R, m, wd, ybuf); break;
      case 2: weighted_rows_k<2>(P + j * pstride, pstride, R, m, wd, ybuf); break;
      case 3: weighted_rows_k<3>(P + j * pstride, pstride, R, m, wd, ybuf); break;
      default: weighted_rows_k<4>(P + j * pstride, pstride, R, m, wd, ybuf); break;
    }
    for (int64_t t = 0; t < k; ++t)
      for (int64_t c = 0; c < n; ++c) dst[(j + t) * stride + c] = static_cast<T>(ybuf[t * wd + c]);
  }
}

struct Strides {
  int64_t b, h, l;
  explicit Strides(const at::Tensor& t) : b(t.stride(0)), h(t.stride(1)), l(t.stride(2)) {}
  int64_t base(int64_t bi, int64_t hi) const { return bi * b + hi * h; }
};

struct Dims {
  int64_t B, H, L, D, S, Dv, Lp, DW, DvW;
  Dims(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v)
      : B(q.size(0)), H(q.size(1)), L(q.size(2)), D(q.size(3)), S(k.size(2)), Dv(v.size(3)),
        Lp(round_up(L, W)), DW(round_up(q.size(3), W)), DvW(round_up(v.size(3), W)) {}
};

// Groups of up to 4 query chunks at a time (64 queries for W = 16), the group size a compile-time constant.
template <typename F>
inline void for_query_groups(int64_t Lp, F&& f) {
  for (int64_t c0 = 0; c0 < Lp; c0 += 4 * W) {
    switch (std::min<int64_t>(4, (Lp - c0) / W)) {
      case 1: f(c0, std::integral_constant<int, 1>()); break;
      case 2: f(c0, std::integral_constant<int, 2>()); break;
      case 3: f(c0, std::integral_constant<int, 3>()); break;
      default: f(c0, std::integral_constant<int, 4>()); break;
    }
  }
}

template <typename T>
void forward_impl(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, at::Tensor& out, at::Tensor& w,
                  double scale) {
  const Dims z(q, k, v);
  const Strides sq(q), sk(k), sv(v), so(out);
  const T *qp = q.const_data_ptr<T>(), *kp = k.const_data_ptr<T>(), *vp = v.const_data_ptr<T>();
  T* op = out.mutable_data_ptr<T>();
  float* wp = w.mutable_data_ptr<float>();
  const Vec inf(std::numeric_limits<float>::infinity()), nan(std::numeric_limits<float>::quiet_NaN());
  at::parallel_for(0, z.B * z.H, 16, [&](int64_t n0, int64_t n1) {
    // qt: scale * q^T (D, Lp); kr, vr: key and value rows; st: scores, then P^T (S, Lp); ot: O^T (Dv4, Lp).
    const int64_t Dv4 = round_up(z.Dv, 4);
    std::vector<float> qt(z.D * z.Lp), kr(z.S * z.DW), vr(z.S * Dv4), st(z.S * z.Lp), ot(Dv4 * z.Lp);
    for (int64_t n = n0; n < n1; ++n) {
      const int64_t b = n / z.H, h = n % z.H;
      load_cols(qp + sq.base(b, h), sq.l, z.L, z.D, qt.data(), z.Lp, static_cast<float>(scale));
      load_rows(kp + sk.base(b, h), sk.l, z.S, z.D, kr.data(), z.DW, 1.f);
      load_rows(vp + sv.base(b, h), sv.l, z.S, z.Dv, vr.data(), Dv4, 1.f);
      float* wn = wp + n * z.S * z.Lp;  // P^T of this pair: (S, Lp), the padded queries' lanes included
      for_query_groups(z.Lp, [&](int64_t c0, auto nb) {
        constexpr int NB = decltype(nb)::value;
        float* sc = st.data() + c0;
        Vec mx[NB], sum[NB], bad[NB];
        for (int c = 0; c < NB; ++c) {
          mx[c] = -inf;
          sum[c] = bad[c] = Vec(0.f);
        }
        for_rows_dot<NB>(kr.data(), z.DW, z.S, z.D, qt.data() + c0, z.Lp, [&](int64_t j, const Vec* acc) {
          for (int c = 0; c < NB; ++c) {
            acc[c].store(sc + j * z.Lp + c * W);
            mx[c] = at::vec::maximum(mx[c], acc[c]);  // propagates NaN
          }
        });
        // A NaN or +inf score gives the query NaN weights, as torch.softmax does: either shows in the max.
        for (int c = 0; c < NB; ++c) bad[c] = (mx[c] != mx[c]) | (mx[c] == inf);
        for (int64_t j = 0; j < z.S; ++j)
          for (int c = 0; c < NB; ++c) {
            // exp_u20: ATen's vectorised exp (about 20 ulp) where the capability has one, std::exp otherwise;
            // arguments are <= 0 after the max shift.
            const Vec e = (Vec::loadu(sc + j * z.Lp + c * W) - mx[c]).exp_u20();
            e.store(sc + j * z.Lp + c * W);
            sum[c] = sum[c] + e;
          }
        for (int c = 0; c < NB; ++c) sum[c] = Vec(1.f) / sum[c];
        for (int64_t j = 0; j < z.S; ++j)
          for (int c = 0; c < NB; ++c) {
            const Vec p = Vec::blendv(Vec::loadu(sc + j * z.Lp + c * W) * sum[c], nan, bad[c]);
            p.store(wn + j * z.Lp + c0 + c * W);  // padded queries too: the backward reads whole chunks
          }
        rows_times_cols<NB>(vr.data(), Dv4, Dv4, wn + c0, z.Lp, z.S, ot.data() + c0);  // O^T = V^T P^T
      });
      store_cols(ot.data(), z.Lp, z.L, z.Dv, op + so.base(b, h), so.l);
    }
  });
}

template <typename T>
void backward_impl(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& w,
                   const at::Tensor& dout, at::Tensor& dq, at::Tensor& dk, at::Tensor& dv, double scale) {
  const Dims z(q, k, v);
  const Strides sq(q), sk(k), sv(v), sdo(dout), sdq(dq), sdk(dk), sdv(dv);
  const T *qp = q.const_data_ptr<T>(), *kp = k.const_data_ptr<T>(), *vp = v.const_data_ptr<T>();
  const T* dop = dout.const_data_ptr<T>();
  const float* wp = w.const_data_ptr<float>();
  T *dqp = dq.mutable_data_ptr<T>(), *dkp = dk.mutable_data_ptr<T>(), *dvp = dv.mutable_data_ptr<T>();
  const float fs = static_cast<float>(scale);
  at::parallel_for(0, z.B * z.H, 16, [&](int64_t n0, int64_t n1) {
    // dot: dO^T (Dv, Lp); ds: dP^T, then dS^T; dqt: dQ^T (D4, Lp); rows of scale * q,
    // scale * k, v and dO; y: four output rows.
    const int64_t D4 = round_up(z.D, 4);
    std::vector<float> dot(z.Dv * z.Lp), ds(z.S * z.Lp), dqt(D4 * z.Lp), qr(z.L * z.DW),
        kr(z.S * D4), vr(z.S * z.DvW), dor(z.L * z.DvW), y(4 * std::max(z.DW, z.DvW));
    for (int64_t n = n0; n < n1; ++n) {
      const int64_t b = n / z.H, h = n % z.H;
      load_cols(dop + sdo.base(b, h), sdo.l, z.L, z.Dv, dot.data(), z.Lp, 1.f);
      load_rows(dop + sdo.base(b, h), sdo.l, z.L, z.Dv, dor.data(), z.DvW, 1.f);
      load_rows(qp + sq.base(b, h), sq.l, z.L, z.D, qr.data(), z.DW, fs);
      load_rows(kp + sk.base(b, h), sk.l, z.S, z.D, kr.data(), D4, fs);
      load_rows(vp + sv.base(b, h), sv.l, z.S, z.Dv, vr.data(), z.DvW, 1.f);
      // P^T (S, Lp) as the forward stored it; its padded queries' lanes meet zero dO, so they add nothing.
      const float* pn = wp + n * z.S * z.Lp;
      for_query_groups(z.Lp, [&](int64_t c0, auto nb) {
        constexpr int NB = decltype(nb)::value;
        float* dsc = ds.data() + c0;
        const float* pc = pn + c0;
        Vec rs[NB];
        for (int c = 0; c < NB; ++c) rs[c] = Vec(0.f);
        // dP^T = V dO^T; rs_i = sum_j P_ij dP_ij; dS = P * (dP - rs).
        for_rows_dot<NB>(vr.data(), z.DvW, z.S, z.Dv, dot.data() + c0, z.Lp, [&](int64_t j, const Vec* acc) {
          for (int c = 0; c < NB; ++c) {
            acc[c].store(dsc + j * z.Lp + c * W);
            rs[c] = at::vec::fmadd(Vec::loadu(pc + j * z.Lp + c * W), acc[c], rs[c]);
          }
        });
        for (int64_t j = 0; j < z.S; ++j)
          for (int c = 0; c < NB; ++c) {
            const Vec p = Vec::loadu(pc + j * z.Lp + c * W), d = Vec::loadu(dsc + j * z.Lp + c * W);
            (p * (d - rs[c])).store(dsc + j * z.Lp + c * W);
          }
        // dQ^T = (scale K)^T dS^T.
        rows_times_cols<NB>(kr.data(), D4, D4, dsc, z.Lp, z.S, dqt.data() + c0);
      });
      store_cols(dqt.data(), z.Lp, z.L, z.D, dqp + sdq.base(b, h), sdq.l);
      // dK = dS^T (scale Q), dV = P^T dO: key rows at a time, summed over the queries.
      weighted_rows_out(ds.data(), z.Lp, z.S, qr.data(), z.L, z.DW, y.data(), dkp + sdk.base(b, h), sdk.l, z.D);
      weighted_rows_out(pn, z.Lp, z.S, dor.data(), z.L, z.DvW, y.data(), dvp + sdv.base(b, h), sdv.l, z.Dv);
    }
  });
}

void check(const at::Tensor& t, const char* name, const at::Tensor& like) {
  TORCH_CHECK(t.device().is_cpu(), "short_attention: ", name, " must be a CPU tensor");
  TORCH_CHECK(t.dim() == 4, "short_attention: ", name, " must be (B, H, L, D), got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), "short_attention: ", name, " is ", t.scalar_type(),
              ", expected ", like.scalar_type());
  TORCH_CHECK(t.size(3) == 0 || t.stride(3) == 1, "short_attention: ", name, " needs unit stride over its last dimension");
}

void check_qkv(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  check(q, "q", q);
  check(k, "k", q);
  check(v, "v", q);
  TORCH_CHECK(q.scalar_type() == at::kFloat || q.scalar_type() == at::kBFloat16,
              "short_attention: float32 or bfloat16 inputs, got ", q.scalar_type());
  TORCH_CHECK(k.size(0) == q.size(0) && v.size(0) == q.size(0) && k.size(1) == q.size(1) && v.size(1) == q.size(1),
              "short_attention: q, k, v need the same batch and heads, got ", q.sizes(), ", ", k.sizes(), ", ",
              v.sizes());
  TORCH_CHECK(k.size(3) == q.size(3) && v.size(2) == k.size(2), "short_attention: shapes do not match: q ",
              q.sizes(), ", k ", k.sizes(), ", v ", v.sizes());
  TORCH_CHECK(k.size(2) > 0, "short_attention: no keys");
}

std::tuple<at::Tensor, at::Tensor> short_attention_forward(const at::Tensor& q, const at::Tensor& k,
                                                           const at::Tensor& v, double scale) {
  check_qkv(q, k, v);
  const int64_t B = q.size(0), H = q.size(1), L = q.size(2), S = k.size(2), Dv = v.size(3);
  at::Tensor out = at::empty({B, L, H, Dv}, q.options()).transpose(1, 2);
  // P^T with the queries padded to whole vectors, kept for the backward
  at::Tensor w = at::empty({B, H, S, round_up(L, W)}, q.options().dtype(at::kFloat));
  if (q.scalar_type() == at::kFloat)
    forward_impl<float>(q, k, v, out, w, scale);
  else
    forward_impl<c10::BFloat16>(q, k, v, out, w, scale);
  return {out, w};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> short_attention_backward(const at::Tensor& q, const at::Tensor& k,
                                                                        const at::Tensor& v, const at::Tensor& w,
                                                                        const at::Tensor& dout, double scale) {
  check_qkv(q, k, v);
  check(dout, "grad_out", q);
  const int64_t B = q.size(0), H = q.size(1), L = q.size(2), S = k.size(2), Dv = v.size(3);
  TORCH_CHECK(dout.sizes() == at::IntArrayRef({B, H, L, Dv}), "short_attention: grad_out must be ",
              at::IntArrayRef({B, H, L, Dv}), ", got ", dout.sizes());
  const int64_t Lp = round_up(L, W);
  TORCH_CHECK(w.scalar_type() == at::kFloat && w.is_contiguous() && w.sizes() == at::IntArrayRef({B, H, S, Lp}),
              "short_attention: weights must be the forward's contiguous float32 (B, H, S, L padded to ", W,
              "), got ", w.sizes());
  auto [dq, dk, dv] = polyhead_short_attention::grads_like(q, k, v);
  if (q.scalar_type() == at::kFloat)
    backward_impl<float>(q, k, v, w, dout, dq, dk, dv, scale);
  else
    backward_impl<c10::BFloat16>(q, k, v, w, dout, dq, dk, dv, scale);
  return {dq, dk, dv};
}

int64_t vector_width() { return W; }

}  // namespace

TORCH_LIBRARY(polyhead_cpu_portable, m) {
  m.def("short_attention_forward(Tensor q, Tensor k, Tensor v, float scale) -> (Tensor, Tensor)");
  m.def("short_attention_backward(Tensor q, Tensor k, Tensor v, Tensor w, Tensor grad_out, float scale) -> (Tensor, Tensor, Tensor)");
  m.def("vector_width() -> int", &vector_width);
}

TORCH_LIBRARY_IMPL(polyhead_cpu_portable, CPU, m) {
  m.impl("short_attention_forward", &short_attention_forward);
  m.impl("short_attention_backward", &short_attention_backward);
}
