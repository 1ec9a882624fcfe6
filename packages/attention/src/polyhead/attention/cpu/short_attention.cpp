// Fused CPU attention for many short sequences (AVX-512), forward and backward.
//
// Built for the shapes of field attention in CTR models (AutoInt: batch 1024 x 2 heads, 39 fields, head
// dimension 8), where the unfused path spends its time in passes over the (B, H, L, S) score tensor: the
// score product, the softmax, the dtype casts around it, and the same again backwards. Here each (batch,
// head) pair is done in one go with its keys, values and scores in L1: scores, softmax and the weighted
// sum of values without writing the scores out; only the softmax weights P (float32) are kept for the
// backward.
//
// Layout: q, k (B, H, L|S, D) and v (B, H, S, Dv) with any batch/head/row strides and unit stride over the
// last dimension (the heads of a (B, L, H, D) projection, transposed, need no copy). Computation is in
// float32; inputs and outputs are float32 or bfloat16. The per-pair buffers are query-major: vectors run
// over queries in 16-lane chunks (zmm), so the softmax over keys is elementwise across rows, and over the
// head dimension in 8-lane chunks (ymm), with masked tails, so any L, S, D work.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <immintrin.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "short_attention_grads.h"

namespace {

constexpr int64_t Z = 16;  // floats per zmm (key chunks)
constexpr int64_t Y = 8;   // floats per ymm (head-dimension chunks)

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
inline __mmask16 zmask(int64_t n) { return n >= Z ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u); }
inline __mmask8 ymask(int64_t n) { return n >= Y ? __mmask8(0xFF) : __mmask8((1u << n) - 1u); }

// exp for x <= 0 (arguments are shifted by the row max): x = n ln2 + r, |r| <= ln2/2, e^r by a degree-6
// polynomial, 2^n by scalef. Relative error about 2e-7; below -87.3 the result flushes to 0.
inline __m512 exp512(__m512 x) {
  const __m512 lo = _mm512_set1_ps(-87.33654f);
  const __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  x = _mm512_max_ps(x, lo);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.3981999507e-3f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_maskz_mov_ps(static_cast<__mmask16>(~under), _mm512_scalef_ps(p, n));
}

// Row loads/stores of up to 8 elements of T as float32.
inline __m256 load8(const float* p, __mmask8 m) { return _mm256_maskz_loadu_ps(m, p); }
inline __m256 load8(const c10::BFloat16* p, __mmask8 m) {
  const __m128i h = _mm_maskz_loadu_epi16(m, p);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline void store8(float* p, __m256 x, __mmask8 m) { _mm256_mask_storeu_ps(p, m, x); }
inline void store8(c10::BFloat16* p, __m256 x, __mmask8 m) {
  // Round to nearest even; NaN and inf keep their class (the carry never reaches the exponent's top bit).
  __m256i b = _mm256_castps_si256(x);
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1));
  b = _mm256_add_epi32(b, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7FFF)));
  _mm_mask_storeu_epi16(p, m, _mm256_cvtepi32_epi16(_mm256_srli_epi32(b, 16)));
}

// Copy rows of T (row stride `stride`, n columns) into float rows of width w (a multiple of 8; zero
// padding), times `mul`.
template <typename T>
inline void load_rows(const T* src, int64_t stride, int64_t rows, int64_t n, float* dst, int64_t w, float mul) {
  const __m256 s = _mm256_set1_ps(mul);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < w; c += Y) {
      const __mmask8 m = ymask(n - c);
      _mm256_storeu_ps(dst + r * w + c, _mm256_mul_ps(load8(src + r * stride + c, m), s));
    }
}

