// The draw scheme "nnpk_v2": Philox4x32-10 (Salmon, Moraes, Dror, Shaw 2011; Random123) run on
// many counter blocks at once, and a float32 Box-Muller transform vectorised by Eigen.
//
// Streams. Every parameter draw belongs to one stream (seed, network, layer, stream kind), whose
// counter block b is Philox4x32-10 of
//   key     = (seed_lo ^ 0x6E6E706B, seed_hi ^ 0x5F763032)   ("nnpk", "_v02": a version tag)
//   counter = (b, layer << 4 | stream, network_lo, network_hi)
// (32-bit words, _lo/_hi the low and high halves of a 64-bit value). Each word is a bijective
// function of one input within the limits below, so (seed, network, layer, stream, block) ->
// (key, counter) is injective: no two streams, and no two blocks of one, share a Philox input.
// Limits: seed and network any 64-bit value; layer < 2^28 (kMaxLayers); stream < 16 (room for
// kinds after weights and biases); block < 2^32, i.e. at most 2^34 elements (kMaxStreamElements)
// per stream. Drawing past them throws std::invalid_argument before any value is drawn.
//
// Elements. A stream is cut into chunks of kChunkBlocks = 64 blocks (256 elements); element
// e = 256 c + 64 w + i is derived from word w of block 64 c + i (word-major, so that vector
// code reads and writes whole registers).
//
// Determinism. Chunks are always computed whole and by the same vector code, so element e
// depends only on e: any begin offset, chunking or thread gives the same bits. The words are
// exact integers, the same at every instruction-set level. The float32 transforms are IEEE
// operations only (Eigen's log, cos and sin polynomials, a correctly rounded sqrt), so the
// normals are the same bits on every CPU running one instruction-set level, and the same at
// x86-64-v3 and x86-64-v4 (both fuse the polynomials' multiply-adds); the x86-64 baseline has
// no FMA, and its normals agree with theirs to rounding (tests/test_build.py checks both).
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace nnpk {

using PhiloxCounter = std::array<std::uint32_t, 4>;
using PhiloxKey = std::array<std::uint32_t, 2>;

namespace philox_detail {
constexpr std::uint32_t kMul0 = 0xD2511F53u;
constexpr std::uint32_t kMul1 = 0xCD9E8D57u;
constexpr std::uint32_t kWeyl0 = 0x9E3779B9u;
constexpr std::uint32_t kWeyl1 = 0xBB67AE85u;
constexpr int kRounds = 10;
}  // namespace philox_detail

// Ten rounds of Philox4x32 on one counter block (the Random123 reference; tests check the
// vectorised blocks against it and it against the published known answers).
inline PhiloxCounter philox4x32_10(PhiloxCounter ctr, PhiloxKey key) {
  using namespace philox_detail;
  for (int round = 0; round < kRounds; ++round) {
    const std::uint64_t p0 = static_cast<std::uint64_t>(kMul0) * ctr[0];
    const std::uint64_t p1 = static_cast<std::uint64_t>(kMul1) * ctr[2];
    ctr = {static_cast<std::uint32_t>(p1 >> 32) ^ ctr[1] ^ key[0], static_cast<std::uint32_t>(p1),
           static_cast<std::uint32_t>(p0 >> 32) ^ ctr[3] ^ key[1], static_cast<std::uint32_t>(p0)};
    key[0] += kWeyl0;
    key[1] += kWeyl1;
  }
  return ctr;
}

// Which parameter a stream of draws belongs to (the counter's stream field).
enum class Stream : std::uint32_t { weights = 0, biases = 1 };

constexpr std::uint64_t kMaxLayers = std::uint64_t{1} << 28;
constexpr std::uint64_t kMaxStreamElements = std::uint64_t{1} << 34;
constexpr int kChunkBlocks = 64;
constexpr int kChunkElements = 4 * kChunkBlocks;

// Throws std::invalid_argument unless a stream of `layer` with `elements` values is within the limits.
inline void check_stream_limits(std::uint64_t layer, std::uint64_t elements) {
  if (layer >= kMaxLayers)
    throw std::invalid_argument("parametrised layer " + std::to_string(layer) +
                                " is past the draw scheme's limit of 2^28 layers");
  if (elements > kMaxStreamElements)
    throw std::invalid_argument("a layer of " + std::to_string(elements) +
                                " parameters is past the draw scheme's limit of 2^34 per layer");
}

// One stream's key and fixed counter words, and its chunks of counter blocks.
class CounterStream {
 public:
  CounterStream(std::uint64_t seed, std::uint64_t network, std::uint64_t layer, Stream stream)
      : key_{static_cast<std::uint32_t>(seed) ^ 0x6E6E706Bu, static_cast<std::uint32_t>(seed >> 32) ^ 0x5F763032u},
        layer_word_{static_cast<std::uint32_t>(layer << 4 | static_cast<std::uint32_t>(stream))},
        network_lo_{static_cast<std::uint32_t>(network)},
        network_hi_{static_cast<std::uint32_t>(network >> 32)} {
    check_stream_limits(layer, 0);
  }

  // Words of the kChunkBlocks blocks of chunk c, word-major: words[w][i] is word w of block
  // c * kChunkBlocks + i. Vectorised over blocks with 32x32 -> 64-bit multiplies (vpmuludq)
  // under AVX-512 or AVX2, a plain loop otherwise: integer arithmetic, the same bits at every level.
  void chunk_words(std::uint64_t c, std::uint32_t (&words)[4][kChunkBlocks]) const {
    using namespace philox_detail;
    const std::uint32_t first = static_cast<std::uint32_t>(c * kChunkBlocks);
    std::uint32_t k0[kRounds], k1[kRounds];
    for (int round = 0; round < kRounds; ++round) {
      k0[round] = key_[0] + static_cast<std::uint32_t>(round) * kWeyl0;
      k1[round] = key_[1] + static_cast<std::uint32_t>(round) * kWeyl1;
    }
#if defined(__AVX512F__)
    const __m512i mul0 = _mm512_set1_epi32(static_cast<int>(kMul0)), mul1 = _mm512_set1_epi32(static_cast<int>(kMul1));
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int i = 0; i < kChunkBlocks; i += 16) {
      __m512i x0 = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(first + static_cast<std::uint32_t>(i))), iota);
      __m512i x1 = _mm512_set1_epi32(static_cast<int>(layer_word_));
      __m512i x2 = _mm512_set1_epi32(static_cast<int>(network_lo_));
      __m512i x3 = _mm512_set1_epi32(static_cast<int>(network_hi_));
      for (int round = 0; round < kRounds; ++round) {
        // 64-bit products of the even lanes and of the odd lanes shifted down; hi and lo back in place.
        const __m512i even0 = _mm512_mul_epu32(x0, mul0), odd0 = _mm512_mul_epu32(_mm512_srli_epi64(x0, 32), mul0);
        const __m512i even1 = _mm512_mul_epu32(x2, mul1), odd1 = _mm512_mul_epu32(_mm512_srli_epi64(x2, 32), mul1);
        const __m512i hi0 = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even0, 32), odd0);
        const __m512i hi1 = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even1, 32), odd1);
        const __m512i lo0 = _mm512_mask_blend_epi32(0xAAAA, even0, _mm512_slli_epi64(odd0, 32));
        const __m512i lo1 = _mm512_mask_blend_epi32(0xAAAA, even1, _mm512_slli_epi64(odd1, 32));
        x0 = _mm512_ternarylogic_epi32(hi1, x1, _mm512_set1_epi32(static_cast<int>(k0[round])), 0x96);  // a ^ b ^ c
        x2 = _mm512_ternarylogic_epi32(hi0, x3, _mm512_set1_epi32(static_cast<int>(k1[round])), 0x96);
        x1 = lo1;
        x3 = lo0;
      }
      _mm512_storeu_si512(words[0] + i, x0);
      _mm512_storeu_si512(words[1] + i, x1);
      _mm512_storeu_si512(words[2] + i, x2);
      _mm512_storeu_si512(words[3] + i, x3);
    }
