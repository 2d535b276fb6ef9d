// Bindings of the convolution kernels (kernels/conv.hpp, kernels/im2col.hpp): shapes checked, GIL released.
// stride, padding and dilation are an int or an (h, w) pair; 1-D convolution calls these with H = 1.
#include "bindings/array_args.hpp"
#include "bindings/conv_args.hpp"
#include "bindings/registry.hpp"
#include "kernels/checks.hpp"
#include "kernels/conv.hpp"

namespace fastnn::bind {

namespace {

py::array conv2d_forward_py(const py::array& x, const py::array& weight, const py::object& bias,
                            const py::object& stride, const py::object& padding, const py::object& dilation,
                            index_t groups, bool check_finite, const py::object& col) {
  const ConvCall c = conv_call("conv2d_forward", x, weight, stride, padding, dilation, groups);
  const ConvGeometry& g = c.g;
  return dispatch(float_dtype(weight, "conv2d_forward weight"), [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* px = in_ptr<T>(x, "conv2d_forward input");
    const T* pw = in_ptr<T>(weight, "conv2d_forward weight");
    const T* pb = optional_in<T>(bias, {c.out_channels}, "conv2d_forward bias");
    T* pcol = nullptr;
    if (!col.is_none() && !g.is_pointwise()) {
      auto a = col.cast<py::array>();
      require_shape(a, {g.rows(), g.columns()}, "conv2d_forward col");
      pcol = out_ptr<T>(a, "conv2d_forward col");
    }
    auto y = empty_array<T>({g.batch, c.out_channels, g.out_h, g.out_w});
    T* py_ = y.mutable_data();
    bool finite = true;
    {
      py::gil_scoped_release release;
      if (check_finite) finite = all_finite(px, g.batch * g.channels * g.height * g.width);
      if (finite) conv2d_forward(px, pw, pb, py_, g, c.out_channels, c.groups, pcol);
    }
    require(finite, "input contains NaN or infinity");
    return y;
  });
}

py::object conv2d_backward_py(const py::array& grad_y, const py::array& x, const py::array& weight,
                              const py::object& grad_weight, const py::object& grad_bias, const py::object& stride,
                              const py::object& padding, const py::object& dilation, index_t groups,
                              bool need_input_grad, bool accumulate_weight, bool accumulate_bias,
                              const py::object& col) {
  const ConvCall c = conv_call("conv2d_backward", x, weight, stride, padding, dilation, groups);
  const ConvGeometry& g = c.g;
  require_shape(grad_y, {g.batch, c.out_channels, g.out_h, g.out_w}, "conv2d_backward grad_output");
  return dispatch(float_dtype(weight, "conv2d_backward weight"), [&](auto tag) -> py::object {
    using T = decltype(tag);
    const T* pdy = in_ptr<T>(grad_y, "conv2d_backward grad_output");
    const T* px = in_ptr<T>(x, "conv2d_backward input");
    const T* pw = in_ptr<T>(weight, "conv2d_backward weight");
    T* pdw = optional_out<T>(grad_weight, {c.out_channels, g.channels / c.groups, g.kernel_h, g.kernel_w},
                             "conv2d_backward grad_weight");
    T* pdb = optional_out<T>(grad_bias, {c.out_channels}, "conv2d_backward grad_bias");
    const T* pcol = nullptr;
    if (!col.is_none() && !g.is_pointwise()) {
      auto a = col.cast<py::array>();
      require_shape(a, {g.rows(), g.columns()}, "conv2d_backward col");
      pcol = in_ptr<T>(a, "conv2d_backward col");
    }
    T* pdx;
    py::object result = optional_output<T>(need_input_grad, {g.batch, g.channels, g.height, g.width}, pdx);
    py::gil_scoped_release release;
    conv2d_backward(pdy, px, pw, pdw, pdb, pdx, g, c.out_channels, c.groups, pcol, accumulate_weight,
                    accumulate_bias);
    return result;
  });
}

// Geometry of a bare im2col/col2im call on input shape (N, C, H, W).
ConvGeometry unfold_geometry(const char* fn, const std::vector<index_t>& shape, const py::object& kernel_size,
                             const py::object& stride, const py::object& padding, const py::object& dilation) {
  require(shape.size() == 4, std::string(fn) + ": input must be 4-D (N, C, H, W)");
  ConvGeometry g{};
  g.batch = shape[0], g.channels = shape[1], g.height = shape[2], g.width = shape[3];
  pair_arg(kernel_size, "kernel_size", 1, g.kernel_h, g.kernel_w);
  pair_arg(stride, "stride", 1, g.stride_h, g.stride_w);
  pair_arg(padding, "padding", 0, g.pad_h, g.pad_w);
  pair_arg(dilation, "dilation", 1, g.dilation_h, g.dilation_w);
  g.set_output_size();
  require(g.out_h > 0 && g.out_w > 0, std::string(fn) + ": the dilated kernel does not fit the padded input");
  return g;
}

py::array im2col_py(const py::array& x, const py::object& kernel_size, const py::object& stride,
                    const py::object& padding, const py::object& dilation) {
  std::vector<index_t> shape(x.shape(), x.shape() + x.ndim());
  const ConvGeometry g = unfold_geometry("im2col", shape, kernel_size, stride, padding, dilation);
  return dispatch(float_dtype(x, "im2col input"), [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* px = in_ptr<T>(x, "im2col input");
    auto col = empty_array<T>({g.rows(), g.columns()});
    T* pc = col.mutable_data();
    py::gil_scoped_release release;
    im2col_batch(px, pc, g);
    return col;
  });
}

py::array col2im_py(const py::array& col, const std::vector<index_t>& input_shape, const py::object& kernel_size,
                    const py::object& stride, const py::object& padding, const py::object& dilation) {
  const ConvGeometry g = unfold_geometry("col2im", input_shape, kernel_size, stride, padding, dilation);
  require_shape(col, {g.rows(), g.columns()}, "col2im col");
  return dispatch(float_dtype(col, "col2im col"), [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* pc = in_ptr<T>(col, "col2im col");
    auto x = empty_array<T>({g.batch, g.channels, g.height, g.width});
    T* px = x.mutable_data();
    py::gil_scoped_release release;
    col2im_batch(pc, px, g);
    return x;
  });
}

}  // namespace

void register_conv(py::module_& m) {
  m.def("conv2d_forward", &conv2d_forward_py, py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(),
        py::arg("stride") = 1, py::arg("padding") = 0, py::arg("dilation") = 1, py::arg("groups") = 1,
        py::arg("check_finite") = false, py::arg("col") = py::none(),
        "y [N, O, Ho, Wo] = conv(x [N, C, H, W], weight [O, C/groups, kh, kw]) + bias. `col`, a writeable\n"
        "[C·kh·kw, N·Ho·Wo] array, receives im2col(x) for reuse by conv2d_backward.");
  m.def("conv2d_backward", &conv2d_backward_py, py::arg("grad_output"), py::arg("x"), py::arg("weight"),
        py::arg("grad_weight") = py::none(), py::arg("grad_bias") = py::none(), py::arg("stride") = 1,
        py::arg("padding") = 0, py::arg("dilation") = 1, py::arg("groups") = 1, py::arg("need_input_grad") = true,
        py::arg("accumulate_weight") = true, py::arg("accumulate_bias") = true, py::arg("col") = py::none(),
        "Writes dW (+)= and db (+)= in place (None skips one); returns dx, or None when need_input_grad is\n"
        "false. `col`: im2col(x) from conv2d_forward, or None to recompute it.");
  m.def("im2col", &im2col_py, py::arg("x"), py::arg("kernel_size"), py::arg("stride") = 1, py::arg("padding") = 0,
        py::arg("dilation") = 1, "col [C·kh·kw, N·Ho·Wo] of x [N, C, H, W]; row (c·kh + i)·kw + j, column n·P + p.");
  m.def("col2im", &col2im_py, py::arg("col"), py::arg("input_shape"), py::arg("kernel_size"), py::arg("stride") = 1,
        py::arg("padding") = 0, py::arg("dilation") = 1, "The adjoint of im2col: sums columns back into (N, C, H, W).");
}

}  // namespace fastnn::bind
