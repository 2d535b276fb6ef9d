// Bindings of the recurrent kernels (kernels/recurrent.hpp): one direction of one layer per call, the whole
// sequence in C++. Shapes checked here, GIL released around the kernels.
#include <memory>
#include <string>

#include "bindings/array_args.hpp"
#include "bindings/registry.hpp"
#include "kernels/recurrent.hpp"

namespace fastnn::bind {

namespace {

RnnMode parse_mode(const std::string& mode) {
  if (mode == "RNN_TANH") return RnnMode::rnn_tanh;
  if (mode == "RNN_RELU") return RnnMode::rnn_relu;
  if (mode == "LSTM") return RnnMode::lstm;
  if (mode == "GRU") return RnnMode::gru;
  throw py::value_error("recurrent: mode must be 'RNN_TANH', 'RNN_RELU', 'LSTM' or 'GRU', got '" + mode + "'");
}

struct Dims {
  index_t T, N, I, H, G;
};

// Checks x [T, N, I], w_ih [G·H, I], w_hh [G·H, H]; returns the sizes.
Dims check_dims(const char* fn, RnnMode mode, const py::array& x, const py::array& w_ih, const py::array& w_hh) {
  const std::string f(fn);
  require(x.ndim() == 3, f + ": input must be 3-D (T, N, I), got " + shape_str(x));
  require(w_ih.ndim() == 2 && w_hh.ndim() == 2,
          f + ": weights must be 2-D, got " + shape_str(w_ih) + " and " + shape_str(w_hh));
  const index_t G = rnn_gate_count(mode), H = w_hh.shape(1);
  require(w_hh.shape(0) == G * H, f + ": weight_hh " + shape_str(w_hh) + " must be (" + std::to_string(G) +
                                      "·hidden, hidden)");
  require(w_ih.shape(0) == G * H && w_ih.shape(1) == x.shape(2),
          f + ": input " + shape_str(x) + " does not match weight_ih " + shape_str(w_ih));
  return {x.shape(0), x.shape(1), x.shape(2), H, G};
}

// Writes y[:, :, y_offset : y_offset + H] of y [T, N, Y]; returns (h_n, c_n or None, saved), where saved is
// the tuple rnn_backward needs.
py::tuple rnn_forward_binding(const std::string& mode_name, const py::array& x, const py::array& w_ih,
                              const py::array& w_hh, const py::object& b_ih, const py::object& b_hh,
                              const py::array& h0, const py::object& c0, py::array& y, index_t y_offset,
                              bool reverse) {
  const RnnMode mode = parse_mode(mode_name);
  const Dims d = check_dims("rnn_forward", mode, x, w_ih, w_hh);
  require_shape(h0, {d.N, d.H}, "rnn_forward h0");
  require(mode != RnnMode::lstm || !c0.is_none(), "rnn_forward: LSTM needs c0");
  require(y.ndim() == 3 && y.shape(0) == d.T && y.shape(1) == d.N && y_offset >= 0 &&
              y_offset + d.H <= y.shape(2),
          "rnn_forward: output " + shape_str(y) + " cannot hold hidden size " + std::to_string(d.H) +
              " at offset " + std::to_string(y_offset));
  return dispatch(float_dtype(w_ih, "rnn_forward weight_ih"), [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const T* px = in_ptr<T>(x, "rnn_forward input");
    const T* pwi = in_ptr<T>(w_ih, "rnn_forward weight_ih");
    const T* pwh = in_ptr<T>(w_hh, "rnn_forward weight_hh");
    const T* pbi = optional_in<T>(b_ih, {d.G * d.H}, "rnn_forward bias_ih");
    const T* pbh = optional_in<T>(b_hh, {d.G * d.H}, "rnn_forward bias_hh");
    const T* ph0 = in_ptr<T>(h0, "rnn_forward h0");
    const T* pc0 = mode == RnnMode::lstm ? optional_in<T>(c0, {d.N, d.H}, "rnn_forward c0") : nullptr;
    T* py_ = out_ptr<T>(y, "rnn_forward output") + y_offset;
    const bool lstm = mode == RnnMode::lstm, gru = mode == RnnMode::gru;
    auto h_n = empty_array<T>({d.N, d.H});
    auto gates = empty_array<T>({d.T, d.N, d.G * d.H});
    auto hprev = empty_array<T>({d.T, d.N, d.H});
    py::object c_n = py::none(), cprev = py::none(), aux = py::none();
    RnnSaved<T> saved{gates.mutable_data(), hprev.mutable_data(), nullptr, nullptr};
    T* pcn = nullptr;
    if (lstm) {
      auto a = empty_array<T>({d.N, d.H}), b = empty_array<T>({d.T, d.N, d.H});
      pcn = a.mutable_data();
      saved.cprev = b.mutable_data();
      c_n = a;
      cprev = b;
    }
    if (lstm || gru) {
      auto a = empty_array<T>({d.T, d.N, d.H});
      saved.aux = a.mutable_data();
      aux = a;
    }
    T* phn = h_n.mutable_data();
    const index_t stride = y.shape(2);
    {
      py::gil_scoped_release release;
      std::unique_ptr<T[]> scratch(new T[static_cast<size_t>(d.N * d.G * d.H)]);
      if (d.T > 0) {
        rnn_forward(mode, px, pwi, pwh, pbi, pbh, ph0, pc0, py_, stride, phn, pcn, saved, scratch.get(), d.T, d.N,
                    d.I, d.H, reverse);
      } else {  // empty sequence: the state passes through
        std::copy(ph0, ph0 + d.N * d.H, phn);
        if (pcn) std::copy(pc0, pc0 + d.N * d.H, pcn);
      }
    }
    return py::make_tuple(h_n, c_n, py::make_tuple(gates, hprev, cprev, aux));
  });
}

// Returns (dh0, dc0 or None). Parameter gradients are written in place (None: frozen, skipped); dx, when
// given, receives (accumulate_input: adds) the input gradient.
py::tuple rnn_backward_binding(const std::string& mode_name, const py::array& x, const py::array& w_ih,
                               const py::array& w_hh, const py::tuple& saved, const py::object& grad_y,
                               index_t dy_offset, const py::object& grad_hn, const py::object& grad_cn,
                               const py::object& grad_w_ih, const py::object& grad_w_hh,
                               const py::object& grad_b_ih, const py::object& grad_b_hh, bool acc_w_ih,
                               bool acc_w_hh, bool acc_b_ih, bool acc_b_hh, bool reverse,
                               const py::object& grad_x, bool accumulate_input) {
  const RnnMode mode = parse_mode(mode_name);
  const Dims d = check_dims("rnn_backward", mode, x, w_ih, w_hh);
  require(saved.size() == 4, "rnn_backward: saved must be the tuple rnn_forward returned");
  const bool lstm = mode == RnnMode::lstm, gru = mode == RnnMode::gru;
  return dispatch(float_dtype(w_ih, "rnn_backward weight_ih"), [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const T* px = in_ptr<T>(x, "rnn_backward input");
    const T* pwi = in_ptr<T>(w_ih, "rnn_backward weight_ih");
    const T* pwh = in_ptr<T>(w_hh, "rnn_backward weight_hh");
    RnnSaved<T> sv{};
    sv.gates = const_cast<T*>(optional_in<T>(saved[0], {d.T, d.N, d.G * d.H}, "rnn_backward saved gates"));
    sv.hprev = const_cast<T*>(optional_in<T>(saved[1], {d.T, d.N, d.H}, "rnn_backward saved states"));
    if (lstm) sv.cprev = const_cast<T*>(optional_in<T>(saved[2], {d.T, d.N, d.H}, "rnn_backward saved cells"));
    if (lstm || gru) sv.aux = const_cast<T*>(optional_in<T>(saved[3], {d.T, d.N, d.H}, "rnn_backward saved aux"));
    require(sv.gates && sv.hprev && (!lstm || sv.cprev) && (!(lstm || gru) || sv.aux),
            "rnn_backward: saved tensors missing for this mode");
    const T* pdy = nullptr;
    index_t dy_stride = 0;
    if (!grad_y.is_none()) {
      auto g = grad_y.cast<py::array>();
      require(g.ndim() == 3 && g.shape(0) == d.T && g.shape(1) == d.N && dy_offset >= 0 &&
                  dy_offset + d.H <= g.shape(2),
              "rnn_backward: grad_output " + shape_str(g) + " does not match the forward output");
      pdy = in_ptr<T>(g, "rnn_backward grad_output") + dy_offset;
      dy_stride = g.shape(2);
    }
    const T* pdhn = optional_in<T>(grad_hn, {d.N, d.H}, "rnn_backward grad_hn");
    const T* pdcn = lstm ? optional_in<T>(grad_cn, {d.N, d.H}, "rnn_backward grad_cn") : nullptr;
    T* pgwi = optional_out<T>(grad_w_ih, {d.G * d.H, d.I}, "rnn_backward grad_weight_ih");
    T* pgwh = optional_out<T>(grad_w_hh, {d.G * d.H, d.H}, "rnn_backward grad_weight_hh");
    T* pgbi = optional_out<T>(grad_b_ih, {d.G * d.H}, "rnn_backward grad_bias_ih");
    T* pgbh = optional_out<T>(grad_b_hh, {d.G * d.H}, "rnn_backward grad_bias_hh");
    T* pdx = optional_out<T>(grad_x, {d.T, d.N, d.I}, "rnn_backward grad_input");
    auto dh0 = empty_array<T>({d.N, d.H});
    py::object dc0_obj = py::none();
    T* pdc0 = nullptr;
    if (lstm) {
      auto a = empty_array<T>({d.N, d.H});
      pdc0 = a.mutable_data();
      dc0_obj = a;
    }
    T* pdh0 = dh0.mutable_data();
    {
      py::gil_scoped_release release;
      // Scratch left uninitialised (every element is written before it is read): no memset of megabytes.
      const size_t big = static_cast<size_t>(d.T * d.N * d.G * d.H), small = static_cast<size_t>(d.N * d.H);
      std::unique_ptr<T[]> dgates(new T[big]), dgates_h(new T[gru ? big : 0]), dh(new T[small]), dc(new T[small]);
      if (d.T > 0) {
        rnn_backward(mode, px, pwi, pwh, sv, pdy, dy_stride, pdhn, pdcn, pdh0, pdc0, pgwi, pgwh, pgbi, pgbh, acc_w_ih,
                     acc_w_hh, acc_b_ih, acc_b_hh, pdx, accumulate_input, dgates.get(), dgates_h.get(), dh.get(),
                     dc.get(), d.T, d.N, d.I, d.H, reverse);
      } else {  // empty sequence: gradients pass straight through; parameters get zero gradient
        for (index_t k = 0; k < d.N * d.H; ++k) {
          pdh0[k] = pdhn ? pdhn[k] : T(0);
          if (pdc0) pdc0[k] = pdcn ? pdcn[k] : T(0);
        }
        if (pgwi && !acc_w_ih) std::fill(pgwi, pgwi + d.G * d.H * d.I, T(0));
        if (pgwh && !acc_w_hh) std::fill(pgwh, pgwh + d.G * d.H * d.H, T(0));
        if (pgbi && !acc_b_ih) std::fill(pgbi, pgbi + d.G * d.H, T(0));
        if (pgbh && !acc_b_hh) std::fill(pgbh, pgbh + d.G * d.H, T(0));
      }
    }
    return py::make_tuple(dh0, dc0_obj);
  });
}

}  // namespace

void register_recurrent(py::module_& m) {
  m.def("rnn_forward", &rnn_forward_binding, py::arg("mode"), py::arg("x"), py::arg("weight_ih"),
        py::arg("weight_hh"), py::arg("bias_ih"), py::arg("bias_hh"), py::arg("h0"), py::arg("c0"), py::arg("y"),
        py::arg("y_offset") = 0, py::arg("reverse") = false,
        "One direction of one RNN, LSTM or GRU layer over a whole sequence (PyTorch's gate equations).\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "mode : {'RNN_TANH', 'RNN_RELU', 'LSTM', 'GRU'}\n"
        "x : ndarray (T, N, I), float32 or float64\n"
        "weight_ih : ndarray (G * H, I)\n"
        "    G = 1, 4, 3 gates for RNN, LSTM, GRU.\n"
        "weight_hh : ndarray (G * H, H)\n"
        "bias_ih, bias_hh : ndarray (G * H,) or None\n"
        "h0 : ndarray (N, H)\n"
        "c0 : ndarray (N, H) or None\n"
        "    LSTM only.\n"
        "y : ndarray (T, N, Y), writeable\n"
        "    Receives the hidden states in y[:, :, y_offset:y_offset + H].\n"
        "y_offset : int, default 0\n"
        "reverse : bool, default False\n"
        "    Run from t = T - 1 down to 0.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "tuple\n"
        "    (h_n (N, H), c_n (N, H) or None, saved): saved is what rnn_backward needs.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
  m.def("rnn_backward", &rnn_backward_binding, py::arg("mode"), py::arg("x"), py::arg("weight_ih"),
        py::arg("weight_hh"), py::arg("saved"), py::arg("grad_output"), py::arg("grad_offset") = 0,
        py::arg("grad_hn") = py::none(), py::arg("grad_cn") = py::none(), py::arg("grad_weight_ih") = py::none(),
        py::arg("grad_weight_hh") = py::none(), py::arg("grad_bias_ih") = py::none(),
        py::arg("grad_bias_hh") = py::none(), py::arg("accumulate_weight_ih") = true,
        py::arg("accumulate_weight_hh") = true, py::arg("accumulate_bias_ih") = true,
        py::arg("accumulate_bias_hh") = true, py::arg("reverse") = false, py::arg("grad_input") = py::none(),
        py::arg("accumulate_input") = false,
        "Backpropagation through time for one rnn_forward call; weight gradients written in place.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "mode, x, weight_ih, weight_hh\n"
        "    As given to rnn_forward.\n"
        "saved : tuple\n"
        "    rnn_forward's third result.\n"
        "grad_output : ndarray (T, N, Y) or None\n"
        "    dy; its columns grad_offset:grad_offset + H belong to this direction.\n"
        "grad_offset : int, default 0\n"
        "grad_hn, grad_cn : ndarray (N, H) or None, default None\n"
        "    Gradients of h_n and c_n.\n"
        "grad_weight_ih, grad_weight_hh, grad_bias_ih, grad_bias_hh : ndarray or None, default None\n"
        "    Receive the parameter gradients; None skips one.\n"
        "accumulate_weight_ih, accumulate_weight_hh, accumulate_bias_ih, accumulate_bias_hh : bool, default True\n"
        "    Add into the gradient arrays (True) or overwrite them (False).\n"
        "reverse : bool, default False\n"
        "    As given to rnn_forward.\n"
        "grad_input : ndarray (T, N, I) or None, default None\n"
        "    Receives dx.\n"
        "accumulate_input : bool, default False\n"
        "    Add dx into grad_input instead of overwriting it.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "tuple\n"
        "    (dh0 (N, H), dc0 (N, H) or None).\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
}

}  // namespace fastnn::bind
