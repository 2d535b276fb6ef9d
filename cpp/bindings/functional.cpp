// Bindings of the kernels behind fastnn.nn.functional's hot ops: batched matrix products, broadcast
// arithmetic and its gradient sum, concatenation. Shapes checked here, GIL released around the kernels.
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "bindings/array_args.hpp"
#include "bindings/registry.hpp"
#include "kernels/batched_gemm.hpp"
#include "kernels/broadcast.hpp"

namespace fastnn::bind {

namespace {

// a (B, n, k) or (n, k) [stored (.., k, n) when trans_a], b (B, k, m) or (k, m) [stored (.., m, k) when
// trans_b], one batch size or a 2-D operand repeated over the other's batch -> (B, n, m), or (n, m) when both
// are 2-D.
py::array batched_matmul(const py::array& a, const py::array& b, bool trans_a, bool trans_b) {
  require((a.ndim() == 2 || a.ndim() == 3) && (b.ndim() == 2 || b.ndim() == 3),
          "batched_matmul: operands must be 2-D or 3-D, got " + shape_str(a) + " and " + shape_str(b));
  const index_t ba = a.ndim() == 3 ? a.shape(0) : 1, bb = b.ndim() == 3 ? b.shape(0) : 1;
  require(ba == bb || a.ndim() == 2 || b.ndim() == 2,
          "batched_matmul: batch sizes differ: " + shape_str(a) + " and " + shape_str(b));
  const int ra = static_cast<int>(a.ndim()) - 2, rb = static_cast<int>(b.ndim()) - 2;
  const index_t n = trans_a ? a.shape(ra + 1) : a.shape(ra), k = trans_a ? a.shape(ra) : a.shape(ra + 1);
  const index_t kb = trans_b ? b.shape(rb + 1) : b.shape(rb), m = trans_b ? b.shape(rb) : b.shape(rb + 1);
  require(k == kb, "batched_matmul: inner sizes differ: " + shape_str(a) + " and " + shape_str(b));
  const index_t batch = std::max(ba, bb);
  return dispatch(float_dtype(a, "batched_matmul"), [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* pa = in_ptr<T>(a, "batched_matmul a");
    const T* pb = in_ptr<T>(b, "batched_matmul b");
    std::vector<py::ssize_t> shape{n, m};
    if (a.ndim() == 3 || b.ndim() == 3) shape.insert(shape.begin(), batch);
    auto c = empty_array<T>(shape);
    T* pc = c.mutable_data();
    {
      py::gil_scoped_release release;
      batched_gemm(pa, pb, pc, batch, n, k, m, trans_a, trans_b, a.ndim() == 3 ? n * k : 0,
                   b.ndim() == 3 ? k * m : 0, false);
    }
    return c;
  });
}

Binary binary_op(const std::string& op) {
  if (op == "add") return Binary::add;
  if (op == "sub") return Binary::sub;
  if (op == "mul") return Binary::mul;
  if (op == "div") return Binary::div;
  throw py::value_error("broadcast_binary: op must be add, sub, mul or div, got '" + op + "'");
}

// a viewed as (O, M, I), b as (M,): y = a op b (b op a when b_first), shaped like a.
py::array broadcast_binary_(const std::string& op, const py::array& a, const py::array& b, index_t O, index_t M,
                            index_t I, bool b_first) {
  const Binary kind = binary_op(op);
  require(O >= 0 && M >= 0 && I >= 0 && static_cast<index_t>(a.size()) == O * M * I,
          "broadcast_binary: " + shape_str(a) + " is not (O, M, I) = (" + std::to_string(O) + ", " +
              std::to_string(M) + ", " + std::to_string(I) + ")");
  require(static_cast<index_t>(b.size()) == M, "broadcast_binary: b " + shape_str(b) + " does not hold M = " +
                                                   std::to_string(M) + " values");
  return dispatch(float_dtype(a, "broadcast_binary"), [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* pa = in_ptr<T>(a, "broadcast_binary a");
    const T* pb = in_ptr<T>(b, "broadcast_binary b");
    std::vector<py::ssize_t> shape(a.shape(), a.shape() + a.ndim());
    auto y = empty_array<T>(shape);
    T* py_ = y.mutable_data();
    {
      py::gil_scoped_release release;
      broadcast_binary(kind, pa, pb, py_, O, M, I, b_first);
    }
    return y;
  });
}

// g viewed as (O, M, I) -> (M,): Σ over o and i.
py::array reduce_broadcast_(const py::array& g, index_t O, index_t M, index_t I) {
  require(O >= 0 && M >= 0 && I >= 0 && static_cast<index_t>(g.size()) == O * M * I,
          "reduce_broadcast: " + shape_str(g) + " is not (O, M, I)");
  return dispatch(float_dtype(g, "reduce_broadcast"), [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* pg = in_ptr<T>(g, "reduce_broadcast g");
    auto out = empty_array<T>({M});
    T* po = out.mutable_data();
    {
      py::gil_scoped_release release;
      reduce_broadcast(pg, po, O, M, I);
    }
    return out;
  });
}

// Arrays of one dtype and shape but along `axis` -> their concatenation along it.
py::array concat(const std::vector<py::array>& arrays, int axis) {
  require(!arrays.empty(), "concat: expected at least one array");
  const py::array& first = arrays[0];
  const int nd = static_cast<int>(first.ndim());
  require(axis >= 0 && axis < nd, "concat: axis " + std::to_string(axis) + " out of range for " + shape_str(first));
  index_t outer = 1, inner = 1, total = 0;
  for (int d = 0; d < axis; ++d) outer *= first.shape(d);
  for (int d = axis + 1; d < nd; ++d) inner *= first.shape(d);
  for (const auto& x : arrays) {
    bool ok = x.ndim() == nd;
    for (int d = 0; ok && d < nd; ++d) ok = d == axis || x.shape(d) == first.shape(d);
    require(ok, "concat: " + shape_str(x) + " does not match " + shape_str(first) + " outside axis " +
                    std::to_string(axis));
    total += x.shape(axis);
  }
  return dispatch(float_dtype(first, "concat"), [&](auto tag) -> py::array {
    using T = decltype(tag);
    std::vector<const T*> parts;
    std::vector<index_t> widths;
    for (const auto& x : arrays) {
      parts.push_back(in_ptr<T>(x, "concat"));
      widths.push_back(x.shape(axis) * inner);
    }
    std::vector<py::ssize_t> shape(first.shape(), first.shape() + nd);
    shape[axis] = total;
    auto y = empty_array<T>(shape);
    T* py_ = y.mutable_data();
    {
      py::gil_scoped_release release;
      concat_rows(parts, widths, py_, outer, total * inner);
    }
    return y;
  });
}

}  // namespace

void register_functional(py::module_& m) {
  m.def("batched_matmul", &batched_matmul, py::arg("a"), py::arg("b"), py::arg("trans_a") = false,
        py::arg("trans_b") = false,
        "Matrix product op(a) @ op(b) of 2-D or 3-D operands; a 2-D one is repeated over the other's batch.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "a : ndarray (M, K) or (B, M, K), float32 or float64\n"
        "b : ndarray (K, P) or (B, K, P), a's dtype\n"
        "trans_a, trans_b : bool, default False\n"
        "    The operand is stored transposed ((K, M), (P, K)).\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray (M, P) or (B, M, P)\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
  m.def("broadcast_binary", &broadcast_binary_, py::arg("op"), py::arg("a"), py::arg("b"), py::arg("O"),
        py::arg("M"), py::arg("I"), py::arg("b_first") = false,
        "a op b with b (M,) broadcast along a's outer and inner axes.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "op : {'add', 'sub', 'mul', 'div'}\n"
        "a : ndarray, float32 or float64, O * M * I entries\n"
        "    Seen as (O, M, I).\n"
        "b : ndarray, M entries, a's dtype\n"
        "O, M, I : int\n"
        "b_first : bool, default False\n"
        "    Compute b op a instead.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray of a's shape\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
  m.def("reduce_broadcast", &reduce_broadcast_, py::arg("g"), py::arg("O"), py::arg("M"), py::arg("I"),
        "Sum of g seen as (O, M, I) over O and I: the gradient of an operand broadcast by broadcast_binary.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "g : ndarray, float32 or float64, O * M * I entries\n"
        "O, M, I : int\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray (M,)\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
  m.def("concat", &concat, py::arg("arrays"), py::arg("axis"),
        "Concatenate arrays along an axis.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "arrays : sequence of ndarray\n"
        "    One dtype (float32 or float64), equal shapes outside axis.\n"
        "axis : int\n"
        "    In [0, ndim).\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
}

}  // namespace fastnn::bind
