// Binding of the embedding gather-scale-scatter kernel (kernels/embedding.hpp): shapes and every index
// checked before any write, GIL released.
#include <algorithm>

#include "bindings/array_args.hpp"
#include "bindings/registry.hpp"
#include "kernels/embedding.hpp"

namespace fastnn::bind {

namespace {

// The data of a 1-D int64 index array of length n whose values all lie in [0, limit).
const std::int64_t* checked_index(const py::array& index, index_t n, index_t limit, const char* what) {
  if (!has_dtype<std::int64_t>(index))
    throw py::type_error(std::string("scatter_add_rows: ") + what + " must be int64, got " +
                         std::string(py::str(index.dtype())));
  require(index.ndim() == 1 && index.shape(0) == n && (index.flags() & py::array::c_style),
          std::string("scatter_add_rows: ") + what + " must be a contiguous 1-D array of " + std::to_string(n) +
              " indices, got " + shape_str(index));
  const auto* p = static_cast<const std::int64_t*>(index.data());
  const auto [lo, hi] = std::minmax_element(p, p + n);
  require(n == 0 || (*lo >= 0 && *hi < limit), std::string("scatter_add_rows: ") + what + " must be in [0, " +
                                                   std::to_string(limit) + "), got " +
                                                   (n ? std::to_string(*lo) + ".." + std::to_string(*hi) : ""));
  return p;
}

void scatter_add_rows_py(py::array& dst, const py::array& dst_index, const py::array& src,
                         const py::object& src_index, const py::object& scale) {
  require(dst.ndim() == 2, "scatter_add_rows: dst must be 2-D (rows, dim), got " + shape_str(dst));
  require(src.ndim() == 2 && src.shape(1) == dst.shape(1),
          "scatter_add_rows: src " + shape_str(src) + " does not match dst " + shape_str(dst));
  const index_t dim = dst.shape(1);
  require(dst_index.ndim() == 1, "scatter_add_rows: dst_index must be 1-D, got " + shape_str(dst_index));
  const index_t n = dst_index.shape(0);
  const std::int64_t* pd = checked_index(dst_index, n, dst.shape(0), "dst_index");
  const std::int64_t* ps = nullptr;
  if (src_index.is_none())
    require(src.shape(0) == n, "scatter_add_rows: without src_index, src needs one row per entry: expected " +
                                   std::to_string(n) + " rows, got " + shape_str(src));
  else
    ps = checked_index(src_index.cast<py::array>(), n, src.shape(0), "src_index");
  dispatch(float_dtype(dst, "scatter_add_rows dst"), [&](auto tag) {
    using T = decltype(tag);
    T* pdst = out_ptr<T>(dst, "scatter_add_rows dst");
    const T* psrc = in_ptr<T>(src, "scatter_add_rows src");
    const T* pscale = optional_in<T>(scale, {n}, "scatter_add_rows scale");
    py::gil_scoped_release release;
    scatter_add_rows(pd, pdst, dst.shape(0), ps, psrc, pscale, n, dim);
  });
}

}  // namespace

void register_embedding(py::module_& m) {
  m.def("scatter_add_rows", &scatter_add_rows_py, py::arg("dst"), py::arg("dst_index"), py::arg("src"),
        py::arg("src_index") = py::none(), py::arg("scale") = py::none(),
        "Row scatter-add in place: dst[dst_index[k]] += scale[k] * src[src_index[k]] for every k, in order.\n"
        "\n"
        "Embedding and EmbeddingBag use it for lookups and gradients.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "dst : ndarray (R, D), float32 or float64, writeable\n"
        "dst_index : ndarray (K,), int64\n"
        "    Rows of dst, in [0, R).\n"
        "src : ndarray (S, D), dst's dtype\n"
        "src_index : ndarray (K,), int64, or None, default None\n"
        "    Rows of src; None means row k (then S == K).\n"
        "scale : ndarray (K,) or None, default None\n"
        "    Per-row factors; None means 1.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "None\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match or indices out of range. TypeError for dtypes (indices must be int64).");
}

}  // namespace fastnn::bind
