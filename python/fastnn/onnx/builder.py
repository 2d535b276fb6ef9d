"""A small ONNX graph under construction: nodes, initializers, constants and unique value names."""
import numpy as np

INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min


class OnnxBuilder:
    def __init__(self, onnx):
        self.onnx = onnx
        self.helper, self.numpy_helper = onnx.helper, onnx.numpy_helper
        self.nodes, self.initializers = [], []
        self.names = set()
        self._initialized = set()
        self.overrides = {}   # dotted parameter name -> ONNX value computed in its place
        self._counter = 0

    def fresh(self, hint):
        """A value name not used yet, based on `hint`."""
        base = hint.replace("/", "_") or "v"
        name = base
        while name in self.names:
            self._counter += 1
            name = f"{base}_{self._counter}"
        self.names.add(name)
        return name

    def initializer(self, name, array):
        """Adds a named initializer (a parameter or buffer, named by its fastnn name)."""
        if name in self._initialized:
            return name
        if name in self.names:
            raise ValueError(f"ONNX export: the name '{name}' is used twice")
        self.names.add(name)
        return self._add(name, array)

    def _add(self, name, array):
        self._initialized.add(name)
        self.initializers.append(self.numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def param(self, module, prefix, name):
        """The initializer of `module`'s parameter or buffer `name`, named prefix + name (None if it is None);
        a value computed in its place (WeightNorm) when there is one."""
        if prefix + name in self.overrides:
            return self.overrides[prefix + name]
        p = getattr(module, name, None)
        if p is None:
            return None
        return self.initializer(prefix + name, p.data if hasattr(p, "data") and not isinstance(p, np.ndarray)
                                else p)

    def const(self, array, hint="const"):
        """An anonymous constant tensor."""
        return self._add(self.fresh(hint), np.asarray(array))

    def ints(self, values, hint="ints"):
        return self.const(np.asarray(values, np.int64).reshape(-1), hint)

    def scalar(self, value, dtype, hint="scalar"):
        return self.const(np.asarray(value, dtype), hint)

    def op(self, op_type, inputs, hint=None, outputs=1, **attrs):
        """Adds a node; returns its output name (or list of names when outputs > 1)."""
        outs = [self.fresh(f"{hint or op_type}") for _ in range(outputs)]
        node_name = self.fresh(f"{hint or op_type}_node")
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(self.helper.make_node(op_type, list(inputs), outs, name=node_name, **attrs))
        return outs[0] if outputs == 1 else outs

    def shape_slice(self, x, start, end=None):
        """Shape(x)[start:end] as a 1-D int64 tensor (opset 15 Shape's start/end)."""
        return self.op("Shape", [x], "shape", start=int(start), end=None if end is None else int(end))
