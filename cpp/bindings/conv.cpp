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
    {
      py::gil_scoped_release release;
      conv2d_backward(pdy, px, pw, pdw, pdb, pdx, g, c.out_channels, c.groups, pcol, accumulate_weight,
                      accumulate_bias);
    }
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
    {
      py::gil_scoped_release release;
      im2col_batch(px, pc, g);
    }
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
    {
      py::gil_scoped_release release;
      col2im_batch(pc, px, g);
    }
    return x;
  });
}

}  // namespace

void register_conv(py::module_& m) {
  m.def("conv2d_forward", &conv2d_forward_py, py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(),
        py::arg("stride") = 1, py::arg("padding") = 0, py::arg("dilation") = 1, py::arg("groups") = 1,
        py::arg("check_finite") = false, py::arg("col") = py::none(),
        "2-D convolution (cross-correlation, PyTorch's Conv2d) of NCHW images, over im2col and one GEMM.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "x : ndarray (N, C, H, W), float32 or float64\n"
        "weight : ndarray (O, C / groups, kh, kw)\n"
        "bias : ndarray (O,) or None, default None\n"
        "stride, padding, dilation : int or (int, int), default 1, 0, 1\n"
        "groups : int, default 1\n"
        "check_finite : bool, default False\n"
        "    Raise ValueError when x holds NaN or infinity.\n"
        "col : ndarray (C * kh * kw, N * Ho * Wo) or None, default None\n"
        "    Writeable; receives im2col(x) for conv2d_backward to reuse.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray (N, O, Ho, Wo)\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
  m.def("conv2d_backward", &conv2d_backward_py, py::arg("grad_output"), py::arg("x"), py::arg("weight"),
        py::arg("grad_weight") = py::none(), py::arg("grad_bias") = py::none(), py::arg("stride") = 1,
        py::arg("padding") = 0, py::arg("dilation") = 1, py::arg("groups") = 1, py::arg("need_input_grad") = true,
        py::arg("accumulate_weight") = true, py::arg("accumulate_bias") = true, py::arg("col") = py::none(),
        "Gradients of conv2d_forward; parameter gradients are written in place.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "grad_output : ndarray (N, O, Ho, Wo)\n"
        "x, weight : ndarray\n"
        "    As given to conv2d_forward.\n"
        "grad_weight : ndarray of weight's shape, or None, default None\n"
        "grad_bias : ndarray (O,) or None, default None\n"
        "    Receive dweight, dbias; None skips one.\n"
        "stride, padding, dilation, groups\n"
        "    As given to conv2d_forward.\n"
        "need_input_grad : bool, default True\n"
        "    False skips dx.\n"
        "accumulate_weight, accumulate_bias : bool, default True\n"
        "    Add into the gradient arrays (True) or overwrite them (False).\n"
        "col : ndarray or None, default None\n"
        "    im2col(x) kept by conv2d_forward; None recomputes it.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray (N, C, H, W) or None\n"
        "    dx, or None when need_input_grad is false.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
  m.def("im2col", &im2col_py, py::arg("x"), py::arg("kernel_size"), py::arg("stride") = 1, py::arg("padding") = 0,
        py::arg("dilation") = 1,
        "Unfold image patches into columns (the layout conv2d_forward multiplies).\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "x : ndarray (N, C, H, W), float32 or float64\n"
        "kernel_size, stride, padding, dilation : int or (int, int)\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray (C * kh * kw, N * Ho * Wo)\n"
        "    Row (c * kh + i) * kw + j, column n * Ho * Wo + p.\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
  m.def("col2im", &col2im_py, py::arg("col"), py::arg("input_shape"), py::arg("kernel_size"), py::arg("stride") = 1,
        py::arg("padding") = 0, py::arg("dilation") = 1,
        "The adjoint of im2col: sum columns back into images (overlapping patches add up).\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "col : ndarray (C * kh * kw, N * Ho * Wo), float32 or float64\n"
        "input_shape : sequence of 4 ints\n"
        "    (N, C, H, W) of the image.\n"
        "kernel_size, stride, padding, dilation : int or (int, int)\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray (N, C, H, W)\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
}

}  // namespace fastnn::bind
