// Sequential networks as the engine sees them: dense and convolutional (also transposed) layers, pooling,
// graph aggregation, flattening, elementwise activations, residual blocks, batch normalisation and recurrent
// layers, as a list of nodes in execution order, each node's shapes and parameters derived from the input's shape.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "nnpk/network/activations.hpp"
#include "nnpk/network/layers.hpp"
#include "nnpk/random/init.hpp"

namespace nnpk {

enum class NodeKind : int {
  dense = 0,
  conv,
  avg_pool,
  max_pool,
  global_avg_pool,
  flatten,
  activation,
  residual,
  batch_norm,
  recurrent,
  attention,
  layer_norm,
  aggregate,  // a graph aggregation: output node v = sum_u pattern[u][v] input node u (positions are the nodes)
  fan_in_prod,    // branches merged by their elementwise product: input * skip
  fan_in_concat   // branches merged by concatenating an axis (concat_axis): the input's entries, then the skip's
};

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
  std::int64_t skip = -1;   // residual, fan_in_*: the second node read (residual: added unchanged; -1: the input)
  std::int64_t width = 0;   // dense: output features; conv: output channels
  std::int64_t window_h = 1, window_w = 1, stride_h = 1, stride_w = 1;  // conv kernel or pooling window
  bool same = false;                                                     // padding "same", else "valid"
  bool pool_sum = false;  // avg_pool, global_avg_pool: the sum over the window (SumPool), not the mean
  // conv: a transposed convolution (ConvTranspose): the stride dilates the input (stride - 1 zeros
  // between its positions) and the window then moves by one position.
  bool transposed = false;
  // aggregate: the (positions x positions) weights, row-major: pattern[u * P + v] is the weight of the edge
  // from position u to position v. Empty with per_point: each point's own graph (SequentialSpec::graph),
  // its adjacency's columns divided by their sums if mean.
  std::vector<double> pattern;
  bool per_point = false, mean = false;
  double w_std = 1.0, b_std = 0.0;
  bool has_bias = false;
  Activation activation;
  double scale = 1.0;  // residual: output = skip + scale * input
  double eps = 1e-5, momentum = 0.1;  // batch_norm: variance offset, running statistics' update rate
  // recurrent: h_t = (1 - leak) h_{t-1} + leak phi(z_t), z_t = h_{t-1} W + x_t U + b over the steps of a
  // (steps, features) sequence (height = steps), h_0 = 0; w_std scales W (the gain), u_std U. Its
  // parameters are two layers: (U, b) at `param`, (W, no bias) at `param + 1`.
  double u_std = 1.0, leak = 1.0;
  bool return_sequences = false;  // recurrent: output every step's h_t (steps x width), else h_T
  // layer_norm: the axes of a point its mean and variance run over (the others index separate groups);
  // eps is added to the variance.
  bool norm_height = false, norm_width = false, norm_channels = true;
  int concat_axis = 2;            // fan_in_concat: 0 the height (a 1-D signal's length), 1 the width, 2 channels
  int init = -1;                  // a parametrised node's own init scheme (an Init), -1: the network's
  // attention (attention.hpp): heads, key/query and value widths per head, tied key and query weights
  // (linear scaling, logits / key_width) or separate ones (logits / sqrt(key_width)), the map of the
  // logits (an AttentionMechanism), and the stds of the key, query, value and output weights (w_std:
  // the output's). Its parameters are the layers K, Q (untied only), V, O (with the bias) from `param`.
  std::int64_t heads = 1, key_width = 1, value_width = 1;
  bool tied = true;
  int mechanism = 0;
  double k_std = 1.0, q_std = 1.0, v_std = 1.0;
  // attention's positional embeddings (0 none, 1 summed with, 2 concatenated to the inputs of the keys
  // and queries, and of the values if val_pos_emb): a table E (positions x pos_channels) scaled by
  // pe_std and mapped by pos_basis (positions x positions, row-major; empty: the identity), the layer
  // after O (fan_in positions, no bias, Gaussian draws).
  int pos_emb = 0;
  std::int64_t pos_channels = 0;
  bool val_pos_emb = false;
  double pe_std = 1.0;
  std::vector<double> pos_basis;

