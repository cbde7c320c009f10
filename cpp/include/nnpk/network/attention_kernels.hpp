// The per point and head work of an attention node's forward pass (attention.hpp): the logits
// S = alpha Q_h K_h^T, the mechanism on them and the heads A V_h, one point and head at a time.
//
// These products are small (P x dk by dk x P, then P x P by P x dv: 64 x 64 x 64 in a typical layer), and
// a general matrix product spends as much time packing its factors as multiplying them. In float32 with
// AVX-512 they run here without packing: the keys K_h are transposed once per point and head into a k-major
// block (dk x P, rows padded to whole vectors of 16 positions, zero past P), so that both products become
// rows of C = alpha a b with a read row by row (Q_h, then A) and b read by whole rows (K_h^T, then V_h as
// it lies in the values' matrix): register tiles of up to 6 rows by 4 vectors of 16 columns, each entry a
// sum of fused multiply-adds in the order of the depth from zero, then scaled. Every entry thus gets the
// same arithmetic whatever the tile, thread or point, and the logits and weights stay in the L1 cache
// between the two products. Elsewhere (float64, other instruction sets) Eigen's products compute them.
//
// The softmax runs on packets of Eigen's vectorised exp in every build: each value through a whole packet
// (the row's tail through a padded one), so that a value never depends on its place in memory.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <limits>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace nnpk {
namespace attention_kernels {

// softmax of one row of n values in place: exp(x - max) / sum, the sum over packets in order, then their
// lanes in order, then the tail.
template <class T>
void softmax_row(T* x, std::int64_t n) {
  using namespace Eigen::internal;
  using Packet = typename packet_traits<T>::type;
  constexpr std::int64_t L = unpacket_traits<Packet>::size;
  const std::int64_t whole = n / L * L;
  T top = x[0];
  if (whole > 0) {  // the maximum is exact in any order: by packets, then the tail
    Packet m = ploadu<Packet>(x);
    for (std::int64_t j = L; j < whole; j += L) m = pmax(m, ploadu<Packet>(x + j));
    top = predux_max(m);
  }
  for (std::int64_t j = whole; j < n; ++j) top = std::max(top, x[j]);
  const Packet shift = pset1<Packet>(top);
  Packet acc = pset1<Packet>(T(0));
  for (std::int64_t j = 0; j < whole; j += L) {
    const Packet e = pexp(psub(ploadu<Packet>(x + j), shift));
    pstoreu(x + j, e);
    acc = padd(acc, e);
  }
  T sum = predux(acc);
  if (whole < n) {
    alignas(64) T buf[L];
    for (std::int64_t j = 0; j < L; ++j) buf[j] = whole + j < n ? x[whole + j] - top : T(0);
    pstore(buf, pexp(pload<Packet>(buf)));
    for (std::int64_t j = whole; j < n; ++j) sum += (x[j] = buf[j - whole]);
  }
  const Packet inv = pset1<Packet>(T(1) / sum);
  for (std::int64_t j = 0; j < whole; j += L) pstoreu(x + j, pmul(ploadu<Packet>(x + j), inv));
  const T inv_s = T(1) / sum;
  for (std::int64_t j = whole; j < n; ++j) x[j] *= inv_s;
}

#if defined(__AVX512F__)
constexpr bool kOwnProducts = true;

// Positions of the transposed keys' rows (P padded to whole vectors of 16).
inline std::int64_t padded_positions(std::int64_t P) { return (P + 15) / 16 * 16; }

// kt (rows k < round_up(dk, 16), ldt columns) = K^T for K (P x dk, leading dimension ldk), zero past P:
// 16 x 16 blocks transposed in registers (columns of K past dk read as zero).
inline void transpose_keys(const float* K, std::int64_t ldk, std::int64_t P, std::int64_t dk, float* kt,
                           std::int64_t ldt) {
  for (std::int64_t k0 = 0; k0 < dk; k0 += 16) {
    const __mmask16 cols = dk - k0 >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (dk - k0)) - 1);
    for (std::int64_t j0 = 0; j0 < ldt; j0 += 16) {
      __m512 r[16];
      for (int i = 0; i < 16; ++i)
        r[i] = j0 + i < P ? _mm512_maskz_loadu_ps(cols, K + (j0 + i) * ldk + k0) : _mm512_setzero_ps();
      // Four rounds of shuffles: 16 rows of 16 values to 16 columns.
      __m512 t[16];
      for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
      }
      for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
      }
      for (int i = 0; i < 4; ++i) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xDD);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xDD);
      }
      for (int i = 0; i < 8; ++i) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
      }
      // r[i] now holds column k0 + i of K's rows j0..j0+15.
      for (int i = 0; i < 16; ++i) _mm512_storeu_ps(kt + (k0 + i) * ldt + j0, r[i]);
    }
  }
}