// Transpose rows of T (rows x n) into float columns dst[c * w + r], times `mul` (w >= rows; padding zeroed).
template <typename T>
inline void load_cols(const T* src, int64_t stride, int64_t rows, int64_t n, float* dst, int64_t w, float mul) {
  std::fill(dst, dst + n * w, 0.f);
  const __m256i cols = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(static_cast<int>(w)));
  const __m256 s = _mm256_set1_ps(mul);
  for (int64_t c = 0; c < n; c += Y) {
    const __mmask8 m = ymask(n - c);
    float* base = dst + c * w;
    for (int64_t r = 0; r < rows; ++r)
      _mm256_mask_i32scatter_ps(base + r, m, cols, _mm256_mul_ps(load8(src + r * stride + c, m), s), 4);
  }
}

// The inverse: rows r < rows of T (n columns) from float columns src[c * w + r].
template <typename T>
inline void store_cols(const float* src, int64_t w, int64_t rows, int64_t n, T* dst, int64_t stride) {
  const __m256i cols = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(static_cast<int>(w)));
  for (int64_t c = 0; c < n; c += Y) {
    const __mmask8 m = ymask(n - c);
    const float* base = src + c * w;
    for (int64_t r = 0; r < rows; ++r)
      store8(dst + r * stride + c, _mm256_mmask_i32gather_ps(_mm256_setzero_ps(), m, cols, base + r, 4), m);
  }
}

// Query-major products over a group of NB 16-query chunks (columns c0 + cb * 16 of the (., w) buffers):
// acc[cb] = sum_d A[d] * X[d * w + c0 + cb * 16]; the FMA latency is hidden by 2 * NB independent sums.
template <int NB>
inline void cols_dot(const float* A, int64_t D, const float* X, int64_t w, __m512* acc) {
  __m512 e[NB], o[NB];
  for (int c = 0; c < NB; ++c) e[c] = o[c] = _mm512_setzero_ps();
  int64_t d = 0;
  for (; d + 1 < D; d += 2) {
    const __m512 a0 = _mm512_set1_ps(A[d]), a1 = _mm512_set1_ps(A[d + 1]);
    for (int c = 0; c < NB; ++c) {
      e[c] = _mm512_fmadd_ps(a0, _mm512_loadu_ps(X + d * w + c * Z), e[c]);
      o[c] = _mm512_fmadd_ps(a1, _mm512_loadu_ps(X + (d + 1) * w + c * Z), o[c]);
    }
  }
  if (d < D)
    for (int c = 0; c < NB; ++c) e[c] = _mm512_fmadd_ps(_mm512_set1_ps(A[d]), _mm512_loadu_ps(X + d * w + c * Z), e[c]);
  for (int c = 0; c < NB; ++c) acc[c] = _mm512_add_ps(e[c], o[c]);
}

// out[e * w + c0 + cb * 16] = sum_j R[j * rw + e] * M[j * w + c0 + cb * 16] for e < E (E a multiple of 4,
// R's rows zero-padded to it): 4 x NB independent sums per block of 4 output rows.
template <int NB>
inline void rows_times_cols(const float* R, int64_t rw, int64_t E, const float* M, int64_t w, int64_t n, float* out) {
  for (int64_t e0 = 0; e0 < E; e0 += 4) {
    __m512 acc[4][NB];
    for (int t = 0; t < 4; ++t)
      for (int c = 0; c < NB; ++c) acc[t][c] = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; ++j) {
      __m512 m[NB];
      for (int c = 0; c < NB; ++c) m[c] = _mm512_loadu_ps(M + j * w + c * Z);
      for (int t = 0; t < 4; ++t) {
        const __m512 r = _mm512_set1_ps(R[j * rw + e0 + t]);
        for (int c = 0; c < NB; ++c) acc[t][c] = _mm512_fmadd_ps(r, m[c], acc[t][c]);
      }
    }
    for (int t = 0; t < 4; ++t)
      for (int c = 0; c < NB; ++c) _mm512_storeu_ps(out + (e0 + t) * w + c * Z, acc[t][c]);
  }
}

