// Philox4x64-10 (Salmon, Moraes, Dror, Shaw 2011), the counter-based generator of
// numpy.random.Philox, and the Gaussian draws nnpk builds on it.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

namespace nnpk {

using PhiloxCounter = std::array<std::uint64_t, 4>;
using PhiloxKey = std::array<std::uint64_t, 2>;

inline void mulhilo64(std::uint64_t a, std::uint64_t b, std::uint64_t& hi, std::uint64_t& lo) {
  const unsigned __int128 p = static_cast<unsigned __int128>(a) * b;
  hi = static_cast<std::uint64_t>(p >> 64);
  lo = static_cast<std::uint64_t>(p);
}

// Ten rounds of Philox4x64 on one counter block; no state, so any thread can
// produce any block.
inline PhiloxCounter philox4x64_10(PhiloxCounter ctr, PhiloxKey key) {
  constexpr std::uint64_t kMul0 = 0xD2E7470EE14C6C93ULL;
  constexpr std::uint64_t kMul1 = 0xCA5A826395121157ULL;
  constexpr std::uint64_t kWeyl0 = 0x9E3779B97F4A7C15ULL;
  constexpr std::uint64_t kWeyl1 = 0xBB67AE8584CAA73BULL;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key[0] += kWeyl0;
      key[1] += kWeyl1;
    }
    std::uint64_t hi0, lo0, hi1, lo1;
    mulhilo64(kMul0, ctr[0], hi0, lo0);
    mulhilo64(kMul1, ctr[2], hi1, lo1);
    ctr = {hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0};
  }
  return ctr;
}

// Uniform on the open interval (0, 1) from the top 53 bits: (k + 1/2) 2^-53.
inline double uniform_open(std::uint64_t bits) {
  return (static_cast<double>(bits >> 11) + 0.5) * 0x1.0p-53;
}

// Which parameter a stream of draws belongs to. Part of the counter, so that
// weights, biases and later kinds of draw never share random numbers.
enum class Stream : std::uint64_t { weights = 0, biases = 1 };

// The counter blocks of one stream (seed, network, layer, stream): block b is
// Philox4x64-10 of the counter (b, layer word, network, 0) under the seed's key.
struct CounterStream {
  PhiloxKey key;
  std::uint64_t layer_word;
  std::uint64_t network;

  CounterStream(std::uint64_t seed, std::uint64_t network_index, std::uint64_t layer, Stream stream)
      : key{seed, 0x6E6E706B5F763101ULL},  // "nnpk_v1": a version tag for the scheme
        layer_word{(layer << 8) | static_cast<std::uint64_t>(stream)},
        network{network_index} {}

  PhiloxCounter bits(std::uint64_t block_index) const {
    return philox4x64_10({block_index, layer_word, network, 0}, key);
  }
};

// Elements [begin, end) of a stream whose element e is lane e % 4 of block e / 4
// (`block(b)` gives a block's four values) into out[0 .. end-begin).
template <class Blocks, class T>
void fill_lanes(const Blocks& stream, std::uint64_t begin, std::uint64_t end, T* out) {
  std::uint64_t e = begin;
  while (e < end) {
    const std::array<double, 4> z = stream.block(e / 4);
    for (std::uint64_t lane = e % 4; lane < 4 && e < end; ++lane, ++e) {
      out[e - begin] = static_cast<T>(z[lane]);
    }
  }
}

// Element e of the stream (seed, network, layer, stream) is lane e % 4 of
// counter block e / 4: lanes (0,1) and (2,3) are Box-Muller pairs, giving
// (r cos t, r sin t) with r = sqrt(-2 log u_even), t = 2 pi u_odd.
struct GaussianStream : CounterStream {
  using CounterStream::CounterStream;

  // The four normals of counter block `block`.
  std::array<double, 4> block(std::uint64_t block_index) const {
    const PhiloxCounter u = bits(block_index);
    constexpr double kTwoPi = 6.283185307179586476925286766559;
    std::array<double, 4> out;
    for (int pair = 0; pair < 2; ++pair) {
      const double r = std::sqrt(-2.0 * std::log(uniform_open(u[2 * pair])));
      const double t = kTwoPi * uniform_open(u[2 * pair + 1]);
      out[2 * pair] = r * std::cos(t);
      out[2 * pair + 1] = r * std::sin(t);
    }
    return out;
  }

  // Elements [begin, end) of the stream into out[0 .. end-begin).
  template <class T>
  void fill(std::uint64_t begin, std::uint64_t end, T* out) const {
    fill_lanes(*this, begin, end, out);
  }
};

// The same counters as uniforms on (0, 1): element e is uniform_open of lane e % 4 of block e / 4.
struct UniformStream : CounterStream {
  using CounterStream::CounterStream;

  std::array<double, 4> block(std::uint64_t block_index) const {
    const PhiloxCounter u = bits(block_index);
    return {uniform_open(u[0]), uniform_open(u[1]), uniform_open(u[2]), uniform_open(u[3])};
  }
};

}  // namespace nnpk