#elif defined(__AVX2__)
    const __m256i mul0 = _mm256_set1_epi32(static_cast<int>(kMul0)), mul1 = _mm256_set1_epi32(static_cast<int>(kMul1));
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int i = 0; i < kChunkBlocks; i += 8) {
      __m256i x0 = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(first + static_cast<std::uint32_t>(i))), iota);
      __m256i x1 = _mm256_set1_epi32(static_cast<int>(layer_word_));
      __m256i x2 = _mm256_set1_epi32(static_cast<int>(network_lo_));
      __m256i x3 = _mm256_set1_epi32(static_cast<int>(network_hi_));
      for (int round = 0; round < kRounds; ++round) {
        const __m256i even0 = _mm256_mul_epu32(x0, mul0), odd0 = _mm256_mul_epu32(_mm256_srli_epi64(x0, 32), mul0);
        const __m256i even1 = _mm256_mul_epu32(x2, mul1), odd1 = _mm256_mul_epu32(_mm256_srli_epi64(x2, 32), mul1);
        const __m256i hi0 = _mm256_blend_epi32(_mm256_srli_epi64(even0, 32), odd0, 0xAA);
        const __m256i hi1 = _mm256_blend_epi32(_mm256_srli_epi64(even1, 32), odd1, 0xAA);
        const __m256i lo0 = _mm256_blend_epi32(even0, _mm256_slli_epi64(odd0, 32), 0xAA);
        const __m256i lo1 = _mm256_blend_epi32(even1, _mm256_slli_epi64(odd1, 32), 0xAA);
        x0 = _mm256_xor_si256(_mm256_xor_si256(hi1, x1), _mm256_set1_epi32(static_cast<int>(k0[round])));
        x2 = _mm256_xor_si256(_mm256_xor_si256(hi0, x3), _mm256_set1_epi32(static_cast<int>(k1[round])));
        x1 = lo1;
        x3 = lo0;
      }
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(words[0] + i), x0);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(words[1] + i), x1);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(words[2] + i), x2);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(words[3] + i), x3);
    }