  // Derived by SequentialSpec::build.
  Shape in, out;
  std::int64_t pad_h = 0, pad_w = 0;  // padding before the first row / column
  std::int64_t param = -1;            // dense, conv: index among the parametrised layers
  std::int64_t norm = -1;             // batch_norm: index among the batch normalisations
  std::int64_t readers = 0;           // how many nodes read this node's output (as input or skip)

  // Whether the node reads `skip` as well as `input` (a residual sum or a branches' merge).
  bool merges() const {
    return kind == NodeKind::residual || kind == NodeKind::fan_in_prod || kind == NodeKind::fan_in_concat;
  }
  // A dense layer or a 1 x 1 convolution of stride 1: the input rows are the layer's patches.
  bool pointwise() const {
    return kind == NodeKind::dense || kind == NodeKind::recurrent ||
           (window_h == 1 && window_w == 1 && stride_h == 1 && stride_w == 1);
  }
  // The input position along one axis that output position o reads at tap i of a convolution's
  // window (-1: padding, or for a transposed convolution one of the zeros between dilated inputs).
  static std::int64_t tap_source(std::int64_t o, std::int64_t i, std::int64_t stride, std::int64_t pad,
                                 std::int64_t n, bool transposed) {
    if (!transposed) {
      const std::int64_t u = o * stride + i - pad;
      return u >= 0 && u < n ? u : -1;
    }
    const std::int64_t u = o + i - pad;  // on the dilated input
    if (u < 0 || u % stride != 0 || u / stride >= n) return -1;
    return u / stride;
  }
  std::int64_t source_h(std::int64_t o, std::int64_t i) const {
    return tap_source(o, i, stride_h, pad_h, in.height, transposed);
  }
  std::int64_t source_w(std::int64_t o, std::int64_t i) const {
    return tap_source(o, i, stride_w, pad_w, in.width, transposed);
  }
  // Steps of a recurrent node's input sequence.
  std::int64_t steps() const { return in.height; }
  // Parametrised layers this node owns from `param` (0 for none).
  std::int64_t n_layers() const {
    if (param < 0) return 0;
    if (kind == NodeKind::recurrent) return 2;
    if (kind == NodeKind::attention) return (tied ? 3 : 4) + (pos_emb ? 1 : 0);
    return 1;
  }
};

// One entry of the parameter list in network order (sample_params' layout): a dense or
// convolutional layer's (W, b), params[index], or a batch normalisation's (gamma, beta),
// norms[index].
struct ParamEntry {
  bool norm = false;
  std::int64_t index = 0;
};

struct SequentialSpec {
  Shape input;
  std::vector<SeqNode> nodes;
  Parameterization parameterization = Parameterization::ntk;
  Init init = Init::gaussian;
  // Derived by build(): each parametrised node's weights as a (fan_in, fan_out) matrix, a
  // convolution's fan_in being kernel height x kernel width x input channels.
  std::vector<DenseLayer> params;
  // Derived by build(): the batch normalisations' nodes in order, and every parameter entry.
  std::vector<std::int64_t> norms;
  std::vector<ParamEntry> entries;
  // Derived by build(): each parametrised layer's node (a recurrent node owns two layers).
  std::vector<std::int64_t> param_nodes;

  // Graph points: each position of a point (a node of its graph) holds its features, then its row of the
  // point's adjacency (positions() values: A[u][v] at channel features + v of position u). The layers
  // read the features only (features()); per-point aggregations read the adjacency.
  bool graph = false;
  Shape features_;  // features(), set by build()

