// Infinite-width kernels (docs/definitions.rst, "Convolutional networks at infinite width") of
// sequential networks with convolutions (transposed ones too), average and sum pooling, global pooling,
// graph aggregation, flattening, dense layers, elementwise activations, layer normalisation,
// self-attention and residual blocks.
//
// For a pair of points (x, x') a node carries the covariances Sigma_{ab} between position a of
// x and position b of x' (and Theta_{ab}). A convolution and an activation map same-position
// entries to same-position entries, so a node whose descendants never pool needs only the
// diagonal a = b ("diagonal" nodes: P numbers per pair); a node feeding a pooling layer carries
// the P x P matrix ("full" nodes). Point i is paired with kLanes points at once, the pair index
// innermost in memory, so every step (the stencils of convolution and pooling, the dual map)
// runs along contiguous runs of lanes. A convolution or pooling acts on each spatial axis in turn
// (its window is a product of the axes' windows, and so is its sum over pairs of positions).
// The per-point variances Sigma(x, x)_{aa} the dual maps need come from the recursion of the
// pair (x, x) itself, computed once per point, so that they equal the kernel's diagonal to the bit.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "nnpk/kernels/analytic.hpp"
#include "nnpk/kernels/analytic_attention.hpp"
#include "nnpk/kernels/dual.hpp"
#include "nnpk/kernels/gram.hpp"
#include "nnpk/network/aggregate.hpp"
#include "nnpk/network/fan_in.hpp"
#include "nnpk/network/spec.hpp"
#include "nnpk/parallel.hpp"

namespace nnpk {

namespace conv_analytic {

// Points paired with point i in one pass: one AVX-512 vector of doubles.
constexpr std::int64_t kLanes = 8;
// The kLanes doubles of one entry as one vector (GCC and Clang vector extensions): its arithmetic is each
// lane's scalar operation, so a loop over lane vectors gives the bits of the loop over lanes.
typedef double LaneVector __attribute__((vector_size(kLanes * sizeof(double))));

// One spatial axis of a convolution's or pooling layer's window.
struct AxisMap {
  std::int64_t n_in = 1, n_out = 1, window = 1, stride = 1, pad = 0;
  bool pool = false;  // average over the window (else: a convolution's taps)
  bool sum = false;   // pool: the sum over the window, not the mean
  bool transposed = false;  // a transposed convolution's taps: the stride dilates the input

  // The input position tap d of output o reads (-1: none, it reads a zero).
  std::int64_t source(std::int64_t o, std::int64_t d) const {
    return SeqNode::tap_source(o, d, stride, pad, n_in, transposed);
  }

  bool identity() const { return n_in == n_out && window == 1 && stride == 1 && pad == 0; }
  // Input positions [lo, hi) of output o's window, inside the input.
  void range(std::int64_t o, std::int64_t& lo, std::int64_t& hi) const {
    lo = std::max<std::int64_t>(o * stride - pad, 0);
    hi = std::min<std::int64_t>(o * stride - pad + window, n_in);
  }
};

// t[k] += s[k] for k < n, n a multiple of kLanes: whole lane vectors, unrolled.
inline void add_lanes(double* t, const double* s, std::int64_t n) {
  for (std::int64_t k0 = 0; k0 < n; k0 += kLanes)
    for (std::int64_t k = 0; k < kLanes; ++k) t[k0 + k] += s[k0 + k];
}

// ceil(a / b) for b > 0 and any sign of a.
inline std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return a >= 0 ? (a + b - 1) / b : -(-a / b); }

// out (outer, n_out, mid, n_out, inner) from in (outer, n_in, mid, n_in, inner), both row-major:
// a convolution sums in[u_d(o), v_d(o')] over its taps d (a tap outside the input adds nothing);
// a pooling layer averages in[u, v] over u in o's window and v in o''s. Each output entry is a sum
// from 0 in a fixed order (taps ascending; see below for pooling), scaled once for a pooling
// layer. inner is a multiple of kLanes.
inline void full_axis_pass(const AxisMap& ax, std::int64_t outer, std::int64_t mid, std::int64_t inner, const double* in,
                           double* out) {
  const std::int64_t n_in = ax.n_in, n_out = ax.n_out;
  for (std::int64_t o = 0; o < outer; ++o)
    for (std::int64_t oa = 0; oa < n_out; ++oa)
      for (std::int64_t m = 0; m < mid; ++m) {
        double* row = out + ((o * n_out + oa) * mid + m) * n_out * inner;
        const double* base = in + o * n_in * mid * n_in * inner + m * n_in * inner;
        const std::int64_t ld_u = mid * n_in * inner;  // one step of u
        if (!ax.pool && ax.transposed) {
          // Tap d pairs output oa's input source(oa, d) with output ob's source(ob, d).
          std::fill(row, row + n_out * inner, 0.0);
          for (std::int64_t d = 0; d < ax.window; ++d) {
            const std::int64_t u = ax.source(oa, d);
            if (u < 0) continue;
            const double* src = base + u * ld_u;
            for (std::int64_t ob = 0; ob < n_out; ++ob) {
              const std::int64_t v = ax.source(ob, d);
              if (v >= 0) add_lanes(row + ob * inner, src + v * inner, inner);
            }
          }
        } else if (!ax.pool) {
          std::fill(row, row + n_out * inner, 0.0);
          for (std::int64_t d = 0; d < ax.window; ++d) {
            const std::int64_t u = oa * ax.stride + d - ax.pad;
            if (u < 0 || u >= n_in) continue;
            // o' whose tap d is inside the input: 0 <= o' stride + d - pad < n_in.
            const std::int64_t lo = std::max<std::int64_t>(0, ceil_div(ax.pad - d, ax.stride));
            const std::int64_t hi = std::min<std::int64_t>(n_out, ceil_div(n_in + ax.pad - d, ax.stride));
            const double* src = base + u * ld_u;
            if (ax.stride == 1) {  // one run over the outputs
              add_lanes(row + lo * inner, src + (lo + d - ax.pad) * inner, (hi - lo) * inner);
            } else {
              for (std::int64_t ob = lo; ob < hi; ++ob)
                add_lanes(row + ob * inner, src + (ob * ax.stride + d - ax.pad) * inner, inner);
            }
          }
        } else {
          std::fill(row, row + n_out * inner, 0.0);
          std::int64_t ua, ub;
          ax.range(oa, ua, ub);
          for (std::int64_t ob = 0; ob < n_out; ++ob) {
            std::int64_t va, vb;
            ax.range(ob, va, vb);
            double* t = row + ob * inner;
            const auto add = [&](std::int64_t u, std::int64_t v) { add_lanes(t, base + u * ld_u + v * inner, inner); };
            // The outer loop runs over the window of the smaller output index, and a square
            // block adds in[u][v] + in[v][u] together: the pair (x', x) then makes the same
            // sums as (x, x'), so the kernel does not depend on the pair's order.
            if (oa < ob) {
              for (std::int64_t u = ua; u < ub; ++u)
                for (std::int64_t v = va; v < vb; ++v) add(u, v);
            } else if (oa > ob) {
              for (std::int64_t v = va; v < vb; ++v)
                for (std::int64_t u = ua; u < ub; ++u) add(u, v);
            } else {
              for (std::int64_t u = ua; u < ub; ++u) {
                add(u, u);
                for (std::int64_t v = u + 1; v < vb; ++v) {
                  const double* s1 = base + u * ld_u + v * inner;
                  const double* s2 = base + v * ld_u + u * inner;
                  for (std::int64_t k = 0; k < inner; ++k) t[k] += s1[k] + s2[k];
                }
              }
            }
            if (ax.sum) continue;
            const double w = 1.0 / static_cast<double>((ub - ua) * (vb - va));
            for (std::int64_t k = 0; k < inner; ++k) t[k] *= w;
          }
        }
      }
}

// The same-position entries only: out (outer, n_out, inner) from in (outer, n_in, inner), a
// convolution's taps in the order full_axis_pass adds them (so a diagonal node's entries equal a
// full node's diagonal to the bit).
inline void diagonal_axis_pass(const AxisMap& ax, std::int64_t outer, std::int64_t inner, const double* in,
                               double* out) {
  for (std::int64_t o = 0; o < outer; ++o)
    for (std::int64_t oa = 0; oa < ax.n_out; ++oa) {
      double* t = out + (o * ax.n_out + oa) * inner;
      std::fill(t, t + inner, 0.0);
      for (std::int64_t d = 0; d < ax.window; ++d) {
        const std::int64_t u = ax.source(oa, d);
        if (u >= 0) add_lanes(t, in + (o * ax.n_in + u) * inner, inner);
      }
    }
}

// A node of the recursion; node 0 is the network's input, node k + 1 the spec's node k.
struct Node {
  NodeKind kind = NodeKind::flatten;  // the input is a node without an operation
  std::int64_t input = -1, skip = -1;
  std::int64_t height = 1, width = 1;  // positions of the node's output
  bool full = false;                   // carries the P x P matrix, else the diagonal
  bool spatial = false;                // a layer kernel averages over all pairs of positions (else the diagonal)
  AxisMap axis_h, axis_w;              // conv, avg_pool, global_avg_pool
  double w_std = 1.0, b_std = 0.0, scale = 1.0;
  bool has_bias = false;
  const SeqNode* merge = nullptr;  // fan_in_concat along a spatial axis: its spec node
  std::int64_t fan_in = 1;
  std::int64_t slot = -1;  // state buffer
  bool variances = false;  // read by an activation: per-point variances kept
  std::int64_t diagonal_copy = -1;  // a full node read by a diagonal one: its diagonal's buffer
  // attention (analytic_attention.hpp): mechanism, linear scaling (per-point weights G), qk, ov2
  int mechanism = 0;
  bool gates = false;
  double qk = 1.0, ov2 = 1.0;
  // attention with positional embeddings: the positions' covariance R (P x P, empty: none), the weights of
  // the input's covariance and of R in the keys' (and, if val_pe, the values') input
  std::vector<double> pos_cov;
  double w_in = 1.0, w_pe = 0.0;
  bool val_pe = false;
  // layer_norm: eps, and whether positions along each axis share their normalisation (channels always do)
  double eps = 0.0;
  bool norm_h = false, norm_w = false;
  // aggregate: the edge weights A (P x P) without the zeros, as lists of (index, weight) in ascending index:
  // into[a] the edges u -> a (A[u][a]), from[v] the edges v -> b (A[v][b]).
  std::vector<std::vector<std::pair<std::int64_t, double>>> into, from;
  // aggregate over each point's own graph (the adjacencies in the points' rows), its columns normalised if mean
  bool per_point = false, mean = false;

