// Binding of the eval-mode convolution block (kernels/conv_block.hpp): Conv → activations → pooling in one
// call, for Sequential's inference plan. Shapes checked, GIL released.
#include <pybind11/stl.h>

#include "bindings/array_args.hpp"
#include "bindings/conv_args.hpp"
#include "bindings/registry.hpp"
#include "kernels/checks.hpp"
#include "kernels/conv_block.hpp"

namespace fastnn::bind {

namespace {

using ActivationList = std::vector<std::tuple<Activation, double, double>>;

py::array conv_block_forward_py(const py::array& x, const py::array& weight, const py::object& bias,
                                const py::object& stride, const py::object& padding, const py::object& dilation,
                                index_t groups, const ActivationList& activation_list, const py::object& pool_spec,
                                bool check_finite) {
  const ConvCall c = conv_call("conv_block_forward", x, weight, stride, padding, dilation, groups);
  const ConvGeometry& g = c.g;
  std::vector<ActivationStep> activations;
  for (auto& [kind, a, b] : activation_list) activations.push_back({kind, a, b});
  PoolKind pool_kind = PoolKind::none;
  ConvGeometry pool{};
  pool.batch = 1, pool.channels = c.out_channels, pool.height = g.out_h, pool.width = g.out_w;
  pool.kernel_h = pool.kernel_w = pool.stride_h = pool.stride_w = pool.dilation_h = pool.dilation_w = 1;
  pool.out_h = g.out_h, pool.out_w = g.out_w;
  if (!pool_spec.is_none()) {
    // (kind, kernel_size, stride, padding) with kind "max" or "avg": floor mode, average counting the padding.
    auto spec = pool_spec.cast<py::tuple>();
    require(spec.size() == 4, "conv_block_forward: pool must be (kind, kernel_size, stride, padding)");
    const auto kind = spec[0].cast<std::string>();
    require(kind == "max" || kind == "avg", "conv_block_forward: pool kind must be 'max' or 'avg', got " + kind);
    pool_kind = kind == "max" ? PoolKind::max : PoolKind::average;
    pair_arg(spec[1], "pool kernel_size", 1, pool.kernel_h, pool.kernel_w);
    pair_arg(spec[2], "pool stride", 1, pool.stride_h, pool.stride_w);
    pair_arg(spec[3], "pool padding", 0, pool.pad_h, pool.pad_w);
    require(2 * pool.pad_h <= pool.kernel_h && 2 * pool.pad_w <= pool.kernel_w,
            "conv_block_forward: pool padding must be at most half the pool kernel");
    require_output("conv_block_forward pool", shape_str({g.batch, c.out_channels, g.out_h, g.out_w}), pool, false);
  }
  return dispatch(float_dtype(weight, "conv_block_forward weight"), [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* px = in_ptr<T>(x, "conv_block_forward input");
    const T* pw = in_ptr<T>(weight, "conv_block_forward weight");
    const T* pb = optional_in<T>(bias, {c.out_channels}, "conv_block_forward bias");
    auto y = empty_array<T>({g.batch, c.out_channels, pool.out_h, pool.out_w});
    T* py_ = y.mutable_data();
    bool finite = true;
    {
      py::gil_scoped_release release;
      if (check_finite) finite = all_finite(px, g.batch * g.channels * g.height * g.width);
      if (finite) conv_block_forward(px, pw, pb, py_, g, c.out_channels, c.groups, activations, pool_kind, pool);
    }
    require(finite, "input contains NaN or infinity");
    return y;
  });
}

}  // namespace

void register_conv_block(py::module_& m) {
  m.def("conv_block_forward", &conv_block_forward_py, py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(),
        py::arg("stride") = 1, py::arg("padding") = 0, py::arg("dilation") = 1, py::arg("groups") = 1,
        py::arg("activations") = ActivationList{}, py::arg("pool") = py::none(), py::arg("check_finite") = false,
        "Inference: pool(activations(conv2d(x, weight) + bias)) in one call, image by image.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "x, weight, bias, stride, padding, dilation, groups\n"
        "    As for conv2d_forward.\n"
        "activations : list of (Activation, a, b), default []\n"
        "    Applied in order.\n"
        "pool : None or ('max' or 'avg', kernel_size, stride, padding), default None\n"
        "    Floor mode; average pooling counts the padding.\n"
        "check_finite : bool, default False\n"
        "    Raise ValueError when x holds NaN or infinity.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "ndarray (N, O, Ho', Wo')\n"
        "\n"
        "Raises\n"
        "------\n"
        "ValueError\n"
        "    For shapes that do not match, or a non-C-contiguous array.\n"
        "TypeError\n"
        "    For a dtype other than float32/float64, or arrays of different dtypes.");
}

}  // namespace fastnn::bind
