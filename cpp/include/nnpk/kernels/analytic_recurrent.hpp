// Infinite-width kernels of a recurrent layer reading sequences (docs/definitions.rst, "Recurrent
// networks"): the NNGP and NTK of its last state h_T for one point against a row of points, by the
// recursion over the steps.
//
// With leak 1 only same-step covariances enter: Sigma_t from Sigma_{t-1} through the dual map, and
// Theta_t = Sigma_t + W_std^2 Sigma_dot_{t-1} Theta_{t-1} (T dual maps per pair). With a leak a < 1
// the state h_t mixes every earlier step's phi(z_s), so the recursion carries the cross-step
// covariances Sigma_{s,t} = Cov(z_s(x), z_t(x')) of every pair of steps (T^2 dual maps per pair).
// They are computed shell by shell (shell k: the pairs with max(s, t) = k), an order in which a
// point's own step variances Sigma_{k,k}(x, x) are known before they are needed; the per-point
// variances therefore come from this same code run on the pair (x, x), and equal the kernel's
// diagonal to the bit.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "nnpk/kernels/dual.hpp"

namespace nnpk {

// A recurrent layer as the analytic recursion sees it (h_0 = 0, a = leak):
// z_t = W_std h_{t-1} W / sqrt(width) + U_std x_t U / sqrt(features) + b_std b,
// h_t = (1 - a) h_{t-1} + a phi(z_t), over `steps` steps of `features` values each.
struct RecurrentCell {
  std::int64_t steps = 1, features = 1, width = 1;
  double w_std = 1.0, u_std = 1.0, b_std = 0.0, leak = 1.0;
  bool has_bias = false;
};

namespace recurrent_analytic {

// Per-thread buffers of the row recursion, sized on first use.
struct RowBuffers {
  std::vector<double> lanes;     // the row's points, step-major then feature-major: ((t * features + f) * nj + j)
  std::vector<double> k, e, dot;  // (nj): a step kernel, a dual map's two expectations
  std::vector<double> sigma, theta, input_theta;  // leak 1: (nj) each
  // leak < 1: per shell entry (2 steps - 1 of them) x nj
  std::vector<double> shell_sigma, shell_theta_z, shell_g, shell_g_dot;
  std::vector<double> c_prev, c_cur, d_prev, d_cur, th_prev, th_cur, dt_prev, dt_cur;
};

// The points [j0, j0 + nj) of x (each `steps * features` values, step-major) regrouped so that a
// step's feature f is a contiguous run over the points: out[(t * features + f) * nj + j].
inline void gather_lanes(const double* x, std::int64_t j0, std::int64_t nj, std::int64_t point_size,
                         std::vector<double>& out) {
  out.resize(static_cast<std::size_t>(point_size * nj));
  for (std::int64_t j = 0; j < nj; ++j)
    for (std::int64_t k = 0; k < point_size; ++k) out[static_cast<std::size_t>(k * nj + j)] = x[(j0 + j) * point_size + k];
}

// out[j] = x_s . x'_t / features for one step of a point (xs: `features` values) and one step of
// nj points (lanes: features x nj); each entry a sum over the features in order, the same
// whatever nj.
inline void step_kernel_row(const double* xs, const double* lanes, std::int64_t features, std::int64_t nj,
                            double* out) {
  std::fill(out, out + nj, 0.0);
  for (std::int64_t f = 0; f < features; ++f) {
    const double xf = xs[f];
    const double* col = lanes + f * nj;
    for (std::int64_t j = 0; j < nj; ++j) out[j] = madd(xf, col[j], out[j]);
  }
  const double inv = 1.0 / static_cast<double>(features);
  for (std::int64_t j = 0; j < nj; ++j) out[j] *= inv;
}

// The step variances: q1[t * ld1] the point's Sigma_t(x, x), q2[t * ld2 + j] the lanes'. With
// `steps_out`, Sigma_{t,t} of the pair is written to steps_out[t * ld_out + j] as soon as it is
// computed: the per-point run passes q1 = q2 = steps_out (nj = 1), reading each variance after
// writing it.
struct StepVariances {
  const double* q1;
  std::int64_t ld1;
  const double* q2;
  std::int64_t ld2;
  double* steps_out = nullptr;
  std::int64_t ld_out = 0;
};

// The layer's input terms of Sigma and of the NTK for the step kernels k (n entries):
// sigma[j] = U_std^2 k + b_std^2; theta_in[j] = sigma[j] ("ntk") or features k + [bias] ("standard").
inline void input_terms(const RecurrentCell& cell, bool standard, const double* k, std::int64_t n, double* sigma,
                        double* theta_in) {
  const double u2 = cell.u_std * cell.u_std, b2 = cell.has_bias ? cell.b_std * cell.b_std : 0.0;
  const double features = static_cast<double>(cell.features), bias_share = cell.has_bias ? 1.0 : 0.0;
  for (std::int64_t j = 0; j < n; ++j) {
    const double kj = k[j], s = madd(u2, kj, b2);  // sigma may be k
    if (theta_in) theta_in[j] = standard ? madd(features, kj, bias_share) : s;
    sigma[j] = s;
  }
}

// Leak 1: the kernels of h_T = phi(z_T) for the point xi against the lanes (nj points gathered by
// gather_lanes): s_out = E[phi(u) phi(v)] at Sigma_T, t_out = Theta_T Sigma_dot_T.
inline void row_leak1(const RecurrentCell& cell, const DualMap& dual, bool standard, bool ntk, const double* xi,
                      const double* lanes, std::int64_t nj, const StepVariances& q, RowBuffers& buf, double* s_out,
                      double* t_out) {
  const std::int64_t features = cell.features;
  const double w2 = cell.w_std * cell.w_std, width = static_cast<double>(cell.width);
  const auto n = static_cast<std::size_t>(nj);
  buf.k.resize(n);
  buf.e.resize(n);
  buf.dot.resize(n);
  buf.sigma.resize(n);
  buf.theta.resize(n);
  buf.input_theta.resize(n);
  double *k = buf.k.data(), *e = buf.e.data(), *dot = buf.dot.data(), *sigma = buf.sigma.data(),
         *theta = buf.theta.data(), *input_theta = buf.input_theta.data();
  for (std::int64_t t = 0; t < cell.steps; ++t) {
    step_kernel_row(xi + t * features, lanes + t * features * nj, features, nj, k);
    if (t == 0) {
      input_terms(cell, standard, k, nj, sigma, ntk ? theta : nullptr);
    } else {
      // e, dot: the expectations at Sigma_{t-1}; k becomes the step's input terms.
      dual.row(q.q1[(t - 1) * q.ld1], q.q2 + (t - 1) * q.ld2, sigma, nj, e, dot);
      input_terms(cell, standard, k, nj, k, ntk ? input_theta : nullptr);
      for (std::int64_t j = 0; j < nj; ++j) {
        const double s = madd(w2, e[j], k[j]);
        if (ntk) theta[j] = madd(w2 * dot[j], theta[j], standard ? madd(width, e[j], input_theta[j]) : s);
        sigma[j] = s;
      }
    }
    if (q.steps_out)
      for (std::int64_t j = 0; j < nj; ++j) q.steps_out[t * q.ld_out + j] = sigma[j];
  }
  const std::int64_t last = cell.steps - 1;
  dual.row(q.q1[last * q.ld1], q.q2 + last * q.ld2, sigma, nj, s_out, dot);
  if (ntk)
    for (std::int64_t j = 0; j < nj; ++j) t_out[j] = theta[j] * dot[j];
}

// Leak a < 1: the kernels of h_T, C_{T,T} = Cov(h_T(x), h_T(x')) per unit and its tangent kernel,
// from the cross-step recursion (1-based steps, C_{0,.} = C_{.,0} = 0):
//   Sigma_{s,t} = W_std^2 C_{s-1,t-1} + U_std^2 x_s . x'_t / features + b_std^2,
//   G_{s,t} = E[phi(z_s) phi(z'_t)] (variances Sigma_{s,s}(x,x), Sigma_{t,t}(x',x')),
//   D_{s,t} = (1 - a) D_{s,t-1} + a G_{s,t},  C_{s,t} = (1 - a) C_{s-1,t} + a D_{s,t},
// and the same for the NTK with G replaced by E[phi'(z_s) phi'(z'_t)] Theta^z_{s,t},
// Theta^z_{s,t} = Sigma_{s,t} + W_std^2 Theta^h_{s-1,t-1} ("ntk"). Shell k holds the pairs
// (s, k), s = 1..k, at positions s - 1, then (k, t), t = 1..k - 1, at positions k - 1 + t.
inline void row_leaky(const RecurrentCell& cell, const DualMap& dual, bool standard, bool ntk, const double* xi,
                      const double* lanes, std::int64_t nj, const StepVariances& q, RowBuffers& buf, double* s_out,
                      double* t_out) {
  const std::int64_t features = cell.features, steps = cell.steps;
  const double w2 = cell.w_std * cell.w_std, width = static_cast<double>(cell.width);
  const double a = cell.leak, keep = 1.0 - a;
  const auto entries = static_cast<std::size_t>((2 * steps - 1) * nj);
  for (auto* v : {&buf.shell_sigma, &buf.shell_theta_z, &buf.shell_g, &buf.shell_g_dot, &buf.c_prev, &buf.c_cur,
                  &buf.d_prev, &buf.d_cur, &buf.th_prev, &buf.th_cur, &buf.dt_prev, &buf.dt_cur})
    v->resize(entries);
  buf.k.resize(static_cast<std::size_t>(nj));
  double* k = buf.k.data();
  const auto at = [nj](std::vector<double>& v, std::int64_t p) { return v.data() + p * nj; };
  // Position in shell `shell` of the pair (s, t), max(s, t) = shell.
  const auto position = [](std::int64_t shell, std::int64_t s, std::int64_t t) { return t == shell ? s - 1 : shell - 1 + t; };
  for (std::int64_t shell = 1; shell <= steps; ++shell) {
    const std::int64_t n_entries = 2 * shell - 1;
    // Pass 1: Sigma and Theta^z of every pair of the shell, from shell - 1's C and Theta^h.
    for (std::int64_t p = 0; p < n_entries; ++p) {
      const std::int64_t s = p < shell ? p + 1 : shell, t = p < shell ? shell : p - shell + 1;
      step_kernel_row(xi + (s - 1) * features, lanes + (t - 1) * features * nj, features, nj, k);
      double* sigma = at(buf.shell_sigma, p);
      double* theta_z = at(buf.shell_theta_z, p);
      input_terms(cell, standard, k, nj, sigma, ntk ? theta_z : nullptr);
      if (s > 1 && t > 1) {
        const std::int64_t prev = position(shell - 1, s - 1, t - 1);
        const double* c = at(buf.c_prev, prev);
        const double* th = at(buf.th_prev, prev);
        for (std::int64_t j = 0; j < nj; ++j) {
          if (ntk) theta_z[j] = standard ? madd(w2, th[j], madd(width, c[j], theta_z[j]))
                                         : madd(w2, th[j], madd(w2, c[j], sigma[j]));
          sigma[j] = madd(w2, c[j], sigma[j]);
        }
      }
    }
    if (q.steps_out)
      for (std::int64_t j = 0; j < nj; ++j) q.steps_out[(shell - 1) * q.ld_out + j] = at(buf.shell_sigma, shell - 1)[j];
    // Pass 2: the dual maps.
    for (std::int64_t p = 0; p < n_entries; ++p) {
      const std::int64_t s = p < shell ? p + 1 : shell, t = p < shell ? shell : p - shell + 1;
      dual.row(q.q1[(s - 1) * q.ld1], q.q2 + (t - 1) * q.ld2, at(buf.shell_sigma, p), nj, at(buf.shell_g, p),
               at(buf.shell_g_dot, p));
    }
    // Pass 3: D and C (and their NTK counterparts) in dependency order: (s, k) for s < k, (k, t)
    // for t < k, then (k, k).
    const auto update = [&](std::int64_t s, std::int64_t t) {
      const std::int64_t p = position(shell, s, t);
      // D_{s,t-1}: in the previous shell for s < shell, in this one (position of (shell, t - 1)) for s = shell.
      const double* d_left = t == 1 ? nullptr : s < shell ? at(buf.d_prev, position(shell - 1, s, t - 1))
                                                          : at(buf.d_cur, position(shell, s, t - 1));
      const double* dt_left = t == 1 ? nullptr : s < shell ? at(buf.dt_prev, position(shell - 1, s, t - 1))
                                                           : at(buf.dt_cur, position(shell, s, t - 1));
      // C_{s-1,t}: in this shell for t = shell, in the previous one for t < shell.
      const double* c_up = s == 1 ? nullptr : t == shell ? at(buf.c_cur, position(shell, s - 1, t))
                                                         : at(buf.c_prev, position(shell - 1, s - 1, t));
      const double* th_up = s == 1 ? nullptr : t == shell ? at(buf.th_cur, position(shell, s - 1, t))
                                                          : at(buf.th_prev, position(shell - 1, s - 1, t));
      const double* g = at(buf.shell_g, p);
      const double* g_dot = at(buf.shell_g_dot, p);
      const double* theta_z = at(buf.shell_theta_z, p);
      double *d = at(buf.d_cur, p), *c = at(buf.c_cur, p), *dt = at(buf.dt_cur, p), *th = at(buf.th_cur, p);
      for (std::int64_t j = 0; j < nj; ++j) {
        d[j] = d_left ? madd(keep, d_left[j], a * g[j]) : a * g[j];
        c[j] = c_up ? madd(keep, c_up[j], a * d[j]) : a * d[j];
        if (ntk) {
          const double tangent = a * (g_dot[j] * theta_z[j]);
          dt[j] = dt_left ? madd(keep, dt_left[j], tangent) : tangent;
          th[j] = th_up ? madd(keep, th_up[j], a * dt[j]) : a * dt[j];
        }
      }
    };
    for (std::int64_t s = 1; s < shell; ++s) update(s, shell);
    for (std::int64_t t = 1; t < shell; ++t) update(shell, t);
    update(shell, shell);
    std::swap(buf.c_prev, buf.c_cur);
    std::swap(buf.d_prev, buf.d_cur);
    std::swap(buf.th_prev, buf.th_cur);
    std::swap(buf.dt_prev, buf.dt_cur);
  }
  const double* c = at(buf.c_prev, steps - 1);  // (T, T) of the last shell
  const double* th = at(buf.th_prev, steps - 1);
  std::copy(c, c + nj, s_out);
  if (ntk) std::copy(th, th + nj, t_out);
}

// The kernels of h_T for the point xi against the gathered lanes: row_leak1 or row_leaky.
inline void kernel_row(const RecurrentCell& cell, const DualMap& dual, bool standard, bool ntk, const double* xi,
                       const double* lanes, std::int64_t nj, const StepVariances& q, RowBuffers& buf, double* s_out,
                       double* t_out) {
  if (cell.leak == 1.0)
    row_leak1(cell, dual, standard, ntk, xi, lanes, nj, q, buf, s_out, t_out);
  else
    row_leaky(cell, dual, standard, ntk, xi, lanes, nj, q, buf, s_out, t_out);
}

// A point's step variances Sigma_{t,t}(x, x) (to steps_out[t * ld], t < steps) and its kernel of
// h_T (returned), by the pair recursion on (x, x).
inline double point_variances(const RecurrentCell& cell, const DualMap& dual, const double* x, double* steps_out,
                              std::int64_t ld, RowBuffers& buf) {
  double s_out = 0.0, unused = 0.0;
  const StepVariances q{steps_out, ld, steps_out, ld, steps_out, ld};
  // One point: its own values are the lanes (nj = 1, step-major as a point is stored).
  kernel_row(cell, dual, false, false, x, x, 1, q, buf, &s_out, &unused);
  return s_out;
}

}  // namespace recurrent_analytic
}  // namespace nnpk
