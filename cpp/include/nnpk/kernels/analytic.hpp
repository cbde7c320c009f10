// Infinite-width kernels (docs/definitions.rst) of sequential networks made of dense layers,
// elementwise activations and residual blocks: the layer recursion of the NNGP and the NTK over
// a graph of nodes, tiled over the output (an MLP is a chain of dense and activation nodes), with a residual node adding its skip path's kernels to scale^2 times its
// block's, and a layer normalisation dividing a kernel by the square roots of eps plus the two points'
// variances. A recurrent node reads the input sequences (analytic_recurrent.hpp). The Python layer
// admits only networks where this is exact (a residual block ends with a dense layer, so its
// output is uncorrelated with the skip path; an activation or a layer normalisation reads Gaussian
// pre-activations; a recurrent layer reads the input and returns its last state) and names the layer it refuses.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "nnpk/kernels/analytic_recurrent.hpp"
#include "nnpk/kernels/dual.hpp"
#include "nnpk/kernels/gram.hpp"
#include "nnpk/network/activations.hpp"
#include "nnpk/network/layers.hpp"
#include "nnpk/parallel.hpp"

namespace nnpk {

struct AnalyticOptions {
  Parameterization parameterization = Parameterization::ntk;
  bool nngp = true;
  bool ntk = false;
  // Kernels to write: node indices, ascending.
  std::vector<std::int64_t> layers;
  bool closed_form = true;  // false: quadrature for every activation
  int quadrature_order = kDefaultQuadratureOrder;
  int n_threads = 1;
  std::int64_t tile = 64;  // output tile edge
  // Called about every 0.2 s by thread 0 between tiles; returns true to stop.
  std::function<bool()> poll;
};

namespace analytic_detail {

// out[i * ld + j] = x1_i . x2_j / d for the rows [i0, i0 + ni) and [j0, j0 + nj): each entry a
// sequential sum over the features in order, the same whatever the tile.
inline void input_kernel_tile(const double* x1, std::int64_t i0, std::int64_t ni, const double* x2, std::int64_t j0,
                              std::int64_t nj, std::int64_t d, std::vector<double>& x2t, double* out,
                              std::int64_t ld) {
  x2t.resize(static_cast<std::size_t>(d * nj));
  for (std::int64_t j = 0; j < nj; ++j)
    for (std::int64_t k = 0; k < d; ++k) x2t[static_cast<std::size_t>(k * nj + j)] = x2[(j0 + j) * d + k];
  const double inv_d = 1.0 / static_cast<double>(d);
  for (std::int64_t i = 0; i < ni; ++i) {
    double* row = out + i * ld;
    const double* xi = x1 + (i0 + i) * d;
    std::fill(row, row + nj, 0.0);
    for (std::int64_t k = 0; k < d; ++k) {
      const double xik = xi[k];
      const double* col = x2t.data() + k * nj;
      for (std::int64_t j = 0; j < nj; ++j) row[j] += xik * col[j];
    }
    for (std::int64_t j = 0; j < nj; ++j) row[j] *= inv_d;
  }
}

}  // namespace analytic_detail

// fan_in_prod, fan_in_concat: branches merged (input and skip), as the network's nodes of those kinds:
// the product's kernels are Sigma_in Sigma_skip and Theta_in Sigma_skip + Sigma_in Theta_skip (the
// branches independent); the concatenation's the mean scale K_in + (1 - scale) K_skip, scale the
// input's share of the channels.
enum class AnalyticNodeKind : int { dense = 0, activation, residual, identity, recurrent, layer_norm, fan_in_prod,
                                    fan_in_concat };

struct AnalyticNode {
  AnalyticNodeKind kind = AnalyticNodeKind::dense;
  std::int64_t input = -1;  // the node read (-1: the network's input)
  std::int64_t skip = -1;   // residual: the node added unchanged (-1: the input)
  // dense (and recurrent: fan_in = the features of a step, w_std = the recurrent gain)
  std::int64_t fan_in = 1;
  double w_std = 1.0, b_std = 0.0;
  bool has_bias = false;
  // activation (and recurrent: its phi)
  Activation activation;
  bool unit_second_moment = false;
  // residual: skip + scale * block; fan_in_concat: the input's share of the channels
  double scale = 1.0;

