// Sequential networks: dense and convolutional layers, pooling, flattening, elementwise
// activations and residual blocks, as a list of nodes in execution order, and their forward
// pass over a row tile of points (convolutions as one matrix product over the tile's patches).
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "nnpk/activations.hpp"
#include "nnpk/forward.hpp"
#include "nnpk/init.hpp"
#include "nnpk/mlp.hpp"
#include "nnpk/monte_carlo.hpp"

namespace nnpk {

enum class NodeKind : int { dense = 0, conv, avg_pool, max_pool, global_avg_pool, flatten, activation, residual };

// One point's features after a node: height x width positions of `channels` values each,
// stored position-major (row-major over (height, width, channels): the layout of a
// channels-last array). Flat features are one position with spatial = false; a 1-D signal
// has width 1.
struct Shape {
  std::int64_t height = 1, width = 1, channels = 1;
  bool spatial = false;

  std::int64_t positions() const { return height * width; }
  std::int64_t size() const { return positions() * channels; }
  bool operator==(const Shape& o) const {
    return height == o.height && width == o.width && channels == o.channels && spatial == o.spatial;
  }
};

struct SeqNode {
  NodeKind kind = NodeKind::dense;
  std::int64_t input = -1;  // the node whose output this node reads (-1: the network's input)
  std::int64_t skip = -1;   // residual: the node whose output is added unchanged (-1: the input)
  std::int64_t width = 0;   // dense: output features; conv: output channels
  std::int64_t window_h = 1, window_w = 1, stride_h = 1, stride_w = 1;  // conv kernel or pooling window
  bool same = false;                                                     // padding "same", else "valid"
  double w_std = 1.0, b_std = 0.0;
  bool has_bias = false;
  Activation activation;
  double scale = 1.0;  // residual: output = skip + scale * input

  // Derived by SequentialSpec::build.
  Shape in, out;
  std::int64_t pad_h = 0, pad_w = 0;  // padding before the first row / column
  std::int64_t param = -1;            // dense, conv: index among the parametrised layers
  std::int64_t readers = 0;           // how many nodes read this node's output (as input or skip)

  // A dense layer or a 1 x 1 convolution of stride 1: the input rows are the layer's patches.
  bool pointwise() const {
    return kind == NodeKind::dense || (window_h == 1 && window_w == 1 && stride_h == 1 && stride_w == 1);
  }
};

struct SequentialSpec {
  Shape input;
  std::vector<SeqNode> nodes;
  Parameterization parameterization = Parameterization::ntk;
  Init init = Init::gaussian;
  // Derived by build(): each parametrised node's weights as a (fan_in, fan_out) matrix, a
  // convolution's fan_in being kernel height x kernel width x input channels.
  std::vector<DenseLayer> params;

  const Shape& shape_of(std::int64_t node) const {
    return node < 0 ? input : nodes[static_cast<std::size_t>(node)].out;
  }
  std::int64_t input_dim() const { return input.size(); }
  std::int64_t n_outputs() const { return nodes.back().out.size(); }
  const std::vector<DenseLayer>& param_layers() const { return params; }
  std::vector<LayerScales> scales(bool stored) const { return layer_scales(params, parameterization, stored); }

