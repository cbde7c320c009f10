#include <pybind11/stl.h>

#include <optional>

#include "bindings.hpp"
#include "nnpk/kernels/conditional.hpp"
#include "nnpk/kernels/monte_carlo.hpp"

namespace nnpk::bind {

template <class T>
static py::list sequential_sums_typed(const py::array& x1, const py::object& x2, const SequentialSpec& spec,
                                      MonteCarloOptions opt, const py::object& progress, const py::object& initial,
                                      bool in_place) {
  const Points p = check_points(x1, x2, spec.input.size());
  auto outs = make_outputs(opt.layers.empty() ? 1 : opt.layers.size(), {p.n1, p.n2}, initial, in_place, opt.n_threads);
  const std::vector<double*> sums = data_pointers(outs);
  run_without_gil(progress, [&](auto poll) {
    opt.poll = poll;
    sequential_monte_carlo<T>(spec, static_cast<const T*>(p.x1), p.n1, static_cast<const T*>(p.x2), p.n2, opt, sums);
  });
  return as_list(outs);
}

void bind_monte_carlo(py::module_& m) {
  m.def(
      "sequential_sums",
      [](const py::array& x1, const py::object& x2, const SequentialSpec& spec, std::uint64_t seed, std::uint64_t start,
         std::uint64_t stop, const std::vector<std::int64_t>& nodes, int n_threads, std::int64_t tile_rows,
         std::int64_t gram_tile, std::int64_t panel_cols, const py::object& progress, const py::object& initial,
         bool in_place) {
        const MonteCarloOptions opt =
            monte_carlo_options(seed, start, stop, nodes, n_threads, tile_rows, gram_tile, panel_cols);
        if (x1.dtype().is(py::dtype::of<float>())) return sequential_sums_typed<float>(x1, x2, spec, opt, progress, initial, in_place);
        if (x1.dtype().is(py::dtype::of<double>())) return sequential_sums_typed<double>(x1, x2, spec, opt, progress, initial, in_place);
        throw py::type_error("x1 must be float32 or float64");
      },
      py::arg("x1"), py::arg("x2"), py::arg("spec"), py::arg("seed"), py::arg("start"), py::arg("stop"),
      py::arg("nodes"), py::arg("n_threads"), py::arg("tile_rows"), py::arg("gram_tile"), py::arg("panel_cols"),
      py::arg("progress"), py::arg("initial"), py::arg("in_place") = false,
      "Sums over networks [start, stop) of the un-normalised Gram of each node's features in `nodes` (its\n"
      "output, averaged over positions when spatial; empty: the logits), in float64, continued from `initial`");

  m.def(
      "sequential_conditional_sums",
      [](const py::array& x1, const py::object& x2, const SequentialSpec& spec, const std::vector<std::pair<std::int64_t, std::int64_t>>& pairs,
         const std::vector<bool>& unit_second_moment, std::uint64_t seed, std::uint64_t start, std::uint64_t stop,
         int n_threads, std::int64_t tile_rows, std::int64_t gram_tile, const py::object& progress,
         const py::object& initial, bool in_place, std::int64_t networks_per_pass,
         const std::vector<std::optional<bool>>& controls) {
        if (pairs.empty()) throw py::value_error("pairs must name at least one (dense, activation) pair");
        if (unit_second_moment.size() != pairs.size())
          throw py::value_error("unit_second_moment needs one flag per pair (" + std::to_string(pairs.size()) +
                                "), got " + std::to_string(unit_second_moment.size()));
        if (!controls.empty() && controls.size() != pairs.size())
          throw py::value_error("controls needs one entry per pair (" + std::to_string(pairs.size()) + "), got " +
                                std::to_string(controls.size()));
        std::vector<ConditionalPair> engine_pairs;
        for (std::size_t k = 0; k < pairs.size(); ++k) {
          const bool control = !controls.empty() && controls[k].has_value();
          engine_pairs.push_back({pairs[k].first, pairs[k].second, unit_second_moment[k], control,
                                  control && *controls[k]});
        }
        if (networks_per_pass < 1) throw py::value_error("networks_per_pass must be positive");
        MonteCarloOptions opt = monte_carlo_options(seed, start, stop, {}, n_threads, tile_rows, gram_tile, 0);
        opt.networks_per_pass = networks_per_pass;
        auto run = [&](auto tag) {
          using T = decltype(tag);
          const Points p = check_points(x1, x2, spec.input.size());
          auto outs = make_outputs(pairs.size(), {p.n1, p.n2}, initial, in_place, opt.n_threads);
          const std::vector<double*> sums = data_pointers(outs);
          run_without_gil(progress, [&](auto poll) {
            opt.poll = poll;
            sequential_conditional<T>(spec, engine_pairs, static_cast<const T*>(p.x1), p.n1,
                                      static_cast<const T*>(p.x2), p.n2, opt, sums);
          });
          return as_list(outs);
        };
        if (x1.dtype().is(py::dtype::of<float>())) return run(float{});
        if (x1.dtype().is(py::dtype::of<double>())) return run(double{});
        throw py::type_error("x1 must be float32 or float64");
      },
      py::arg("x1"), py::arg("x2"), py::arg("spec"), py::arg("pairs"), py::arg("unit_second_moment"),
      py::arg("seed"), py::arg("start"), py::arg("stop"), py::arg("n_threads"), py::arg("tile_rows"),
      py::arg("gram_tile"), py::arg("progress"), py::arg("initial"), py::arg("in_place") = false,
      py::arg("networks_per_pass") = 1, py::arg("controls") = std::vector<std::optional<bool>>{},
      "Sums over networks [start, stop) of the conditional kernel of each (dense node, activation node) pair:\n"
      "the activation's output kernel integrated over the dense layer's weights given its input (float64),\n"
      "continued from `initial` (copied, or with in_place accumulated into those very arrays); each pass over\n"
      "the output adds up to networks_per_pass networks (their features held at once); the sums do not\n"
      "depend on it. controls: per pair None, or the unit_second_moment flag of the first hidden layer's\n"
      "activation, which the pair's dense node reads: its sums then take the control variate");

}

}  // namespace nnpk::bind