  bool merges() const {
    return kind == AnalyticNodeKind::residual || kind == AnalyticNodeKind::fan_in_prod ||
           kind == AnalyticNodeKind::fan_in_concat;
  }
  // recurrent: reads the input as `steps` steps of fan_in features, `width` units
  std::int64_t steps = 1, width = 1;
  double u_std = 1.0, leak = 1.0;
  // layer_norm: added to the variances
  double eps = 1e-12;

  RecurrentCell cell() const { return RecurrentCell{steps, fan_in, width, w_std, u_std, b_std, leak, has_bias}; }
};

namespace analytic_detail {

inline void check_nodes(const std::vector<AnalyticNode>& nodes) {
  if (nodes.empty()) throw std::invalid_argument("the network has no layers");
  for (std::size_t k = 0; k < nodes.size(); ++k) {
    const AnalyticNode& node = nodes[k];
    const auto index = static_cast<std::int64_t>(k);
    if (node.input < -1 || node.input >= index || node.skip < -1 || node.skip >= index)
      throw std::invalid_argument("node " + std::to_string(k) + " must read earlier nodes");
    if (node.kind == AnalyticNodeKind::dense && (node.fan_in < 1 || !(node.w_std >= 0) || !(node.b_std >= 0)))
      throw std::invalid_argument("node " + std::to_string(k) + " has a non-positive fan-in or a negative std");
    if (node.kind == AnalyticNodeKind::layer_norm && !(node.eps > 0))
      throw std::invalid_argument("node " + std::to_string(k) + " has a non-positive eps");
    if (node.kind == AnalyticNodeKind::recurrent &&
        (node.input != -1 || node.fan_in < 1 || node.steps < 1 || node.width < 1 || !(node.w_std >= 0) ||
         !(node.u_std >= 0) || !(node.b_std >= 0) || !(node.leak > 0 && node.leak <= 1)))
      throw std::invalid_argument("node " + std::to_string(k) + " must be a recurrent layer reading the input, with "
                                  "positive sizes, non-negative stds and a leak in (0, 1]");
  }
  if (std::count_if(nodes.begin(), nodes.end(), [](const AnalyticNode& n) { return n.kind == AnalyticNodeKind::recurrent; }) > 1)
    throw std::invalid_argument("at most one recurrent node");
}

// The recurrent node's index, -1 if none.
inline std::int64_t recurrent_node(const std::vector<AnalyticNode>& nodes) {
  for (std::size_t k = 0; k < nodes.size(); ++k)
    if (nodes[k].kind == AnalyticNodeKind::recurrent) return static_cast<std::int64_t>(k);
  return -1;
}

// Layer normalisation of Gaussian features at infinite width: a kernel entry divided by
// sqrt((eps + q1)(eps + q2)), q1 and q2 the two points' variances (the mean over the features
// vanishes). The same expression on the diagonal and off it, so that the two agree to the bit.
inline double layer_norm_factor(double eps, double q1, double q2) {
  return 1.0 / std::sqrt((eps + q1) * (eps + q2));
}

// One dense node's affine step on a row of n entries.
inline void dense_row(const AnalyticNode& node, bool standard, bool ntk, const double* s_in, const double* t_in,
                      std::int64_t n, double* s_out, double* t_out) {
  const double w2 = node.w_std * node.w_std, b2 = node.has_bias ? node.b_std * node.b_std : 0.0;
  const double fan_in = static_cast<double>(node.fan_in), bias_share = node.has_bias ? 1.0 : 0.0;
  for (std::int64_t j = 0; j < n; ++j) {
    const double pre = madd(w2, s_in[j], b2);
    if (ntk) t_out[j] = standard ? madd(fan_in, s_in[j], madd(w2, t_in[j], bias_share)) : madd(w2, t_in[j], pre);
    s_out[j] = pre;
  }
}

// q[(k + 1) * n + i] = node k's kernel of (x_i, x_i) (q[i]: the input's), by the operations the tile recursion applies
// to that pair (so equal to the diagonal entry to the bit); a recurrent node's step variances
// Sigma_t(x_i, x_i) to step_q[t * n + i].
inline std::vector<double> node_variances(const std::vector<AnalyticNode>& nodes, const std::vector<DualMap>& duals,
                                          const double* x, std::int64_t n, std::int64_t d, int n_threads,
                                          std::vector<double>& step_q) {
  const auto n_nodes = static_cast<std::int64_t>(nodes.size());
  std::vector<double> q(static_cast<std::size_t>((n_nodes + 1) * n));
  const std::int64_t recurrent = recurrent_node(nodes);
  step_q.assign(recurrent < 0 ? 0 : static_cast<std::size_t>(nodes[static_cast<std::size_t>(recurrent)].steps * n), 0.0);
  constexpr std::int64_t kBlock = 64;
  parallel_for((n + kBlock - 1) / kBlock, n_threads, [&](std::int64_t b, int) {
    std::vector<double> scratch;
    recurrent_analytic::RowBuffers buffers;
    std::vector<double> value(static_cast<std::size_t>(n_nodes));
    for (std::int64_t i = b * kBlock; i < std::min(n, (b + 1) * kBlock); ++i) {
      double input = 0.0, unused = 0.0;
      input_kernel_tile(x, i, 1, x, i, 1, d, scratch, &input, 1);
      q[static_cast<std::size_t>(i)] = input;
      const auto at = [&](std::int64_t k) { return k < 0 ? input : value[static_cast<std::size_t>(k)]; };
      for (std::int64_t k = 0; k < n_nodes; ++k) {
        const AnalyticNode& node = nodes[static_cast<std::size_t>(k)];
        double& out = value[static_cast<std::size_t>(k)];
        const double in = at(node.input);
        switch (node.kind) {
          case AnalyticNodeKind::dense: dense_row(node, false, false, &in, &unused, 1, &out, &unused); break;
          case AnalyticNodeKind::activation: out = duals[static_cast<std::size_t>(k)](in, in, in).sigma; break;
          case AnalyticNodeKind::residual: out = madd(node.scale * node.scale, in, at(node.skip)); break;
          case AnalyticNodeKind::fan_in_prod: out = in * at(node.skip); break;
          case AnalyticNodeKind::fan_in_concat: out = madd(node.scale, in, (1.0 - node.scale) * at(node.skip)); break;
          case AnalyticNodeKind::identity: out = in; break;
          case AnalyticNodeKind::layer_norm: out = in * layer_norm_factor(node.eps, in, in); break;
          case AnalyticNodeKind::recurrent:
            out = recurrent_analytic::point_variances(node.cell(), duals[static_cast<std::size_t>(k)], x + i * d,
                                                      step_q.data() + i, n, buffers);
            break;
        }
        q[static_cast<std::size_t>((k + 1) * n + i)] = out;
      }
    }
  });
  return q;
}

}  // namespace analytic_detail

// Writes the requested nodes' kernels (opt.layers: ascending node indices) between the rows of
// x1 (n1 x d) and x2 (n2 x d; null: x1, one triangle computed and mirrored). Only opt.layers, nngp, ntk, parameterization,
// closed_form, quadrature_order, n_threads, tile and poll are read; each activation node
// says whether its activation is normalised.
inline void analytic_network_kernels(const std::vector<AnalyticNode>& nodes, std::int64_t d, const double* x1,
                                     std::int64_t n1, const double* x2, std::int64_t n2, const AnalyticOptions& opt,
                                     const std::vector<double*>& nngp_out, const std::vector<double*>& ntk_out) {
  using analytic_detail::input_kernel_tile;
  analytic_detail::check_nodes(nodes);
  const auto n_nodes = static_cast<std::int64_t>(nodes.size());
  for (std::size_t k = 0; k < opt.layers.size(); ++k)
    if (opt.layers[k] < 0 || opt.layers[k] >= n_nodes || (k > 0 && opt.layers[k] <= opt.layers[k - 1]))
      throw std::invalid_argument("layers must be ascending node indices below " + std::to_string(n_nodes));
  if ((opt.nngp && nngp_out.size() != opt.layers.size()) || (opt.ntk && ntk_out.size() != opt.layers.size()))
    throw std::invalid_argument("one output per requested node and kernel is needed");
  if (opt.tile < 1 || d < 1) throw std::invalid_argument("tile and d must be positive");
  const std::int64_t recurrent = analytic_detail::recurrent_node(nodes);
  if (recurrent >= 0 && nodes[static_cast<std::size_t>(recurrent)].steps * nodes[static_cast<std::size_t>(recurrent)].fan_in != d)
    throw std::invalid_argument("the recurrent node's steps x features differ from the points' size");
  // Whether a node other than a recurrent one reads the input's kernel Sigma^0.
  const bool reads_input = std::any_of(nodes.begin(), nodes.end(), [](const AnalyticNode& n) {
    return n.kind != AnalyticNodeKind::recurrent && (n.input == -1 || (n.merges() && n.skip == -1));
  });
  const bool symmetric = x2 == nullptr;
  if (symmetric) {
    x2 = x1;
    n2 = n1;
  }
  std::vector<DualMap> duals;
  for (const AnalyticNode& node : nodes)
    duals.emplace_back(node.activation, opt.closed_form, opt.quadrature_order, node.unit_second_moment);
  std::vector<double> step_q1, step_q2;
  const std::vector<double> q1 = analytic_detail::node_variances(nodes, duals, x1, n1, d, opt.n_threads, step_q1);
  const std::vector<double> q2 =
      symmetric ? q1 : analytic_detail::node_variances(nodes, duals, x2, n2, d, opt.n_threads, step_q2);
  if (symmetric) step_q2 = step_q1;
  std::vector<std::int64_t> slot(static_cast<std::size_t>(n_nodes), -1);
  for (std::size_t k = 0; k < opt.layers.size(); ++k)
    slot[static_cast<std::size_t>(opt.layers[k])] = static_cast<std::int64_t>(k);
  const bool standard = opt.parameterization == Parameterization::standard;

  // Per-thread buffers, allocated once: every node's tile of both
  // kernels, then the input's.
  struct Workspace {
    std::vector<double> sigma, theta, dot, scratch;
    recurrent_analytic::RowBuffers recurrent;
  };
  std::vector<Workspace> workspaces(static_cast<std::size_t>(std::max(1, opt.n_threads)));

  for_each_output_tile(n1, n2, opt.tile, symmetric, opt.n_threads, opt.poll, [&](std::int64_t i0, std::int64_t ni,
                                                                              std::int64_t j0, std::int64_t nj,
                                                                              int thread) {
    Workspace& ws = workspaces[static_cast<std::size_t>(thread)];
    const std::int64_t size = ni * nj;
    ws.sigma.resize(static_cast<std::size_t>((n_nodes + 1) * size));
    ws.theta.assign(ws.sigma.size(), 0.0);
    ws.dot.resize(static_cast<std::size_t>(nj));
    // Node k's tile at offset (k + 1) * size, the input's at 0.
    const auto sigma = [&](std::int64_t k) { return ws.sigma.data() + (k + 1) * size; };
    const auto theta = [&](std::int64_t k) { return ws.theta.data() + (k + 1) * size; };
    if (reads_input) input_kernel_tile(x1, i0, ni, x2, j0, nj, d, ws.scratch, sigma(-1), nj);
    if (recurrent >= 0) recurrent_analytic::gather_lanes(x2, j0, nj, d, ws.recurrent.lanes);
    for (std::int64_t k = 0; k < n_nodes; ++k) {
      const AnalyticNode& node = nodes[static_cast<std::size_t>(k)];
      for (std::int64_t i = 0; i < ni; ++i) {
        const double* s_in = sigma(node.input) + i * nj;
        const double* t_in = theta(node.input) + i * nj;
        double* s_out = sigma(k) + i * nj;
        double* t_out = theta(k) + i * nj;
        switch (node.kind) {
          case AnalyticNodeKind::dense: analytic_detail::dense_row(node, standard, opt.ntk, s_in, t_in, nj, s_out, t_out); break;
          case AnalyticNodeKind::activation:
            duals[static_cast<std::size_t>(k)].row(q1[static_cast<std::size_t>((node.input + 1) * n1 + i0 + i)],
                                                   q2.data() + (node.input + 1) * n2 + j0, s_in, nj, s_out,
                                                   ws.dot.data());
            if (opt.ntk)
              for (std::int64_t j = 0; j < nj; ++j) t_out[j] = t_in[j] * ws.dot[static_cast<std::size_t>(j)];
            break;
          case AnalyticNodeKind::residual: {
            const double scale2 = node.scale * node.scale;
            const double* s_skip = sigma(node.skip) + i * nj;
            const double* t_skip = theta(node.skip) + i * nj;
            for (std::int64_t j = 0; j < nj; ++j) {
              s_out[j] = madd(scale2, s_in[j], s_skip[j]);
              t_out[j] = madd(scale2, t_in[j], t_skip[j]);
            }
            break;
          }
          case AnalyticNodeKind::fan_in_prod:
          case AnalyticNodeKind::fan_in_concat: {
            const double* s_skip = sigma(node.skip) + i * nj;
            const double* t_skip = theta(node.skip) + i * nj;
            const double w = node.scale, rest = 1.0 - node.scale;
            const bool prod = node.kind == AnalyticNodeKind::fan_in_prod;
            for (std::int64_t j = 0; j < nj; ++j) {
              const double s = prod ? s_in[j] * s_skip[j] : madd(w, s_in[j], rest * s_skip[j]);
              if (opt.ntk) t_out[j] = prod ? madd(t_in[j], s_skip[j], s_in[j] * t_skip[j]) : madd(w, t_in[j], rest * t_skip[j]);
              s_out[j] = s;
            }
            break;
          }
          case AnalyticNodeKind::identity:
            std::copy(s_in, s_in + nj, s_out);
            std::copy(t_in, t_in + nj, t_out);
            break;
          case AnalyticNodeKind::layer_norm: {
            const double qi = q1[static_cast<std::size_t>((node.input + 1) * n1 + i0 + i)];
            const double* qj = q2.data() + (node.input + 1) * n2 + j0;
            for (std::int64_t j = 0; j < nj; ++j) {
              const double f = analytic_detail::layer_norm_factor(node.eps, qi, qj[j]);
              s_out[j] = s_in[j] * f;
              t_out[j] = t_in[j] * f;
            }
            break;
          }
          case AnalyticNodeKind::recurrent: {
            const recurrent_analytic::StepVariances q{step_q1.data() + i0 + i, n1, step_q2.data() + j0, n2};
            recurrent_analytic::kernel_row(node.cell(), duals[static_cast<std::size_t>(k)], standard, opt.ntk,
                                           x1 + (i0 + i) * d, ws.recurrent.lanes.data(), nj, q, ws.recurrent, s_out,
                                           t_out);
            break;
          }
        }
      }
      const std::int64_t out = slot[static_cast<std::size_t>(k)];
      if (out < 0) continue;
      for (std::int64_t i = 0; i < ni; ++i) {
        if (opt.nngp)
          std::copy(sigma(k) + i * nj, sigma(k) + (i + 1) * nj, nngp_out[static_cast<std::size_t>(out)] + (i0 + i) * n2 + j0);
        if (opt.ntk)
          std::copy(theta(k) + i * nj, theta(k) + (i + 1) * nj, ntk_out[static_cast<std::size_t>(out)] + (i0 + i) * n2 + j0);
      }
    }
  });
  if (symmetric) {
    for (double* out : nngp_out) mirror_upper(out, n1, opt.n_threads);
    for (double* out : ntk_out) mirror_upper(out, n1, opt.n_threads);
  }
}

}  // namespace nnpk
