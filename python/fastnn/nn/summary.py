"""Module.summary(): runs one zero sample through the model and tabulates every leaf layer."""
import numpy as np


def summarize(model, input_shape, dtype=None):
    dtype = np.dtype(dtype or model.dtype)
    leaves = [(name, m) for name, m in model.named_modules() if not m._modules and name]
    if not leaves:
        leaves = [("", model)]
    shapes = {}

    def recording(name, forward):
        def wrapped(*args, **kwargs):
            out = forward(*args, **kwargs)
            first = out[0] if isinstance(out, tuple) else out
            shapes[name] = tuple(np.shape(first))
            return out
        return wrapped

    was_training = [(m, m.training) for m in model.modules()]
    for name, m in leaves:
        m.forward = recording(name, m.forward)  # instance attribute shadows the method while summarising
    # An eval-mode Sequential's fused plan would bypass the layers' forwards: run layer by layer (False = no
    # plan); None afterwards makes the next forward rebuild it.
    planned = [m for m in model.modules() if hasattr(m, "_plan")]
    for m in planned:
        object.__setattr__(m, "_plan", False)
    try:
        model.eval()
        model(np.zeros((1,) + tuple(input_shape), dtype))
    finally:
        for name, m in leaves:
            del m.__dict__["forward"]
        for m, mode in was_training:
            object.__setattr__(m, "training", mode)
        for m in planned:
            object.__setattr__(m, "_plan", None)

    rows = [("Layer", "Type", "Output shape", "Params")]
    for name, m in leaves:
        count = sum(p.size for p in m._parameters.values())
        rows.append((name or type(m).__name__, repr(m).split("\n")[0], str(shapes.get(name, "-")), f"{count:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    line = "-" * (sum(widths) + 6)
    fmt = lambda r: "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    total = model.num_parameters()
    trainable = model.num_parameters(trainable_only=True)
    out = [fmt(rows[0]), line, *map(fmt, rows[1:]), line,
           f"Total params: {total:,}", f"Trainable params: {trainable:,}",
           f"Non-trainable params: {total - trainable:,}"]
    return "\n".join(out)
