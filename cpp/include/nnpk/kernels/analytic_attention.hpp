// Infinite-width kernels of a self-attention node (docs/definitions.rst, "Self-attention at infinite
// width"), on the P x P position covariances of the convolutional engine (analytic_conv.hpp), whose
// lanes (points paired with point i) are innermost: entry (a, b) of lane l at [(a P + b) Lanes + l].
//
// Linear scaling (tied keys and queries, logits / key_width): the logits converge to
// qk Sigma(x, x), so point x's attention weights are the deterministic G(x) = m(qk Sigma(x, x)) (m
// the softmax over each row, or elementwise), and
//   Sigma' = ov2 G(x) Sigma G(x')^T + b2,   Theta' = ov2 G(x) (Theta + 2 Sigma) G(x')^T + b2
// with qk = W_key_std W_query_std, ov2 = (W_value_std W_out_std)^2, b2 = b_std^2 (ntk).
// With positional embeddings (linear scaling) the keys and queries read the mixture
// w_in Sigma + w_pe R of the input's covariance and the positions' R (w_in = 1, w_pe = pe_std^2
// summed; c / (c + e) and pe_std^2 e / (c + e) concatenated), so G(x) = m(qk (w_in Sigma(x, x) +
// w_pe R)); if the values read them too, Sigma and Theta in the maps above become w_in Sigma +
// w_pe R and w_in Theta + w_pe R (the embedding's own gradient adds R to the NTK).
// Identity mechanism with square-root scaling (independent keys and queries): with
// s = sum_{a,b} Sigma_{ab}^2 and t = sum_{a,b} Sigma_{ab} Theta_{ab},
//   Sigma' = qk^2 ov2 s Sigma + b2,   Theta' = qk^2 ov2 (2 t Sigma + s (Theta + 4 Sigma)) + b2.
// With positional embeddings the keys and queries read S~ = w_in Sigma + w_pe R and T~ = w_in Theta + w_pe R,
// the values Sv, Tv (S~, T~ if they read the embeddings, else Sigma, Theta): with s = sum S~ Sv and
// u = sum (T~ Sv + S~ Tv), Sigma' = qk^2 ov2 s S~ + b2 and Theta' = qk^2 ov2 (u S~ + s (T~ + 4 S~)) + b2.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace nnpk {
namespace attention_analytic {

// G = m(qk Sigma) of one point from lane 0 of its P x P covariance `sigma` (Lanes doubles per entry).
// With R (P x P, or null): G = m(qk (w_in Sigma + w_pe R)).
template <std::int64_t Lanes>
void gates(int mechanism, double qk, const double* sigma, std::int64_t P, double* G, const double* R = nullptr,
           double w_in = 1.0, double w_pe = 0.0) {
  for (std::int64_t a = 0; a < P; ++a) {
    double* row = G + a * P;
    for (std::int64_t b = 0; b < P; ++b)
      row[b] = R ? qk * (w_in * sigma[(a * P + b) * Lanes] + w_pe * R[a * P + b]) : qk * sigma[(a * P + b) * Lanes];
    switch (mechanism) {
      case 0: {  // softmax over the row
        double top = row[0];
        for (std::int64_t b = 1; b < P; ++b) top = std::max(top, row[b]);
        double sum = 0.0;
        for (std::int64_t b = 0; b < P; ++b) sum += (row[b] = std::exp(row[b] - top));
        for (std::int64_t b = 0; b < P; ++b) row[b] /= sum;
        break;
      }
      case 2:
        for (std::int64_t b = 0; b < P; ++b) row[b] = std::abs(row[b]);
        break;
      case 3:
        for (std::int64_t b = 0; b < P; ++b) row[b] = std::max(row[b], 0.0);
        break;
      default: break;
    }
  }
}

// out = ov2 Gi in G_l^T + b2 per lane: Gi (P x P) point i's weights, Gl the lanes' (entry (b, b') of
// lane l at [(b P + b') Lanes + l]); temp holds P x P lanes. With `full` every entry (a, b) of out,
// else the diagonal (a, a) only (P entries per lane). Both products are matrix products (the first
// over all lanes at once, the second lane by lane on de-interleaved copies); the diagonal is summed
// the same way in both cases, so a diagonal output is a full output's diagonal to the bit.
template <std::int64_t Lanes>
void sandwich(const double* Gi, const double* Gl, const double* in, std::int64_t P, double ov2, double b2, double* temp,
              double* out, bool full = true) {
  using Matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  // temp[a, (b', l)] = sum_a' Gi[a, a'] in[a', (b', l)]
  Eigen::Map<Matrix>(temp, P, P * Lanes).noalias() =
      Eigen::Map<const Matrix>(Gi, P, P) * Eigen::Map<const Matrix>(in, P, P * Lanes);
  const std::int64_t n = P * P;
  if (full) {  // out[a, b] = sum_b' temp[a, b'] Gl[b, b'], lane by lane
    thread_local Matrix t, g, o;
    t.resize(P, P);
    g.resize(P, P);
    o.resize(P, P);
    for (std::int64_t l = 0; l < Lanes; ++l) {
      for (std::int64_t e = 0; e < n; ++e) {
        t.data()[e] = temp[e * Lanes + l];
        g.data()[e] = Gl[e * Lanes + l];
      }
      o.noalias() = t * g.transpose();
      for (std::int64_t e = 0; e < n; ++e) out[e * Lanes + l] = ov2 * o.data()[e] + b2;
    }
  }
  // The diagonal: out[a, a] = sum_b' temp[a, b'] Gl[a, b'], in ascending b'.
  for (std::int64_t a = 0; a < P; ++a) {
    double acc[Lanes] = {};
    const double* t = temp + a * P * Lanes;
    const double* g = Gl + a * P * Lanes;
    for (std::int64_t b = 0; b < P; ++b)
      for (std::int64_t l = 0; l < Lanes; ++l) acc[l] += t[b * Lanes + l] * g[b * Lanes + l];
    double* o = out + (full ? a * P + a : a) * Lanes;
    for (std::int64_t l = 0; l < Lanes; ++l) o[l] = ov2 * acc[l] + b2;
  }
}

// sum over the P x P entries of x * y per lane.
template <std::int64_t Lanes>
void entry_dot(const double* x, const double* y, std::int64_t P, double* out) {
  std::fill(out, out + Lanes, 0.0);
  for (std::int64_t e = 0; e < P * P; ++e)
    for (std::int64_t l = 0; l < Lanes; ++l) out[l] += x[e * Lanes + l] * y[e * Lanes + l];
}

}  // namespace attention_analytic
}  // namespace nnpk