#else
    for (int i = 0; i < kChunkBlocks; ++i) {
      std::uint32_t x0 = first + static_cast<std::uint32_t>(i), x1 = layer_word_, x2 = network_lo_, x3 = network_hi_;
      for (int round = 0; round < kRounds; ++round) {
        const std::uint64_t p0 = static_cast<std::uint64_t>(kMul0) * x0;
        const std::uint64_t p1 = static_cast<std::uint64_t>(kMul1) * x2;
        x0 = static_cast<std::uint32_t>(p1 >> 32) ^ x1 ^ k0[round];
        x1 = static_cast<std::uint32_t>(p1);
        x2 = static_cast<std::uint32_t>(p0 >> 32) ^ x3 ^ k1[round];
        x3 = static_cast<std::uint32_t>(p0);
      }
      words[0][i] = x0;
      words[1][i] = x1;
      words[2][i] = x2;
      words[3][i] = x3;
    }
#endif
  }

 private:
  PhiloxKey key_;
  std::uint32_t layer_word_, network_lo_, network_hi_;
};

// The uniform on (0, 1) of a word: (k + 1/2) 2^-24 from its top 24 bits k, exact in double
// (the uniform and truncated-normal schemes' input).
inline double uniform_open(std::uint32_t word) { return (static_cast<double>(word >> 8) + 0.5) * 0x1.0p-24; }

