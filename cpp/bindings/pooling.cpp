// Bindings of the pooling kernels (kernels/pooling.hpp): shapes checked, GIL released. 1-D pooling calls
// these with H = 1. max_pool2d_forward returns (y, argmax) with argmax int32, the flat index in each plane
// (the layers widen it to PyTorch's int64 indices).
#include <cstdint>

#include "bindings/array_args.hpp"
#include "bindings/conv_args.hpp"
#include "bindings/registry.hpp"
#include "kernels/checks.hpp"
#include "kernels/pooling.hpp"

namespace fastnn::bind {

namespace {

// Window geometry of max or average pooling (dilation 1 for average pooling), output size as PyTorch
// computes it (floor or ceil mode). PyTorch limits padding to half the undilated kernel.
ConvGeometry pool_geometry(const char* fn, const std::vector<index_t>& x, const py::object& kernel_size,
                           const py::object& stride, const py::object& padding, const py::object& dilation,
                           bool ceil_mode) {
  require(x.size() == 4, std::string(fn) + ": input must be 4-D (N, C, H, W), got " + shape_str(x));
  ConvGeometry g{};
  g.batch = x[0], g.channels = x[1], g.height = x[2], g.width = x[3];
  pair_arg(kernel_size, "kernel_size", 1, g.kernel_h, g.kernel_w);
  if (stride.is_none()) {
    g.stride_h = g.kernel_h, g.stride_w = g.kernel_w;
  } else {
    pair_arg(stride, "stride", 1, g.stride_h, g.stride_w);
  }
  pair_arg(padding, "padding", 0, g.pad_h, g.pad_w);
  pair_arg(dilation, "dilation", 1, g.dilation_h, g.dilation_w);
  require(2 * g.pad_h <= g.kernel_h && 2 * g.pad_w <= g.kernel_w,
          std::string(fn) + ": padding must be at most half the kernel size");
  g.out_h = pool_output_size(g.height, g.kernel_h, g.stride_h, g.pad_h, g.dilation_h, ceil_mode);
  g.out_w = pool_output_size(g.width, g.kernel_w, g.stride_w, g.pad_w, g.dilation_w, ceil_mode);
  require(g.out_h > 0 && g.out_w > 0,
          std::string(fn) + ": input " + shape_str(x) + " padded by (" + std::to_string(g.pad_h) + ", " +
              std::to_string(g.pad_w) + ") is smaller than the kernel (" +
              std::to_string(g.dilation_h * (g.kernel_h - 1) + 1) + ", " +
              std::to_string(g.dilation_w * (g.kernel_w - 1) + 1) + "): output size (" + std::to_string(g.out_h) +
              ", " + std::to_string(g.out_w) + ")");
  return g;
}

PoolOptions avg_options(const char* fn, bool count_include_pad, const py::object& divisor_override) {
  PoolOptions opt;
  opt.count_include_pad = count_include_pad;
  if (!divisor_override.is_none()) {
    opt.divisor_override = divisor_override.cast<index_t>();
    require(opt.divisor_override != 0, std::string(fn) + ": divisor_override must not be 0");
  }
  return opt;
}

py::tuple max_pool2d_forward_py(const py::array& x, const py::object& kernel_size, const py::object& stride,
                                const py::object& padding, bool return_argmax, const py::object& dilation,
                                bool ceil_mode) {
  const ConvGeometry g =
      pool_geometry("max_pool2d_forward", shape_of(x), kernel_size, stride, padding, dilation, ceil_mode);
  require(g.height * g.width < (index_t(1) << 31), "max_pool2d_forward: planes over 2^31 elements");
  PoolOptions opt;
  opt.dilation_h = g.dilation_h, opt.dilation_w = g.dilation_w;
  return dispatch(float_dtype(x, "max_pool2d_forward input"), [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const T* px = in_ptr<T>(x, "max_pool2d_forward input");
    auto y = empty_array<T>({g.batch, g.channels, g.out_h, g.out_w});
    py::object argmax = py::none();
    std::int32_t* pa = nullptr;
    if (return_argmax) {
      auto a = empty_array<std::int32_t>({g.batch, g.channels, g.out_h, g.out_w});
      pa = a.mutable_data();
      argmax = a;
    }
    T* py_ = y.mutable_data();
    {
      py::gil_scoped_release release;
      max_pool2d_forward(px, py_, pa, g, opt);
    }
    return py::make_tuple(y, argmax);
  });
}

py::array max_pool2d_backward_py(const py::array& grad_y, const py::array& argmax,
                                 const std::vector<index_t>& input_shape) {
  require(input_shape.size() == 4 && grad_y.ndim() == 4, "max_pool2d_backward: shapes must be 4-D");
  ConvGeometry g{};
  g.batch = input_shape[0], g.channels = input_shape[1], g.height = input_shape[2], g.width = input_shape[3];
  g.out_h = grad_y.shape(2), g.out_w = grad_y.shape(3);
  require(grad_y.shape(0) == g.batch && grad_y.shape(1) == g.channels,
          "max_pool2d_backward: grad_output " + shape_str(grad_y) + " does not match the input shape");
  require_shape(argmax, {g.batch, g.channels, g.out_h, g.out_w}, "max_pool2d_backward argmax");
  require(has_dtype<std::int32_t>(argmax) && (argmax.flags() & py::array::c_style),
          "max_pool2d_backward: argmax must be a C-contiguous int32 array");
  const auto* pa = static_cast<const std::int32_t*>(argmax.data());
  return dispatch(float_dtype(grad_y, "max_pool2d_backward grad_output"), [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* pdy = in_ptr<T>(grad_y, "max_pool2d_backward grad_output");
    auto dx = empty_array<T>({g.batch, g.channels, g.height, g.width});
    T* pdx = dx.mutable_data();
    bool in_range = true;
    {
      py::gil_scoped_release release;
      const index_t HW = g.height * g.width, count = g.batch * g.channels * g.plane();
      for (index_t i = 0; i < count; ++i) in_range &= pa[i] >= -1 && pa[i] < HW;  // −1: a window without input
      if (in_range) max_pool2d_backward(pdy, pa, pdx, g);
    }
    require(in_range, "max_pool2d_backward: argmax index out of range");
    return dx;
  });
}

py::array avg_pool2d_forward_py(const py::array& x, const py::object& kernel_size, const py::object& stride,
                                const py::object& padding, bool ceil_mode, bool count_include_pad,
                                const py::object& divisor_override) {
  const ConvGeometry g =
      pool_geometry("avg_pool2d_forward", shape_of(x), kernel_size, stride, padding, py::int_(1), ceil_mode);
  const PoolOptions opt = avg_options("avg_pool2d_forward", count_include_pad, divisor_override);
  return dispatch(float_dtype(x, "avg_pool2d_forward input"), [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* px = in_ptr<T>(x, "avg_pool2d_forward input");
    auto y = empty_array<T>({g.batch, g.channels, g.out_h, g.out_w});
    T* py_ = y.mutable_data();
    {
      py::gil_scoped_release release;
      avg_pool2d_forward(px, py_, g, opt);
    }
    return y;
  });
}

py::array avg_pool2d_backward_py(const py::array& grad_y, const std::vector<index_t>& input_shape,
                                 const py::object& kernel_size, const py::object& stride, const py::object& padding,
                                 bool ceil_mode, bool count_include_pad, const py::object& divisor_override) {
  require(input_shape.size() == 4, "avg_pool2d_backward: input_shape must have 4 entries");
  const ConvGeometry g =
      pool_geometry("avg_pool2d_backward", input_shape, kernel_size, stride, padding, py::int_(1), ceil_mode);
  const PoolOptions opt = avg_options("avg_pool2d_backward", count_include_pad, divisor_override);
  require_shape(grad_y, {g.batch, g.channels, g.out_h, g.out_w}, "avg_pool2d_backward grad_output");
  return dispatch(float_dtype(grad_y, "avg_pool2d_backward grad_output"), [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* pdy = in_ptr<T>(grad_y, "avg_pool2d_backward grad_output");
    auto dx = empty_array<T>({g.batch, g.channels, g.height, g.width});
    T* pdx = dx.mutable_data();
    {
      py::gil_scoped_release release;
      avg_pool2d_backward(pdy, pdx, g, opt);
    }
    return dx;
  });
}

ConvGeometry adaptive_geometry(const char* fn, const std::vector<index_t>& shape, const py::object& output_size) {
  require(shape.size() == 4, std::string(fn) + ": input must be 4-D (N, C, H, W)");
  ConvGeometry g{};
  g.batch = shape[0], g.channels = shape[1], g.height = shape[2], g.width = shape[3];
  pair_arg(output_size, "output_size", 1, g.out_h, g.out_w);
  require(g.height >= 1 && g.width >= 1, std::string(fn) + ": empty input planes");
  return g;
}

py::array adaptive_avg_pool2d_forward_py(const py::array& x, const py::object& output_size) {
  const ConvGeometry g = adaptive_geometry("adaptive_avg_pool2d_forward", shape_of(x), output_size);
  return dispatch(float_dtype(x, "adaptive_avg_pool2d_forward input"), [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* px = in_ptr<T>(x, "adaptive_avg_pool2d_forward input");
    auto y = empty_array<T>({g.batch, g.channels, g.out_h, g.out_w});
    T* py_ = y.mutable_data();
    {
      py::gil_scoped_release release;
      adaptive_avg_pool2d_forward(px, py_, g);
    }
    return y;
  });
}

py::array adaptive_avg_pool2d_backward_py(const py::array& grad_y, const std::vector<index_t>& input_shape) {
  require(grad_y.ndim() == 4, "adaptive_avg_pool2d_backward: grad_output must be 4-D, got " + shape_str(grad_y));
  const ConvGeometry g = adaptive_geometry("adaptive_avg_pool2d_backward", input_shape,
                                           py::make_tuple(grad_y.shape(2), grad_y.shape(3)));
  require_shape(grad_y, {g.batch, g.channels, g.out_h, g.out_w}, "adaptive_avg_pool2d_backward grad_output");
  return dispatch(float_dtype(grad_y, "adaptive_avg_pool2d_backward grad_output"), [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* pdy = in_ptr<T>(grad_y, "adaptive_avg_pool2d_backward grad_output");
    auto dx = empty_array<T>({g.batch, g.channels, g.height, g.width});
    T* pdx = dx.mutable_data();
    {
      py::gil_scoped_release release;
      adaptive_avg_pool2d_backward(pdy, pdx, g);
    }
    return dx;
  });
}

}  // namespace

void register_pooling(py::module_& m) {
  m.def("max_pool2d_forward", &max_pool2d_forward_py, py::arg("x"), py::arg("kernel_size"),
        py::arg("stride") = py::none(), py::arg("padding") = 0, py::arg("return_argmax") = true,
        py::arg("dilation") = 1, py::arg("ceil_mode") = false,
        "2-D max pooling over NCHW images (PyTorch's MaxPool2d).\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "x : ndarray (N, C, H, W), float32 or float64\n"
        "kernel_size : int or (int, int)\n"
        "stride : int, (int, int) or None, default None\n"
        "    None means kernel_size.\n"
        "padding : int or (int, int), default 0\n"
        "    At most half the kernel.\n"
        "return_argmax : bool, default True\n"
        "dilation : int or (int, int), default 1\n"
        "ceil_mode : bool, default False\n"
        "\n"
        "Returns\n"
        "-------\n"
        "y : ndarray (N, C, Ho, Wo)\n"
        "argmax : ndarray (N, C, Ho, Wo), int32, or None\n"
        "    Flat index h * W + w of each window's maximum in its plane (-1 for a window with no tap in the input).\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
  m.def("max_pool2d_backward", &max_pool2d_backward_py, py::arg("grad_output"), py::arg("argmax"),
        py::arg("input_shape"),
        "Gradient of max_pool2d_forward: each grad_output value added at its window's argmax.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "grad_output : ndarray (N, C, Ho, Wo)\n"
        "argmax : ndarray (N, C, Ho, Wo), int32\n"
        "    From max_pool2d_forward.\n"
        "input_shape : sequence of 4 ints\n"
        "    (N, C, H, W).\n"
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
  m.def("avg_pool2d_forward", &avg_pool2d_forward_py, py::arg("x"), py::arg("kernel_size"),
        py::arg("stride") = py::none(), py::arg("padding") = 0, py::arg("ceil_mode") = false,
        py::arg("count_include_pad") = true, py::arg("divisor_override") = py::none(),
        "2-D average pooling over NCHW images with PyTorch's options and divisors.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "x : ndarray (N, C, H, W), float32 or float64\n"
        "kernel_size : int or (int, int)\n"
        "stride : int, (int, int) or None, default None\n"
        "    None means kernel_size.\n"
        "padding : int or (int, int), default 0\n"
        "ceil_mode : bool, default False\n"
        "count_include_pad : bool, default True\n"
        "    Whether padded zeros count in the divisor.\n"
        "divisor_override : int or None, default None\n"
        "    A fixed divisor.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray (N, C, Ho, Wo)\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
  m.def("avg_pool2d_backward", &avg_pool2d_backward_py, py::arg("grad_output"), py::arg("input_shape"),
        py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = 0, py::arg("ceil_mode") = false,
        py::arg("count_include_pad") = true, py::arg("divisor_override") = py::none(),
        "Gradient dx of avg_pool2d_forward.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "grad_output : ndarray (N, C, Ho, Wo)\n"
        "input_shape : sequence of 4 ints\n"
        "    (N, C, H, W).\n"
        "kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override\n"
        "    As given to avg_pool2d_forward.\n"
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
  m.def("adaptive_avg_pool2d_forward", &adaptive_avg_pool2d_forward_py, py::arg("x"), py::arg("output_size"),
        "Adaptive average pooling to a fixed output size (PyTorch's AdaptiveAvgPool2d).\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "x : ndarray (N, C, H, W), float32 or float64\n"
        "output_size : int or (int, int)\n"
        "    (Ho, Wo); 1 is the global average pool.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray (N, C, Ho, Wo)\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
  m.def("adaptive_avg_pool2d_backward", &adaptive_avg_pool2d_backward_py, py::arg("grad_output"),
        py::arg("input_shape"),
        "Gradient dx of adaptive_avg_pool2d_forward.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "grad_output : ndarray (N, C, Ho, Wo)\n"
        "input_shape : sequence of 4 ints\n"
        "    (N, C, H, W).\n"
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
