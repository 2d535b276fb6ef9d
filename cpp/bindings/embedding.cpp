// Binding of the embedding gradient kernel (kernels/embedding.hpp): shapes and index range checked, GIL released.
#include <algorithm>

#include "bindings/array_args.hpp"
#include "bindings/registry.hpp"
#include "kernels/embedding.hpp"

namespace fastnn::bind {

namespace {

void scatter_add_rows_py(py::array& grad, const py::array& index, const py::array& rows) {
  require(grad.ndim() == 2, "scatter_add_rows: grad must be 2-D (num_embeddings, dim), got " + shape_str(grad));
  const index_t num_rows = grad.shape(0), dim = grad.shape(1);
  require(index.ndim() == 1, "scatter_add_rows: index must be 1-D, got " + shape_str(index));
  const index_t n = index.shape(0);
  require_shape(rows, {n, dim}, "scatter_add_rows rows");
  if (!index.dtype().is(py::dtype::of<std::int64_t>()))
    throw py::type_error("scatter_add_rows: index must be int64, got " + std::string(py::str(index.dtype())));
  require(index.flags() & py::array::c_style, "scatter_add_rows index must be C-contiguous");
  const auto* pi = static_cast<const std::int64_t*>(index.data());
  // An index outside the table would write outside grad: check every one before touching memory.
  const auto [lo, hi] = std::minmax_element(pi, pi + n);
  require(n == 0 || (*lo >= 0 && *hi < num_rows),
          "scatter_add_rows: indices must be in [0, " + std::to_string(num_rows) + "), got " +
              (n ? std::to_string(*lo) + ".." + std::to_string(*hi) : std::string("none")));
  dispatch(float_dtype(grad, "scatter_add_rows grad"), [&](auto tag) {
    using T = decltype(tag);
    T* pg = out_ptr<T>(grad, "scatter_add_rows grad");
    const T* pr = in_ptr<T>(rows, "scatter_add_rows rows");
    py::gil_scoped_release release;
    scatter_add_rows(pi, pr, n, dim, pg, num_rows);
  });
}

}  // namespace

void register_embedding(py::module_& m) {
  m.def("scatter_add_rows", &scatter_add_rows_py, py::arg("grad"), py::arg("index"), py::arg("rows"),
        "grad[index[k]] += rows[k] for every k, in k order (the embedding weight gradient), in place.");
}

}  // namespace fastnn::bind