  std::int64_t positions() const { return height * width; }
  bool merges() const {
    return kind == NodeKind::residual || kind == NodeKind::fan_in_prod || kind == NodeKind::fan_in_concat;
  }
  // Whether the node reads its input's P x P matrix (else the diagonal): pooling reads what its
  // input carries (the full matrix unless it has one position).
  bool reads_full(const Node& in) const {
    if (kind == NodeKind::attention) return in.full;
    return kind == NodeKind::avg_pool || kind == NodeKind::global_avg_pool || kind == NodeKind::aggregate
               ? in.full
               : full && kind != NodeKind::dense;
  }
  // Doubles per lane of the node's state.
  std::int64_t entries() const { return full ? positions() * positions() : positions(); }
  // An attention node's weights G: P x P per point, whether its output is full or not.
  std::int64_t gate_entries() const { return positions() * positions(); }
};

// The recursion's nodes, modes and buffers for a spec.
struct Plan {
  std::vector<Node> nodes;
  std::vector<std::int64_t> slot_entries;  // doubles per lane of each state slot
  std::int64_t diagonal_entries = 0;       // doubles per lane of all diagonal copies
  std::int64_t temp_entries = 2;           // doubles per lane of the between-axes buffer (a dense node's two means)
  std::int64_t row_entries = 1;            // doubles per lane of a dual map's row
  std::int64_t norm_entries = 0;           // positions of the largest layer normalisation
  std::int64_t input_channels = 1;  // the features of a position
  std::int64_t input_stride = 1;    // the values of a position in a point's row (graph points: and its adjacency's row)

