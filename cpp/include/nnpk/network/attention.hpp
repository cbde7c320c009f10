// Global self-attention over the positions of spatial features (docs/definitions.rst), one node of a
// sequential network: its forward pass, its backward pass for C cotangents per point and its
// forward-mode tangent, as batched matrix products per point and head.
//
// For one point with positions as rows, X (P x c), heads h = 1..H:
//   keys K = fK X Wk, queries Q = fQ X Wq (tied: Q = K), values V = fV X Wv   (P x H dk, P x H dv)
//   S_h = Q_h K_h^T / dk (tied) or / sqrt(dk) (untied),  A_h = m(S_h),  heads_h = A_h V_h,
//   out = fO [heads_1 .. heads_H] Wo + bO b
// with m the softmax over each row (key positions) or an elementwise identity, abs or relu, and f
// each layer's forward scale (LayerScales). Its parametrised layers are K, Q (untied only), V, O
// from node.param; the bias is O's. With positional embeddings (node.pos_emb) the keys and queries
// (and the values if node.val_pos_emb) read U = X + fE B E (summed) or [X, fE B E] (concatenated)
// instead of X, E (P x pos_channels) being the layer after O and B the node's positional basis
// (identity when empty): the embedding is the layer "fE (B E)" whose input rows are B's rows.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "nnpk/network/attention_kernels.hpp"
#include "nnpk/network/layers.hpp"
#include "nnpk/network/spec.hpp"
#include "nnpk/packed.hpp"
#include "nnpk/packed_rows.hpp"