  // The shape the first layers read: the input, without the adjacency's channels of graph points.
  Shape features() const {
    Shape s = input;
    if (graph) s.channels -= input.positions();
    return s;
  }
  const Shape& shape_of(std::int64_t node) const {
    return node < 0 ? features_ : nodes[static_cast<std::size_t>(node)].out;
  }
  std::int64_t input_dim() const { return input.size(); }
  std::int64_t n_outputs() const { return nodes.back().out.size(); }
  const std::vector<DenseLayer>& param_layers() const { return params; }
  std::vector<LayerScales> scales(bool stored) const { return layer_scales(params, parameterization, stored); }
  const SeqNode& norm_node(std::size_t b) const { return nodes[static_cast<std::size_t>(norms[b])]; }
  const SeqNode& param_node(std::size_t l) const { return nodes[static_cast<std::size_t>(param_nodes[l])]; }
  // Parametrised layer l as a sum over positions (docs/definitions.rst): its gradient is
  // sum_p patch_p^T delta_p over `positions` rows per point of `fan_in` patch values. A recurrent
  // layer's positions are its steps (patches x_t for (U, b), h_{t-1} for W; delta_t = dz_t).
  std::int64_t param_positions(std::size_t l) const {
    const SeqNode& node = param_node(l);
    return node.kind == NodeKind::recurrent ? node.steps() : node.out.positions();
  }
  // Values per point that layer l's patches are formed from: its node's input, or for a recurrent
  // layer its steps' patches (x_t or h_{t-1}) one after the other.
  std::int64_t param_input_size(std::size_t l) const {
    const SeqNode& node = param_node(l);
    if (node.kind == NodeKind::attention) return node.in.positions() * params[l].fan_in;
    return node.kind == NodeKind::recurrent ? node.steps() * params[l].fan_in : node.in.size();
  }
  bool recurrent_weights(std::size_t l) const {
    const SeqNode& node = param_node(l);
    return node.kind == NodeKind::recurrent && static_cast<std::int64_t>(l) == node.param + 1;
  }
  bool has_recurrent() const {
    return std::any_of(nodes.begin(), nodes.end(), [](const SeqNode& n) { return n.kind == NodeKind::recurrent; });
  }