  // Derives every node's shapes, padding and parameters from the input shape; the Python
  // layer has already checked all of it with messages naming the layer.
  void build() {
    if (nodes.empty()) throw std::invalid_argument("the network has no layers");
    if (input.height < 1 || input.width < 1 || input.channels < 1) throw std::invalid_argument("empty input shape");
    params.clear();
    for (std::size_t k = 0; k < nodes.size(); ++k) {
      SeqNode& node = nodes[k];
      const auto fail = [k](const std::string& what) {
        return std::invalid_argument("node " + std::to_string(k) + ": " + what);
      };
      const std::int64_t index = static_cast<std::int64_t>(k);
      if (node.input < -1 || node.input >= index) throw fail("input must be an earlier node");
      node.in = shape_of(node.input);
      node.out = node.in;
      switch (node.kind) {
        case NodeKind::dense:
          if (node.in.spatial) throw fail("dense layers need flat features");
          if (node.width < 1) throw fail("non-positive width");
          node.out = Shape{1, 1, node.width, false};
          add_param(node, node.in.size());
          break;
        case NodeKind::conv:
        case NodeKind::avg_pool:
        case NodeKind::max_pool: {
          if (!node.in.spatial) throw fail("needs spatial features");
          if (node.window_h < 1 || node.window_w < 1 || node.stride_h < 1 || node.stride_w < 1)
            throw fail("non-positive window or stride");
          std::int64_t out_h, out_w;
          if (!geometry(node.in.height, node.window_h, node.stride_h, node.same, out_h, node.pad_h) ||
              !geometry(node.in.width, node.window_w, node.stride_w, node.same, out_w, node.pad_w))
            throw fail("the window is larger than the input");
          node.out = Shape{out_h, out_w, node.in.channels, true};
          if (node.kind == NodeKind::conv) {
            if (node.width < 1) throw fail("non-positive channel count");
            node.out.channels = node.width;
            add_param(node, node.window_h * node.window_w * node.in.channels);
          }
          break;
        }
        case NodeKind::global_avg_pool:
          if (!node.in.spatial) throw fail("needs spatial features");
          node.out = Shape{1, 1, node.in.channels, false};
          break;
        case NodeKind::flatten: node.out = Shape{1, 1, node.in.size(), false}; break;
        case NodeKind::activation: break;
        case NodeKind::residual:
          if (node.skip < -1 || node.skip >= index) throw fail("skip must be an earlier node");
          if (!(shape_of(node.skip) == node.in)) throw fail("a residual block must keep the shape");
          break;
      }
    }
    if (nodes.back().out.spatial) throw std::invalid_argument("the network's output must be flat");
    for (SeqNode& node : nodes) node.readers = 0;
    for (const SeqNode& node : nodes) {
      if (node.input >= 0) ++nodes[static_cast<std::size_t>(node.input)].readers;
      if (node.kind == NodeKind::residual && node.skip >= 0) ++nodes[static_cast<std::size_t>(node.skip)].readers;
    }
  }

 private:
  // Output length and leading padding of one spatial axis (neural-tangents' and XLA's rule for
  // "same": out = ceil(n / stride), the total padding split with the extra one after).
  static bool geometry(std::int64_t n, std::int64_t window, std::int64_t stride, bool same, std::int64_t& out,
                       std::int64_t& pad) {
    if (same) {
      out = (n + stride - 1) / stride;
      pad = std::max<std::int64_t>((out - 1) * stride + window - n, 0) / 2;
      return true;
    }
    if (n < window) return false;
    out = (n - window) / stride + 1;
    pad = 0;
    return true;
  }

  void add_param(SeqNode& node, std::int64_t fan_in) {
    if (!(node.w_std >= 0) || !(node.b_std >= 0)) throw std::invalid_argument("negative or NaN std");
    node.param = static_cast<std::int64_t>(params.size());
    DenseLayer layer;
    layer.fan_in = fan_in;
    layer.fan_out = node.out.channels;
    layer.w_std = node.w_std;
    layer.has_bias = node.has_bias;
    layer.b_std = node.has_bias ? node.b_std : 0.0;
    params.push_back(layer);
  }
};

// Per-thread buffers for one row tile: node k's output of the tile's points is the matrix
// (points x positions rows, padded to a multiple of kRowQuantum, channels columns), rows
// ordered (point, position). Padding rows are zero where a product reads them.
template <class T>
struct SequentialWorkspace {
  RowMatrix<T> input;
  std::vector<RowMatrix<T>> outputs;
  std::vector<RowMatrix<T>> derivatives;  // activation nodes, when kept: phi'(z)
  RowMatrix<T> patches;
  std::int64_t points = 0;

