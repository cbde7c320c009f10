// Random-weight forward passes over row tiles.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <vector>

#include "nnpk/mlp.hpp"
#include "nnpk/network/layers.hpp"

namespace nnpk {

// Per-thread buffers for one padded row tile: each layer's output and, when
// derivatives are kept, phi'(z) of each hidden layer.
template <class T>
struct ForwardWorkspace {
  RowMatrix<T> input;
  std::vector<RowMatrix<T>> outputs, derivatives;
};

// Forward pass of `rows` rows of x (row-major, d columns) through one network.
// Rows are padded with zeros to a multiple of kRowQuantum (padding rows of every
// output stay zero: the bias and activation touch valid rows only). Afterwards
// ws.outputs[l] holds layer l's post-activation (the logits for the readout) and,
// with keep_derivatives, ws.derivatives[l] holds phi'(z^l) of hidden layer l.
// Only the first `depth` layers are computed (all by default). Returns a pointer
// to the padded input.
template <class T>
const T* forward_rows(const MLPSpec& spec, const std::vector<LayerScales>& scales, const NetworkView<T>& net,
                      const T* x, std::int64_t rows, bool keep_derivatives, ForwardWorkspace<T>& ws,
                      std::size_t depth = static_cast<std::size_t>(-1)) {
  const std::int64_t d = spec.input_dim();
  const std::int64_t padded = round_up(rows, kRowQuantum);
  const std::size_t n_layers = std::min(depth, spec.layers.size());
  const T* h = x;
  if (padded != rows) {
    ws.input.setZero(padded, d);
    std::copy(x, x + rows * d, ws.input.data());
    h = ws.input.data();
  }
  const T* input = h;
  ws.outputs.resize(n_layers);
  ws.derivatives.resize(keep_derivatives ? std::min(n_layers, spec.layers.size() - 1) : 0);
  for (std::size_t l = 0; l < n_layers; ++l) {
    const DenseLayer& layer = spec.layers[l];
    const LayerScales& sc = scales[l];
    RowMatrix<T>& z = ws.outputs[l];
    z.resize(padded, layer.fan_out);
    z.noalias() = Eigen::Map<const RowMatrix<T>>(h, padded, layer.fan_in) *
                  Eigen::Map<const RowMatrix<T>>(net.weights[l], layer.fan_in, layer.fan_out);
    const T forward = static_cast<T>(sc.forward), bias = static_cast<T>(sc.bias);
    const T* beta = net.biases[l];
    const bool hidden = l + 1 < spec.layers.size();
    const bool relu = spec.activation.kind == ActivationKind::relu && spec.activation.shift == 0.0 &&
                      spec.activation.scale == 1.0;
    T* dz = nullptr;
    if (hidden && keep_derivatives) {
      // Valid rows are all written below; only the padding needs zeros.
      ws.derivatives[l].resize(padded, layer.fan_out);
      ws.derivatives[l].bottomRows(padded - rows).setZero();
      dz = ws.derivatives[l].data();
    }
    const std::int64_t cols = layer.fan_out;
    for (std::int64_t i = 0; i < rows; ++i) {
      T* row = z.data() + i * cols;
      if (beta) {
        for (std::int64_t j = 0; j < cols; ++j) row[j] = forward * row[j] + bias * beta[j];
      } else {
        for (std::int64_t j = 0; j < cols; ++j) row[j] = forward * row[j];
      }
      if (!hidden) continue;
      if (dz) {
        T* drow = dz + i * cols;
        if (relu) {
          for (std::int64_t j = 0; j < cols; ++j) drow[j] = row[j] > T(0) ? T(1) : T(0);
        } else {
          for (std::int64_t j = 0; j < cols; ++j) drow[j] = spec.activation.derivative(row[j]);
        }
      }
      if (relu) {
        for (std::int64_t j = 0; j < cols; ++j) row[j] = row[j] > T(0) ? row[j] : T(0);
      } else {
        for (std::int64_t j = 0; j < cols; ++j) row[j] = spec.activation(row[j]);
      }
    }
    h = z.data();
  }
  return input;
}

}  // namespace nnpk