  // Doubles of one thread's workspace.
  std::int64_t workspace_doubles(bool ntk) const {
    std::int64_t states = diagonal_entries + temp_entries;
    for (std::int64_t e : slot_entries) states += e;
    std::int64_t q = 0;
    for (const Node& node : nodes)
      if (node.variances) q += node.positions();
    return kLanes * ((ntk ? 2 : 1) * states + row_entries + q + nodes[0].positions() * input_channels) +
           norm_entries * (1 + 2 * kLanes);
  }
};

inline AxisMap axis(std::int64_t n_in, std::int64_t n_out, std::int64_t window, std::int64_t stride, std::int64_t pad,
                    bool pool, bool sum = false, bool transposed = false) {
  return AxisMap{n_in, n_out, window, stride, pad, pool, sum, transposed};
}

// `requested`: spec node indices whose kernels are written.
inline Plan make_plan(const SequentialSpec& spec, const std::vector<std::int64_t>& requested) {
  Plan plan;
  const auto n = static_cast<std::int64_t>(spec.nodes.size());
  plan.nodes.resize(static_cast<std::size_t>(n + 1));
  Node& input = plan.nodes[0];
  input.height = spec.input.height;
  input.width = spec.input.width;
  input.spatial = spec.input.spatial;
  plan.input_channels = spec.features().channels;
  plan.input_stride = spec.input.channels;
  for (std::int64_t k = 0; k < n; ++k) {
    const SeqNode& s = spec.nodes[static_cast<std::size_t>(k)];
    Node& node = plan.nodes[static_cast<std::size_t>(k + 1)];
    const Node& in = plan.nodes[static_cast<std::size_t>(s.input + 1)];
    node.kind = s.kind;
    node.input = s.input + 1;
    node.skip = s.skip + 1;
    node.spatial = s.out.spatial;
    node.scale = s.scale;
    if (s.kind == NodeKind::fan_in_concat)  // the input's share of the channels
      node.scale = static_cast<double>(s.in.channels) / static_cast<double>(s.out.channels);
    if (s.kind == NodeKind::fan_in_concat && s.concat_axis != 2) {
      node.merge = &s;
      node.height = s.out.height;
      node.width = s.out.width;
      continue;
    }
    node.height = in.height;
    node.width = in.width;
    switch (s.kind) {
      case NodeKind::dense:
        node.height = node.width = 1;
        [[fallthrough]];
      case NodeKind::conv: {
        const DenseLayer& p = spec.params[static_cast<std::size_t>(s.param)];
        node.w_std = p.w_std;
        node.b_std = p.b_std;
        node.has_bias = p.has_bias;
        node.fan_in = p.fan_in;
        if (s.kind == NodeKind::dense) break;
        [[fallthrough]];
      }
      case NodeKind::avg_pool:
        node.height = s.out.height;
        node.width = s.out.width;
        node.axis_h = axis(in.height, s.out.height, s.window_h, s.stride_h, s.pad_h, s.kind == NodeKind::avg_pool,
                           s.pool_sum, s.transposed);
        node.axis_w = axis(in.width, s.out.width, s.window_w, s.stride_w, s.pad_w, s.kind == NodeKind::avg_pool,
                           s.pool_sum, s.transposed);
        break;
      case NodeKind::aggregate: {
        const std::int64_t P = s.in.positions();
        node.per_point = s.per_point;
        node.mean = s.mean;
        if (s.per_point) break;
        node.into.assign(static_cast<std::size_t>(P), {});
        node.from.assign(static_cast<std::size_t>(P), {});
        for (std::int64_t u = 0; u < P; ++u)
          for (std::int64_t v = 0; v < P; ++v) {
            const double w = s.pattern[static_cast<std::size_t>(u * P + v)];
            if (w == 0.0) continue;
            node.into[static_cast<std::size_t>(v)].emplace_back(u, w);
            node.from[static_cast<std::size_t>(u)].emplace_back(v, w);
          }
        break;
      }
      case NodeKind::global_avg_pool:
        node.height = node.width = 1;
        node.axis_h = axis(in.height, 1, in.height, 1, 0, true, s.pool_sum);
        node.axis_w = axis(in.width, 1, in.width, 1, 0, true, s.pool_sum);
        break;
      case NodeKind::max_pool:
        throw std::invalid_argument("max pooling has no analytic kernel");
      case NodeKind::attention: {
        if (!s.tied && s.mechanism != 1)
          throw std::invalid_argument("attention with square-root scaling has an analytic kernel for the identity "
                                      "mechanism only");
        const DenseLayer& o = spec.params[static_cast<std::size_t>(s.param + (s.tied ? 2 : 3))];
        if (s.pos_emb) {  // R = B B^T
          const std::int64_t P = s.in.positions();
          node.pos_cov.assign(static_cast<std::size_t>(P * P), 0.0);
          for (std::int64_t a = 0; a < P; ++a)
            for (std::int64_t b = 0; b < P; ++b) {
              double r = 0.0;
              if (s.pos_basis.empty())
                r = a == b ? 1.0 : 0.0;
              else
                for (std::int64_t j = 0; j < P; ++j)
                  r += s.pos_basis[static_cast<std::size_t>(a * P + j)] * s.pos_basis[static_cast<std::size_t>(b * P + j)];
              node.pos_cov[static_cast<std::size_t>(a * P + b)] = r;
            }
          const double c = static_cast<double>(s.in.channels), e = static_cast<double>(s.pos_channels);
          const double share = s.pos_emb == 2 ? e / (c + e) : 1.0;
          node.w_in = s.pos_emb == 2 ? c / (c + e) : 1.0;
          node.w_pe = s.pe_std * s.pe_std * share;
          node.val_pe = s.val_pos_emb;
        }
        node.mechanism = s.mechanism;
        node.gates = s.tied;
        node.qk = s.k_std * s.q_std;
        node.ov2 = (s.v_std * s.w_std) * (s.v_std * s.w_std);
        node.b_std = o.b_std;
        node.has_bias = o.has_bias;
        break;
      }
      case NodeKind::layer_norm:
        if (!s.norm_channels)
          throw std::invalid_argument("a layer normalisation not over the channels has no analytic kernel");
        node.eps = s.eps;
        // A flattened input's positions are all one point's features: normalised together.
        node.norm_h = s.norm_height || !s.in.spatial;
        node.norm_w = s.norm_width || !s.in.spatial;
        break;
      default: break;
    }
  }
  // Full nodes: those a pooling layer reads, those whose position-averaged kernel is requested,
  // and every node a full convolution, activation, residual or flatten reads.
  std::vector<bool> want(static_cast<std::size_t>(n + 1), false);
  for (std::int64_t k : requested) {
    if (k < 0 || k >= n) throw std::invalid_argument("layers must be node indices below " + std::to_string(n));
    want[static_cast<std::size_t>(k + 1)] = true;
  }
  for (std::int64_t k = n; k >= 0; --k) {
    Node& node = plan.nodes[static_cast<std::size_t>(k)];
    if (node.kind == NodeKind::avg_pool || node.kind == NodeKind::aggregate ||
        (want[static_cast<std::size_t>(k)] && node.spatial))
      node.full = true;
    if (node.positions() == 1) node.full = false;
    if (k == 0) break;
    const bool pools = node.kind == NodeKind::avg_pool || node.kind == NodeKind::global_avg_pool ||
                       node.kind == NodeKind::attention || node.kind == NodeKind::aggregate;
    const bool passes = node.full && node.kind != NodeKind::dense;
    for (std::int64_t r : {node.input, node.merges() ? node.skip : -1}) {
      if (r < 0) continue;
      Node& read = plan.nodes[static_cast<std::size_t>(r)];
      if ((pools || passes) && read.positions() > 1) read.full = true;
    }
  }
  // Variances of the nodes activations read; diagonal copies of full nodes read by diagonal ones.
  for (std::int64_t k = 1; k <= n; ++k) {
    Node& node = plan.nodes[static_cast<std::size_t>(k)];
    if (node.kind == NodeKind::activation || node.kind == NodeKind::layer_norm)
      plan.nodes[static_cast<std::size_t>(node.input)].variances = true;
    for (std::int64_t r : {node.input, node.merges() ? node.skip : -1}) {
      if (r < 0) continue;
      Node& read = plan.nodes[static_cast<std::size_t>(r)];
      if (read.full && !node.reads_full(read) && read.diagonal_copy < 0) {
        read.diagonal_copy = plan.diagonal_entries;
        plan.diagonal_entries += read.positions();
      }
    }
  }
  // State slots by liveness: a node's slot is free once its last reader has run.
  std::vector<std::int64_t> last_use(static_cast<std::size_t>(n + 1), 0);
  for (std::int64_t k = 1; k <= n; ++k) {
    const Node& node = plan.nodes[static_cast<std::size_t>(k)];
    last_use[static_cast<std::size_t>(node.input)] = k;
    if (node.merges()) last_use[static_cast<std::size_t>(node.skip)] = k;
  }
  std::vector<std::int64_t> owner;  // per slot: the node holding it
  for (std::int64_t k = 0; k <= n; ++k) {
    Node& node = plan.nodes[static_cast<std::size_t>(k)];
    std::int64_t slot = -1;
    for (std::size_t s = 0; s < owner.size() && slot < 0; ++s)
      if (last_use[static_cast<std::size_t>(owner[s])] < k) slot = static_cast<std::int64_t>(s);
    if (slot < 0) {
      slot = static_cast<std::int64_t>(owner.size());
      owner.push_back(k);
      plan.slot_entries.push_back(0);
    }
    owner[static_cast<std::size_t>(slot)] = k;
    node.slot = slot;
    plan.slot_entries[static_cast<std::size_t>(slot)] =
        std::max(plan.slot_entries[static_cast<std::size_t>(slot)], node.entries());
    if (k == 0) continue;
    const Node& in = plan.nodes[static_cast<std::size_t>(node.input)];
    if (node.kind == NodeKind::conv || node.kind == NodeKind::avg_pool || node.kind == NodeKind::global_avg_pool) {
      // After the height axis: out height x in width positions.
      const std::int64_t p = node.axis_h.n_out * in.width;
      plan.temp_entries = std::max(plan.temp_entries, node.reads_full(in) ? p * p : p);
    }
    if (node.kind == NodeKind::aggregate) plan.temp_entries = std::max(plan.temp_entries, in.entries());
    if (node.kind == NodeKind::activation) plan.row_entries = std::max(plan.row_entries, in.full ? in.positions() : 1);
    if (node.kind == NodeKind::attention)  // the input's P x P products, Theta + 2 Sigma and the values' Sigma
      plan.temp_entries = std::max(plan.temp_entries, 3 * node.positions() * node.positions());
    if (node.kind == NodeKind::layer_norm) plan.norm_entries = std::max(plan.norm_entries, node.positions());
  }
  return plan;
}

// One thread's buffers: every slot's Sigma and Theta, the diagonal copies, the between-axes
// buffer, a row of Sigma_dot, per node read by an activation or a layer normalisation the lanes'
// variances (position-major: q[p * kLanes + lane]), and a layer normalisation's variances.
struct Workspace {
  std::vector<std::vector<double>> sigma, theta;
  std::vector<double> diag_sigma, diag_theta, temp_sigma, temp_theta, dot, norm;
  std::vector<double> lane_inputs;  // the lanes' input points, lane innermost
  std::vector<std::vector<double>> lane_variances;
  // Per attention node with weights: the lanes' G (entry (a, b) of lane l at [(a P + b) kLanes + l])
  // and point i's (P x P).
  std::vector<std::vector<double>> lane_gates;
  std::vector<const double*> point_gates;
  // The input rows of point i and of the lanes' points (input_kernel), and per-point aggregations' weights:
  // point i's (P x P) and, per aggregation node, the lanes' ((v P + b) kLanes + l) with the rows they
  // were computed from (kept while the lanes stay).
  const double* point_x = nullptr;
  const double* lane_x[kLanes] = {};
  std::vector<double> point_graph, graph_scratch, graph_weights;
  std::vector<std::vector<double>> lane_graphs;
  std::vector<std::vector<const double*>> lane_graph_rows;
  // Point i's edges into each node a ((u, A_i[u][a]), ascending u); per aggregation node, the lanes' edges from
  // each node v (b ascending, with an edge v -> b in some lane).
  std::vector<std::vector<std::pair<std::int64_t, double>>> point_into;
  std::vector<std::vector<std::vector<std::int64_t>>> lane_from;

  Workspace(const Plan& plan, bool ntk) {
    for (std::int64_t e : plan.slot_entries) {
      sigma.emplace_back(static_cast<std::size_t>(e * kLanes));
      theta.emplace_back(ntk ? static_cast<std::size_t>(e * kLanes) : 0);
    }
    diag_sigma.resize(static_cast<std::size_t>(plan.diagonal_entries * kLanes));
    diag_theta.resize(ntk ? diag_sigma.size() : 0);
    temp_sigma.resize(static_cast<std::size_t>(plan.temp_entries * kLanes));
    temp_theta.resize(ntk ? temp_sigma.size() : 0);
    dot.resize(static_cast<std::size_t>(plan.row_entries * kLanes));
    norm.resize(static_cast<std::size_t>(plan.norm_entries * (1 + 2 * kLanes)));
    lane_inputs.resize(static_cast<std::size_t>(plan.nodes[0].positions() * plan.input_channels * kLanes));
    for (const Node& node : plan.nodes) {
      lane_variances.emplace_back(node.variances ? static_cast<std::size_t>(node.positions() * kLanes) : 0);
      lane_gates.emplace_back(node.gates ? static_cast<std::size_t>(node.gate_entries() * kLanes) : 0);
    }
    point_gates.assign(plan.nodes.size(), nullptr);
    lane_graphs.resize(plan.nodes.size());
    lane_graph_rows.resize(plan.nodes.size());
    lane_from.resize(plan.nodes.size());
  }
};

struct Engine {
  const Plan& plan;
  std::vector<DualMap> duals;  // per node (identity where not an activation)
  bool standard = false;