  // Derives every node's shapes, padding and parameters from the input shape; the Python
  // layer has already checked all of it with messages naming the layer.
  void build() {
    if (nodes.empty()) throw std::invalid_argument("the network has no layers");
    if (input.height < 1 || input.width < 1 || input.channels < 1) throw std::invalid_argument("empty input shape");
    if (graph && (!input.spatial || input.channels <= input.positions()))
      throw std::invalid_argument("graph points need (nodes, features + nodes) values: features, then the adjacency");
    features_ = features();
    params.clear();
    norms.clear();
    entries.clear();
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
          add_param(node, node.in.size(), node.width, node.w_std, node.has_bias);
          break;
        case NodeKind::conv:
        case NodeKind::avg_pool:
        case NodeKind::max_pool: {
          if (!node.in.spatial) throw fail("needs spatial features");
          if (node.window_h < 1 || node.window_w < 1 || node.stride_h < 1 || node.stride_w < 1)
            throw fail("non-positive window or stride");
          std::int64_t out_h, out_w;
          if (node.transposed) {
            if (node.kind != NodeKind::conv) throw fail("only convolutions can be transposed");
            transposed_geometry(node.in.height, node.window_h, node.stride_h, node.same, out_h, node.pad_h);
            transposed_geometry(node.in.width, node.window_w, node.stride_w, node.same, out_w, node.pad_w);
          } else if (!geometry(node.in.height, node.window_h, node.stride_h, node.same, out_h, node.pad_h) ||
              !geometry(node.in.width, node.window_w, node.stride_w, node.same, out_w, node.pad_w))
            throw fail("the window is larger than the input");
          node.out = Shape{out_h, out_w, node.in.channels, true};
          if (node.kind == NodeKind::conv) {
            if (node.width < 1) throw fail("non-positive channel count");
            node.out.channels = node.width;
            add_param(node, node.window_h * node.window_w * node.in.channels, node.width, node.w_std, node.has_bias);
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
        case NodeKind::batch_norm:
          if (!(node.eps > 0)) throw fail("eps must be positive");
          if (!(node.momentum > 0 && node.momentum <= 1)) throw fail("momentum must be in (0, 1]");
          node.norm = static_cast<std::int64_t>(norms.size());
          norms.push_back(index);
          entries.push_back({true, node.norm});
          break;
        case NodeKind::layer_norm:
          if (!(node.eps > 0)) throw fail("eps must be positive");
          if (!node.norm_height && !node.norm_width && !node.norm_channels) throw fail("no axis to normalise over");
          break;
        case NodeKind::aggregate:
          if (!node.in.spatial) throw fail("needs spatial features (the graph's nodes are positions)");
          if (node.per_point) {
            if (!graph || node.in.positions() != input.positions())
              throw fail("a per-point aggregation needs graph points with as many nodes as positions");
          } else if (static_cast<std::int64_t>(node.pattern.size()) != node.in.positions() * node.in.positions())
            throw fail("the pattern must be positions x positions");
          break;
        case NodeKind::recurrent:
          if (!node.in.spatial || node.in.width != 1) throw fail("needs (steps, features) sequences");
          if (node.width < 1) throw fail("non-positive width");
          if (!(node.leak > 0 && node.leak <= 1)) throw fail("leak must be in (0, 1]");
          node.out = node.return_sequences ? Shape{node.in.height, 1, node.width, true} : Shape{1, 1, node.width, false};
          add_param(node, node.in.channels, node.width, node.u_std, node.has_bias);
          add_param(node, node.width, node.width, node.w_std, false);
          node.param = static_cast<std::int64_t>(params.size()) - 2;
          break;
        case NodeKind::attention: {
          if (!node.in.spatial) throw fail("attention needs spatial features (positions, channels)");
          if (node.width < 1 || node.heads < 1 || node.key_width < 1 || node.value_width < 1)
            throw fail("non-positive width, heads, key_width or value_width");
          if (node.mechanism < 0 || node.mechanism > 3) throw fail("unknown attention mechanism");
          if (!(node.k_std >= 0) || !(node.q_std >= 0) || !(node.v_std >= 0)) throw fail("negative or NaN std");
          node.out = Shape{node.in.height, node.in.width, node.width, true};
          const std::int64_t c = node.in.channels, hk = node.heads * node.key_width, hv = node.heads * node.value_width;
          const bool bias = node.has_bias;
          node.has_bias = false;
          // Tied: one matrix W with keys and queries scaled by k_std and q_std, which enter only
          // through their product: W's std is sqrt(k_std q_std).
          const std::int64_t P = node.in.positions();
          if (node.pos_emb < 0 || node.pos_emb > 2) throw fail("unknown positional embedding");
          if (node.pos_emb) {
            if (node.pos_channels < 1 || (node.pos_emb == 1 && node.pos_channels != c))
              throw fail("positional embeddings need pos_channels >= 1 (the input's channels when summed)");
            if (!(node.pe_std >= 0)) throw fail("negative or NaN std");
            if (!node.pos_basis.empty() && static_cast<std::int64_t>(node.pos_basis.size()) != P * P)
              throw fail("the positional basis must be positions x positions");
          }
          const std::int64_t extra = node.pos_emb == 2 ? node.pos_channels : 0;
          const std::int64_t ck = c + extra, cv = c + (node.val_pos_emb ? extra : 0);
          add_param(node, ck, hk, node.tied ? std::sqrt(node.k_std * node.q_std) : node.k_std, false);
          if (!node.tied) add_param(node, ck, hk, node.q_std, false);
          add_param(node, cv, hv, node.v_std, false);
          node.has_bias = bias;
          add_param(node, hv, node.width, node.w_std, bias);
          if (node.pos_emb) {  // scale pe_std: w_std / sqrt(fan_in) with fan_in = P
            node.has_bias = false;
            add_param(node, P, node.pos_channels, node.pe_std * std::sqrt(static_cast<double>(P)), false);
            params.back().init = Init::gaussian;
            node.has_bias = bias;
          }
          node.param = static_cast<std::int64_t>(params.size()) - node.n_layers();
          break;
        }
        case NodeKind::fan_in_prod:
        case NodeKind::fan_in_concat: {
          if (node.skip < -1 || node.skip >= index) throw fail("skip must be an earlier node");
          const Shape& other = shape_of(node.skip);
          if (node.kind == NodeKind::fan_in_prod && !(other == node.in))
            throw fail("a product of branches needs branches of one shape");
          if (node.kind == NodeKind::fan_in_concat) {
            const int a = node.concat_axis;
            if (a < 0 || a > 2 || (a < 2 && !node.in.spatial)) throw fail("concat_axis must be 0 or 1 (spatial) or 2");
            if (other.spatial != node.in.spatial || (a != 0 && other.height != node.in.height) ||
                (a != 1 && other.width != node.in.width) || (a != 2 && other.channels != node.in.channels))
              throw fail("a concatenation needs branches that agree on every other axis");
            if (a == 0) node.out.height += other.height;
            if (a == 1) node.out.width += other.width;
            if (a == 2) node.out.channels += other.channels;
          }
          break;
        }
      }
    }
    if (nodes.back().out.spatial) throw std::invalid_argument("the network's output must be flat");
    for (SeqNode& node : nodes) node.readers = 0;
    param_nodes.assign(params.size(), -1);
    for (std::size_t k = 0; k < nodes.size(); ++k) {
      const SeqNode& node = nodes[k];
      if (node.param < 0) continue;
      param_nodes[static_cast<std::size_t>(node.param)] = static_cast<std::int64_t>(k);
      for (std::int64_t j = 1; j < node.n_layers(); ++j)
        param_nodes[static_cast<std::size_t>(node.param + j)] = static_cast<std::int64_t>(k);
    }
    for (const SeqNode& node : nodes) {
      if (node.input >= 0) ++nodes[static_cast<std::size_t>(node.input)].readers;
      if (node.merges() && node.skip >= 0) ++nodes[static_cast<std::size_t>(node.skip)].readers;
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

  // A transposed convolution's axis (neural-tangents' ConvTranspose, XLA's conv_transpose): the input
  // dilated by the stride, padded by `pad` before, then a window moving by one; out = n stride ("same")
  // or n stride + max(window - stride, 0) ("valid").
  static void transposed_geometry(std::int64_t n, std::int64_t window, std::int64_t stride, bool same,
                                  std::int64_t& out, std::int64_t& pad) {
    if (same) {
      out = n * stride;
      pad = stride > window - 1 ? window - 1 : (window + stride - 2 + 1) / 2;
    } else {
      out = n * stride + std::max<std::int64_t>(window - stride, 0);
      pad = window - 1;
    }
  }

  // One parametrised layer of `node`: (fan_in, fan_out) weights scaled by w_std, a bias if has_bias.
  void add_param(SeqNode& node, std::int64_t fan_in, std::int64_t fan_out, double w_std, bool has_bias) {
    if (!(w_std >= 0) || !(node.b_std >= 0)) throw std::invalid_argument("negative or NaN std");
    if (node.init < -1 || node.init > static_cast<int>(Init::orthogonal)) throw std::invalid_argument("unknown init");
    node.param = static_cast<std::int64_t>(params.size());
    entries.push_back({false, node.param});
    DenseLayer layer;
    layer.fan_in = fan_in;
    layer.fan_out = fan_out;
    layer.w_std = w_std;
    layer.has_bias = has_bias;
    layer.b_std = has_bias ? node.b_std : 0.0;
    layer.init = node.init < 0 ? init : static_cast<Init>(node.init);
    params.push_back(layer);
  }
};

}  // namespace nnpk
