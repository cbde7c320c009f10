// Infinite-width kernels of MLPs (CONVENTIONS.md, "Infinite-width (analytic) kernels"): the
// dual map of each activation, in closed form or by quadrature, and the layer recursion of
// the NNGP and the NTK, tiled over the output.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "nnpk/kernels/analytic.hpp"
#include "nnpk/mlp.hpp"

namespace nnpk {

namespace analytic_detail {

// Pre-activation variances of every layer: q[l * n + i] = Sigma^l(x_i, x_i) after layer l's
// affine step, by the same operations as the entry recursion applies to a pair (x_i, x_i)
// (so, compiled without floating-point contraction, equal to x_i's own entry to the bit).
inline std::vector<double> layer_variances(const MLPSpec& spec, const DualMap& dual, const double* x, std::int64_t n,
                                           int n_threads) {
  const std::int64_t d = spec.input_dim(), n_layers = static_cast<std::int64_t>(spec.layers.size());
  std::vector<double> q(static_cast<std::size_t>(n_layers * n));
  constexpr std::int64_t kBlock = 64;
  parallel_for((n + kBlock - 1) / kBlock, n_threads, [&](std::int64_t b, int) {
    std::vector<double> scratch;
    for (std::int64_t i = b * kBlock; i < std::min(n, (b + 1) * kBlock); ++i) {
      double var = 0.0;
      input_kernel_tile(x, i, 1, x, i, 1, d, scratch, &var, 1);
      for (std::int64_t l = 0; l < n_layers; ++l) {
        const DenseLayer& layer = spec.layers[static_cast<std::size_t>(l)];
        var = layer.w_std * layer.w_std * var + (layer.has_bias ? layer.b_std * layer.b_std : 0.0);
        q[static_cast<std::size_t>(l * n + i)] = var;
        if (l + 1 < n_layers) var = dual(var, var, var).sigma;
      }
    }
  });
  return q;
}

}  // namespace analytic_detail

// Writes the requested kernels between the rows of x1 (n1 x d) and x2 (n2 x d; null: x1,
// then only tiles on or above the diagonal are computed and mirrored): nngp_out[k] and
// ntk_out[k] (n1 x n2 row-major) for opt.layers[k]. Hidden layer l's kernels are those of
// its post-activation features h^l (the NTK with respect to the parameters of layers 1..l);
// the output's are after the readout's affine step.
inline void analytic_kernels(const MLPSpec& spec, const double* x1, std::int64_t n1, const double* x2, std::int64_t n2,
                             const AnalyticOptions& opt, const std::vector<double*>& nngp_out,
                             const std::vector<double*>& ntk_out) {
  using analytic_detail::input_kernel_tile;
  spec.validate();
  const std::int64_t n_layers = static_cast<std::int64_t>(spec.layers.size());
  for (std::size_t k = 0; k < opt.layers.size(); ++k)
    if (opt.layers[k] < 0 || opt.layers[k] >= n_layers || (k > 0 && opt.layers[k] <= opt.layers[k - 1]))
      throw std::invalid_argument("layers must be ascending indices below " + std::to_string(n_layers));
  if ((opt.nngp && nngp_out.size() != opt.layers.size()) || (opt.ntk && ntk_out.size() != opt.layers.size()))
    throw std::invalid_argument("one output per requested layer and kernel is needed");
  if (opt.tile < 1) throw std::invalid_argument("tile must be positive");
  const bool symmetric = x2 == nullptr;
  if (symmetric) {
    x2 = x1;
    n2 = n1;
  }
  const std::int64_t d = spec.input_dim();
  const DualMap dual(spec.activation, opt.closed_form, opt.quadrature_order, opt.unit_second_moment);
  const std::vector<double> q1 = analytic_detail::layer_variances(spec, dual, x1, n1, opt.n_threads);
  const std::vector<double> q2 = symmetric ? q1 : analytic_detail::layer_variances(spec, dual, x2, n2, opt.n_threads);
  std::vector<std::int64_t> slot(static_cast<std::size_t>(n_layers), -1);
  for (std::size_t k = 0; k < opt.layers.size(); ++k) slot[static_cast<std::size_t>(opt.layers[k])] = static_cast<std::int64_t>(k);

  // Per-thread buffers, allocated once: freeing them after every tile would hand the pages
  // back to the system and fault them in again, zeroed, for the next.
  struct Workspace {
    std::vector<double> sigma, theta, pre, dot, scratch;
  };
  std::vector<Workspace> workspaces(static_cast<std::size_t>(std::max(1, opt.n_threads)));

  for_each_output_tile(n1, n2, opt.tile, symmetric, opt.n_threads, opt.poll, [&](std::int64_t i0, std::int64_t ni,
                                                                              std::int64_t j0, std::int64_t nj,
                                                                              int thread) {
    Workspace& ws = workspaces[static_cast<std::size_t>(thread)];
    std::vector<double>& sigma = ws.sigma;
    std::vector<double>& theta = ws.theta;
    std::vector<double>& pre = ws.pre;
    std::vector<double>& dot = ws.dot;
    sigma.resize(static_cast<std::size_t>(ni * nj));
    theta.assign(sigma.size(), 0.0);
    pre.resize(static_cast<std::size_t>(nj));
    dot.resize(pre.size());
    input_kernel_tile(x1, i0, ni, x2, j0, nj, d, ws.scratch, sigma.data(), nj);
    for (std::int64_t l = 0; l < n_layers; ++l) {
      const DenseLayer& layer = spec.layers[static_cast<std::size_t>(l)];
      const double w2 = layer.w_std * layer.w_std, b2 = layer.has_bias ? layer.b_std * layer.b_std : 0.0;
      // Under "standard" the weights' tangent share is h.h' = n_{l-1} Sigma and a bias's is 1.
      const double fan_in = static_cast<double>(layer.fan_in), bias_share = layer.has_bias ? 1.0 : 0.0;
      const bool hidden = l + 1 < n_layers, standard = opt.parameterization == Parameterization::standard;
      for (std::int64_t i = 0; i < ni; ++i) {
        double* srow = sigma.data() + i * nj;
        double* trow = theta.data() + i * nj;
        for (std::int64_t j = 0; j < nj; ++j) {
          pre[static_cast<std::size_t>(j)] = w2 * srow[j] + b2;
          if (opt.ntk)
            trow[j] = standard ? fan_in * srow[j] + w2 * trow[j] + bias_share : pre[static_cast<std::size_t>(j)] + w2 * trow[j];
        }
        if (!hidden) {
          std::copy(pre.begin(), pre.end(), srow);
          continue;
        }
        dual.row(q1[static_cast<std::size_t>(l * n1 + i0 + i)], q2.data() + l * n2 + j0, pre.data(), nj, srow, dot.data());
        if (opt.ntk)
          for (std::int64_t j = 0; j < nj; ++j) trow[j] *= dot[static_cast<std::size_t>(j)];
      }
      const std::int64_t k = slot[static_cast<std::size_t>(l)];
      if (k < 0) continue;
      for (std::int64_t i = 0; i < ni; ++i) {
        if (opt.nngp)
          std::copy(sigma.begin() + i * nj, sigma.begin() + (i + 1) * nj, nngp_out[static_cast<std::size_t>(k)] + (i0 + i) * n2 + j0);
        if (opt.ntk)
          std::copy(theta.begin() + i * nj, theta.begin() + (i + 1) * nj, ntk_out[static_cast<std::size_t>(k)] + (i0 + i) * n2 + j0);
      }
    }
  });
  if (symmetric) {
    for (double* out : nngp_out) mirror_upper(out, n1, opt.n_threads);
    for (double* out : ntk_out) mirror_upper(out, n1, opt.n_threads);
  }
}

}  // namespace nnpk