  // Node k's state for readers of mode `full`: its own buffer, or its diagonal copy.
  const double* state(Workspace& ws, std::int64_t k, bool theta, bool full) const {
    const Node& node = plan.nodes[static_cast<std::size_t>(k)];
    if (node.full && !full)
      return (theta ? ws.diag_theta : ws.diag_sigma).data() + node.diagonal_copy * kLanes;
    return (theta ? ws.theta : ws.sigma)[static_cast<std::size_t>(node.slot)].data();
  }
  double* own(Workspace& ws, const Node& node, bool theta) const {
    return (theta ? ws.theta : ws.sigma)[static_cast<std::size_t>(node.slot)].data();
  }

  // The lanes' inputs for input_kernel, transposed: ws.lane_inputs[(p c + ch) kLanes + l] = channel ch of position p of lane l.
  // (A graph point's row of a position holds its channels, then its adjacency row: plan.input_stride values.)
  void load_lanes(Workspace& ws, const double* const* lanes) const {
    const std::int64_t positions = plan.nodes[0].positions(), c = plan.input_channels, stride = plan.input_stride;
    double* dst = ws.lane_inputs.data();
    for (std::int64_t p = 0; p < positions; ++p)
      for (std::int64_t ch = 0; ch < c; ++ch)
        for (std::int64_t l = 0; l < kLanes; ++l) dst[(p * c + ch) * kLanes + l] = lanes[l][p * stride + ch];
    for (std::int64_t l = 0; l < kLanes; ++l) ws.lane_x[l] = lanes[l];
  }

  // Sigma^0 of point xi against the lanes' points loaded by load_lanes (and Theta^0 = 0): each entry the
  // sum over the channels in ascending order of the products, times 1 / c. All lanes at once, 4 x 4
  // entries per pass over the channels (16 vector accumulators).
  void input_kernel(Workspace& ws, const double* xi, bool ntk) const {
    const Node& node = plan.nodes[0];
    const std::int64_t positions = node.positions(), c = plan.input_channels, stride = plan.input_stride;
    const double inv_c = 1.0 / static_cast<double>(c);
    ws.point_x = xi;
    const double* xl = ws.lane_inputs.data();
    double* out = own(ws, node, false);
    if (!node.full) {
      for (std::int64_t a = 0; a < positions; ++a)
        input_block<1, 1>(xi + a * stride, stride, xl + a * c * kLanes, c, inv_c, 0, out + a * kLanes);
    } else {
      const std::int64_t ld = positions * kLanes;  // one row a of the output
      std::int64_t a = 0;
      for (; a + 4 <= positions; a += 4) input_row<4>(xi + a * stride, stride, xl, positions, c, inv_c, ld, out + a * ld);
      for (; a < positions; ++a) input_row<1>(xi + a * stride, stride, xl, positions, c, inv_c, ld, out + a * ld);
    }
    if (ntk) std::fill(own(ws, node, true), own(ws, node, true) + node.entries() * kLanes, 0.0);
  }
  // Rows [a, a + A) of a full input kernel: xa point i's rows (sx values apart), out row a's first entry.
  template <int A>
  static void input_row(const double* xa, std::int64_t sx, const double* xl, std::int64_t positions, std::int64_t c,
                        double inv_c, std::int64_t ld, double* out) {
    std::int64_t b = 0;
    for (; b + 4 <= positions; b += 4) input_block<A, 4>(xa, sx, xl + b * c * kLanes, c, inv_c, ld, out + b * kLanes);
    for (; b < positions; ++b) input_block<A, 1>(xa, sx, xl + b * c * kLanes, c, inv_c, ld, out + b * kLanes);
  }
  // Entries (a, b) for a < A, b < B: sum_ch xa[a sx + ch] * xl[(b c + ch) kLanes + lane], in ascending ch, times
  // inv_c, at out[a ld + b kLanes + lane]. Whole lane vectors (per lane the scalar operations, in order).
  template <int A, int B>
  static void input_block(const double* xa, std::int64_t sx, const double* xl, std::int64_t c, double inv_c,
                          std::int64_t ld, double* out) {
    LaneVector acc[A][B] = {};
    for (std::int64_t ch = 0; ch < c; ++ch) {
      LaneVector y[B];
      for (int b = 0; b < B; ++b) std::memcpy(&y[b], xl + (b * c + ch) * kLanes, sizeof(LaneVector));
      for (int a = 0; a < A; ++a) {
        const double x = xa[a * sx + ch];
        for (int b = 0; b < B; ++b) acc[a][b] += x * y[b];
      }
    }
    for (int a = 0; a < A; ++a)
      for (int b = 0; b < B; ++b) {
        const LaneVector v = acc[a][b] * inv_c;
        std::memcpy(out + a * ld + b * kLanes, &v, sizeof(LaneVector));
      }
  }

  // The two axes of a convolution or pooling node: in -> temp (height), then temp -> out
  // (width) one output row at a time (row o of h_out: out's doubles [o, o + 1) * size / h_out).
  void height_pass(const Node& node, const Node& in, const double* src, double* temp) const {
    const std::int64_t w = in.width;
    if (node.reads_full(in))
      full_axis_pass(node.axis_h, 1, w, w * kLanes, src, temp);
    else
      diagonal_axis_pass(node.axis_h, 1, w * kLanes, src, temp);
  }
  void width_pass(const Node& node, const Node& in, const double* temp, double* out, std::int64_t o) const {
    const std::int64_t h_out = node.axis_h.n_out, w_in = in.width, w_out = node.axis_w.n_out;
    if (node.reads_full(in))
      full_axis_pass(node.axis_w, 1, h_out, kLanes, temp + o * w_in * h_out * w_in * kLanes,
                     out + o * w_out * h_out * w_out * kLanes);
    else
      diagonal_axis_pass(node.axis_w, 1, kLanes, temp + o * w_in * kLanes, out + o * w_out * kLanes);
  }

