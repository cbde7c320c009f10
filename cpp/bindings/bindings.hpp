// Shared pieces of the binding files.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <functional>
#include <optional>

namespace nnpk::bind {

namespace py = pybind11;

void bind_arch(py::module_& m);
void bind_sampling(py::module_& m);
void bind_monte_carlo(py::module_& m);
void bind_analytic(py::module_& m);

// A poll for the engine: checks for Ctrl-C and reports progress to `progress`
// (a Python callable taking the number of networks done, or None). A Python
// error raised there is kept in `pending` and the engine is asked to stop.
inline std::function<bool(std::uint64_t)> make_poll(py::object progress,
                                                    std::optional<py::error_already_set>& pending) {
  return [progress, &pending](std::uint64_t done) -> bool {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) {
      pending.emplace();
      return true;
    }
    if (!progress.is_none()) {
      try {
        progress(done);
      } catch (py::error_already_set& e) {
        pending.emplace(std::move(e));
        return true;
      }
    }
    return false;
  };
}

// Checks a C-contiguous 2-D array and returns its shape.
inline std::pair<std::int64_t, std::int64_t> matrix_shape(const py::array& a, const char* name) {
  if (a.ndim() != 2) throw py::value_error(std::string(name) + " must be 2-D");
  if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + " must be C-contiguous");
  return {a.shape(0), a.shape(1)};
}

}  // namespace nnpk::bind
