// Streaming Monte Carlo kernels of random MLPs: sums over networks [start, stop)
// of h^l(x1) h^l(x2)^T for every requested layer, accumulated in float64.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "nnpk/forward.hpp"
#include "nnpk/kernels/monte_carlo.hpp"
#include "nnpk/mlp.hpp"

namespace nnpk {

// The kernels a run accumulates, checked: layer indices (0-based; n_hidden is the output).
inline std::vector<std::int64_t> kernel_layers(const MLPSpec& spec, const std::vector<std::int64_t>& requested) {
  if (requested.empty()) return {spec.n_hidden()};
  for (std::size_t k = 0; k < requested.size(); ++k) {
    if (requested[k] < 0 || requested[k] > spec.n_hidden())
      throw std::invalid_argument("kernel layer index " + std::to_string(requested[k]) + " is out of range");
    if (k > 0 && requested[k] <= requested[k - 1]) throw std::invalid_argument("kernel layers must be ascending");
  }
  return requested;
}

// sums[k] (n1 x n2 row-major; n1 x n1 if x2 is null) += sum over networks of the
// un-normalised Gram of kernel_layers(...)[k]. With x2 null only the upper
// triangle is accumulated, then mirrored.
template <class T>
void monte_carlo_accumulate(const MLPSpec& spec, const T* x1, std::int64_t n1, const T* x2, std::int64_t n2,
                            const MonteCarloOptions& opt, const std::vector<double*>& sums) {
  spec.validate();
  const bool symmetric = x2 == nullptr;
  if (symmetric) n2 = n1;
  const std::vector<std::int64_t> layers = kernel_layers(spec, opt.layers);
  const std::vector<RowTile<T>> tiles = row_tiles(x1, n1, x2, n2, opt.tile_rows);
  const std::int64_t d = spec.input_dim();
  const std::vector<LayerScales> scales = spec.scales(false);
  std::vector<std::int64_t> widths;
  for (const std::int64_t l : layers) widths.push_back(spec.layers[static_cast<std::size_t>(l)].fan_out);

  NetworkDraw<T> draw(spec.layers);
  const NetworkView<T> net = draw.view();
  std::vector<ForwardWorkspace<T>> workspaces(static_cast<std::size_t>(std::max(1, opt.n_threads)));
  stream_networks<T>(
      n1, n2, symmetric, widths, tiles, opt, sums,
      [&](std::uint64_t m) { draw.draw(spec.layers, opt.seed, m, opt.n_threads); },
      [&](const RowTile<T>& tile, int thread, auto&& panel) {
        ForwardWorkspace<T>& ws = workspaces[static_cast<std::size_t>(thread)];
        forward_rows(spec, scales, net, tile.x + tile.row0 * d, tile.rows, false, ws);
        for (std::size_t k = 0; k < layers.size(); ++k) {
          const RowMatrix<T>& h = ws.outputs[static_cast<std::size_t>(layers[k])];
          panel(k).write(tile.row0, tile.rows, h.cols(), h.data(), h.cols());
        }
      });
}

}  // namespace nnpk