  // Computes node k for point i against the lanes. q1: point i's variances at each node (null
  // where not kept); the lanes' variances are in ws.lane_variances.
  void node_step(Workspace& ws, std::int64_t k, const std::vector<const double*>& q1, bool ntk) const {
    const Node& node = plan.nodes[static_cast<std::size_t>(k)];
    const Node& in = plan.nodes[static_cast<std::size_t>(node.input)];
    const std::int64_t size = node.entries() * kLanes;
    double* s_out = own(ws, node, false);
    double* t_out = ntk ? own(ws, node, true) : nullptr;
    switch (node.kind) {
      case NodeKind::conv:
      case NodeKind::avg_pool:
      case NodeKind::global_avg_pool: {
        // Both kernels' height passes, then per output row both width passes and the
        // convolution's scaling while the row is in cache.
        const bool full = node.reads_full(in), theta = ntk && node.input != 0;
        if (node.kind == NodeKind::conv && node.axis_h.identity() && node.axis_w.identity() &&
            !node.axis_h.transposed && !node.axis_w.transposed) {
          pointwise_conv(node, state(ws, node.input, false, full), theta ? state(ws, node.input, true, full) : nullptr,
                         size, ntk, s_out, t_out);
          break;
        }
        height_pass(node, in, state(ws, node.input, false, full), ws.temp_sigma.data());
        if (theta) height_pass(node, in, state(ws, node.input, true, full), ws.temp_theta.data());
        if (ntk && !theta) std::fill(t_out, t_out + size, 0.0);  // Theta^0 = 0
        const double taps = static_cast<double>(node.axis_h.window * node.axis_w.window);
        const double w2 = node.w_std * node.w_std / taps, b2 = node.has_bias ? node.b_std * node.b_std : 0.0;
        const double fan_in = static_cast<double>(node.fan_in) / taps, bias_share = node.has_bias ? 1.0 : 0.0;
        const std::int64_t rows = node.axis_h.n_out, chunk = size / rows;
        for (std::int64_t o = 0; o < rows; ++o) {
          width_pass(node, in, ws.temp_sigma.data(), s_out, o);
          if (theta) width_pass(node, in, ws.temp_theta.data(), t_out, o);
          if (node.kind != NodeKind::conv) continue;
          // s_out, t_out hold the sums over the window's taps.
          for (std::int64_t e = o * chunk; e < (o + 1) * chunk; ++e) {
            const double pre = w2 * s_out[e] + b2;
            if (ntk) t_out[e] = standard ? fan_in * s_out[e] + w2 * t_out[e] + bias_share : pre + w2 * t_out[e];
            s_out[e] = pre;
          }
        }
        break;
      }
      case NodeKind::dense: {
        // A flattened input: the mean of its same-position entries.
        const std::int64_t positions = in.positions();
        const double inv = 1.0 / static_cast<double>(positions);
        for (int kernel = 0; kernel < (ntk ? 2 : 1); ++kernel) {
          const double* src = state(ws, node.input, kernel == 1, false);
          double* dst = ws.temp_sigma.data() + kernel * kLanes;  // (2 x kLanes) <= temp
          std::fill(dst, dst + kLanes, 0.0);
          for (std::int64_t p = 0; p < positions; ++p)
            for (std::int64_t l = 0; l < kLanes; ++l) dst[l] += src[p * kLanes + l];
          for (std::int64_t l = 0; l < kLanes; ++l) dst[l] *= inv;
        }
        AnalyticNode dense;
        dense.fan_in = node.fan_in;
        dense.w_std = node.w_std;
        dense.b_std = node.b_std;
        dense.has_bias = node.has_bias;
        analytic_detail::dense_row(dense, standard, ntk, ws.temp_sigma.data(), ws.temp_sigma.data() + kLanes, kLanes,
                                   s_out, ntk ? t_out : ws.temp_sigma.data() + kLanes);
        break;
      }
      case NodeKind::activation: {
        const DualMap& dual = duals[static_cast<std::size_t>(k)];
        const double* s_in = state(ws, node.input, false, node.full);
        const double* t_in = ntk ? state(ws, node.input, true, node.full) : nullptr;
        const double* q_lanes = ws.lane_variances[static_cast<std::size_t>(node.input)].data();
        const double* qi = q1[static_cast<std::size_t>(node.input)];
        const std::int64_t positions = node.positions();
        // Row a: (position a of point i) x (every position b, every lane) when full, else (a, a).
        const std::int64_t row = node.full ? positions * kLanes : kLanes;
        for (std::int64_t a = 0; a < positions; ++a) {
          const std::int64_t at = a * row;
          dual.row(qi[a], q_lanes + (node.full ? 0 : a * kLanes), s_in + at, row, s_out + at, ws.dot.data());
          if (ntk)
            for (std::int64_t e = 0; e < row; ++e) t_out[at + e] = t_in[at + e] * ws.dot[static_cast<std::size_t>(e)];
        }
        break;
      }
      case NodeKind::residual: {
        const double scale2 = node.scale * node.scale;
        for (int kernel = 0; kernel < (ntk ? 2 : 1); ++kernel) {
          const double* block = state(ws, node.input, kernel == 1, node.full);
          const double* skip = state(ws, node.skip, kernel == 1, node.full);
          double* dst = kernel == 1 ? t_out : s_out;
          for (std::int64_t e = 0; e < size; ++e) dst[e] = madd(scale2, block[e], skip[e]);
        }
        break;
      }
      case NodeKind::aggregate:
        if (node.per_point) point_graphs(ws, node);
        for (int kernel = 0; kernel < (ntk ? 2 : 1); ++kernel)
          if (node.per_point)
            point_aggregate_pass(ws, node, state(ws, node.input, kernel == 1, node.reads_full(in)),
                                 (kernel == 1 ? ws.temp_theta : ws.temp_sigma).data(), kernel == 1 ? t_out : s_out);
          else
            aggregate_pass(node, state(ws, node.input, kernel == 1, node.reads_full(in)),
                           (kernel == 1 ? ws.temp_theta : ws.temp_sigma).data(), kernel == 1 ? t_out : s_out);
        break;
      case NodeKind::fan_in_prod:
      case NodeKind::fan_in_concat: {
        if (node.merge) {
          concat_positions(ws, node, ntk);
          break;
        }
        const double* s_a = state(ws, node.input, false, node.full);
        const double* s_b = state(ws, node.skip, false, node.full);
        const double w = node.scale, rest = 1.0 - node.scale;
        if (node.kind == NodeKind::fan_in_prod) {
          if (ntk) {
            const double* t_a = state(ws, node.input, true, node.full);
            const double* t_b = state(ws, node.skip, true, node.full);
            for (std::int64_t e = 0; e < size; ++e) t_out[e] = madd(t_a[e], s_b[e], s_a[e] * t_b[e]);
          }
          for (std::int64_t e = 0; e < size; ++e) s_out[e] = s_a[e] * s_b[e];
          break;
        }
        if (ntk) {
          const double* t_a = state(ws, node.input, true, node.full);
          const double* t_b = state(ws, node.skip, true, node.full);
          for (std::int64_t e = 0; e < size; ++e) t_out[e] = madd(w, t_a[e], rest * t_b[e]);
        }
        for (std::int64_t e = 0; e < size; ++e) s_out[e] = madd(w, s_a[e], rest * s_b[e]);
        break;
      }
      case NodeKind::flatten:
        for (int kernel = 0; kernel < (ntk ? 2 : 1); ++kernel) {
          const double* src = state(ws, node.input, kernel == 1, node.full);
          std::copy(src, src + size, kernel == 1 ? t_out : s_out);
        }
        break;
      case NodeKind::attention: attention_step(ws, node, ntk); break;
      case NodeKind::layer_norm:
        layer_norm_step(ws, node, q1[static_cast<std::size_t>(node.input)], ntk, s_out, t_out);
        break;
      case NodeKind::max_pool: break;  // refused by make_plan
    }
    if (node.diagonal_copy >= 0) copy_diagonal(ws, node, ntk);
  }

  // A convolution with one tap per axis, stride 1 and no padding: each output entry its input entry, with the
  // arithmetic of the passes above (a sum of one tap from 0, then the scaling), without the passes.
  // t_in: null when Theta^0 = 0.
  void pointwise_conv(const Node& node, const double* s_in, const double* t_in, std::int64_t size, bool ntk,
                      double* s_out, double* t_out) const {
    const double w2 = node.w_std * node.w_std, b2 = node.has_bias ? node.b_std * node.b_std : 0.0;
    const double fan_in = static_cast<double>(node.fan_in), bias_share = node.has_bias ? 1.0 : 0.0;
    // Whole lane vectors (size is a multiple of kLanes), per lane the scalar operations.
    for (std::int64_t e = 0; e < size; e += kLanes) {
      LaneVector sum, t = {};
      std::memcpy(&sum, s_in + e, sizeof(LaneVector));
      sum = 0.0 + sum;
      const LaneVector pre = w2 * sum + b2;
      if (ntk) {
        if (t_in) {
          std::memcpy(&t, t_in + e, sizeof(LaneVector));
          t = 0.0 + t;
        }
        const LaneVector theta = standard ? fan_in * sum + w2 * t + bias_share : pre + w2 * t;
        std::memcpy(t_out + e, &theta, sizeof(LaneVector));
      }
      std::memcpy(s_out + e, &pre, sizeof(LaneVector));
    }
  }

  // A concatenation along a spatial axis: each output position is a position of one branch; pairs of
  // positions of one branch keep that branch's covariance, pairs across branches have none (the
  // branches are independent).
  void concat_positions(Workspace& ws, const Node& node, bool ntk) const {
    const SeqNode& s = *node.merge;
    const std::int64_t P = node.positions();
    const std::int64_t Pa = plan.nodes[static_cast<std::size_t>(node.input)].positions();
    const std::int64_t Pb = plan.nodes[static_cast<std::size_t>(node.skip)].positions();
    std::vector<std::int64_t> src(static_cast<std::size_t>(P));
    std::vector<char> from_b(static_cast<std::size_t>(P));
    for (std::int64_t p = 0; p < P; ++p) {
      bool b;
      fan_in::position_source(s, p, b, src[static_cast<std::size_t>(p)]);
      from_b[static_cast<std::size_t>(p)] = b;
    }
    for (int kernel = 0; kernel < (ntk ? 2 : 1); ++kernel) {
      const double* a = state(ws, node.input, kernel == 1, node.full);
      const double* b = state(ws, node.skip, kernel == 1, node.full);
      double* dst = own(ws, node, kernel == 1);
      for (std::int64_t p = 0; p < P; ++p) {
        const bool pb = from_b[static_cast<std::size_t>(p)];
        const std::int64_t sp = src[static_cast<std::size_t>(p)], n = pb ? Pb : Pa;
        const double* branch = pb ? b : a;
        if (!node.full) {
          std::copy(branch + sp * kLanes, branch + (sp + 1) * kLanes, dst + p * kLanes);
          continue;
        }
        for (std::int64_t q = 0; q < P; ++q) {
          double* t = dst + (p * P + q) * kLanes;
          if (from_b[static_cast<std::size_t>(q)] != pb) {
            std::fill(t, t + kLanes, 0.0);
            continue;
          }
          const double* f = branch + (sp * n + src[static_cast<std::size_t>(q)]) * kLanes;
          std::copy(f, f + kLanes, t);
        }
      }
    }
  }