  const RowMatrix<T>& output(std::int64_t node) const {
    return node < 0 ? input : outputs[static_cast<std::size_t>(node)];
  }
};

namespace sequential_detail {

// m becomes (round_up(valid, kRowQuantum), cols) with its padding rows zero.
template <class T>
void shape_rows(RowMatrix<T>& m, std::int64_t valid, std::int64_t cols) {
  m.resize(round_up(valid, kRowQuantum), cols);
  m.bottomRows(m.rows() - valid).setZero();
}

// Row (point, oh, ow) of `patches` holds the inputs under the window at (oh, ow), ordered
// (kernel row, kernel column, channel) like the rows of the (kh, kw, c_in, c_out) weights;
// positions in the padding are zero. `in` holds the points' inputs, rows (point, position).
template <class T>
void im2col(const SeqNode& node, const T* in, std::int64_t points, RowMatrix<T>& patches) {
  const Shape &s = node.in, &o = node.out;
  const std::int64_t c = s.channels, kh = node.window_h, kw = node.window_w;
  shape_rows(patches, points * o.positions(), kh * kw * c);
  for (std::int64_t p = 0; p < points; ++p)
    for (std::int64_t oh = 0; oh < o.height; ++oh)
      for (std::int64_t ow = 0; ow < o.width; ++ow) {
        T* dst = patches.data() + ((p * o.height + oh) * o.width + ow) * patches.cols();
        for (std::int64_t i = 0; i < kh; ++i) {
          const std::int64_t ih = oh * node.stride_h + i - node.pad_h;
          for (std::int64_t j = 0; j < kw; ++j, dst += c) {
            const std::int64_t iw = ow * node.stride_w + j - node.pad_w;
            if (ih < 0 || ih >= s.height || iw < 0 || iw >= s.width) {
              std::fill(dst, dst + c, T(0));
            } else {
              const T* src = in + ((p * s.height + ih) * s.width + iw) * c;
              std::copy(src, src + c, dst);
            }
          }
        }
      }
}

// The valid part [lo, hi) of a pooling window's axis at output index `o`.
inline void window_range(std::int64_t o, std::int64_t stride, std::int64_t pad, std::int64_t window, std::int64_t n,
                         std::int64_t& lo, std::int64_t& hi) {
  lo = std::max<std::int64_t>(o * stride - pad, 0);
  hi = std::min<std::int64_t>(o * stride - pad + window, n);
}

// Average (over the window's positions inside the input: padding is not counted) or maximum
// pooling.
template <class T>
void pool(const SeqNode& node, const RowMatrix<T>& in, std::int64_t points, RowMatrix<T>& out) {
  const Shape &s = node.in, &o = node.out;
  const std::int64_t c = s.channels;
  const bool average = node.kind == NodeKind::avg_pool;
  shape_rows(out, points * o.positions(), c);
  for (std::int64_t p = 0; p < points; ++p)
    for (std::int64_t oh = 0; oh < o.height; ++oh)
      for (std::int64_t ow = 0; ow < o.width; ++ow) {
        std::int64_t h0, h1, w0, w1;
        window_range(oh, node.stride_h, node.pad_h, node.window_h, s.height, h0, h1);
        window_range(ow, node.stride_w, node.pad_w, node.window_w, s.width, w0, w1);
        T* dst = out.data() + ((p * o.height + oh) * o.width + ow) * c;
        const T* first = in.data() + ((p * s.height + h0) * s.width + w0) * c;
        std::copy(first, first + c, dst);
        for (std::int64_t ih = h0; ih < h1; ++ih)
          for (std::int64_t iw = (ih == h0 ? w0 + 1 : w0); iw < w1; ++iw) {
            const T* src = in.data() + ((p * s.height + ih) * s.width + iw) * c;
            if (average) {
              for (std::int64_t ch = 0; ch < c; ++ch) dst[ch] += src[ch];
            } else {
              for (std::int64_t ch = 0; ch < c; ++ch) dst[ch] = src[ch] > dst[ch] ? src[ch] : dst[ch];
            }
          }
        if (average) {
          const T inv = T(1) / static_cast<T>((h1 - h0) * (w1 - w0));
          for (std::int64_t ch = 0; ch < c; ++ch) dst[ch] *= inv;
        }
      }
}

template <class T>
void global_average(const SeqNode& node, const RowMatrix<T>& in, std::int64_t points, RowMatrix<T>& out) {
  const std::int64_t c = node.in.channels, positions = node.in.positions();
  shape_rows(out, points, c);
  const T inv = T(1) / static_cast<T>(positions);
  for (std::int64_t p = 0; p < points; ++p) {
    T* dst = out.data() + p * c;
    const T* src = in.data() + p * positions * c;
    std::copy(src, src + c, dst);
    for (std::int64_t q = 1; q < positions; ++q)
      for (std::int64_t ch = 0; ch < c; ++ch) dst[ch] += src[q * c + ch];
    for (std::int64_t ch = 0; ch < c; ++ch) dst[ch] *= inv;
  }
}

// h = phi(z) and, if d is not null, d = phi'(z) for n entries.
template <class T>
void activate_entries(const Activation& act, const T* z, std::int64_t n, T* h, T* d) {
  const bool relu = act.kind == ActivationKind::relu && act.shift == 0.0 && act.scale == 1.0;
  if (d) {
    if (relu) {
      for (std::int64_t i = 0; i < n; ++i) d[i] = z[i] > T(0) ? T(1) : T(0);
    } else {
      for (std::int64_t i = 0; i < n; ++i) d[i] = act.derivative(z[i]);
    }
  }
  if (relu) {
    for (std::int64_t i = 0; i < n; ++i) h[i] = z[i] > T(0) ? z[i] : T(0);
  } else {
    for (std::int64_t i = 0; i < n; ++i) h[i] = act(z[i]);
  }
}

template <class T>
void activate(const Activation& act, const RowMatrix<T>& in, std::int64_t rows, RowMatrix<T>& out, RowMatrix<T>* derivative) {
  shape_rows(out, rows, in.cols());
  if (derivative) shape_rows(*derivative, rows, in.cols());
  activate_entries(act, in.data(), rows * in.cols(), out.data(), derivative ? derivative->data() : nullptr);
}

}  // namespace sequential_detail

// Forward pass of `points` points of x (row-major, input.size() values each) through one
// network, nodes [0, depth) only (all by default); afterwards ws.output(k) holds node k's
// output and, with keep_derivatives, ws.derivatives[k] phi'(z) of each activation node k,
// except that a layer read only by the activation after it is activated in place, its own
// output not kept, unless it is in `kept`. Each output row is computed by the same operations
// whatever the tile (products see whole kRowQuantum blocks of rows), so the results do not
// depend on tiling or threads.
template <class T>
void sequential_forward(const SequentialSpec& spec, const std::vector<LayerScales>& scales, const NetworkView<T>& net,
                        const T* x, std::int64_t points, bool keep_derivatives, SequentialWorkspace<T>& ws,
                        std::size_t depth = static_cast<std::size_t>(-1), const std::vector<std::int64_t>& kept = {}) {
  using namespace sequential_detail;
  const std::size_t n_nodes = std::min(depth, spec.nodes.size());
  ws.points = points;
  shape_rows(ws.input, points * spec.input.positions(), spec.input.channels);
  std::copy(x, x + points * spec.input.size(), ws.input.data());
  ws.outputs.resize(spec.nodes.size());
  ws.derivatives.resize(keep_derivatives ? spec.nodes.size() : 0);
  for (std::size_t k = 0; k < n_nodes; ++k) {
    const SeqNode& node = spec.nodes[k];
    const RowMatrix<T>& in = ws.output(node.input);
    RowMatrix<T>& out = ws.outputs[k];
    const std::int64_t rows = points * node.out.positions();
    switch (node.kind) {
      case NodeKind::dense:
      case NodeKind::conv: {
        const DenseLayer& layer = spec.params[static_cast<std::size_t>(node.param)];
        const std::int64_t cols = layer.fan_out;
        // An activation reading this layer next is applied row by row while the row is in cache,
        // in place (the product written straight into the activation's output) if nothing else
        // reads this layer.
        const SeqNode* act = k + 1 < n_nodes && spec.nodes[k + 1].kind == NodeKind::activation &&
                                     spec.nodes[k + 1].input == static_cast<std::int64_t>(k)
                                 ? &spec.nodes[k + 1]
                                 : nullptr;
        const bool in_place = act && node.readers == 1 &&
                              std::find(kept.begin(), kept.end(), static_cast<std::int64_t>(k)) == kept.end();
        RowMatrix<T>& z = in_place ? ws.outputs[k + 1] : out;
        RowMatrix<T>* derivative = act && keep_derivatives ? &ws.derivatives[k + 1] : nullptr;
        const bool pointwise = node.pointwise();
        if (!pointwise) im2col(node, in.data(), points, ws.patches);
        const RowMatrix<T>& a = pointwise ? in : ws.patches;
        z.resize(a.rows(), layer.fan_out);
        z.noalias() = a * Eigen::Map<const RowMatrix<T>>(net.weights[static_cast<std::size_t>(node.param)],
                                                         layer.fan_in, layer.fan_out);
        const LayerScales& sc = scales[static_cast<std::size_t>(node.param)];
        const T forward = static_cast<T>(sc.forward), bias = static_cast<T>(sc.bias);
        const T* beta = net.biases[static_cast<std::size_t>(node.param)];
        if (act && !in_place) shape_rows(ws.outputs[k + 1], rows, cols);
        if (derivative) shape_rows(*derivative, rows, cols);
        for (std::int64_t r = 0; r < rows; ++r) {
          T* row = z.data() + r * cols;
          if (beta) {
            for (std::int64_t j = 0; j < cols; ++j) row[j] = forward * row[j] + bias * beta[j];
          } else {
            for (std::int64_t j = 0; j < cols; ++j) row[j] = forward * row[j];
          }
          if (act)
            activate_entries(act->activation, row, cols, in_place ? row : ws.outputs[k + 1].data() + r * cols,
                             derivative ? derivative->data() + r * cols : nullptr);
        }
        if (act) ++k;
        break;
      }
      case NodeKind::avg_pool:
      case NodeKind::max_pool: pool(node, in, points, out); break;
      case NodeKind::global_avg_pool: global_average(node, in, points, out); break;
      case NodeKind::flatten:
        shape_rows(out, points, node.out.channels);
        std::copy(in.data(), in.data() + points * node.out.channels, out.data());
        break;
      case NodeKind::activation:
        activate(node.activation, in, rows, out, keep_derivatives ? &ws.derivatives[k] : nullptr);
        break;
      case NodeKind::residual: {
        const RowMatrix<T>& skip = ws.output(node.skip);
        shape_rows(out, rows, node.out.channels);
        const T scale = static_cast<T>(node.scale);
        const std::int64_t n = rows * node.out.channels;
        for (std::int64_t i = 0; i < n; ++i) out.data()[i] = skip.data()[i] + scale * in.data()[i];
        break;
      }
    }
  }
}

// Kernel features of a node for a tile's points: its output if flat; averaged over positions
// (in double, positions in order) if spatial.
template <class T>
void write_node_features(const SequentialSpec& spec, const SequentialWorkspace<T>& ws, std::int64_t node,
                         const RowTile<T>& tile, RowMatrix<double>& pooled, Panel& panel) {
  const Shape& shape = spec.shape_of(node);
  const RowMatrix<T>& h = ws.output(node);
  const std::int64_t c = shape.channels;
  if (!shape.spatial) return panel.write(tile.row0, tile.rows, c, h.data(), c);
  const std::int64_t positions = shape.positions();
  pooled.resize(tile.rows, c);
  pooled.setZero();
  for (std::int64_t p = 0; p < tile.rows; ++p)
    for (std::int64_t q = 0; q < positions; ++q)
      for (std::int64_t ch = 0; ch < c; ++ch) pooled(p, ch) += static_cast<double>(h(p * positions + q, ch));
  pooled *= 1.0 / static_cast<double>(positions);
  panel.write(tile.row0, tile.rows, c, pooled.data(), c);
}

// sums[k] (n1 x n2 row-major; n1 x n1 if x2 is null) += sum over networks [start, stop) of
// the un-normalised Gram of node opt.layers[k]'s features (the output node's if opt.layers is
// empty); x1, x2 hold input.size() values per point.
template <class T>
void sequential_monte_carlo(const SequentialSpec& spec, const T* x1, std::int64_t n1, const T* x2, std::int64_t n2,
                            const MonteCarloOptions& opt, const std::vector<double*>& sums) {
  const bool symmetric = x2 == nullptr;
  if (symmetric) n2 = n1;
  const std::int64_t n_nodes = static_cast<std::int64_t>(spec.nodes.size());
  const std::vector<std::int64_t> nodes = opt.layers.empty() ? std::vector<std::int64_t>{n_nodes - 1} : opt.layers;
  std::vector<std::int64_t> widths;
  for (const std::int64_t k : nodes) {
    if (k < 0 || k >= n_nodes) throw std::invalid_argument("kernel node " + std::to_string(k) + " is out of range");
    widths.push_back(spec.shape_of(k).channels);
  }
  const std::vector<RowTile<T>> tiles = row_tiles(x1, n1, x2, n2, opt.tile_rows);
  const std::int64_t d = spec.input.size();
  const std::vector<LayerScales> scales = spec.scales(false);
  NetworkDraw<T> draw(spec.params);
  const NetworkView<T> net = draw.view();
  const std::size_t n_workspaces = static_cast<std::size_t>(std::max(1, opt.n_threads));
  std::vector<SequentialWorkspace<T>> workspaces(n_workspaces);
  std::vector<RowMatrix<double>> pooled(n_workspaces);
  stream_networks<T>(
      n1, n2, symmetric, widths, tiles, opt, sums,
      [&](std::uint64_t m) { draw.draw(spec.params, opt.seed, m, opt.n_threads, spec.params.size(), spec.init); },
      [&](const RowTile<T>& tile, int thread, auto&& panel) {
        SequentialWorkspace<T>& ws = workspaces[static_cast<std::size_t>(thread)];
        sequential_forward(spec, scales, net, tile.x + tile.row0 * d, tile.rows, false, ws, spec.nodes.size(), nodes);
        for (std::size_t k = 0; k < nodes.size(); ++k)
          write_node_features(spec, ws, nodes[k], tile, pooled[static_cast<std::size_t>(thread)], panel(k));
      });
}

// The logits (rows x n_outputs, float64) of a network with the given parameters.
template <class T>
void sequential_outputs(const SequentialSpec& spec, const std::vector<LayerScales>& scales, const NetworkView<T>& net,
                        const T* x, std::int64_t rows, int n_threads, double* out) {
  const std::vector<RowTile<T>> tiles = row_tiles<T>(x, rows, nullptr, 0, 2 * kRowQuantum);
  std::vector<SequentialWorkspace<T>> workspaces(static_cast<std::size_t>(std::max(1, n_threads)));
  const std::int64_t d = spec.input.size(), c = spec.n_outputs();
  parallel_for(static_cast<std::int64_t>(tiles.size()), n_threads, [&](std::int64_t t, int thread) {
    const RowTile<T>& tile = tiles[static_cast<std::size_t>(t)];
    SequentialWorkspace<T>& ws = workspaces[static_cast<std::size_t>(thread)];
    sequential_forward(spec, scales, net, tile.x + tile.row0 * d, tile.rows, false, ws);
    const RowMatrix<T>& f = ws.outputs.back();
    for (std::int64_t i = 0; i < tile.rows * c; ++i) out[tile.row0 * c + i] = static_cast<double>(f.data()[i]);
  });
}

}  // namespace nnpk
