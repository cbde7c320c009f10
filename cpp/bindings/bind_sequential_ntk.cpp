#include <pybind11/stl.h>

#include "bindings.hpp"
#include "nnpk/sequential_ntk.hpp"

namespace nnpk::bind {

template <class T>
static py::list sequential_empirical_typed(const py::array& x1, const py::object& x2, const SequentialSpec& spec,
                                           const py::list& params, const TangentRequest& req,
                                           const TangentOptions& opt) {
  std::vector<py::array_t<T, py::array::c_style>> keep;
  const NetworkView<T> net = network_view<T>(spec.params, params, keep);
  return tangent_outputs<T>(x1, x2, spec.input.size(), spec.params, spec.n_outputs(), req, py::none(), py::none(),
                            [&](const T* a, std::int64_t n1, const T* b, std::int64_t n2, auto poll, const auto& sums) {
                              TangentOptions o = opt;
                              o.poll = poll;
                              sequential_tangent_empirical<T>(spec, net, a, n1, b, n2, req, o, sums);
                            });
}

void bind_sequential_ntk(py::module_& m) {
  m.def(
      "sequential_tangent_sums",
      [](const py::array& x1, const py::object& x2, const SequentialSpec& spec, std::uint64_t seed,
         std::uint64_t start, std::uint64_t stop, const std::vector<bool>& weights, const std::vector<bool>& biases,
         bool nngp, bool per_layer, bool per_logit, int n_threads, std::int64_t tile_rows, std::int64_t gram_tile,
         std::int64_t panel_cols, const py::object& progress, const py::object& initial) {
        if (stop < start) throw py::value_error("stop must not be below start");
        const TangentRequest req = make_request(spec.params, weights, biases, nngp, per_layer, per_logit);
        TangentOptions opt = make_tangent_options(n_threads, tile_rows, gram_tile, panel_cols);
        opt.seed = seed;
        opt.start = start;
        opt.stop = stop;
        auto run = [&](auto tag) {
          using T = decltype(tag);
          return tangent_outputs<T>(x1, x2, spec.input.size(), spec.params, spec.n_outputs(), req, progress, initial,
                                    [&](const T* a, std::int64_t n1, const T* b, std::int64_t n2, auto poll,
                                        const auto& sums) {
                                      TangentOptions o = opt;
                                      o.poll = poll;
                                      sequential_tangent_monte_carlo<T>(spec, a, n1, b, n2, req, o, sums);
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
      "Sums over networks [start, stop) of a sequential network's tangent kernels (and the nngp), as\n"
      "tangent_sums: [nngp], then one total or one sum per included (parametrised layer, part)");

  m.def(
      "sequential_empirical_sums",
      [](const py::array& x1, const py::object& x2, const SequentialSpec& spec, const py::list& params,
         const std::vector<bool>& weights, const std::vector<bool>& biases, bool nngp, bool per_layer,
         bool per_logit, int n_threads, std::int64_t tile_rows, std::int64_t gram_tile) {
        const TangentRequest req = make_request(spec.params, weights, biases, nngp, per_layer, per_logit);
        const TangentOptions opt = make_tangent_options(n_threads, tile_rows, gram_tile, 128);
        if (x1.dtype().is(py::dtype::of<float>()))
          return sequential_empirical_typed<float>(x1, x2, spec, params, req, opt);
        if (x1.dtype().is(py::dtype::of<double>()))
          return sequential_empirical_typed<double>(x1, x2, spec, params, req, opt);
        throw py::type_error("x1 must be float32 or float64");
      },
      py::arg("x1"), py::arg("x2"), py::arg("spec"), py::arg("params"), py::arg("weights"), py::arg("biases"),
      py::arg("nngp"), py::arg("per_layer"), py::arg("per_logit"), py::arg("n_threads"), py::arg("tile_rows"),
      py::arg("gram_tile"),
      "Tangent kernels (and the nngp) of one sequential network with the given stored parameters\n"
      "((fan_in, fan_out) weight matrices)");
}

}  // namespace nnpk::bind