  // analytic_attention.hpp's maps; the input is full (make_plan).
  void attention_step(Workspace& ws, const Node& node, bool ntk) const {
    namespace aa = attention_analytic;
    const std::int64_t P = node.positions(), size = node.entries() * kLanes;
    const double* s_in = state(ws, node.input, false, true);
    const double* t_in = ntk ? state(ws, node.input, true, true) : nullptr;
    double* s_out = own(ws, node, false);
    double* t_out = ntk ? own(ws, node, true) : nullptr;
    const double b2 = node.has_bias ? node.b_std * node.b_std : 0.0;
    if (node.gates) {
      const std::size_t k = static_cast<std::size_t>(&node - plan.nodes.data());
      const double* Gi = ws.point_gates[k];
      const double* Gl = ws.lane_gates[k].data();
      double* temp = ws.temp_sigma.data();
      const double* sv = s_in;  // the values' input covariance
      const std::int64_t in_size = P * P * kLanes;  // the input is full
      const bool mix = node.val_pe && !node.pos_cov.empty();
      if (mix) {  // w_in Sigma + w_pe R, before the output's Sigma may overwrite the input's slot
        double* m = temp + 2 * in_size;
        for (std::int64_t e = 0; e < in_size; ++e)
          m[e] = node.w_in * s_in[e] + node.w_pe * node.pos_cov[static_cast<std::size_t>(e / kLanes)];
        sv = m;
      }
      if (ntk) {  // Theta + 2 Sigma first: the output's Sigma may share the input's slot
        double* sum = temp + in_size;
        for (std::int64_t e = 0; e < in_size; ++e) {
          const double t =
              mix ? node.w_in * t_in[e] + node.w_pe * node.pos_cov[static_cast<std::size_t>(e / kLanes)] : t_in[e];
          sum[e] = t + 2.0 * sv[e];
        }
        aa::sandwich<kLanes>(Gi, Gl, sum, P, node.ov2, b2, temp, t_out, node.full);
      }
      aa::sandwich<kLanes>(Gi, Gl, sv, P, node.ov2, b2, temp, s_out, node.full);
      return;
    }
    const double c = node.qk * node.qk * node.ov2;
    if (!node.pos_cov.empty()) {
      positional_identity_step(node, s_in, t_in, s_out, t_out, c, b2, size, P);
      return;
    }
    double s[kLanes], t[kLanes];
    aa::entry_dot<kLanes>(s_in, s_in, P, s);
    if (ntk) aa::entry_dot<kLanes>(s_in, t_in, P, t);
    // Output entry e reads the input's entry (a, b), or (a, a) for a diagonal output.
    for (std::int64_t e = 0; e < size; e += kLanes) {
      const std::int64_t from = node.full ? e : (e / kLanes) * (P + 1) * kLanes;
      for (std::int64_t l = 0; l < kLanes; ++l) {
        const double sig = s_in[from + l];
        if (ntk) t_out[e + l] = c * (2.0 * t[l] * sig + s[l] * (t_in[from + l] + 4.0 * sig)) + b2;
        s_out[e + l] = c * s[l] * sig + b2;
      }
    }
  }

  // The identity mechanism with square-root scaling and positional embeddings (analytic_attention.hpp):
  // the keys and queries read S~ = w_in Sigma + w_pe R (T~ = w_in Theta + w_pe R), the values S~ and T~ if
  // val_pe, else Sigma and Theta (Sv, Tv); with s = sum S~ Sv and u = sum T~ Sv + sum S~ Tv over the
  // input's P x P entries, Sigma' = c s S~ + b2 and Theta' = c (u S~ + s (T~ + 4 S~)) + b2.
  void positional_identity_step(const Node& node, const double* s_in, const double* t_in, double* s_out,
                                double* t_out, double c, double b2, std::int64_t size, std::int64_t P) const {
    const auto mixed = [&](const double* k, std::int64_t e) {
      return node.w_in * k[e] + node.w_pe * node.pos_cov[static_cast<std::size_t>(e / kLanes)];
    };
    double s[kLanes] = {}, u[kLanes] = {};
    for (std::int64_t e = 0; e < P * P * kLanes; e += kLanes)
      for (std::int64_t l = 0; l < kLanes; ++l) {
        const double sk = mixed(s_in, e + l), sv = node.val_pe ? sk : s_in[e + l];
        s[l] += sk * sv;
        if (t_out) {
          const double tk = mixed(t_in, e + l), tv = node.val_pe ? tk : t_in[e + l];
          u[l] += tk * sv + sk * tv;
        }
      }
    for (std::int64_t e = 0; e < size; e += kLanes) {
      const std::int64_t from = node.full ? e : (e / kLanes) * (P + 1) * kLanes;
      for (std::int64_t l = 0; l < kLanes; ++l) {
        const double sk = mixed(s_in, from + l);
        if (t_out) t_out[e + l] = c * (u[l] * sk + s[l] * (mixed(t_in, from + l) + 4.0 * sk)) + b2;
        s_out[e + l] = c * s[l] * sk + b2;
      }
    }
  }

  // Layer normalisation over the channels (and the positions of each group): entry (a, b) times
  // r_a r'_b, r_a = 1 / sqrt(eps + v_a), v_a point i's variance at position a averaged over a's group,
  // r'_b the lane's (the product r_a r'_b formed first, so that the pair (x', x) gives the same bits).
  // qi: point i's variances of the input node.
  void layer_norm_step(Workspace& ws, const Node& node, const double* qi, bool ntk, double* s_out,
                       double* t_out) const {
    const std::int64_t positions = node.positions();
    double* r1 = ws.norm.data();
    double* r2 = r1 + positions;
    double* sums = r2 + positions * kLanes;
    inverse_deviations(node, qi, 1, sums, r1);
    inverse_deviations(node, ws.lane_variances[static_cast<std::size_t>(node.input)].data(), kLanes, sums, r2);
    for (int kernel = 0; kernel < (ntk ? 2 : 1); ++kernel) {
      const double* src = state(ws, node.input, kernel == 1, node.full);
      double* dst = kernel == 1 ? t_out : s_out;
      for (std::int64_t a = 0; a < positions; ++a) {
        const std::int64_t b0 = node.full ? 0 : a, b1 = node.full ? positions : a + 1;
        const double ra = r1[a];
        for (std::int64_t b = b0; b < b1; ++b) {  // whole lane vectors: per lane src * (r1[a] r2[b])
          const std::int64_t at = (node.full ? a * positions + b : a) * kLanes;
          LaneVector x, r;
          std::memcpy(&x, src + at, sizeof(LaneVector));
          std::memcpy(&r, r2 + b * kLanes, sizeof(LaneVector));
          x *= ra * r;
          std::memcpy(dst + at, &x, sizeof(LaneVector));
        }
      }
    }
  }

  // out[p * lanes + l] = 1 / sqrt(eps + the mean of q[. * lanes + l] over the positions of p's group),
  // the positions summed in ascending order into `sums`, for a layer normalisation node.
  static void inverse_deviations(const Node& node, const double* q, std::int64_t lanes, double* sums, double* out) {
    const std::int64_t gw = node.norm_w ? 1 : node.width;
    const std::int64_t groups = (node.norm_h ? 1 : node.height) * gw;
    const std::int64_t positions = node.positions(), count = positions / groups;
    const auto group = [&](std::int64_t p) {
      return (node.norm_h ? 0 : p / node.width) * gw + (node.norm_w ? 0 : p % node.width);
    };
    std::fill(sums, sums + groups * lanes, 0.0);
    for (std::int64_t p = 0; p < positions; ++p)
      for (std::int64_t l = 0; l < lanes; ++l) sums[group(p) * lanes + l] += q[p * lanes + l];
    const double inv = 1.0 / static_cast<double>(count);
    for (std::int64_t k = 0; k < groups * lanes; ++k) sums[k] = 1.0 / std::sqrt(node.eps + sums[k] * inv);
    for (std::int64_t p = 0; p < positions; ++p)
      for (std::int64_t l = 0; l < lanes; ++l) out[p * lanes + l] = sums[group(p) * lanes + l];
  }

