// Arguments shared by the convolution and pooling bindings: (h, w) pairs, output-size and conv-call checks.
#pragma once
#include "bindings/array_args.hpp"
#include <pybind11/stl.h>

#include "kernels/im2col.hpp"

#include <string>
#include <vector>

namespace fastnn::bind {

// An int, or a sequence of two ints, as (h, w); each at least `minimum`.
inline void pair_arg(const py::object& value, const char* name, index_t minimum, index_t& h, index_t& w) {
  PyObject* obj = value.ptr();
  if (PyTuple_Check(obj) && PyTuple_GET_SIZE(obj) == 2 && PyLong_Check(PyTuple_GET_ITEM(obj, 0)) &&
      PyLong_Check(PyTuple_GET_ITEM(obj, 1))) {  // the layers' form: no conversion machinery
    h = PyLong_AsLongLong(PyTuple_GET_ITEM(obj, 0));
    w = PyLong_AsLongLong(PyTuple_GET_ITEM(obj, 1));
    if (PyErr_Occurred()) throw py::error_already_set();
  } else if (py::isinstance<py::int_>(value)) {
    h = w = value.cast<index_t>();
  } else {
    auto seq = value.cast<std::vector<index_t>>();
    require(seq.size() == 2, std::string(name) + " must be an int or a pair of ints");
    h = seq[0], w = seq[1];
  }
  require(h >= minimum && w >= minimum,
          std::string(name) + " must be >= " + std::to_string(minimum) + ", got (" + std::to_string(h) + ", " +
              std::to_string(w) + ")");
}

// Sets g's output size; ValueError when the (dilated) kernel does not fit the padded input.
inline void require_output(const char* fn, const std::string& input_shape, ConvGeometry& g, bool dilated) {
  g.set_output_size();
  require(g.out_h > 0 && g.out_w > 0,
          std::string(fn) + ": input " + input_shape + " padded by (" + std::to_string(g.pad_h) + ", " +
              std::to_string(g.pad_w) + ") is smaller than the " + (dilated ? "dilated " : "") + "kernel (" +
              std::to_string(g.dilation_h * (g.kernel_h - 1) + 1) + ", " +
              std::to_string(g.dilation_w * (g.kernel_w - 1) + 1) + ")");
}

inline std::string shape_str(const std::vector<index_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

inline std::vector<index_t> shape_of(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }

// A convolution call's geometry, checked (shared by conv2d_* and conv_block_forward).
struct ConvCall {
  ConvGeometry g;
  index_t out_channels, groups;
};

// Checks x [N, C, H, W] against weight [O, C/groups, kh, kw] and the hyper-parameters.
inline ConvCall conv_call(const char* fn, const py::array& x, const py::array& weight, const py::object& stride,
                          const py::object& padding, const py::object& dilation, index_t groups) {
  require(x.ndim() == 4, std::string(fn) + ": input must be 4-D (N, C, H, W), got " + shape_str(x));
  require(weight.ndim() == 4, std::string(fn) + ": weight must be 4-D (O, C/groups, kh, kw), got " +
                                  shape_str(weight));
  require(groups >= 1, std::string(fn) + ": groups must be >= 1");
  ConvCall c{};
  ConvGeometry& g = c.g;
  g.batch = x.shape(0), g.channels = x.shape(1), g.height = x.shape(2), g.width = x.shape(3);
  c.out_channels = weight.shape(0), c.groups = groups;
  g.kernel_h = weight.shape(2), g.kernel_w = weight.shape(3);
  require(g.channels % groups == 0 && c.out_channels % groups == 0 && weight.shape(1) * groups == g.channels,
          std::string(fn) + ": input " + shape_str(x) + " does not match weight " + shape_str(weight) +
              " with groups=" + std::to_string(groups));
  require(g.kernel_h >= 1 && g.kernel_w >= 1, std::string(fn) + ": empty kernel " + shape_str(weight));
  pair_arg(stride, "stride", 1, g.stride_h, g.stride_w);
  pair_arg(padding, "padding", 0, g.pad_h, g.pad_w);
  pair_arg(dilation, "dilation", 1, g.dilation_h, g.dilation_w);
  require_output(fn, shape_str(x), g, true);
  return c;
}

}  // namespace fastnn::bind