// Chunk c's kChunkElements standard normals into out. Words (2p, 2p + 1) of a block are a
// Box-Muller pair giving r cos t at word 2p and r sin t at word 2p + 1, computed in float32 by
// Eigen's vectorised log, sqrt, cos and sin, with
//   r = sqrt(-2 log u), u = (k + 1) 2^-24 from the top 24 bits k of word 2p,
//   t = 2 pi v,         v = k 2^-24     from the top 24 bits k of word 2p + 1.
// Both are exact floats on the full 24-bit grid. The half-step uniform (k + 1/2) 2^-24 needs 25
// significant bits above 1/2 and would round in float (to 1 at the top); u on (0, 1] keeps log
// finite and gives its one end point the legitimate radius 0, and v on [0, 1) is the angle's grid.
inline void gaussian_chunk(const CounterStream& stream, std::uint64_t c, float* out) {
  constexpr int kPairs = 2 * kChunkBlocks;
  using Array = Eigen::Array<float, kPairs, 1>;
  alignas(64) std::uint32_t words[4][kChunkBlocks];
  stream.chunk_words(c, words);
  Array u, v;
  for (int p = 0; p < 2; ++p)
    for (int i = 0; i < kChunkBlocks; ++i) {
      u[p * kChunkBlocks + i] = static_cast<float>(static_cast<std::int32_t>(words[2 * p][i] >> 8) + 1) * 0x1.0p-24f;
      v[p * kChunkBlocks + i] = static_cast<float>(static_cast<std::int32_t>(words[2 * p + 1][i] >> 8)) * 0x1.0p-24f;
    }
  constexpr float kTwoPi = 6.28318530717958647692f;
  // The square root correctly rounded (sqrtps, vectorised with -fno-math-errno), not Eigen's
  // fast-math one: a reciprocal square root estimate refined once, whose bits differ between
  // SSE/AVX (rsqrtps) and AVX-512 (vrsqrt14ps) and between CPU vendors.
  Array r = -2.0f * u.log();
  for (int i = 0; i < kPairs; ++i) r[i] = std::sqrt(r[i]);
  const Array t = kTwoPi * v;
  using Part = Eigen::Map<Eigen::Array<float, kChunkBlocks, 1>>;
  for (int p = 0; p < 2; ++p) {
    Part(out + (2 * p) * kChunkBlocks) = r.segment<kChunkBlocks>(p * kChunkBlocks) * t.segment<kChunkBlocks>(p * kChunkBlocks).cos();
    Part(out + (2 * p + 1) * kChunkBlocks) = r.segment<kChunkBlocks>(p * kChunkBlocks) * t.segment<kChunkBlocks>(p * kChunkBlocks).sin();
  }
}

// Elements [begin, end) of a stream into out[0 .. end - begin), converted exactly to T, where
// chunk(c, values) writes chunk c's kChunkElements float values. Whole chunks are always
// computed, so a value never depends on where a fill starts or stops.
template <class T, class Chunk>
void fill_chunks(std::uint64_t begin, std::uint64_t end, T* out, Chunk&& chunk) {
  alignas(64) float buffer[kChunkElements];
  for (std::uint64_t c = begin / kChunkElements; c * kChunkElements < end; ++c) {
    const std::uint64_t lo = std::max(begin, c * kChunkElements), hi = std::min(end, (c + 1) * kChunkElements);
    if constexpr (std::is_same_v<T, float>) {
      if (hi - lo == kChunkElements) {
        chunk(c, out + (lo - begin));
        continue;
      }
    }
    chunk(c, buffer);
    std::copy(buffer + (lo - c * kChunkElements), buffer + (hi - c * kChunkElements), out + (lo - begin));
  }
}

// Elements [begin, end) of the Gaussian stream (seed, network, layer, stream), as float32
// values (converted exactly when T is double).
template <class T>
void fill_gaussian(std::uint64_t seed, std::uint64_t network, std::uint64_t layer, Stream kind, std::uint64_t begin,
                   std::uint64_t end, T* out) {
  check_stream_limits(layer, end);
  const CounterStream stream(seed, network, layer, kind);
  fill_chunks(begin, end, out, [&](std::uint64_t c, float* buffer) { gaussian_chunk(stream, c, buffer); });
}

// Elements [begin, end) of the stream as float32 values f(u) of its uniforms u = uniform_open(word)
// (element 256 c + 64 w + i from word w of block 64 c + i).
template <class T, class Transform>
void fill_uniform_transform(std::uint64_t seed, std::uint64_t network, std::uint64_t layer, Stream kind,
                            std::uint64_t begin, std::uint64_t end, T* out, Transform&& f) {
  check_stream_limits(layer, end);
  const CounterStream stream(seed, network, layer, kind);
  fill_chunks(begin, end, out, [&](std::uint64_t c, float* values) {
    alignas(64) std::uint32_t words[4][kChunkBlocks];
    stream.chunk_words(c, words);
    for (int w = 0; w < 4; ++w)
      for (int i = 0; i < kChunkBlocks; ++i) values[w * kChunkBlocks + i] = static_cast<float>(f(uniform_open(words[w][i])));
  });
}

}  // namespace nnpk