  // An aggregation's covariances (P x P x lanes, position a of x, b of x'):
  // out[a][b] = sum_v (sum_u A[u][a] in[u][v]) A[v][b], the zero weights skipped, each sum in ascending u
  // (or v). Both passes add whole contiguous rows: temp[a] += A[u][a] in[u] (P lanes vectors), then
  // out[a][b] += A[v][b] temp[a][v] over the edges from v. One position (P = 1) is a 1 x 1 pattern.
  // A per-point aggregation's weights of point i and of the lanes' points, from their input rows.
  void point_graphs(Workspace& ws, const Node& node) const {
    const std::int64_t P = node.positions();
    const auto k = static_cast<std::size_t>(&node - plan.nodes.data());
    ws.point_graph.resize(static_cast<std::size_t>(P * P));
    ws.graph_scratch.resize(static_cast<std::size_t>(P * P));
    ws.graph_weights.resize(static_cast<std::size_t>(P * P));
    graph_adjacency(ws.point_x, P, plan.input_stride, ws.graph_scratch.data());
    graph_weights(ws.graph_scratch.data(), P, node.mean, ws.point_graph.data());
    ws.point_into.resize(static_cast<std::size_t>(P));
    for (std::int64_t a = 0; a < P; ++a) {
      auto& into = ws.point_into[static_cast<std::size_t>(a)];
      into.clear();
      for (std::int64_t u = 0; u < P; ++u) {
        const double w = ws.point_graph[static_cast<std::size_t>(u * P + a)];
        if (w != 0.0) into.emplace_back(u, w);
      }
    }
    std::vector<const double*>& rows = ws.lane_graph_rows[k];
    if (rows.size() == static_cast<std::size_t>(kLanes) && std::equal(rows.begin(), rows.end(), ws.lane_x)) return;
    rows.assign(ws.lane_x, ws.lane_x + kLanes);
    std::vector<double>& lanes = ws.lane_graphs[k];
    lanes.resize(static_cast<std::size_t>(P * P * kLanes));
    for (std::int64_t l = 0; l < kLanes; ++l) {
      graph_adjacency(ws.lane_x[l], P, plan.input_stride, ws.graph_scratch.data());
      graph_weights(ws.graph_scratch.data(), P, node.mean, ws.graph_weights.data());
      for (std::int64_t e = 0; e < P * P; ++e)
        lanes[static_cast<std::size_t>(e * kLanes + l)] = ws.graph_weights[static_cast<std::size_t>(e)];
    }
    auto& from = ws.lane_from[k];
    from.assign(static_cast<std::size_t>(P), {});
    for (std::int64_t v = 0; v < P; ++v)
      for (std::int64_t b = 0; b < P; ++b) {
        const double* w = lanes.data() + (v * P + b) * kLanes;
        if (std::any_of(w, w + kLanes, [](double x) { return x != 0.0; }))
          from[static_cast<std::size_t>(v)].push_back(b);
      }
  }

  // A per-point aggregation: out[a][b] = sum_v (sum_u A_i[u][a] in[u][v]) A_l[v][b], A_i point i's weights and
  // A_l lane l's, each sum in ascending u (or v), an edge absent from every lane skipped.
  void point_aggregate_pass(const Workspace& ws, const Node& node, const double* in, double* temp, double* out) const {
    const std::int64_t P = node.positions(), row = P * kLanes;
    const auto k = static_cast<std::size_t>(&node - plan.nodes.data());
    const double* Al = ws.lane_graphs[k].data();
    aggregate_rows_pass(ws.point_into, P, in, temp);
    std::fill(out, out + P * row, 0.0);
    for (std::int64_t a = 0; a < P; ++a)
      for (std::int64_t v = 0; v < P; ++v) {
        const double* src = temp + (a * P + v) * kLanes;
        double* o = out + a * row;
        for (std::int64_t b : ws.lane_from[k][static_cast<std::size_t>(v)]) {
          const double* w = Al + (v * P + b) * kLanes;
          for (std::int64_t l = 0; l < kLanes; ++l) o[b * kLanes + l] += w[l] * src[l];
        }
      }
  }

  // The first half of both aggregation passes: temp[a] = sum over the edges (u, w) into node a of w in[u], whole
  // rows of P lane vectors, in ascending u.
  template <class Edges>
  static void aggregate_rows_pass(const Edges& into, std::int64_t P, const double* in, double* temp) {
    const std::int64_t row = P * kLanes;
    for (std::int64_t a = 0; a < P; ++a) {
      double* t = temp + a * row;
      std::fill(t, t + row, 0.0);
      for (const auto& [u, w] : into[static_cast<std::size_t>(a)]) {
        const double* src = in + u * row;
        for (std::int64_t e = 0; e < row; ++e) t[e] += w * src[e];
      }
    }
  }

  void aggregate_pass(const Node& node, const double* in, double* temp, double* out) const {
    const std::int64_t P = node.positions(), row = P * kLanes;
    aggregate_rows_pass(node.into, P, in, temp);
    std::fill(out, out + P * row, 0.0);
    for (std::int64_t a = 0; a < P; ++a)
      for (std::int64_t v = 0; v < P; ++v) {
        const double* src = temp + (a * P + v) * kLanes;
        double* o = out + a * row;
        for (const auto& [b, w] : node.from[static_cast<std::size_t>(v)])
          for (std::int64_t l = 0; l < kLanes; ++l) o[b * kLanes + l] += w * src[l];
      }
  }

  void copy_diagonal(Workspace& ws, const Node& node, bool ntk) const {
    const std::int64_t positions = node.positions();
    for (int kernel = 0; kernel < (ntk ? 2 : 1); ++kernel) {
      const double* src = own(ws, node, kernel == 1);
      double* dst = (kernel == 1 ? ws.diag_theta : ws.diag_sigma).data() + node.diagonal_copy * kLanes;
      for (std::int64_t p = 0; p < positions; ++p)
        std::copy(src + (p * positions + p) * kLanes, src + (p * positions + p + 1) * kLanes, dst + p * kLanes);
    }
  }

  // Node k's layer kernel per lane: a flat node's value; the mean over all pairs of positions of
  // a spatial node (the kernel of its features averaged over positions); the mean over the
  // same-position pairs of a flattened one.
  void layer_kernel(Workspace& ws, std::int64_t k, bool theta, double* out) const {
    const Node& node = plan.nodes[static_cast<std::size_t>(k)];
    const double* src = own(ws, node, theta);
    const std::int64_t positions = node.positions();
    std::fill(out, out + kLanes, 0.0);
    if (node.spatial) {  // in the order the pooling pass sums a square block
      for (std::int64_t a = 0; a < positions; ++a) {
        const double* diagonal = src + (a * positions + a) * kLanes;
        for (std::int64_t l = 0; l < kLanes; ++l) out[l] += diagonal[l];
        for (std::int64_t b = a + 1; b < positions; ++b) {
          const double* s1 = src + (a * positions + b) * kLanes;
          const double* s2 = src + (b * positions + a) * kLanes;
          for (std::int64_t l = 0; l < kLanes; ++l) out[l] += s1[l] + s2[l];
        }
      }
      for (std::int64_t l = 0; l < kLanes; ++l) out[l] *= 1.0 / static_cast<double>(positions * positions);
      return;
    }
    const std::int64_t stride = node.full ? positions + 1 : 1;
    for (std::int64_t p = 0; p < positions; ++p)
      for (std::int64_t l = 0; l < kLanes; ++l) out[l] += src[p * stride * kLanes + l];
    for (std::int64_t l = 0; l < kLanes; ++l) out[l] *= 1.0 / static_cast<double>(positions);
  }

  // ws.lane_gates[k] from lane l's G (P x P) at point(l).
  template <class Point>
  void set_lane_gates(Workspace& ws, std::int64_t k, Point&& point) const {
    const std::int64_t entries = plan.nodes[static_cast<std::size_t>(k)].gate_entries();
    double* dst = ws.lane_gates[static_cast<std::size_t>(k)].data();
    for (std::int64_t l = 0; l < kLanes; ++l) {
      const double* G = point(l);
      for (std::int64_t e = 0; e < entries; ++e) dst[e * kLanes + l] = G[e];
    }
  }

  // Point k's variances at each node that keeps them (var[node][point * positions + p]), from the
  // recursion of the pair (x_k, x_k).
  // With the attention weights G(x_k) of each attention node with weights (gates[node][point * P^2 + entry]).
  void variances(const double* x, std::int64_t n, std::int64_t d, int n_threads, std::vector<std::vector<double>>& var,
                 std::vector<std::vector<double>>& gates) const {
    const auto n_nodes = static_cast<std::int64_t>(plan.nodes.size());
    var.assign(static_cast<std::size_t>(n_nodes), {});
    gates.assign(static_cast<std::size_t>(n_nodes), {});
    for (std::int64_t k = 0; k < n_nodes; ++k)
      if (plan.nodes[static_cast<std::size_t>(k)].gates)
        gates[static_cast<std::size_t>(k)].resize(
            static_cast<std::size_t>(n * plan.nodes[static_cast<std::size_t>(k)].gate_entries()));
    for (std::int64_t k = 0; k < n_nodes; ++k)
      if (plan.nodes[static_cast<std::size_t>(k)].variances)
        var[static_cast<std::size_t>(k)].resize(
            static_cast<std::size_t>(n * plan.nodes[static_cast<std::size_t>(k)].positions()));
    std::vector<Workspace> spaces;
    const int threads = static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(n_threads, n)));
    for (int t = 0; t < threads; ++t) spaces.emplace_back(plan, false);
    parallel_for(n, threads, [&](std::int64_t i, int thread) {
      Workspace& ws = spaces[static_cast<std::size_t>(thread)];
      const double* xi = x + i * d;
      std::vector<const double*> lanes(static_cast<std::size_t>(kLanes), xi);
      load_lanes(ws, lanes.data());
      std::vector<const double*> q1(static_cast<std::size_t>(n_nodes), nullptr);
      for (std::int64_t k = 0; k < n_nodes; ++k) {
        const Node& node = plan.nodes[static_cast<std::size_t>(k)];
        if (node.gates) {  // G(x_i) from the input's covariance (x_i, x_i), for point i and every lane
          const std::int64_t P = node.positions();
          double* G = gates[static_cast<std::size_t>(k)].data() + i * P * P;
          attention_analytic::gates<kLanes>(node.mechanism, node.qk, state(ws, node.input, false, true), P, G,
                                            node.pos_cov.empty() ? nullptr : node.pos_cov.data(), node.w_in, node.w_pe);
          set_lane_gates(ws, k, [&](std::int64_t) { return G; });
          ws.point_gates[static_cast<std::size_t>(k)] = G;
        }
        if (k == 0)
          input_kernel(ws, xi, false);
        else
          node_step(ws, k, q1, false);
        if (!node.variances) continue;
        const double* s = own(ws, node, false);
        const std::int64_t positions = node.positions(), stride = node.full ? positions + 1 : 1;
        double* dst = var[static_cast<std::size_t>(k)].data() + i * positions;
        double* lanes_q = ws.lane_variances[static_cast<std::size_t>(k)].data();
        for (std::int64_t p = 0; p < positions; ++p) {
          dst[p] = s[p * stride * kLanes];
          std::fill(lanes_q + p * kLanes, lanes_q + (p + 1) * kLanes, dst[p]);
        }
        q1[static_cast<std::size_t>(k)] = dst;
      }
    });
  }
};

}  // namespace conv_analytic