namespace nnpk {

enum class AttentionMechanism : int { softmax = 0, identity = 1, abs = 2, relu = 3 };

// One attention node's intermediate values for a pass's points, rows (point, position) padded to
// whole kRowQuantum (zero there): keys, queries (untied), values, heads (H dv columns); the
// attention weights A and logits S (elementwise mechanisms only), rows (point, head, query
// position), P columns; after a backward pass, the errors of K, Q (untied), V, rows (point,
// position, cotangent), their layer's fan_out columns (a tied key matrix's error sums both roles).
// With positional embeddings also: the keys' input U (rows (point, position), K's fan_in columns),
// the embedding layer's input rows (B's rows per point, P columns) and, after a backward pass, its
// errors errors[3] (rows (point, position, cotangent), pos_channels columns).
// A forward pass that keeps no weights (no backward pass or tangent follows) leaves weights and logits
// as they were; `scratch` holds one point and head's work.
template <class T>
struct AttentionCache {
  RowMatrix<T> keys, queries, values, heads, weights, logits, key_input, pos_input;
  RowMatrix<T> errors[4];
  std::vector<T, Eigen::aligned_allocator<T>> scratch;
};

// An attention node's parametrised layers in order (tied: no query).
enum class AttentionRole : int { key = 0, query = 1, value = 2, out = 3, pos = 4 };

inline AttentionRole attention_role(const SeqNode& node, std::int64_t l) {
  std::int64_t j = l - node.param;
  if (node.tied && j >= 1) ++j;
  return static_cast<AttentionRole>(j);
}

// Layer l's input rows (l an attention node's layer): X, U, the heads or B's rows.
template <class T>
const RowMatrix<T>& attention_layer_input(const SeqNode& node, std::int64_t l, const AttentionCache<T>& cache,
                                          const RowMatrix<T>& x) {
  switch (attention_role(node, l)) {
    case AttentionRole::out: return cache.heads;
    case AttentionRole::pos: return cache.pos_input;
    case AttentionRole::value: return node.pos_emb && node.val_pos_emb ? cache.key_input : x;
    default: return node.pos_emb ? cache.key_input : x;
  }
}

// Layer l's errors d f / d z (l not O, whose errors are the node's output cotangent).
template <class T>
const RowMatrix<T>& attention_layer_errors(const SeqNode& node, std::int64_t l, const AttentionCache<T>& cache) {
  const auto r = attention_role(node, l);
  return cache.errors[r == AttentionRole::pos ? 3 : static_cast<int>(r)];
}

namespace attention_detail {

template <class T>
using Strided = Eigen::Map<RowMatrix<T>, 0, Eigen::OuterStride<>>;
template <class T>
using ConstStrided = Eigen::Map<const RowMatrix<T>, 0, Eigen::OuterStride<>>;

template <class T>
void zero_rows(RowMatrix<T>& m, std::int64_t valid, std::int64_t cols) {
  m.resize(round_up(valid, kRowQuantum), cols);
  m.bottomRows(m.rows() - valid).setZero();
}

// Layer indices of the node's K, Q, V, O, E (Q == K when tied; E only with positional embeddings).
struct Layers {
  std::size_t k, q, v, o, e;
  explicit Layers(const SeqNode& node) {
    k = static_cast<std::size_t>(node.param);
    q = node.tied ? k : k + 1;
    v = q + 1;
    o = v + 1;
    e = o + 1;
  }
};

// The embedding's rows: B's rows per point (pos_input) and U from x (key_input), rows padded with zeros.
template <class T>
void positional_inputs(const SeqNode& node, const std::vector<LayerScales>& scales, const NetworkView<T>& net,
                       const RowMatrix<T>& in, std::int64_t points, AttentionCache<T>& cache) {
  const Layers L(node);
  const std::int64_t P = node.in.positions(), c = node.in.channels, n = node.pos_channels;
  const std::int64_t valid = points * P, rows = round_up(valid, kRowQuantum);
  RowMatrix<T> basis(P, P);
  if (node.pos_basis.empty())
    basis.setIdentity();
  else
    for (std::int64_t i = 0; i < P * P; ++i) basis.data()[i] = static_cast<T>(node.pos_basis[static_cast<std::size_t>(i)]);
  const RowMatrix<T> emb =
      static_cast<T>(scales[L.e].forward) * (basis * Eigen::Map<const RowMatrix<T>>(net.weights[L.e], P, n));
  cache.pos_input.setZero(rows, P);
  const std::int64_t ck = node.pos_emb == 2 ? c + n : c;
  cache.key_input.setZero(rows, ck);
  for (std::int64_t p = 0; p < points; ++p) {
    cache.pos_input.middleRows(p * P, P) = basis;
    if (node.pos_emb == 1) {
      cache.key_input.middleRows(p * P, P) = in.middleRows(p * P, P) + emb;
    } else {
      cache.key_input.block(p * P, 0, P, c) = in.middleRows(p * P, P);
      cache.key_input.block(p * P, c, P, n) = emb;
    }
  }
}

inline double logit_scale(const SeqNode& node) {
  return node.tied ? 1.0 / static_cast<double>(node.key_width) : 1.0 / std::sqrt(static_cast<double>(node.key_width));
}

// dst = scale * a * W over `rows` rows (whole quanta).
template <class T>
void project(const RowMatrix<T>& a, std::int64_t rows, const T* W, std::int64_t fan_in, std::int64_t fan_out, T scale,
             RowMatrix<T>& dst) {
  dst.resize(rows, fan_out);
  dst.noalias() = scale * (a.topRows(rows) * Eigen::Map<const RowMatrix<T>>(W, fan_in, fan_out));
}

// The mechanism on `rows` rows of P logits (leading dimension ld), in place; the softmax by
// attention_kernels::softmax_row.
template <class T>
void apply_mechanism(AttentionMechanism m, T* s, std::int64_t rows, std::int64_t P, std::int64_t ld) {
  for (std::int64_t i = 0; i < rows; ++i) {
    T* row = s + i * ld;
    switch (m) {
      case AttentionMechanism::softmax: attention_kernels::softmax_row(row, P); break;
      case AttentionMechanism::identity: break;
      case AttentionMechanism::abs:
        for (std::int64_t j = 0; j < P; ++j) row[j] = std::abs(row[j]);
        break;
      case AttentionMechanism::relu:
        for (std::int64_t j = 0; j < P; ++j) row[j] = std::max(row[j], T(0));
        break;
    }
  }
}

// dst (rows x fan_out) = scale a W for layer l's weights W (fan_in x fan_out) and the first `rows` rows of a
// (whole quanta): on the network's packed weights when it has them (net.packed, layers.hpp) by rows_product
// (packed_rows.hpp: a read where it lies, or packed into `pack` unless `packed` already says a.data(): the
// layers reading one input pack it once), else by Eigen's product. Then epilogue(r0, n) on groups of dst's
// rows in order, each as soon as it is done (rows_product), or on all rows after Eigen's product.
template <class T, class Epilogue>
void project(const NetworkView<T>& net, std::size_t l, const RowMatrix<T>& a, std::int64_t rows, std::int64_t fan_out,
             T scale, RowMatrix<T>& dst, PackedLeft<T>* pack, const T*& packed, Epilogue&& epilogue) {
  const PackedRight<T>* w = l < net.packed.size() ? net.packed[l] : nullptr;
  if (!w || !pack) {
    project(a, rows, net.weights[l], a.cols(), fan_out, scale, dst);
    epilogue(std::int64_t(0), rows);
    return;
  }
  dst.resize(rows, fan_out);
  rows_product(a.data(), a.cols(), rows, *w, dst.data(), fan_out, scale, *pack, packed, epilogue);
}

template <class T>
void project(const NetworkView<T>& net, std::size_t l, const RowMatrix<T>& a, std::int64_t rows, std::int64_t fan_out,
             T scale, RowMatrix<T>& dst, PackedLeft<T>* pack, const T*& packed) {
  project(net, l, a, rows, fan_out, scale, dst, pack, packed, [](std::int64_t, std::int64_t) {});
}

// d (attention weights) -> d (logits) in place on one P x P block: the softmax's Jacobian
// A o (dA - rowsum(A o dA)), or m'(S) dA elementwise.
template <class T>
void mechanism_backward(AttentionMechanism m, const T* A, const T* S, Eigen::Ref<RowMatrix<T>> d) {
  const std::int64_t P = d.rows();
  for (std::int64_t i = 0; i < P; ++i) {
    T* row = d.data() + i * d.outerStride();
    const T* a = A + i * P;
    switch (m) {
      case AttentionMechanism::softmax: {
        T dot = 0;
        for (std::int64_t j = 0; j < P; ++j) dot += a[j] * row[j];
        for (std::int64_t j = 0; j < P; ++j) row[j] = a[j] * (row[j] - dot);
        break;
      }
      case AttentionMechanism::identity: break;
      case AttentionMechanism::abs:
        for (std::int64_t j = 0; j < P; ++j) row[j] *= S[i * P + j] > T(0) ? T(1) : (S[i * P + j] < T(0) ? T(-1) : T(0));
        break;
      case AttentionMechanism::relu:
        for (std::int64_t j = 0; j < P; ++j) row[j] *= S[i * P + j] > T(0) ? T(1) : T(0);
        break;
    }
  }
}

}  // namespace attention_detail

// The forward pass of attention node `node` over `points` points of `in` (rows (point, position));
// fills `cache` and writes the node's output to `out`. With keep_weights the attention weights (and
// the logits of elementwise mechanisms) are kept in the cache for a backward pass or a tangent. The
// projections run on the network's packed weights when it has them, with `pack` (if not null) holding
// their left factors in turn. after(r, row) is called on each of the output's rows r < points x positions
// once it is final, while it is in cache (a residual sum reading the node).
struct NoRowEpilogue {
  template <class T>
  void operator()(std::int64_t, const T*) const {}
};

template <class T, class After = NoRowEpilogue>
void attention_forward(const SeqNode& node, const std::vector<LayerScales>& scales, const NetworkView<T>& net,
                       const RowMatrix<T>& in, std::int64_t points, AttentionCache<T>& cache, RowMatrix<T>& out,
                       bool keep_weights = true, PackedLeft<T>* pack = nullptr, After&& after = After()) {
  using namespace attention_detail;
  const Layers L(node);
  const std::int64_t P = node.in.positions(), H = node.heads, dk = node.key_width, dv = node.value_width,
                     hk = H * dk, hv = H * dv;
  const std::int64_t valid = points * P, rows = round_up(valid, kRowQuantum);
  const auto mech = static_cast<AttentionMechanism>(node.mechanism);
  if (node.pos_emb) positional_inputs(node, scales, net, in, points, cache);
  const RowMatrix<T>& kin = node.pos_emb ? cache.key_input : in;
  const RowMatrix<T>& vin = node.pos_emb && node.val_pos_emb ? cache.key_input : in;
  const T* packed = nullptr;  // which input `pack` holds
  project(net, L.k, kin, rows, hk, static_cast<T>(scales[L.k].forward), cache.keys, pack, packed);
  if (!node.tied) project(net, L.q, kin, rows, hk, static_cast<T>(scales[L.q].forward), cache.queries, pack, packed);
  project(net, L.v, vin, rows, hv, static_cast<T>(scales[L.v].forward), cache.values, pack, packed);
  const RowMatrix<T>& queries = node.tied ? cache.keys : cache.queries;
  const bool keep_logits = keep_weights && (mech == AttentionMechanism::abs || mech == AttentionMechanism::relu);
  if (keep_weights) cache.weights.resize(points * H * P, P);
  if (keep_logits) cache.logits.resize(points * H * P, P);
  if (!keep_weights) cache.logits.resize(0, 0);
  zero_rows(cache.heads, valid, hv);
  const T alpha = static_cast<T>(logit_scale(node));
  bool own = false;
  if constexpr (std::is_same<T, float>::value && attention_kernels::kOwnProducts) {
#if defined(__AVX512F__)
    // Per point and head: K_h^T (kt), then S = alpha Q_h K_h^T, the mechanism, heads_h = A V_h (s holds
    // S, then A; see attention_kernels.hpp), V_h copied into a block of its own first (vh: its rows as they
    // lie in the values, H dv apart, fall into a few sets of the L1 cache and evict one another).
    own = true;
    const std::int64_t ldt = attention_kernels::padded_positions(P), dkp = round_up(dk, 16);
    cache.scratch.resize(static_cast<std::size_t>((dkp + P) * ldt + P * dv));
    float* kt = cache.scratch.data();
    float* s = kt + dkp * ldt;
    float* vh = s + P * ldt;
    for (std::int64_t p = 0; p < points; ++p)
      for (std::int64_t h = 0; h < H; ++h) {
        const std::int64_t block = (p * H + h) * P;
        attention_kernels::transpose_keys(cache.keys.data() + p * P * hk + h * dk, hk, P, dk, kt, ldt);
        attention_kernels::product(queries.data() + p * P * hk + h * dk, hk, kt, ldt, P, P, dk, alpha, s, ldt);
        if (keep_logits)
          for (std::int64_t i = 0; i < P; ++i) std::copy(s + i * ldt, s + i * ldt + P, cache.logits.row(block + i).data());
        apply_mechanism<float>(mech, s, P, P, ldt);
        if (keep_weights)
          for (std::int64_t i = 0; i < P; ++i) std::copy(s + i * ldt, s + i * ldt + P, cache.weights.row(block + i).data());
        for (std::int64_t i = 0; i < P; ++i) {
          const float* v = cache.values.data() + (p * P + i) * hv + h * dv;
          std::copy(v, v + dv, vh + i * dv);
        }
        attention_kernels::product(s, ldt, vh, dv, P, dv, P, 1.0f, cache.heads.data() + p * P * hv + h * dv, hv);
      }
#endif
  }
  if (!own) {
    // Eigen's products, on the cache's weights or one block of scratch.
    if (!keep_weights) cache.scratch.resize(static_cast<std::size_t>(P * P));
    for (std::int64_t p = 0; p < points; ++p)
      for (std::int64_t h = 0; h < H; ++h) {
        const std::int64_t block = (p * H + h) * P;
        const auto Q = queries.block(p * P, h * dk, P, dk);
        const auto K = cache.keys.block(p * P, h * dk, P, dk);
        Eigen::Map<RowMatrix<T>> A(keep_weights ? cache.weights.row(block).data() : cache.scratch.data(), P, P);
        A.noalias() = alpha * (Q * K.transpose());
        if (keep_logits) cache.logits.middleRows(block, P) = A;
        apply_mechanism<T>(mech, A.data(), P, P, P);
        cache.heads.block(p * P, h * dv, P, dv).noalias() = A * cache.values.block(p * P, h * dv, P, dv);
      }
  }
  const T fo = static_cast<T>(scales[L.o].forward), bo = static_cast<T>(scales[L.o].bias);
  const T* b = net.biases[L.o];
  project(net, L.o, cache.heads, rows, node.width, fo, out, pack, packed, [&](std::int64_t r0, std::int64_t n) {
    for (std::int64_t r = r0; r < std::min(valid, r0 + n); ++r) {
      T* row = out.data() + r * node.width;
      if (b)
        for (std::int64_t j = 0; j < node.width; ++j) row[j] += bo * b[j];
      after(r, static_cast<const T*>(row));
    }
  });
  out.bottomRows(rows - valid).setZero();
}

// The backward pass of attention node `node` for C cotangents per point: from its output cotangent
// g (rows (point, position), columns (c, width)) to the errors of K, Q, V in `cache` (see
// AttentionCache) and, if `in` is not null, adds the input's cotangent (rows (point, position),
// columns (c, channel)) to it. `back` is a buffer.
template <class T>
void attention_backward(const SeqNode& node, const std::vector<LayerScales>& scales, const NetworkView<T>& net,
                        AttentionCache<T>& cache, const RowMatrix<T>& g, std::int64_t points, std::int64_t C,
                        RowMatrix<T>* in, RowMatrix<T>& back) {
  using namespace attention_detail;
  const Layers L(node);
  const std::int64_t P = node.in.positions(), c = node.in.channels, H = node.heads, dk = node.key_width,
                     dv = node.value_width, hk = H * dk, hv = H * dv;
  const std::int64_t valid = points * P * C, rows = round_up(points * P, kRowQuantum) * C;
  const auto mech = static_cast<AttentionMechanism>(node.mechanism);
  // d heads = fO g Wo^T, rows (point, position, c).
  RowMatrix<T> dheads(valid, hv);
  dheads.noalias() = static_cast<T>(scales[L.o].forward) *
                     (Eigen::Map<const RowMatrix<T>>(g.data(), valid, node.width) *
                      Eigen::Map<const RowMatrix<T>>(net.weights[L.o], hv, node.width).transpose());
  RowMatrix<T>& dK = cache.errors[0];
  RowMatrix<T>& dQ = cache.errors[1];
  RowMatrix<T>& dV = cache.errors[2];
  dK.setZero(rows, hk);
  if (!node.tied) dQ.setZero(rows, hk);
  dV.setZero(rows, hv);
  RowMatrix<T>& dQref = node.tied ? dK : dQ;
  const RowMatrix<T>& queries = node.tied ? cache.keys : cache.queries;
  const T alpha = static_cast<T>(logit_scale(node));
  RowMatrix<T> dA(P, P);
  const std::int64_t stride_v = C * hv, stride_k = C * hk;
  for (std::int64_t p = 0; p < points; ++p)
    for (std::int64_t h = 0; h < H; ++h) {
      const auto A = cache.weights.middleRows((p * H + h) * P, P);
      const T* S = cache.logits.rows() ? cache.logits.data() + (p * H + h) * P * P : nullptr;
      const auto V = cache.values.block(p * P, h * dv, P, dv);
      const auto K = cache.keys.block(p * P, h * dk, P, dk);
      const auto Q = queries.block(p * P, h * dk, P, dk);
      for (std::int64_t cc = 0; cc < C; ++cc) {
        const std::int64_t row0 = p * P * C + cc;
        const ConstStrided<T> G(dheads.data() + row0 * hv + h * dv, P, dv, Eigen::OuterStride<>(stride_v));
        Strided<T> dVh(dV.data() + row0 * hv + h * dv, P, dv, Eigen::OuterStride<>(stride_v));
        dVh.noalias() += A.transpose() * G;
        dA.noalias() = G * V.transpose();
        mechanism_backward<T>(mech, A.data(), S, dA);
        dA *= alpha;
        Strided<T> dQh(dQref.data() + row0 * hk + h * dk, P, dk, Eigen::OuterStride<>(stride_k));
        dQh.noalias() += dA * K;
        Strided<T> dKh(dK.data() + row0 * hk + h * dk, P, dk, Eigen::OuterStride<>(stride_k));
        dKh.noalias() += dA.transpose() * Q;
      }
    }
  const bool pe = node.pos_emb != 0;
  const std::int64_t ck = pe && node.pos_emb == 2 ? c + node.pos_channels : c;
  const std::int64_t cv = pe && node.val_pos_emb ? ck : c;
  if (!in && !pe) return;
  // The cotangents of the keys' input U (rows (point, position, c)) and of the values' input.
  RowMatrix<T> du(valid, ck), dw(valid, cv);
  du.noalias() = static_cast<T>(scales[L.k].forward) *
                 (dK.topRows(valid) * Eigen::Map<const RowMatrix<T>>(net.weights[L.k], ck, hk).transpose());
  if (!node.tied)
    du.noalias() += static_cast<T>(scales[L.q].forward) *
                    (dQ.topRows(valid) * Eigen::Map<const RowMatrix<T>>(net.weights[L.q], ck, hk).transpose());
  dw.noalias() = static_cast<T>(scales[L.v].forward) *
                 (dV.topRows(valid) * Eigen::Map<const RowMatrix<T>>(net.weights[L.v], cv, hv).transpose());
  if (pe) {  // the embedding's errors: U's (and the values' input's) embedding part
    RowMatrix<T>& dE = cache.errors[3];
    const std::int64_t n = node.pos_channels, off = node.pos_emb == 2 ? c : 0;
    dE.setZero(rows, n);
    dE.topRows(valid) = du.block(0, off, valid, n);
    if (node.val_pos_emb) dE.topRows(valid) += dw.block(0, off, valid, n);
  }
  if (!in) return;
  Eigen::Map<RowMatrix<T>> dx(in->data(), valid, c);
  dx += du.leftCols(c);
  dx += dw.leftCols(c);
  (void)back;
}

// The forward-mode tangent of attention node `node` (see jvp.hpp): from its input's tangent dx (or
// null) and the direction's dW of its layers (null where zero) to `out`, from the forward pass's
// `cache` and input `x`.
template <class T>
void attention_tangent(const SeqNode& node, const std::vector<LayerScales>& scales, const NetworkView<T>& net,
                       const NetworkView<T>& dir, const AttentionCache<T>& cache, const RowMatrix<T>& x,
                       const RowMatrix<T>* dx, std::int64_t points, RowMatrix<T>& out) {
  using namespace attention_detail;
  const Layers L(node);
  const std::int64_t P = node.in.positions(), c = node.in.channels, H = node.heads, dk = node.key_width,
                     dv = node.value_width, hk = H * dk, hv = H * dv;
  const std::int64_t valid = points * P, rows = round_up(valid, kRowQuantum);
  const auto mech = static_cast<AttentionMechanism>(node.mechanism);
  // U's tangent: dx and the embedding's f_E B dE in their columns (null if both are zero).
  const bool pe = node.pos_emb != 0;
  RowMatrix<T> dU;
  const RowMatrix<T>* dkin = dx;
  if (pe && (dx || dir.weights[L.e])) {
    const std::int64_t n = node.pos_channels, off = node.pos_emb == 2 ? c : 0;
    dU.setZero(rows, cache.key_input.cols());
    if (dx) dU.leftCols(c) = dx->topRows(rows);
    if (dir.weights[L.e]) {
      const RowMatrix<T> demb = static_cast<T>(scales[L.e].forward) *
                                (cache.pos_input.topRows(P) * Eigen::Map<const RowMatrix<T>>(dir.weights[L.e], P, n));
      for (std::int64_t p = 0; p < points; ++p) dU.block(p * P, off, P, n) += demb;
    }
    dkin = &dU;
  } else if (pe) {
    dkin = nullptr;
  }
  const RowMatrix<T>& kin = pe ? cache.key_input : x;
  const RowMatrix<T>& vin = pe && node.val_pos_emb ? cache.key_input : x;
  const RowMatrix<T>* dvin = pe && node.val_pos_emb ? dkin : dx;
  // d (a W) scaled: f (da W + a dW), zero if both are.
  const auto tangent = [&](std::size_t l, const RowMatrix<T>& a, const RowMatrix<T>* da, std::int64_t cols,
                           RowMatrix<T>& d) {
    d.setZero(rows, cols);
    const T f = static_cast<T>(scales[l].forward);
    const std::int64_t fan_in = a.cols();
    if (da) d.noalias() += f * (da->topRows(rows) * Eigen::Map<const RowMatrix<T>>(net.weights[l], fan_in, cols));
    if (dir.weights[l])
      d.noalias() += f * (a.topRows(rows) * Eigen::Map<const RowMatrix<T>>(dir.weights[l], fan_in, cols));
  };
  RowMatrix<T> dK, dQ, dV, dheads, dS(P, P);
  tangent(L.k, kin, dkin, hk, dK);
  if (!node.tied) tangent(L.q, kin, dkin, hk, dQ);
  tangent(L.v, vin, dvin, hv, dV);
  const RowMatrix<T>& queries = node.tied ? cache.keys : cache.queries;
  const RowMatrix<T>& dQref = node.tied ? dK : dQ;
  const T alpha = static_cast<T>(logit_scale(node));
  dheads.setZero(rows, hv);
  for (std::int64_t p = 0; p < points; ++p)
    for (std::int64_t h = 0; h < H; ++h) {
      const auto A = cache.weights.middleRows((p * H + h) * P, P);
      const T* S = cache.logits.rows() ? cache.logits.data() + (p * H + h) * P * P : nullptr;
      const auto K = cache.keys.block(p * P, h * dk, P, dk);
      const auto Q = queries.block(p * P, h * dk, P, dk);
      dS.noalias() = alpha * (dQref.block(p * P, h * dk, P, dk) * K.transpose());
      dS.noalias() += alpha * (Q * dK.block(p * P, h * dk, P, dk).transpose());
      mechanism_backward<T>(mech, A.data(), S, dS);  // the Jacobian is symmetric: the same map
      auto out_h = dheads.block(p * P, h * dv, P, dv);
      out_h.noalias() = dS * cache.values.block(p * P, h * dv, P, dv);
      out_h.noalias() += A * dV.block(p * P, h * dv, P, dv);
    }
  const T fo = static_cast<T>(scales[L.o].forward);
  out.setZero(rows, node.width);
  out.noalias() += fo * (dheads * Eigen::Map<const RowMatrix<T>>(net.weights[L.o], hv, node.width));
  if (dir.weights[L.o])
    out.noalias() += fo * (cache.heads.topRows(rows) * Eigen::Map<const RowMatrix<T>>(dir.weights[L.o], hv, node.width));
  if (const T* db = dir.biases[L.o]) {
    const T bo = static_cast<T>(scales[L.o].bias);
    for (std::int64_t r = 0; r < valid; ++r)
      for (std::int64_t j = 0; j < node.width; ++j) out(r, j) += bo * db[j];
  }
}

}  // namespace nnpk