// For K consecutive rows p_t = P + t * pstride (t < K): Y[t][0:wd] = sum_i p_t[i] * R[i][0:wd] over i < n
// (R: rows of width wd, a multiple of 8; Y rows of width wd). Each loaded row of R serves K products, and
// two partial sums per output hide the FMA latency.
template <int K>
inline void weighted_rows_k(const float* P, int64_t pstride, const float* R, int64_t n, int64_t wd, float* Yout) {
  for (int64_t c = 0; c < wd; c += Y) {
    __m256 e[K], o[K];
    for (int t = 0; t < K; ++t) e[t] = o[t] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 1 < n; i += 2) {
      const __m256 r0 = _mm256_loadu_ps(R + i * wd + c), r1 = _mm256_loadu_ps(R + (i + 1) * wd + c);
      for (int t = 0; t < K; ++t) {
        e[t] = _mm256_fmadd_ps(_mm256_set1_ps(P[t * pstride + i]), r0, e[t]);
        o[t] = _mm256_fmadd_ps(_mm256_set1_ps(P[t * pstride + i + 1]), r1, o[t]);
      }
    }
    if (i < n) {
      const __m256 r0 = _mm256_loadu_ps(R + i * wd + c);
      for (int t = 0; t < K; ++t) e[t] = _mm256_fmadd_ps(_mm256_set1_ps(P[t * pstride + i]), r0, e[t]);
    }
    for (int t = 0; t < K; ++t) _mm256_storeu_ps(Yout + t * wd + c, _mm256_add_ps(e[t], o[t]));
  }
}

// Rows j < rows of T (n columns, row stride `stride`) = sum_i P[j * pstride + i] * R[i] over i < m, four rows
// at a time.
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
      for (int64_t c = 0; c < n; c += Y) store8(dst + (j + t) * stride + c, _mm256_loadu_ps(ybuf + t * wd + c), ymask(n - c));
  }
}

struct Strides {
  int64_t b, h, l;
  explicit Strides(const at::Tensor& t) : b(t.stride(0)), h(t.stride(1)), l(t.stride(2)) {}
  int64_t base(int64_t bi, int64_t hi) const { return bi * b + hi * h; }
};

// Sizes of one call; buffers of one (batch, head) pair are laid out query-major: a (rows, Lp) buffer holds
// 16-query chunks, so the softmax over keys is elementwise across rows (no horizontal reductions).
struct Dims {
  int64_t B, H, L, D, S, Dv, Lp, D8, Dv8;
  Dims(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v)
      : B(q.size(0)), H(q.size(1)), L(q.size(2)), D(q.size(3)), S(k.size(2)), Dv(v.size(3)),
        Lp(round_up(L, Z)), D8(round_up(D, Y)), Dv8(round_up(Dv, Y)) {}
};

