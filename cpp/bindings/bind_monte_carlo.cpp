#include <pybind11/stl.h>

#include "bindings.hpp"
#include "nnpk/monte_carlo.hpp"

namespace nnpk::bind {

template <class T>
static py::list monte_carlo_sums_typed(const py::array& x1, const py::object& x2, const MLPSpec& spec,
                                       MonteCarloOptions opt, const py::object& progress,
                                       const py::object& initial) {
  const auto [n1, d1] = matrix_shape(x1, "x1");
  std::int64_t n2 = n1;
  const T* x2_data = nullptr;
  if (!x2.is_none()) {
    const py::array x2a = x2.cast<py::array>();
    const auto shape2 = matrix_shape(x2a, "x2");
    if (!x2a.dtype().is(x1.dtype())) throw py::type_error("x2 must have the dtype of x1");
    if (shape2.second != d1) throw py::value_error("x2 and x1 have different feature counts");
    n2 = shape2.first;
    x2_data = static_cast<const T*>(x2a.data());
  }
  if (d1 != spec.input_dim()) throw py::value_error("x1 has a different feature count from the architecture");
  const std::size_t n_kernels = kernel_layers(spec, opt.all_layers).size();
  std::vector<py::array_t<double, py::array::c_style>> starts;
  if (!initial.is_none()) {
    for (const py::handle& h : initial.cast<py::list>())
      starts.push_back(h.cast<py::array_t<double, py::array::c_style>>());
    if (starts.size() != n_kernels) throw py::value_error("initial needs one partial sum per kernel");
    for (const auto& s : starts)
      if (s.ndim() != 2 || s.shape(0) != n1 || s.shape(1) != n2)
        throw py::value_error("initial partial sums must have shape (n1, n2)");
  }
  std::vector<py::array_t<double>> outs;
  std::vector<double*> sums;
  for (std::size_t k = 0; k < n_kernels; ++k) {
    outs.emplace_back(std::vector<py::ssize_t>{n1, n2});
    double* p = outs.back().mutable_data();
    if (starts.empty()) {
      std::fill(p, p + n1 * n2, 0.0);
    } else {
      std::copy(starts[k].data(), starts[k].data() + n1 * n2, p);
    }
    sums.push_back(p);
  }
  std::optional<py::error_already_set> pending;
  opt.poll = make_poll(progress, pending);
  const T* x1_data = static_cast<const T*>(x1.data());
  try {
    // Safe without the GIL: the engine reads x1/x2 and writes only the arrays made
    // above; Python is entered again only through the poll, which takes the GIL.
    py::gil_scoped_release release;
    monte_carlo_accumulate<T>(spec, x1_data, n1, x2_data, n2, opt, sums);
  } catch (const Cancelled&) {
    if (pending) throw std::move(*pending);
    throw;
  }
  py::list result;
  for (auto& o : outs) result.append(o);
  return result;
}

void bind_monte_carlo(py::module_& m) {
  m.def(
      "monte_carlo_sums",
      [](const py::array& x1, const py::object& x2, const MLPSpec& spec, std::uint64_t seed, std::uint64_t start,
         std::uint64_t stop, bool all_layers, int n_threads, std::int64_t tile_rows, std::int64_t gram_tile,
         std::int64_t panel_cols, const py::object& progress, const py::object& initial) {
        if (stop < start) throw py::value_error("stop must not be below start");
        if (n_threads < 1) throw py::value_error("n_threads must be positive");
        MonteCarloOptions opt;
        opt.seed = seed;
        opt.start = start;
        opt.stop = stop;
        opt.all_layers = all_layers;
        opt.n_threads = n_threads;
        opt.tile_rows = tile_rows;
        opt.gram_tile = gram_tile;
        opt.panel_cols = panel_cols;
        if (x1.dtype().is(py::dtype::of<float>())) return monte_carlo_sums_typed<float>(x1, x2, spec, opt, progress, initial);
        if (x1.dtype().is(py::dtype::of<double>())) return monte_carlo_sums_typed<double>(x1, x2, spec, opt, progress, initial);
        throw py::type_error("x1 must be float32 or float64");
      },
      py::arg("x1"), py::arg("x2"), py::arg("spec"), py::arg("seed"), py::arg("start"), py::arg("stop"),
      py::arg("all_layers"), py::arg("n_threads"), py::arg("tile_rows"), py::arg("gram_tile"), py::arg("panel_cols"),
      py::arg("progress"), py::arg("initial"),
      "Sums over networks [start, stop) of each kernel's un-normalised Gram h(x1) h(x2)^T (float64),\n"
      "continued from `initial` (partial sums of earlier networks, copied) when it is given");
  m.attr("ROW_QUANTUM") = kRowQuantum;
}

}  // namespace nnpk::bind
