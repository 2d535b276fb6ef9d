// Bindings of the fused scaled dot-product attention kernels (kernels/attention_sdpa.hpp). Operands arrive
// flattened to (B, L, E) by fastnn.nn.function_ops; shapes are checked here, the GIL released around the kernels.
#include <string>
#include <tuple>
#include <vector>

#include <pybind11/stl.h>

#include "bindings/array_args.hpp"
#include "bindings/registry.hpp"
#include "kernels/attention_sdpa.hpp"

namespace fastnn::bind {

namespace {

struct Dims {
  index_t B, L, S, E, Ev;
};

Dims check_qkv(const py::array& q, const py::array& k, const py::array& v) {
  require(q.ndim() == 3 && k.ndim() == 3 && v.ndim() == 3,
          "sdpa: q, k, v must be 3-D (B, L, E), (B, S, E), (B, S, Ev), got " + shape_str(q) + ", " + shape_str(k) +
              ", " + shape_str(v));
  const Dims d{q.shape(0), q.shape(1), k.shape(1), q.shape(2), v.shape(2)};
  require(k.shape(0) == d.B && v.shape(0) == d.B && k.shape(2) == d.E && v.shape(1) == d.S,
          "sdpa: shapes do not match: q " + shape_str(q) + ", k " + shape_str(k) + ", v " + shape_str(v));
  return d;
}

// bias: None or (bias_count, L, S); drop: None or (B, L, S).
template <typename T>
std::tuple<const T*, const T*> masks(const py::object& bias, const py::object& drop, const Dims& d,
                                     index_t bias_div, index_t bias_count) {
  require(bias_div >= 1 && bias_count >= 1, "sdpa: bias_div and bias_count must be positive");
  const T* pb = optional_in<T>(bias, {bias_count, d.L, d.S}, "sdpa bias");
  const T* pd = optional_in<T>(drop, {d.B, d.L, d.S}, "sdpa drop");
  return {pb, pd};
}

py::tuple sdpa_forward_(const py::array& q, const py::array& k, const py::array& v, const py::object& bias,
                        const py::object& drop, index_t bias_div, index_t bias_count, bool causal, double scale) {
  const Dims d = check_qkv(q, k, v);
  return dispatch(float_dtype(q, "sdpa_forward"), [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const T* pq = in_ptr<T>(q, "sdpa q");
    const T* pk = in_ptr<T>(k, "sdpa k");
    const T* pv = in_ptr<T>(v, "sdpa v");
    auto [pb, pd] = masks<T>(bias, drop, d, bias_div, bias_count);
    auto out = empty_array<T>({d.B, d.L, d.Ev});
    auto lse = empty_array<T>({d.B, d.L});
    T* po = out.mutable_data();
    T* pl = lse.mutable_data();
    {
      py::gil_scoped_release release;
      sdpa_forward(pq, pk, pv, pb, pd, po, pl, d.B, d.L, d.S, d.E, d.Ev, bias_div, bias_count, causal,
                   static_cast<T>(scale));
    }
    return py::make_tuple(out, lse);
  });
}

py::tuple sdpa_backward_(const py::array& q, const py::array& k, const py::array& v, const py::object& bias,
                         const py::object& drop, const py::array& out, const py::array& dout, const py::array& lse,
                         index_t bias_div, index_t bias_count, bool causal, double scale) {
  const Dims d = check_qkv(q, k, v);
  require_shape(out, {d.B, d.L, d.Ev}, "sdpa out");
  require_shape(dout, {d.B, d.L, d.Ev}, "sdpa dout");
  require_shape(lse, {d.B, d.L}, "sdpa lse");
  return dispatch(float_dtype(q, "sdpa_backward"), [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const T* pq = in_ptr<T>(q, "sdpa q");
    const T* pk = in_ptr<T>(k, "sdpa k");
    const T* pv = in_ptr<T>(v, "sdpa v");
    const T* po = in_ptr<T>(out, "sdpa out");
    const T* pg = in_ptr<T>(dout, "sdpa dout");
    const T* pl = in_ptr<T>(lse, "sdpa lse");
    auto [pb, pd] = masks<T>(bias, drop, d, bias_div, bias_count);
    auto dq = empty_array<T>({d.B, d.L, d.E});
    auto dk = empty_array<T>({d.B, d.S, d.E});
    auto dv = empty_array<T>({d.B, d.S, d.Ev});
    T* pdq = dq.mutable_data();
    T* pdk = dk.mutable_data();
    T* pdv = dv.mutable_data();
    {
      py::gil_scoped_release release;
      sdpa_backward(pq, pk, pv, pb, pd, po, pg, pl, pdq, pdk, pdv, d.B, d.L, d.S, d.E, d.Ev, bias_div, bias_count,
                    causal, static_cast<T>(scale));
    }
    return py::make_tuple(dq, dk, dv);
  });
}

}  // namespace

void register_attention_sdpa(py::module_& m) {
  m.def("sdpa_forward", &sdpa_forward_, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("bias"), py::arg("drop"),
        py::arg("bias_div"), py::arg("bias_count"), py::arg("causal"), py::arg("scale"),
        "Fused scaled dot-product attention, blockwise (scores never materialised whole).\n"
        "\n"
        "out = softmax(scale * q @ k.T + bias, masked) @ v, with the dropout multipliers applied to the weights.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "q : ndarray (B, L, E), float32 or float64\n"
        "k : ndarray (B, S, E)\n"
        "v : ndarray (B, S, Ev)\n"
        "bias : ndarray (bias_count, L, S) or None\n"
        "    Added to the scores; batch b reads bias[(b // bias_div) % bias_count].\n"
        "drop : ndarray (B, L, S) or None\n"
        "    Multipliers of the weights (dropout).\n"
        "bias_div, bias_count : int\n"
        "    Positive.\n"
        "causal : bool\n"
        "    Mask keys after the query.\n"
        "scale : float\n"
        "\n"
        "Returns\n"
        "-------\n"
        "tuple\n"
        "    (out (B, L, Ev), lse (B, L)): lse the log-sum-exp of each row, for sdpa_backward.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
  m.def("sdpa_backward", &sdpa_backward_, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("bias"),
        py::arg("drop"), py::arg("out"), py::arg("dout"), py::arg("lse"), py::arg("bias_div"), py::arg("bias_count"),
        py::arg("causal"), py::arg("scale"),
        "Gradients of sdpa_forward, its blocks recomputed from lse.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "q, k, v, bias, drop\n"
        "    As given to sdpa_forward.\n"
        "out : ndarray (B, L, Ev)\n"
        "    sdpa_forward's output.\n"
        "dout : ndarray (B, L, Ev)\n"
        "    Its gradient.\n"
        "lse : ndarray (B, L)\n"
        "    sdpa_forward's log-sum-exp.\n"
        "bias_div, bias_count, causal, scale\n"
        "    As given to sdpa_forward.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "tuple\n"
        "    (dq, dk, dv) of the shapes of q, k, v.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
}

}  // namespace fastnn::bind
