// Bindings of the bf16 GEMM (autocast): shapes checked, GIL released around the product.
#include "bindings/array_args.hpp"
#include "bindings/registry.hpp"
#include "kernels/bf16_gemm.hpp"

namespace fastnn::bind {

namespace {

// out (+)= op(a) @ op(b) (+ bias per column) with bf16 inputs and float32 sums; a new array when out is None.
py::array bf16_matmul(const py::array& a, const py::array& b, const py::object& out, bool trans_a, bool trans_b,
                      bool accumulate, bool use_dot, const py::object& bias, bool check_finite) {
  require(a.ndim() == 2 && b.ndim() == 2,
          "bf16_matmul: operands must be 2-D, got " + shape_str(a) + " and " + shape_str(b));
  const index_t n = trans_a ? a.shape(1) : a.shape(0), k = trans_a ? a.shape(0) : a.shape(1);
  const index_t kb = trans_b ? b.shape(1) : b.shape(0), m = trans_b ? b.shape(0) : b.shape(1);
  require(k == kb, "bf16_matmul: inner sizes differ: " + shape_str(a) + (trans_a ? " (transposed)" : "") +
                       " and " + shape_str(b) + (trans_b ? " (transposed)" : ""));
  require(!accumulate || !out.is_none(), "bf16_matmul: accumulate=True needs out");
  require(!accumulate || bias.is_none(), "bf16_matmul: bias is not taken with accumulate=True");
  return dispatch(float_dtype(a, "bf16_matmul a"), [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* pa = in_ptr<T>(a, "bf16_matmul a");
    const T* pb = in_ptr<T>(b, "bf16_matmul b");
    py::array c = out.is_none() ? py::array(empty_array<T>({n, m})) : out.cast<py::array>();
    T* pc = optional_out<T>(c, {n, m}, "bf16_matmul out");
    const T* pbias = optional_in<T>(bias, {m}, "bf16_matmul bias");
    bool finite;
    {
      py::gil_scoped_release release;
      finite = bf16_gemm(pa, pb, pc, n, k, m, trans_a, trans_b, accumulate, pbias, check_finite, use_dot);
    }
    require(finite, "input contains NaN or infinity");
    return c;
  });
}

}  // namespace

void register_bf16_gemm(py::module_& m) {
  m.def("bf16_matmul", &bf16_matmul, py::arg("a"), py::arg("b"), py::arg("out") = py::none(),
        py::arg("trans_a") = false, py::arg("trans_b") = false, py::arg("accumulate") = false,
        py::arg("use_dot") = true, py::arg("bias") = py::none(), py::arg("check_finite") = false,
        "out (+)= op(a) @ op(b) (+ bias) with the inputs rounded to bf16 and float32 sums (fnn.autocast's GEMM).\n"
        "\n"
        "Every input element is rounded to bfloat16 (nearest even; NaN stays NaN); products are summed in\n"
        "float32 (AVX512_BF16 dot products where the CPU has them, else the float32 GEMM on the rounded values).\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "a : ndarray, float32 or float64, 2-D, C-contiguous\n"
        "    (n, k), or (k, n) stored transposed when trans_a.\n"
        "b : ndarray, of a's dtype, 2-D, C-contiguous\n"
        "    (k, m), or (m, k) stored transposed when trans_b.\n"
        "out : ndarray or None\n"
        "    (n, m) of a's dtype, written in place; None: a new array.\n"
        "trans_a : bool\n"
        "    a is stored transposed.\n"
        "trans_b : bool\n"
        "    b is stored transposed.\n"
        "accumulate : bool\n"
        "    Add the product to out (which must be given) instead of overwriting it.\n"
        "use_dot : bool\n"
        "    False forces the fallback without bf16 dot products (same values up to summation order).\n"
        "bias : ndarray or None\n"
        "    (m,) of a's dtype, not rounded: out = bias + op(a) @ op(b) on every row, summed as the bias\n"
        "    stored first and the product added to it. Not with accumulate.\n"
        "check_finite : bool\n"
        "    Raise ValueError when a holds NaN or infinity (checked while a is packed: no extra pass).\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray\n"
        "    out, or the new (n, m) array.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For operands that are not 2-D, inner sizes that differ, an out or bias of another shape,\n"
        "    accumulate without out or with bias, or (check_finite) NaN or infinity in a.");
  m.def("bf16_dot_supported", [] { return bf16_dot_supported<float>(); },
        "Whether bf16_matmul(use_dot=True) runs with AVX512_BF16 dot products (vdpbf16ps) here.\n"
        "\n"
        "True when the loaded kernel library is the AVX-512 one and the CPU reports AVX512_BF16 (CPUID leaf 7,\n"
        "subleaf 1). fastnn.amp passes use_dot=False when FASTNN_BF16_DOT=0 is set.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "bool\n"
        "    Whether the dot-product path is used.");
}

}  // namespace fastnn::bind