// Doubles of scratch the convolutional engine holds per thread for `spec` (both kernels when ntk).
inline std::int64_t analytic_conv_workspace_doubles(const SequentialSpec& spec, const std::vector<std::int64_t>& layers,
                                                    bool ntk) {
  return conv_analytic::make_plan(spec, layers).workspace_doubles(ntk);
}

// Writes the kernels of the spec nodes opt.layers (ascending) between the rows of x1 (n1 points
// of spec.input_dim() values) and x2 (null: x1, one triangle computed and mirrored), as
// analytic_network_kernels does for dense networks. unit_second_moment: per spec node, whether
// an activation is normalised.
inline void analytic_conv_kernels(const SequentialSpec& spec, const std::vector<bool>& unit_second_moment,
                                  const double* x1, std::int64_t n1, const double* x2, std::int64_t n2,
                                  const AnalyticOptions& opt, const std::vector<double*>& nngp_out,
                                  const std::vector<double*>& ntk_out) {
  using namespace conv_analytic;
  const auto n_spec = static_cast<std::int64_t>(spec.nodes.size());
  for (std::size_t k = 0; k < opt.layers.size(); ++k)
    if (opt.layers[k] < 0 || opt.layers[k] >= n_spec || (k > 0 && opt.layers[k] <= opt.layers[k - 1]))
      throw std::invalid_argument("layers must be ascending node indices below " + std::to_string(n_spec));
  if ((opt.nngp && nngp_out.size() != opt.layers.size()) || (opt.ntk && ntk_out.size() != opt.layers.size()))
    throw std::invalid_argument("one output per requested node and kernel is needed");
  if (static_cast<std::int64_t>(unit_second_moment.size()) != n_spec)
    throw std::invalid_argument("one unit_second_moment flag per node is needed");
  if (opt.tile < 1) throw std::invalid_argument("tile must be positive");
  const Plan plan = make_plan(spec, opt.layers);
  if (opt.ntk && opt.parameterization == Parameterization::standard)
    for (const Node& node : plan.nodes)
      if (node.kind == NodeKind::attention)
        throw std::invalid_argument("the analytic NTK of attention is defined in the ntk parameterization only");
  Engine engine{plan, {}, opt.parameterization == Parameterization::standard};
  engine.duals.emplace_back(Activation{}, true, opt.quadrature_order, false);
  for (std::int64_t k = 0; k < n_spec; ++k)
    engine.duals.emplace_back(spec.nodes[static_cast<std::size_t>(k)].activation, opt.closed_form,
                              opt.quadrature_order, unit_second_moment[static_cast<std::size_t>(k)]);
  const std::int64_t d = spec.input_dim();
  const bool symmetric = x2 == nullptr;
  if (symmetric) {
    x2 = x1;
    n2 = n1;
  }
  std::vector<std::vector<double>> var1, var2, gates1, gates2;
  engine.variances(x1, n1, d, opt.n_threads, var1, gates1);
  if (!symmetric) engine.variances(x2, n2, d, opt.n_threads, var2, gates2);
  const std::vector<std::vector<double>>& lanes_var = symmetric ? var1 : var2;
  const std::vector<std::vector<double>>& lanes_gates = symmetric ? gates1 : gates2;
  const auto n_nodes = static_cast<std::int64_t>(plan.nodes.size());
  std::vector<std::int64_t> slot(static_cast<std::size_t>(n_nodes), -1);
  for (std::size_t k = 0; k < opt.layers.size(); ++k)
    slot[static_cast<std::size_t>(opt.layers[k] + 1)] = static_cast<std::int64_t>(k);

  const int threads = std::max(1, opt.n_threads);
  std::vector<Workspace> spaces;
  for (int t = 0; t < threads; ++t) spaces.emplace_back(plan, opt.ntk);
  const std::int64_t tile = round_up(opt.tile, kLanes);
  for_each_output_tile(n1, n2, tile, symmetric, threads, opt.poll, [&](std::int64_t i0, std::int64_t ni,
                                                                      std::int64_t j0, std::int64_t nj, int thread) {
    Workspace& ws = spaces[static_cast<std::size_t>(thread)];
    std::vector<const double*> lanes(static_cast<std::size_t>(kLanes));
    std::vector<const double*> q1(static_cast<std::size_t>(n_nodes), nullptr);
    double value[kLanes];
    for (std::int64_t jb = j0; jb < j0 + nj; jb += kLanes) {
      const std::int64_t width = std::min(kLanes, j0 + nj - jb);
      // Lanes past the tile repeat its last point; their results are not written.
      for (std::int64_t l = 0; l < kLanes; ++l) lanes[static_cast<std::size_t>(l)] = x2 + (jb + std::min(l, width - 1)) * d;
      engine.load_lanes(ws, lanes.data());
      for (std::int64_t k = 0; k < n_nodes; ++k) {
        const Node& node = plan.nodes[static_cast<std::size_t>(k)];
        if (!node.variances) continue;
        const std::int64_t positions = node.positions();
        double* q = ws.lane_variances[static_cast<std::size_t>(k)].data();
        for (std::int64_t p = 0; p < positions; ++p)
          for (std::int64_t l = 0; l < kLanes; ++l)
            q[p * kLanes + l] = lanes_var[static_cast<std::size_t>(k)][static_cast<std::size_t>(
                (jb + std::min(l, width - 1)) * positions + p)];
      }
      for (std::int64_t k = 0; k < n_nodes; ++k) {
        const Node& node = plan.nodes[static_cast<std::size_t>(k)];
        if (!node.gates) continue;
        const std::int64_t entries = node.gate_entries();
        engine.set_lane_gates(ws, k, [&](std::int64_t l) {
          return lanes_gates[static_cast<std::size_t>(k)].data() + (jb + std::min(l, width - 1)) * entries;
        });
      }
      // Symmetric: rows up to the block's last column (the rest is mirrored).
      const std::int64_t i_end = symmetric ? std::min(i0 + ni, jb + width) : i0 + ni;
      for (std::int64_t i = i0; i < i_end; ++i) {
        for (std::int64_t k = 0; k < n_nodes; ++k) {
          const Node& node = plan.nodes[static_cast<std::size_t>(k)];
          if (node.variances)
            q1[static_cast<std::size_t>(k)] = var1[static_cast<std::size_t>(k)].data() + i * node.positions();
          if (node.gates)
            ws.point_gates[static_cast<std::size_t>(k)] = gates1[static_cast<std::size_t>(k)].data() + i * node.gate_entries();
        }
        engine.input_kernel(ws, x1 + i * d, opt.ntk);
        for (std::int64_t k = 1; k < n_nodes; ++k) {
          engine.node_step(ws, k, q1, opt.ntk);
          const std::int64_t out = slot[static_cast<std::size_t>(k)];
          if (out < 0) continue;
          for (int kernel = 0; kernel < 2; ++kernel) {
            if (!(kernel == 0 ? opt.nngp : opt.ntk)) continue;
            engine.layer_kernel(ws, k, kernel == 1, value);
            double* dst = (kernel == 0 ? nngp_out : ntk_out)[static_cast<std::size_t>(out)] + i * n2 + jb;
            std::copy(value, value + width, dst);
          }
        }
      }
    }
  });
  if (symmetric) {
    for (double* out : nngp_out) mirror_upper(out, n1, opt.n_threads);
    for (double* out : ntk_out) mirror_upper(out, n1, opt.n_threads);
  }
}

}  // namespace nnpk
