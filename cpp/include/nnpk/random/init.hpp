// Initialisation schemes for the weights: every scheme draws unit-variance values, scaled in
// the forward pass (or by the Python layer's parameter sampler) exactly as the Gaussian reference is (docs/definitions.rst),
// from the same Philox counters keyed by (seed, network, layer) (random/philox.hpp).
#pragma once

#include <Eigen/Core>
#include <Eigen/QR>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "nnpk/random/philox.hpp"

namespace nnpk {

enum class Init : int { gaussian = 0, uniform, truncated_normal, orthogonal };

namespace init_detail {
constexpr double kSqrt2 = 1.41421356237309504880;
constexpr double kSqrt2Pi = 2.50662827463100050242;

// The standard normal CDF.
inline double normal_cdf(double x) { return 0.5 * std::erfc(-x / kSqrt2); }

// The standard normal quantile for p in [0.02, 0.98] (the truncated normal's range): the rational
// start of Abramowitz & Stegun 26.2.23 (error < 4.5e-4), then Halley steps on the CDF, each
// cubing the error: three reach rounding.
inline double normal_quantile(double p) {
  const double q = p < 0.5 ? p : 1.0 - p;
  const double t = std::sqrt(-2.0 * std::log(q));
  double x = t - (2.515517 + t * (0.802853 + t * 0.010328)) / (1.0 + t * (1.432788 + t * (0.189269 + t * 0.001308)));
  if (p < 0.5) x = -x;
  for (int step = 0; step < 3; ++step) {
    const double u = (normal_cdf(x) - p) * kSqrt2Pi * std::exp(0.5 * x * x);
    x -= u / (1.0 + 0.5 * x * u);
  }
  return x;
}

// A standard normal truncated to [-2, 2], by the inverse CDF of one uniform, divided by its
// standard deviation sqrt(1 - 4 phi(2) / (Phi(2) - Phi(-2))) so that its variance is 1.
struct TruncatedNormal {
  double low, width, inv_std;
  TruncatedNormal() {
    low = normal_cdf(-2.0);
    width = normal_cdf(2.0) - low;
    const double density = std::exp(-2.0) / kSqrt2Pi;
    inv_std = 1.0 / std::sqrt(1.0 - 4.0 * density / width);
  }
  double operator()(double u) const { return normal_quantile(low + u * width) * inv_std; }
};
}  // namespace init_detail

// True for the schemes whose elements are drawn independently (any chunk of a layer can be drawn alone).
inline bool elementwise(Init init) { return init != Init::orthogonal; }

// Elements [begin, end) of a layer's weights under an elementwise scheme, as float32 values
// (converted exactly when T is double): Gaussian draws, unit-variance uniforms sqrt(3) (2u - 1)
// or unit-variance normals truncated at two standard deviations (before the rescaling), on the
// uniforms u of the layer's weight stream.
template <class T>
void fill_weights(Init init, std::uint64_t seed, std::uint64_t network, std::uint64_t layer, std::uint64_t begin,
                  std::uint64_t end, T* out) {
  switch (init) {
    case Init::uniform:
      fill_uniform_transform(seed, network, layer, Stream::weights, begin, end, out,
                             [](double u) { return 1.7320508075688772935 * (2.0 * u - 1.0); });
      break;
    case Init::truncated_normal: {
      static const init_detail::TruncatedNormal transform;
      fill_uniform_transform(seed, network, layer, Stream::weights, begin, end, out, transform);
      break;
    }
    default: fill_gaussian(seed, network, layer, Stream::weights, begin, end, out); break;
  }
}

// A layer's weights (fan_in x fan_out, row-major) as a scaled random orthogonal matrix: the
// layer's Gaussian draws, as a tall matrix (transposed when fan_in < fan_out), go through a
// Householder QR; Q's columns get the signs of R's diagonal, which makes Q Haar distributed
// (Mezzadri 2007), and the factor sqrt(max(fan_in, fan_out)) gives the elements mean square 1,
// so the layer's pre-activations have the Gaussian reference's variance. Computed in double (a
// float32 run rounds the result: the one scheme whose float32 values are not its float64 ones).
inline void orthogonal_weights(std::uint64_t seed, std::uint64_t network, std::uint64_t layer, std::int64_t fan_in,
                               std::int64_t fan_out, double* out) {
  using Matrix = Eigen::MatrixXd;
  const std::int64_t tall = std::max(fan_in, fan_out), thin = std::min(fan_in, fan_out);
  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> draws(fan_in, fan_out);
  fill_gaussian(seed, network, layer, Stream::weights, 0, static_cast<std::uint64_t>(fan_in * fan_out), draws.data());
  Matrix g = fan_in >= fan_out ? Matrix(draws) : Matrix(draws.transpose());
  const Eigen::HouseholderQR<Matrix> qr(g);
  Matrix q = qr.householderQ() * Matrix::Identity(tall, thin);
  const double scale = std::sqrt(static_cast<double>(tall));
  for (std::int64_t j = 0; j < thin; ++j) q.col(j) *= qr.matrixQR()(j, j) < 0 ? -scale : scale;
  for (std::int64_t i = 0; i < fan_in; ++i)
    for (std::int64_t j = 0; j < fan_out; ++j) out[i * fan_out + j] = fan_in >= fan_out ? q(i, j) : q(j, i);
}

// A whole layer's weights (fan_in x fan_out, row-major) under `init`.
template <class T>
void layer_weights(Init init, std::uint64_t seed, std::uint64_t network, std::uint64_t layer, std::int64_t fan_in,
                   std::int64_t fan_out, T* out) {
  if (elementwise(init)) return fill_weights(init, seed, network, layer, 0, static_cast<std::uint64_t>(fan_in * fan_out), out);
  std::vector<double> w(static_cast<std::size_t>(fan_in * fan_out));
  orthogonal_weights(seed, network, layer, fan_in, fan_out, w.data());
  std::copy(w.begin(), w.end(), out);
}

}  // namespace nnpk