// c (R rows, V vectors of 16 columns, the last one's columns by `last`) = alpha a b over `depth`, a row-major
// (lda), b row-major (ldb), c row-major (ldc): each entry a sum of fused multiply-adds over the depth in order
// from zero, times alpha.
template <int R, int V>
inline void rows_tile(const float* a, std::int64_t lda, const float* b, std::int64_t ldb, std::int64_t depth,
                      float alpha, float* c, std::int64_t ldc, __mmask16 last) {
  __m512 acc[R][V];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
  for (std::int64_t k = 0; k < depth; ++k) {
    __m512 bv[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v)
      bv[v] = v + 1 < V ? _mm512_loadu_ps(b + k * ldb + 16 * v) : _mm512_maskz_loadu_ps(last, b + k * ldb + 16 * v);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(a[r * lda + k]);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(bv[v], av, acc[r][v]);
    }
  }
  const __m512 scale = _mm512_set1_ps(alpha);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      float* dst = c + r * ldc + 16 * v;
      if (v + 1 < V)
        _mm512_storeu_ps(dst, _mm512_mul_ps(acc[r][v], scale));
      else
        _mm512_mask_storeu_ps(dst, last, _mm512_mul_ps(acc[r][v], scale));
    }
}

template <int R>
inline void rows_tile_v(int V, const float* a, std::int64_t lda, const float* b, std::int64_t ldb, std::int64_t depth,
                        float alpha, float* c, std::int64_t ldc, __mmask16 last) {
  switch (V) {
    case 1: return rows_tile<R, 1>(a, lda, b, ldb, depth, alpha, c, ldc, last);
    case 2: return rows_tile<R, 2>(a, lda, b, ldb, depth, alpha, c, ldc, last);
    case 3: return rows_tile<R, 3>(a, lda, b, ldb, depth, alpha, c, ldc, last);
    default: return rows_tile<R, 4>(a, lda, b, ldb, depth, alpha, c, ldc, last);
  }
}

// c (m x n) = alpha a b, a (m x depth), b (depth x n), all row-major: tiles of 6 rows by 64 columns, the
// edges by smaller tiles of the same arithmetic. Columns past n are neither read from b nor written.
inline void product(const float* a, std::int64_t lda, const float* b, std::int64_t ldb, std::int64_t m,
                    std::int64_t n, std::int64_t depth, float alpha, float* c, std::int64_t ldc) {
  for (std::int64_t j0 = 0; j0 < n; j0 += 64) {
    const std::int64_t nj = std::min<std::int64_t>(64, n - j0);
    const int V = static_cast<int>((nj + 15) / 16);
    const std::int64_t tail = nj - 16 * (V - 1);
    const __mmask16 last = tail >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << tail) - 1);
    std::int64_t i = 0;
    for (; i + 6 <= m; i += 6) rows_tile_v<6>(V, a + i * lda, lda, b + j0, ldb, depth, alpha, c + i * ldc + j0, ldc, last);
    const float* ai = a + i * lda;
    float* ci = c + i * ldc + j0;
    switch (m - i) {
      case 5: rows_tile_v<5>(V, ai, lda, b + j0, ldb, depth, alpha, ci, ldc, last); break;
      case 4: rows_tile_v<4>(V, ai, lda, b + j0, ldb, depth, alpha, ci, ldc, last); break;
      case 3: rows_tile_v<3>(V, ai, lda, b + j0, ldb, depth, alpha, ci, ldc, last); break;
      case 2: rows_tile_v<2>(V, ai, lda, b + j0, ldb, depth, alpha, ci, ldc, last); break;
      case 1: rows_tile_v<1>(V, ai, lda, b + j0, ldb, depth, alpha, ci, ldc, last); break;
      default: break;
    }
  }
}
#else
constexpr bool kOwnProducts = false;
#endif

}  // namespace attention_kernels
}  // namespace nnpk
