// Bindings of the fused scaled dot-product attention kernels (kernels/attention_sdpa.hpp). fastnn.nn.function_ops
// passes C-contiguous arrays with a layout for each operand (where the rows of every batch·head lie), so the
// heads of a (N, L, H·D) projection, or the q, k, v thirds of one (N, L, 3E) array, are read and written in
// place. Every layout is checked to stay inside its array here; the GIL is released around the kernels.
#include <array>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include <pybind11/stl.h>

#include "bindings/array_args.hpp"
#include "bindings/registry.hpp"
#include "kernels/attention_sdpa.hpp"

namespace fastnn::bind {

namespace {

using Sizes = std::array<index_t, 6>;                     // batch, heads, L, S, E, Ev
using Layout = std::array<index_t, 4>;                    // offset, batch_stride, head_stride, row_stride
using Layouts = std::array<Layout, 4>;                    // q, k, v, out

struct Call {
  SdpaDims d;
  Layouts lay;
};

Call make_call(const Sizes& sizes, const Layouts& lay, index_t bias_div, index_t bias_count, bool causal,
               double scale, double dropout_p, std::uint64_t seed) {
  Call c{};
  SdpaDims& d = c.d;
  d.batch = sizes[0];
  d.heads = sizes[1];
  d.L = sizes[2];
  d.S = sizes[3];
  d.E = sizes[4];
  d.Ev = sizes[5];
  require(d.batch >= 0 && d.heads >= 1 && d.L >= 0 && d.S >= 0 && d.E >= 0 && d.Ev >= 0 && d.batch % d.heads == 0,
          "sdpa: sizes (batch, heads, L, S, E, Ev) must be non-negative with batch a multiple of heads");
  require(bias_div >= 1 && bias_count >= 1, "sdpa: bias_div and bias_count must be positive");
  require(dropout_p >= 0.0 && dropout_p <= 1.0, "sdpa: dropout_p must be in [0, 1]");
  SdpaLayout* dst[4] = {&d.q, &d.k, &d.v, &d.out};
  for (int i = 0; i < 4; ++i) {
    for (index_t x : lay[i]) require(x >= 0, "sdpa: layout offsets and strides must be non-negative");
    *dst[i] = SdpaLayout{lay[i][1], lay[i][2], lay[i][3]};
  }
  d.bias_div = bias_div;
  d.bias_count = bias_count;
  d.causal = causal;
  d.scale = scale;
  d.dropout_p = dropout_p;
  d.seed = seed;
  c.lay = lay;
  return c;
}

// The operand's data at its layout's offset, after checking that every row of every batch·head is inside `a`.
template <typename T>
const T* operand(const py::array& a, const Layout& lay, const SdpaDims& d, index_t rows, index_t width,
                 const char* what) {
  const T* p = in_ptr<T>(a, what);
  if (d.batch > 0 && rows > 0 && width > 0) {
    const index_t last = lay[0] + (d.batch / d.heads - 1) * lay[1] + (d.heads - 1) * lay[2] + (rows - 1) * lay[3] +
                         width;
    require(last <= static_cast<index_t>(a.size()) && lay[3] >= width,
            std::string(what) + ": its layout reaches past the array of shape " + shape_str(a));
  }
  return p + lay[0];
}

template <typename T>
T* operand_out(py::array& a, const Layout& lay, const SdpaDims& d, index_t rows, index_t width, const char* what) {
  const T* p = operand<T>(a, lay, d, rows, width, what);
  require(a.writeable(), std::string(what) + " must be writeable");
  return const_cast<T*>(p);
}

template <typename T>
const T* bias_of(const py::object& bias, const SdpaDims& d) {
  return optional_in<T>(bias, {d.bias_count, d.L, d.S}, "sdpa bias");
}

py::array sdpa_forward_(const py::array& q, const py::array& k, const py::array& v, const py::object& bias,
                        py::array out, const Sizes& sizes, const Layouts& layouts, index_t bias_div,
                        index_t bias_count, bool causal, double scale, double dropout_p, std::uint64_t seed) {
  const Call c = make_call(sizes, layouts, bias_div, bias_count, causal, scale, dropout_p, seed);
  const SdpaDims& d = c.d;
  return dispatch(float_dtype(q, "sdpa_forward"), [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* pq = operand<T>(q, c.lay[0], d, d.L, d.E, "sdpa q");
    const T* pk = operand<T>(k, c.lay[1], d, d.S, d.E, "sdpa k");
    const T* pv = operand<T>(v, c.lay[2], d, d.S, d.Ev, "sdpa v");
    T* po = operand_out<T>(out, c.lay[3], d, d.L, d.Ev, "sdpa out");
    const T* pb = bias_of<T>(bias, d);
    auto lse = empty_array<T>({d.batch, d.L});
    T* pl = lse.mutable_data();
    {
      py::gil_scoped_release release;
      sdpa_forward(pq, pk, pv, pb, po, pl, d);
    }
    return lse;
  });
}

void sdpa_backward_(const py::array& q, const py::array& k, const py::array& v, const py::object& bias,
                    const py::array& out, const py::array& dout, const py::array& lse, py::array dq, py::array dk,
                    py::array dv, const py::object& dbias, const Sizes& sizes, const Layouts& layouts,
                    index_t bias_div, index_t bias_count, bool causal, double scale, double dropout_p,
                    std::uint64_t seed) {
  const Call c = make_call(sizes, layouts, bias_div, bias_count, causal, scale, dropout_p, seed);
  const SdpaDims& d = c.d;
  require_shape(lse, {d.batch, d.L}, "sdpa lse");
  dispatch(float_dtype(q, "sdpa_backward"), [&](auto tag) {
    using T = decltype(tag);
    const T* pq = operand<T>(q, c.lay[0], d, d.L, d.E, "sdpa q");
    const T* pk = operand<T>(k, c.lay[1], d, d.S, d.E, "sdpa k");
    const T* pv = operand<T>(v, c.lay[2], d, d.S, d.Ev, "sdpa v");
    const T* po = operand<T>(out, c.lay[3], d, d.L, d.Ev, "sdpa out");
    const T* pg = operand<T>(dout, c.lay[3], d, d.L, d.Ev, "sdpa dout");
    const T* pl = in_ptr<T>(lse, "sdpa lse");
    T* pdq = operand_out<T>(dq, c.lay[0], d, d.L, d.E, "sdpa dq");
    T* pdk = operand_out<T>(dk, c.lay[1], d, d.S, d.E, "sdpa dk");
    T* pdv = operand_out<T>(dv, c.lay[2], d, d.S, d.Ev, "sdpa dv");
    T* pdb = optional_out<T>(dbias, {d.batch, d.L, d.S}, "sdpa dbias");
    const T* pb = bias_of<T>(bias, d);
    py::gil_scoped_release release;
    sdpa_backward(pq, pk, pv, pb, po, pg, pl, pdq, pdk, pdv, pdb, d);
  });
}

}  // namespace

void register_attention_sdpa(py::module_& m) {
  m.def("sdpa_forward", &sdpa_forward_, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("bias"), py::arg("out"),
        py::arg("sizes"), py::arg("layouts"), py::arg("bias_div"), py::arg("bias_count"), py::arg("causal"),
        py::arg("scale"), py::arg("dropout_p"), py::arg("seed"),
        "Fused scaled dot-product attention, blockwise (scores never materialised whole), written into out.\n"
        "\n"
        "out = softmax(scale * q @ k.T + bias, masked) @ v for every batch*head b = n*heads + h, with the weights\n"
        "dropped by a hash of (seed, (b*L + i)*S + j) when dropout_p > 0. Each operand is read at its layout, so\n"
        "the heads of an (N, L, H*D) projection (or the q, k, v thirds of one (N, L, 3E) array) need no copy.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "q : ndarray, float32 or float64, C-contiguous\n"
        "    Holds the queries at layouts[0].\n"
        "k : ndarray\n"
        "    Holds the keys at layouts[1] (may be the same array as q).\n"
        "v : ndarray\n"
        "    Holds the values at layouts[2].\n"
        "bias : ndarray (bias_count, L, S) or None\n"
        "    Added to the scores; batch*head b reads bias[(b // bias_div) % bias_count].\n"
        "out : ndarray\n"
        "    Written at layouts[3].\n"
        "sizes : tuple of 6 int\n"
        "    (batch, heads, L, S, E, Ev); batch is a multiple of heads.\n"
        "layouts : 4 tuples of 4 int\n"
        "    For q, k, v and out: (offset, batch_stride, head_stride, row_stride) in elements; row r of b starts\n"
        "    at offset + (b // heads)*batch_stride + (b % heads)*head_stride + r*row_stride.\n"
        "bias_div, bias_count : int\n"
        "    Positive.\n"
        "causal : bool\n"
        "    Mask keys after the query.\n"
        "scale : float\n"
        "    Multiplies q @ k.T.\n"
        "dropout_p : float\n"
        "    In [0, 1]; 0 drops nothing.\n"
        "seed : int\n"
        "    The dropout mask's seed (uint64).\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray\n"
        "    lse (batch, L): the log-sum-exp of each row of scores, for sdpa_backward.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For sizes or layouts that do not fit the arrays, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
  m.def("sdpa_backward", &sdpa_backward_, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("bias"), py::arg("out"),
        py::arg("dout"), py::arg("lse"), py::arg("dq"), py::arg("dk"), py::arg("dv"), py::arg("dbias"),
        py::arg("sizes"), py::arg("layouts"), py::arg("bias_div"), py::arg("bias_count"), py::arg("causal"),
        py::arg("scale"), py::arg("dropout_p"), py::arg("seed"),
        "Gradients of sdpa_forward, its blocks recomputed from lse, written into dq, dk, dv (and dbias).\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "q, k, v, bias, out\n"
        "    As given to sdpa_forward (out holding its output).\n"
        "dout : ndarray\n"
        "    The gradient of out, at out's layout.\n"
        "lse : ndarray (batch, L)\n"
        "    sdpa_forward's log-sum-exp.\n"
        "dq, dk, dv : ndarray\n"
        "    Every row of every batch*head overwritten at the layouts of q, k, v (they may be one array).\n"
        "dbias : ndarray (batch, L, S) or None\n"
        "    The gradient of the scores (of an additive float mask), when not None.\n"
        "sizes, layouts, bias_div, bias_count, causal, scale, dropout_p, seed\n"
        "    As given to sdpa_forward.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "None\n"
        "    The gradients are written in place.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For sizes or layouts that do not fit the arrays, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
}

}  // namespace fastnn::bind
