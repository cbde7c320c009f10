#include <pybind11/stl.h>

#include "bindings.hpp"
#include "nnpk/ntk.hpp"

namespace nnpk::bind {

static TangentRequest make_request(const MLPSpec& spec, const std::vector<bool>& weights,
                                   const std::vector<bool>& biases, bool nngp, bool per_layer, bool per_logit) {
  if (weights.size() != spec.layers.size() || biases.size() != spec.layers.size())
    throw py::value_error("weights and biases need one flag per layer");
  TangentRequest req;
  req.nngp = nngp;
  req.weights.assign(weights.begin(), weights.end());
  req.biases.assign(biases.begin(), biases.end());
  req.per_layer = per_layer;
  req.per_logit = per_logit;
  return req;
}

static std::vector<py::ssize_t> tangent_shape(const MLPSpec& spec, const Points& p, bool per_logit) {
  const py::ssize_t c = spec.layers.back().fan_out;
  if (per_logit) return {p.n1, p.n2, c, c};
  return {p.n1, p.n2};
}

// Outputs: [nngp (n1, n2)] then the tangent sums.
template <class T, class Engine>
static py::list tangent_typed(const py::array& x1, const py::object& x2, const MLPSpec& spec, const TangentRequest& req,
                              const py::object& progress, const py::object& initial, Engine&& engine) {
  const Points p = check_points(x1, x2, spec.input_dim());
  std::vector<py::array_t<double>> outs;
  std::vector<py::array_t<double>> tangent =
      make_outputs(req.n_tangent_outputs(spec), tangent_shape(spec, p, req.per_logit), py::none());
  if (req.nngp) outs = make_outputs(1, {p.n1, p.n2}, py::none());
  for (auto& t : tangent) outs.push_back(std::move(t));
  if (!initial.is_none()) {
    const py::list starts = initial.cast<py::list>();
    if (starts.size() != outs.size()) throw py::value_error("initial needs one partial sum per output");
    for (std::size_t k = 0; k < outs.size(); ++k) {
      const auto s = starts[k].cast<py::array_t<double, py::array::c_style>>();
      if (s.size() != outs[k].size()) throw py::value_error("initial partial sums must have the output's shape");
      std::copy(s.data(), s.data() + s.size(), outs[k].mutable_data());
    }
  }
  const std::vector<double*> sums = data_pointers(outs);
  run_without_gil(progress, [&](auto poll) {
    engine(static_cast<const T*>(p.x1), p.n1, static_cast<const T*>(p.x2), p.n2, poll, sums);
  });
  return as_list(outs);
}

static TangentOptions make_options(int n_threads, std::int64_t tile_rows, std::int64_t gram_tile,
                                   std::int64_t panel_cols) {
  if (n_threads < 1) throw py::value_error("n_threads must be positive");
  TangentOptions opt;
  opt.n_threads = n_threads;
  opt.tile_rows = tile_rows;
  opt.gram_tile = gram_tile;
  opt.panel_cols = panel_cols;
  return opt;
}

template <class T>
static py::list empirical_typed(const py::array& x1, const py::object& x2, const MLPSpec& spec,
                                const py::list& params, const TangentRequest& req, const TangentOptions& opt) {
  std::vector<py::array_t<T, py::array::c_style>> keep;
  const NetworkView<T> net = network_view<T>(spec.layers, params, keep);
  return tangent_typed<T>(x1, x2, spec, req, py::none(), py::none(),
                          [&](const T* a, std::int64_t n1, const T* b, std::int64_t n2, auto poll, const auto& sums) {
                            TangentOptions o = opt;
                            o.poll = poll;
                            tangent_empirical<T>(spec, net, a, n1, b, n2, req, o, sums);
                          });
}

void bind_ntk(py::module_& m) {
  m.def(
      "tangent_sums",
      [](const py::array& x1, const py::object& x2, const MLPSpec& spec, std::uint64_t seed, std::uint64_t start,
         std::uint64_t stop, const std::vector<bool>& weights, const std::vector<bool>& biases, bool nngp,
         bool per_layer, bool per_logit, int n_threads, std::int64_t tile_rows, std::int64_t gram_tile,
         std::int64_t panel_cols, const py::object& progress, const py::object& initial) {
        if (stop < start) throw py::value_error("stop must not be below start");
        const TangentRequest req = make_request(spec, weights, biases, nngp, per_layer, per_logit);
        TangentOptions opt = make_options(n_threads, tile_rows, gram_tile, panel_cols);
        opt.seed = seed;
        opt.start = start;
        opt.stop = stop;
        auto run = [&](auto tag) {
          using T = decltype(tag);
          return tangent_typed<T>(x1, x2, spec, req, progress, initial,
                                  [&](const T* a, std::int64_t n1, const T* b, std::int64_t n2, auto poll,
                                      const auto& sums) {
                                    TangentOptions o = opt;
                                    o.poll = poll;
                                    tangent_monte_carlo<T>(spec, a, n1, b, n2, req, o, sums);
                                  });
        };
        if (x1.dtype().is(py::dtype::of<float>())) return run(float{});
        if (x1.dtype().is(py::dtype::of<double>())) return run(double{});
        throw py::type_error("x1 must be float32 or float64");
      },
      py::arg("x1"), py::arg("x2"), py::arg("spec"), py::arg("seed"), py::arg("start"), py::arg("stop"),
      py::arg("weights"), py::arg("biases"), py::arg("nngp"), py::arg("per_layer"), py::arg("per_logit"),
      py::arg("n_threads"), py::arg("tile_rows"), py::arg("gram_tile"), py::arg("panel_cols"), py::arg("progress"),
      py::arg("initial"),
      "Sums over networks [start, stop) of tangent kernels (and the nngp): [nngp], then one total or one\n"
      "sum per included (layer, part); traced sums are over logits (divide by C for the kernel)");

  m.def(
      "empirical_sums",
      [](const py::array& x1, const py::object& x2, const MLPSpec& spec, const py::list& params,
         const std::vector<bool>& weights, const std::vector<bool>& biases, bool nngp, bool per_layer,
         bool per_logit, int n_threads, std::int64_t tile_rows, std::int64_t gram_tile) {
        const TangentRequest req = make_request(spec, weights, biases, nngp, per_layer, per_logit);
        const TangentOptions opt = make_options(n_threads, tile_rows, gram_tile, 128);
        if (x1.dtype().is(py::dtype::of<float>())) return empirical_typed<float>(x1, x2, spec, params, req, opt);
        if (x1.dtype().is(py::dtype::of<double>())) return empirical_typed<double>(x1, x2, spec, params, req, opt);
        throw py::type_error("x1 must be float32 or float64");
      },
      py::arg("x1"), py::arg("x2"), py::arg("spec"), py::arg("params"), py::arg("weights"), py::arg("biases"),
      py::arg("nngp"), py::arg("per_layer"), py::arg("per_logit"), py::arg("n_threads"), py::arg("tile_rows"),
      py::arg("gram_tile"),
      "Tangent kernels (and the nngp) of one network with the given stored parameters");
}

}  // namespace nnpk::bind