// Groups of up to 4 query chunks (64 queries) at a time, with the group size a compile-time constant.
template <typename F>
inline void for_query_groups(int64_t Lp, F&& f) {
  for (int64_t c0 = 0; c0 < Lp; c0 += 4 * Z) {
    switch (std::min<int64_t>(4, (Lp - c0) / Z)) {
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
  at::parallel_for(0, z.B * z.H, 16, [&](int64_t n0, int64_t n1) {
    // qt: scale * q^T (D, Lp); kr, vr: key and value rows; st: scores, then P^T (S, Lp); ot: O^T (Dv8, Lp).
    std::vector<float> qt(z.D * z.Lp), kr(z.S * z.D8), vr(z.S * z.Dv8), st(z.S * z.Lp), ot(z.Dv8 * z.Lp);
    for (int64_t n = n0; n < n1; ++n) {
      const int64_t b = n / z.H, h = n % z.H;
      load_cols(qp + sq.base(b, h), sq.l, z.L, z.D, qt.data(), z.Lp, static_cast<float>(scale));
      load_rows(kp + sk.base(b, h), sk.l, z.S, z.D, kr.data(), z.D8, 1.f);
      load_rows(vp + sv.base(b, h), sv.l, z.S, z.Dv, vr.data(), z.Dv8, 1.f);
      float* wn = wp + n * z.S * z.L;  // P^T of this pair: (S, L)
      for_query_groups(z.Lp, [&](int64_t c0, auto nb) {
        constexpr int NB = decltype(nb)::value;
        float* sc = st.data() + c0;
        __m512 acc[NB], mx[NB], sum[NB];
        // Queries with a NaN or +inf score get NaN weights, as torch.softmax gives them (max and the exp's
        // clamp would otherwise drop a NaN).
        __mmask16 bad[NB];
        for (int c = 0; c < NB; ++c) {
          mx[c] = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
          sum[c] = _mm512_setzero_ps();
          bad[c] = 0;
        }
        for (int64_t j = 0; j < z.S; ++j) {
          cols_dot<NB>(kr.data() + j * z.D8, z.D, qt.data() + c0, z.Lp, acc);
          for (int c = 0; c < NB; ++c) {
            _mm512_storeu_ps(sc + j * z.Lp + c * Z, acc[c]);
            mx[c] = _mm512_max_ps(mx[c], acc[c]);
            bad[c] |= _mm512_fpclass_ps_mask(acc[c], 0x01 | 0x80 | 0x08);  // QNaN, SNaN, +inf
          }
        }
        for (int64_t j = 0; j < z.S; ++j)
          for (int c = 0; c < NB; ++c) {
            const __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(sc + j * z.Lp + c * Z), mx[c]));
            _mm512_storeu_ps(sc + j * z.Lp + c * Z, e);
            sum[c] = _mm512_add_ps(sum[c], e);
          }
        for (int c = 0; c < NB; ++c) sum[c] = _mm512_div_ps(_mm512_set1_ps(1.f), sum[c]);
        for (int64_t j = 0; j < z.S; ++j)
          for (int c = 0; c < NB; ++c) {
            const __m512 p = _mm512_mask_mov_ps(_mm512_mul_ps(_mm512_loadu_ps(sc + j * z.Lp + c * Z), sum[c]), bad[c],
                                                _mm512_set1_ps(std::numeric_limits<float>::quiet_NaN()));
            _mm512_storeu_ps(sc + j * z.Lp + c * Z, p);
            _mm512_mask_storeu_ps(wn + j * z.L + c0 + c * Z, zmask(z.L - c0 - c * Z), p);
          }
        rows_times_cols<NB>(vr.data(), z.Dv8, round_up(z.Dv, 4), sc, z.Lp, z.S, ot.data() + c0);
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
    // dot: dO^T (Dv, Lp); pt: P^T (S, Lp); ds: dP^T, then dS^T; dqt: dQ^T (D8, Lp); rows of scale * q,
    // scale * k, v and dO; y: one output row.
    std::vector<float> dot(z.Dv * z.Lp), pt(z.S * z.Lp), ds(z.S * z.Lp), dqt(z.D8 * z.Lp), qr(z.L * z.D8),
        kr(z.S * z.D8), vr(z.S * z.Dv8), dor(z.L * z.Dv8), y(4 * std::max(z.D8, z.Dv8));
    for (int64_t n = n0; n < n1; ++n) {
      const int64_t b = n / z.H, h = n % z.H;
      load_cols(dop + sdo.base(b, h), sdo.l, z.L, z.Dv, dot.data(), z.Lp, 1.f);
      load_rows(dop + sdo.base(b, h), sdo.l, z.L, z.Dv, dor.data(), z.Dv8, 1.f);
      load_rows(qp + sq.base(b, h), sq.l, z.L, z.D, qr.data(), z.D8, fs);
      load_rows(kp + sk.base(b, h), sk.l, z.S, z.D, kr.data(), z.D8, fs);
      load_rows(vp + sv.base(b, h), sv.l, z.S, z.Dv, vr.data(), z.Dv8, 1.f);
      const float* wn = wp + n * z.S * z.L;
      for (int64_t j = 0; j < z.S; ++j)
        for (int64_t c = 0; c < z.Lp; c += Z)
          _mm512_storeu_ps(pt.data() + j * z.Lp + c, _mm512_maskz_loadu_ps(zmask(z.L - c), wn + j * z.L + c));
      for_query_groups(z.Lp, [&](int64_t c0, auto nb) {
        constexpr int NB = decltype(nb)::value;
        float* dsc = ds.data() + c0;
        const float* pc = pt.data() + c0;
        __m512 acc[NB], rs[NB];
        for (int c = 0; c < NB; ++c) rs[c] = _mm512_setzero_ps();
        // dP^T = V dO^T; rs_i = sum_j P_ij dP_ij; dS = P * (dP - rs).
        for (int64_t j = 0; j < z.S; ++j) {
          cols_dot<NB>(vr.data() + j * z.Dv8, z.Dv, dot.data() + c0, z.Lp, acc);
          for (int c = 0; c < NB; ++c) {
            _mm512_storeu_ps(dsc + j * z.Lp + c * Z, acc[c]);
            rs[c] = _mm512_fmadd_ps(_mm512_loadu_ps(pc + j * z.Lp + c * Z), acc[c], rs[c]);
          }
        }
        for (int64_t j = 0; j < z.S; ++j)
          for (int c = 0; c < NB; ++c) {
            const __m512 p = _mm512_loadu_ps(pc + j * z.Lp + c * Z);
            const __m512 d = _mm512_loadu_ps(dsc + j * z.Lp + c * Z);
            _mm512_storeu_ps(dsc + j * z.Lp + c * Z, _mm512_mul_ps(p, _mm512_sub_ps(d, rs[c])));
          }
        // dQ^T = (scale K)^T dS^T.
        rows_times_cols<NB>(kr.data(), z.D8, round_up(z.D, 4), dsc, z.Lp, z.S, dqt.data() + c0);
      });
      store_cols(dqt.data(), z.Lp, z.L, z.D, dqp + sdq.base(b, h), sdq.l);
      // dK = dS^T (scale Q), dV = P^T dO: one key row at a time, summed over the queries.
      weighted_rows_out(ds.data(), z.Lp, z.S, qr.data(), z.L, z.D8, y.data(), dkp + sdk.base(b, h), sdk.l, z.D);
      weighted_rows_out(pt.data(), z.Lp, z.S, dor.data(), z.L, z.Dv8, y.data(), dvp + sdv.base(b, h), sdv.l, z.Dv);
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

// Output laid out as (B, L, H, Dv) in memory (returned as its (B, H, L, Dv) view): merging the heads back is
// then a view.
std::tuple<at::Tensor, at::Tensor> short_attention_forward(const at::Tensor& q, const at::Tensor& k,
                                                           const at::Tensor& v, double scale) {
  check_qkv(q, k, v);
  const int64_t B = q.size(0), H = q.size(1), L = q.size(2), S = k.size(2), Dv = v.size(3);
  at::Tensor out = at::empty({B, L, H, Dv}, q.options()).transpose(1, 2);
  at::Tensor w = at::empty({B, H, S, L}, q.options().dtype(at::kFloat));  // P^T, kept for the backward
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
  TORCH_CHECK(w.scalar_type() == at::kFloat && w.is_contiguous() && w.sizes() == at::IntArrayRef({B, H, S, L}),
              "short_attention: weights must be contiguous float32 of shape (B, H, S, L), got ", w.sizes());
  auto [dq, dk, dv] = polyhead_short_attention::grads_like(q, k, v);
  if (q.scalar_type() == at::kFloat)
    backward_impl<float>(q, k, v, w, dout, dq, dk, dv, scale);
  else
    backward_impl<c10::BFloat16>(q, k, v, w, dout, dq, dk, dv, scale);
  return {dq, dk, dv};
}

}  // namespace

TORCH_LIBRARY(polyhead_cpu, m) {
  m.def("short_attention_forward(Tensor q, Tensor k, Tensor v, float scale) -> (Tensor, Tensor)");
  m.def("short_attention_backward(Tensor q, Tensor k, Tensor v, Tensor w, Tensor grad_out, float scale) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(polyhead_cpu, CPU, m) {
  m.impl("short_attention_forward", &short_attention_forward);
  m.impl("short_attention_backward", &short_attention_backward);
}
