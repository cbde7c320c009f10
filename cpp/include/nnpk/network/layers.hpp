// What every network shares: a parametrised layer's sizes and scales (docs/definitions.rst), the
// row-major matrices and row quantum of the forward passes, one network's parameters (drawn or
// given) and the row tiles of the points.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "nnpk/packed.hpp"
#include "nnpk/parallel.hpp"
#include "nnpk/random/init.hpp"
#include "nnpk/random/philox.hpp"

namespace nnpk {

enum class Parameterization : int { ntk = 0, standard = 1 };

struct DenseLayer {
  std::int64_t fan_in = 0;
  std::int64_t fan_out = 0;
  double w_std = 1.0;
  bool has_bias = false;
  double b_std = 0.0;
  Init init = Init::gaussian;  // how the weights are drawn

  // Every parameterization computes z = weight_scale * (h @ eps) + b_std * beta
  // on standard normal eps, beta; they differ only in which parameters are stored.
  double weight_scale() const { return w_std / std::sqrt(static_cast<double>(fan_in)); }
};

// How one layer's parameters enter the forward pass and the tangent kernel:
// z = forward * (h @ W) + bias * b for the parameters W, b the engine is given,
// d z / d W_stored = input * h and (d z / d b_stored)^2 = bias_tangent.
struct LayerScales {
  double forward = 1.0, bias = 0.0, input = 1.0, bias_tangent = 0.0;
};

// Scales for standard-normal draws (eps, beta) of `layers`, or, with stored = true,
// for the stored parameters of the parameterization (docs/definitions.rst).
inline std::vector<LayerScales> layer_scales(const std::vector<DenseLayer>& layers, Parameterization parameterization,
                                             bool stored) {
  std::vector<LayerScales> out;
  const bool ntk = parameterization == Parameterization::ntk;
  for (const auto& l : layers) {
    LayerScales s;
    s.forward = (ntk || !stored) ? l.weight_scale() : 1.0;
    s.bias = (ntk || !stored) ? l.b_std : 1.0;
    s.input = ntk ? l.weight_scale() : 1.0;
    s.bias_tangent = !l.has_bias ? 0.0 : (ntk ? l.b_std * l.b_std : 1.0);
    out.push_back(s);
  }
  return out;
}

template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Row tiles handed to Eigen's products are padded to a multiple of this many rows,
// so that every row takes the same code path inside the product whatever the tile
// size: each output row is then bitwise independent of tiling (96 is a multiple of
// every register-block height Eigen uses for float and double).
constexpr std::int64_t kRowQuantum = 96;

inline std::int64_t round_up(std::int64_t n, std::int64_t q) { return (n + q - 1) / q * q; }

// Rows of each step of a recurrent node over `points` sequences: the points padded to whole
// kStepQuantum, a multiple of every row panel of the packed products (packed.hpp), so that a row's
// arithmetic does not depend on the tile; finer than kRowQuantum, which a minibatch would waste.
constexpr std::int64_t kStepQuantum = 16;
inline std::int64_t step_rows(std::int64_t points) { return round_up(points, kStepQuantum); }

// One network's parameters: W^l (fan_in x fan_out, row-major) and b^l (fan_out,
// or null without bias), scaled in the forward pass by LayerScales.
// A batch normalisation as the forward pass applies it, per channel:
// y = gamma * ((x - mean) * inv_std) + beta, with inv_std = 1 / sqrt(var + eps) of the
// batch's statistics (training) or of the running ones (evaluation).
template <class T>
struct BatchNormView {
  const T* gamma = nullptr;
  const T* beta = nullptr;
  const T* mean = nullptr;
  const T* inv_std = nullptr;
};

template <class T>
struct NetworkView {
  std::vector<const T*> weights;
  std::vector<const T*> biases;
  std::vector<BatchNormView<T>> norms;  // one per batch normalisation of a sequential network
  // Per parametrised layer, its weights packed for the products (packed.hpp), or empty / null:
  // every row tile's product then reads one packing instead of packing the weights again.
  std::vector<const PackedRight<T>*> packed;
};

// One network's unit-variance parameters eps^l, beta^l, drawn in place: the weights
// by the initialisation scheme (Gaussian by default), the biases always Gaussian; float32
// values in either T (an orthogonal layer's excepted), so float32 and float64 runs use the same draws.
template <class T>
struct NetworkDraw {
  std::vector<std::vector<T>> weights;
  std::vector<std::vector<T>> biases;

  // Throws std::invalid_argument (before anything is drawn) for layers past the draw scheme's limits.
  explicit NetworkDraw(const std::vector<DenseLayer>& layers) {
    for (std::size_t l = 0; l < layers.size(); ++l)
      check_stream_limits(l, static_cast<std::uint64_t>(layers[l].fan_in * layers[l].fan_out));
    for (const auto& layer : layers) {
      weights.emplace_back(static_cast<std::size_t>(layer.fan_in * layer.fan_out));
      biases.emplace_back(layer.has_bias ? static_cast<std::size_t>(layer.fan_out) : 0);
    }
    packed.resize(layers.size());
  }

  // With packed_weights set before view(), pack() after each draw packs every layer's weights for the
  // view's products.
  bool packed_weights = false;
  std::vector<PackedRight<T>> packed;

  NetworkView<T> view() const {
    NetworkView<T> v;
    for (std::size_t l = 0; l < weights.size(); ++l) {
      v.weights.push_back(weights[l].data());
      v.biases.push_back(biases[l].empty() ? nullptr : biases[l].data());
      if (packed_weights) v.packed.push_back(&packed[l]);
    }
    return v;
  }

  void pack(const std::vector<DenseLayer>& layers, int n_threads) {
    if (!packed_weights) return;
    for (std::size_t l = 0; l < layers.size(); ++l)
      packed[l].pack(weights[l].data(), layers[l].fan_in, layers[l].fan_out, layers[l].fan_out, false, n_threads);
  }

  // Draws layers [0, n_layers) (all by default) of network `network` of `seed`,
  // split over threads in fixed chunks of the counter space (each element
  // depends only on its own counter; an orthogonal layer is one item).
  void draw(const std::vector<DenseLayer>& layers, std::uint64_t seed, std::uint64_t network, int n_threads,
            std::size_t n_layers = static_cast<std::size_t>(-1)) {
    constexpr std::uint64_t kChunk = 64 * kChunkElements;  // whole chunks of the generator
    struct Item {
      std::size_t layer;
      Stream stream;
      std::uint64_t begin, end;
    };
    std::vector<Item> items;
    for (std::size_t l = 0; l < std::min(n_layers, layers.size()); ++l) {
      const std::uint64_t n = weights[l].size();
      const std::uint64_t chunk = elementwise(layers[l].init) ? kChunk : n;
      for (std::uint64_t b = 0; b < n; b += chunk) items.push_back({l, Stream::weights, b, std::min(n, b + chunk)});
      if (!biases[l].empty()) items.push_back({l, Stream::biases, 0, biases[l].size()});
    }
    parallel_for(static_cast<std::int64_t>(items.size()), n_threads, [&](std::int64_t i, int) {
      const Item& it = items[static_cast<std::size_t>(i)];
      if (it.stream == Stream::biases) {
        fill_gaussian(seed, network, it.layer, it.stream, it.begin, it.end, biases[it.layer].data());
      } else if (elementwise(layers[it.layer].init)) {
        fill_weights(layers[it.layer].init, seed, network, it.layer, it.begin, it.end, weights[it.layer].data() + it.begin);
      } else {
        layer_weights(layers[it.layer].init, seed, network, it.layer, layers[it.layer].fan_in, layers[it.layer].fan_out,
                      weights[it.layer].data());
      }
    });
  }
};

// A row tile of x1 or x2 for the forward passes.
template <class T>
struct RowTile {
  const T* x;
  std::int64_t row0, rows;
  bool second;
};

template <class T>
std::vector<RowTile<T>> row_tiles(const T* x1, std::int64_t n1, const T* x2, std::int64_t n2, std::int64_t tile_rows) {
  if (tile_rows <= 0 || tile_rows % kRowQuantum != 0)
    throw std::invalid_argument("tile_rows must be a positive multiple of " + std::to_string(kRowQuantum));
  std::vector<RowTile<T>> tiles;
  for (std::int64_t r = 0; r < n1; r += tile_rows) tiles.push_back({x1, r, std::min(tile_rows, n1 - r), false});
  if (x2)
    for (std::int64_t r = 0; r < n2; r += tile_rows) tiles.push_back({x2, r, std::min(tile_rows, n2 - r), true});
  return tiles;
}

}  // namespace nnpk
