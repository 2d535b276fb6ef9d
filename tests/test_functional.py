"""fastnn.nn.functional and the operators of traced values: every function of F.__all__ computed eagerly on
arrays against a NumPy formula; every op and Value operator/method (and the NumPy functions that trace)
inside a traced module against a NumPy formula and float64 finite differences of its input and Parameter
operands (broadcast operands get gradients of their own shape); float32 against float64 for the ops with
C++ kernels; dropout; and the uses of traced values that cannot be recorded (TraceError)."""
import inspect
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest

import fastnn as fnn
from harness import TOL, check_module_gradients, rng

F = fnn.nn.functional
nn = fnn.nn
F64 = dict(rtol=1e-12, atol=1e-14)


# ---- NumPy formulas ----------------------------------------------------------------------------------------
def np_sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def np_gelu(z):
    return np.vectorize(lambda v: 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))))(z)


def np_gelu_tanh(z):
    return 0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3)))


def np_softplus(z, beta, threshold):
    return np.where(beta * z > threshold, z, np.logaddexp(0, beta * z) / beta)


def np_softmax(z, dim):
    e = np.exp(z - z.max(axis=dim, keepdims=True))
    return e / e.sum(axis=dim, keepdims=True)


def np_log_softmax(z, dim):
    s = z - z.max(axis=dim, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=dim, keepdims=True))


def np_elu(z, alpha):
    return np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0)))


# ---- the cases ------------------------------------------------------------------------------------------
def sample(shape, domain, seed):
    """'any': normal values at least 0.1 away from 0 (the kinks of relu, abs, leaky_relu); 'pos': in [0.5, 2]."""
    r = rng(seed)
    if domain == "pos":
        return r.uniform(0.5, 2.0, shape)
    v = r.standard_normal(shape)
    return np.where(v >= 0, v + 0.1, v - 0.1)


class Case:
    """fn(x, p) -> output, written with F / Value operators, p holding the operands (the module's
    Parameters when traced, arrays when eager); ref(x, p): the same in NumPy on float64 arrays.
    f32: a C++ kernel, also compared in float32 against float64."""

    def __init__(self, fn, ref, x, params=None, domain="any", f32=False):
        self.fn, self.ref, self.x, self.domain, self.f32 = fn, ref, x, domain, f32
        self.params = params or {}

    def arrays(self, dtype=np.float64):
        x = sample(self.x, self.domain, 1).astype(dtype)
        p = {k: sample(shape, "any", 2 + j).astype(dtype) for j, (k, shape) in enumerate(self.params.items())}
        return x, p


def case(name, fn, ref, x, params=None, marks=(), **kw):
    return pytest.param(Case(fn, ref, x, params, **kw), id=name, marks=marks)


A = sample((3, 4), "any", 9)                        # a constant array operand
MASK = np.array([[True, False, True, True], [False, False, True, False], [True, True, False, True]])

# F functions: eager on arrays, and traced (ids "F.<name>..." are checked to cover F.__all__).
FUNCTIONAL = [
    case("F.relu", lambda x, p: F.relu(x), lambda x, p: np.maximum(x, 0), (3, 4), f32=True),
    case("F.leaky_relu", lambda x, p: F.leaky_relu(x, 0.2), lambda x, p: np.where(x > 0, x, 0.2 * x), (3, 4),
         f32=True),
    case("F.leaky_relu-default", lambda x, p: F.leaky_relu(x), lambda x, p: np.where(x > 0, x, 0.01 * x), (7,),
         f32=True),
    case("F.gelu", lambda x, p: F.gelu(x), lambda x, p: np_gelu(x), (3, 4)),
    case("F.gelu-tanh", lambda x, p: F.gelu(x, approximate="tanh"), lambda x, p: np_gelu_tanh(x), (3, 4)),
    case("F.silu", lambda x, p: F.silu(x), lambda x, p: x * np_sigmoid(x), (3, 4), f32=True),
    case("F.sigmoid", lambda x, p: F.sigmoid(x), lambda x, p: np_sigmoid(x), (3, 4), f32=True),
    case("F.tanh", lambda x, p: F.tanh(x), lambda x, p: np.tanh(x), (3, 4), f32=True),
    case("F.elu", lambda x, p: F.elu(x, alpha=0.7), lambda x, p: np_elu(x, 0.7), (3, 4), f32=True),
    case("F.softplus", lambda x, p: F.softplus(x), lambda x, p: np_softplus(x, 1.0, 20.0), (3, 4), f32=True),
    case("F.softplus-beta-threshold", lambda x, p: F.softplus(x, beta=2.0, threshold=1.5),
         lambda x, p: np_softplus(x, 2.0, 1.5), (3, 4), f32=True),
    case("F.softmax", lambda x, p: F.softmax(x, dim=1), lambda x, p: np_softmax(x, 1), (2, 3, 4), f32=True),
    case("F.softmax-last", lambda x, p: F.softmax(x), lambda x, p: np_softmax(x, -1), (3, 4), f32=True),
    case("F.log_softmax", lambda x, p: F.log_softmax(x, dim=0), lambda x, p: np_log_softmax(x, 0), (3, 4),
         f32=True),
    case("F.log_softmax-last", lambda x, p: F.log_softmax(x, -1), lambda x, p: np_log_softmax(x, -1), (2, 2, 5),
         f32=True),
    case("F.dropout-eval", lambda x, p: F.dropout(x, 0.5, training=False), lambda x, p: x, (3, 4)),
    case("F.dropout-p0", lambda x, p: F.dropout(x, 0.0), lambda x, p: x, (3, 4)),
    case("F.linear", lambda x, p: F.linear(x, p.w, p.b), lambda x, p: x @ p.w.T + p.b, (3, 4),
         {"w": (5, 4), "b": (5,)}, f32=True),
    case("F.linear-no-bias-3d", lambda x, p: F.linear(x, p.w), lambda x, p: x @ p.w.T, (2, 3, 4), {"w": (2, 4)},
         f32=True),
    case("F.linear-1d", lambda x, p: F.linear(x, p.w, p.b), lambda x, p: p.w @ x + p.b, (4,),
         {"w": (3, 4), "b": (3,)}, f32=True),
    case("F.flatten", lambda x, p: F.flatten(x, 1), lambda x, p: x.reshape(2, -1), (2, 3, 2, 2)),
    case("F.flatten-all", lambda x, p: F.flatten(x), lambda x, p: x.reshape(-1), (2, 3, 2)),
    case("F.flatten-middle", lambda x, p: F.flatten(x, 1, 2), lambda x, p: x.reshape(2, 6, 2), (2, 3, 2, 2)),
    case("F.reshape", lambda x, p: F.reshape(x, (x.shape[0], -1)), lambda x, p: x.reshape(2, 12), (2, 3, 4)),
    case("F.transpose", lambda x, p: F.transpose(x, 0, 2), lambda x, p: x.transpose(2, 1, 0), (2, 3, 4)),
    case("F.permute", lambda x, p: F.permute(x, (2, 0, 1)), lambda x, p: x.transpose(2, 0, 1), (2, 3, 4)),
    case("F.unsqueeze", lambda x, p: F.unsqueeze(x, 1), lambda x, p: x[:, None], (3, 4)),
    case("F.unsqueeze-negative", lambda x, p: F.unsqueeze(x, -1), lambda x, p: x[..., None], (3, 4)),
    case("F.squeeze", lambda x, p: F.squeeze(x, 1), lambda x, p: x[:, 0], (3, 1, 4)),
    case("F.squeeze-all", lambda x, p: F.squeeze(x), lambda x, p: x.reshape(3, 4), (1, 3, 1, 4)),
    case("F.squeeze-not-one", lambda x, p: F.squeeze(x, 0), lambda x, p: x, (3, 1, 4)),
    case("F.cat", lambda x, p: F.cat([x, p.a, x], dim=1), lambda x, p: np.concatenate([x, p.a, x], 1), (3, 2),
         {"a": (3, 4)}),
    case("F.cat-dim0", lambda x, p: F.cat((p.a, x)), lambda x, p: np.concatenate([p.a, x]), (2, 3),
         {"a": (1, 3)}),
    case("F.stack", lambda x, p: F.stack([x, p.a, x], dim=1), lambda x, p: np.stack([x, p.a, x], 1), (3, 2),
         {"a": (3, 2)}),
    case("F.stack-last", lambda x, p: F.stack([p.a, x], dim=-1), lambda x, p: np.stack([p.a, x], -1), (2, 3),
         {"a": (2, 3)}),
    case("F.matmul", lambda x, p: F.matmul(x, p.w), lambda x, p: x @ p.w, (3, 4), {"w": (4, 2)}),
    case("F.matmul-batch-broadcast", lambda x, p: F.matmul(x, p.w), lambda x, p: x @ p.w, (2, 3, 4),
         {"w": (1, 4, 2)}),
    case("F.matmul-left-param", lambda x, p: F.matmul(p.w, x), lambda x, p: p.w @ x, (2, 3, 4), {"w": (2, 3)}),
    case("F.matmul-1d-right", lambda x, p: F.matmul(x, p.v), lambda x, p: x @ p.v, (2, 3, 4), {"v": (4,)}),
    case("F.matmul-1d-left", lambda x, p: F.matmul(p.v, x), lambda x, p: p.v @ x, (2, 3, 4), {"v": (3,)}),
    case("F.bmm", lambda x, p: F.bmm(x, p.w), lambda x, p: np.matmul(x, p.w), (2, 3, 4), {"w": (2, 4, 3)}),
    case("F.sum", lambda x, p: F.sum(x), lambda x, p: np.sum(x), (3, 4)),
    case("F.sum-dim", lambda x, p: F.sum(x, 1), lambda x, p: x.sum(1), (2, 3, 4)),
    case("F.sum-tuple-keepdim", lambda x, p: F.sum(x, dim=(0, 2), keepdim=True),
         lambda x, p: x.sum((0, 2), keepdims=True), (2, 3, 4)),
    case("F.mean", lambda x, p: F.mean(x), lambda x, p: np.mean(x), (3, 4)),
    case("F.mean-negative-keepdim", lambda x, p: F.mean(x, -1, keepdim=True),
         lambda x, p: x.mean(-1, keepdims=True), (2, 3, 4)),
    case("F.mean-tuple", lambda x, p: F.mean(x, (1, 2)), lambda x, p: x.mean((1, 2)), (2, 3, 4)),
    case("F.exp", lambda x, p: F.exp(x), lambda x, p: np.exp(x), (3, 4)),
    case("F.log", lambda x, p: F.log(x), lambda x, p: np.log(x), (3, 4), domain="pos"),
    case("F.sqrt", lambda x, p: F.sqrt(x), lambda x, p: np.sqrt(x), (3, 4), domain="pos"),
    case("F.abs", lambda x, p: F.abs(x), lambda x, p: np.abs(x), (3, 4)),
    case("F.scaled_dot_product_attention", lambda x, p: F.scaled_dot_product_attention(x, p.k, p.v),
         lambda x, p: np_softmax(x @ np.swapaxes(p.k, -1, -2) / 2.0, -1) @ p.v, (2, 3, 4),
         {"k": (2, 5, 4), "v": (2, 5, 3)}, f32=True),
]

# Value operators and methods, and NumPy functions on traced values: traced only.
OPERATORS = [
    # arithmetic with Parameters (broadcast shapes on either side), arrays and scalars
    case("add-channel-bias", lambda x, p: x + p.b, lambda x, p: x + p.b, (2, 3, 2, 2), {"b": (3, 1, 1)}),
    case("add-param-more-dims", lambda x, p: x + p.b, lambda x, p: x + p.b, (3, 4), {"b": (2, 1, 4)}),
    case("radd-param", lambda x, p: p.b + x, lambda x, p: p.b + x, (2, 3, 4), {"b": (1, 3, 1)}),
    case("sub-param", lambda x, p: x - p.b, lambda x, p: x - p.b, (2, 3, 4), {"b": (1, 3, 1)}),
    case("rsub-param", lambda x, p: p.b - x, lambda x, p: p.b - x, (2, 3), {"b": (3,)}),
    case("mul-param", lambda x, p: x * p.s, lambda x, p: x * p.s, (2, 3, 2, 2), {"s": (3, 1, 1)}),
    case("rmul-param", lambda x, p: p.s * x, lambda x, p: p.s * x, (4, 3), {"s": (3,)}),
    case("div-param", lambda x, p: x / p.s, lambda x, p: x / p.s, (2, 3, 4), {"s": (1, 3, 1)}),
    case("rdiv-param", lambda x, p: p.s / x, lambda x, p: p.s / x, (2, 3), {"s": (2, 1)}),
    case("mul-self", lambda x, p: x * x - x / (x * x + 1), lambda x, p: x * x - x / (x * x + 1), (3, 4)),
    case("array-ops", lambda x, p: (x * A - A) / (A * A + 1) + A, lambda x, p: (x * A - A) / (A * A + 1) + A,
         (3, 4)),
    case("array-left", lambda x, p: A - x + A * x + A / (x * x + 1), lambda x, p: A - x + A * x + A / (x * x + 1),
         (3, 4)),
    case("scalar-rsub", lambda x, p: 2 - x, lambda x, p: 2 - x, (3, 4)),
    case("scalar-rdiv", lambda x, p: 1 / x, lambda x, p: 1 / x, (3, 4)),
    case("scalar-both-sides", lambda x, p: 3 * x + 1.5 - x / 4 + 2.5 * (x - 1),
         lambda x, p: 3 * x + 1.5 - x / 4 + 2.5 * (x - 1), (3, 4)),
    case("numpy-scalar", lambda x, p: np.float64(2.0) * x - np.float64(1.0),
         lambda x, p: 2.0 * x - 1.0, (3, 4)),
    case("neg", lambda x, p: -x, lambda x, p: -x, (3, 4)),
    case("pos", lambda x, p: +x * 2, lambda x, p: x * 2, (3, 4)),
    case("pow-int", lambda x, p: x ** 3, lambda x, p: x ** 3, (3, 4)),
    case("pow-half", lambda x, p: x ** 0.5, lambda x, p: np.sqrt(x), (3, 4), domain="pos"),
    case("pow-negative", lambda x, p: x ** -1.5, lambda x, p: x ** -1.5, (3, 4), domain="pos"),
    case("compare-mask", lambda x, p: x * (x > 0.3) + x * (x <= -0.5),
         lambda x, p: x * (x > 0.3) + x * (x <= -0.5), (3, 4)),
    case("compare-param", lambda x, p: x * (p.t >= x) + (x < p.t) * p.t,
         lambda x, p: x * (p.t >= x) + (x < p.t) * p.t, (3, 4), {"t": (4,)}),
    case("compare-reflected", lambda x, p: x * (0.2 < x), lambda x, p: x * (0.2 < x), (3, 4)),
    # matrix products
    case("matmul-param", lambda x, p: x @ p.w, lambda x, p: x @ p.w, (3, 4), {"w": (4, 2)}),
    case("rmatmul-param", lambda x, p: p.w @ x, lambda x, p: p.w @ x, (3, 4), {"w": (2, 3)}),
    case("matmul-self", lambda x, p: x @ x.T, lambda x, p: x @ x.T, (3, 4)),
    case("matmul-array-right", lambda x, p: x @ A, lambda x, p: x @ A, (2, 3)),
    case("matmul-batched-1d", lambda x, p: x @ p.v, lambda x, p: x @ p.v, (2, 3, 4), {"v": (4,)}),
    # indexing
    case("getitem-slices", lambda x, p: x[1:, ::2], lambda x, p: x[1:, ::2], (3, 5)),
    case("getitem-negative", lambda x, p: x[-1] * 2 + x[:, -2], lambda x, p: x[-1] * 2 + x[:, -2], (4, 4)),
    case("getitem-none-ellipsis", lambda x, p: x[None, ..., 0], lambda x, p: x[None, ..., 0], (2, 3, 4)),
    case("getitem-ellipsis-slice", lambda x, p: x[..., 1:3], lambda x, p: x[..., 1:3], (2, 3, 4)),
    case("getitem-reverse-step", lambda x, p: x[::-1, 1::-1], lambda x, p: x[::-1, 1::-1], (3, 4)),
    case("getitem-scalar", lambda x, p: F.stack([x[1, 2], x[0, -1], x[1, 2]]),
         lambda x, p: np.array([x[1, 2], x[0, -1], x[1, 2]]), (3, 4)),
    case("getitem-repeated-list", lambda x, p: x[[0, 0, 2, 0]], lambda x, p: x[[0, 0, 2, 0]], (3, 4)),
    case("getitem-repeated-array", lambda x, p: x[np.array([2, 0, 2])], lambda x, p: x[np.array([2, 0, 2])],
         (3, 4)),
    case("getitem-columns", lambda x, p: x[:, [1, 1, 0]], lambda x, p: x[:, [1, 1, 0]], (3, 4)),
    case("getitem-pairs", lambda x, p: x[[0, 2, 0], [1, 1, 1]], lambda x, p: x[[0, 2, 0], [1, 1, 1]], (3, 4)),
    case("getitem-2d-index", lambda x, p: x[np.array([[0, 1], [1, 1]])], lambda x, p: x[np.array([[0, 1], [1, 1]])],
         (3, 4)),
    case("getitem-bool-mask", lambda x, p: x[MASK], lambda x, p: x[MASK], (3, 4)),
    case("getitem-value-mask", lambda x, p: x[x > 0], lambda x, p: x[x > 0], (3, 4)),
    case("getitem-param", lambda x, p: x * p.w[1:, None], lambda x, p: x * p.w[1:, None], (3, 4), {"w": (4,)}),
    # shapes
    case("reshape-batch", lambda x, p: x.reshape(x.shape[0], -1), lambda x, p: x.reshape(2, -1), (2, 3, 4)),
    case("reshape-tuple", lambda x, p: x.reshape((x.shape[0], 4, -1)), lambda x, p: x.reshape(2, 4, 3),
         (2, 3, 4)),
    case("view", lambda x, p: x.view(x.size(0), -1), lambda x, p: x.reshape(2, -1), (2, 3, 4)),
    case("view-flat", lambda x, p: x.view(-1), lambda x, p: x.reshape(-1), (2, 3)),
    case("transpose-2d", lambda x, p: x.transpose(0, 1), lambda x, p: x.T, (3, 4)),
    case("transpose-nd", lambda x, p: x.transpose(1, 2), lambda x, p: np.swapaxes(x, 1, 2), (2, 3, 4)),
    case("transpose-negative", lambda x, p: x.transpose(-1, 0), lambda x, p: np.swapaxes(x, -1, 0), (2, 3, 4)),
    case("permute", lambda x, p: x.permute(2, 0, 1), lambda x, p: x.transpose(2, 0, 1), (2, 3, 4)),
    case("permute-tuple", lambda x, p: x.permute((1, 0, 2)), lambda x, p: x.transpose(1, 0, 2), (2, 3, 4)),
    case("T-2d", lambda x, p: x.T, lambda x, p: x.T, (3, 4)),
    case("T-3d", lambda x, p: x.T, lambda x, p: x.transpose(2, 1, 0), (2, 3, 4)),
    case("flatten-method", lambda x, p: x.flatten(1), lambda x, p: x.reshape(2, -1), (2, 3, 2)),
    case("unsqueeze-method", lambda x, p: x.unsqueeze(0) + x.unsqueeze(-1).sum(-1),
         lambda x, p: x[None] + x, (3, 4)),
    case("squeeze-method", lambda x, p: x.squeeze(), lambda x, p: x.reshape(3, 4), (3, 1, 4, 1)),
    case("squeeze-dim", lambda x, p: x.squeeze(1), lambda x, p: x[:, 0], (3, 1, 4)),
    case("expand", lambda x, p: x.expand(2, -1, 4), lambda x, p: np.broadcast_to(x, (2, 3, 4)), (1, 3, 1)),
    case("expand-new-dims", lambda x, p: x.expand(2, 3, 4), lambda x, p: np.broadcast_to(x, (2, 3, 4)), (4,)),
    case("expand-param", lambda x, p: F.cat([x, (x[:, :1] * 0 + p.c).expand(x.shape[0], 2)], 1),
         lambda x, p: np.concatenate([x, np.broadcast_to(p.c, (3, 2))], 1), (3, 2), {"c": (1, 2)}),
    case("sum-all", lambda x, p: x.sum(), lambda x, p: x.sum(), (3, 4)),
    case("sum-int", lambda x, p: x.sum(1), lambda x, p: x.sum(1), (2, 3, 4)),
    case("sum-int-keepdim", lambda x, p: x.sum(1, keepdim=True), lambda x, p: x.sum(1, keepdims=True),
         (2, 3, 4)),
    case("sum-tuple", lambda x, p: x.sum((0, 2)), lambda x, p: x.sum((0, 2)), (2, 3, 4)),
    case("sum-list-keepdim", lambda x, p: x.sum(dim=[0, 2], keepdim=True),
         lambda x, p: x.sum((0, 2), keepdims=True), (2, 3, 4)),
    case("sum-all-keepdim", lambda x, p: x.sum(keepdim=True), lambda x, p: x.sum(keepdims=True), (2, 3)),
    case("mean-all", lambda x, p: x.mean(), lambda x, p: x.mean(), (3, 4)),
    case("mean-negative", lambda x, p: x.mean(-2), lambda x, p: x.mean(-2), (2, 3, 4)),
    case("mean-int-keepdim", lambda x, p: x.mean(dim=0, keepdim=True), lambda x, p: x.mean(0, keepdims=True),
         (2, 3, 4)),
    case("mean-tuple-keepdim", lambda x, p: x.mean((1, 2), keepdim=True),
         lambda x, p: x.mean((1, 2), keepdims=True), (2, 3, 4)),
    case("mean-tuple", lambda x, p: x.mean((0, 1)), lambda x, p: x.mean((0, 1)), (2, 3, 4)),
    case("methods", lambda x, p: x.exp() + x.abs().sqrt() + x.tanh() + x.sigmoid() + x.relu() + x.softmax(1)
         + (x * x + 1).log(), lambda x, p: np.exp(x) + np.sqrt(np.abs(x)) + np.tanh(x) + np_sigmoid(x)
         + np.maximum(x, 0) + np_softmax(x, 1) + np.log(x * x + 1), (3, 4)),
    case("mean-all-keepdim", lambda x, p: x.mean(keepdim=True), lambda x, p: x.mean(keepdims=True), (2, 3)),
    case("mean-negative-tuple", lambda x, p: x.mean((-1, -2)), lambda x, p: x.mean((-1, -2)), (2, 3, 4)),
    case("squeeze-tuple", lambda x, p: x.squeeze((1, 3)), lambda x, p: x[:, 0, :, 0], (3, 1, 4, 1)),
    case("cat-negative-dim", lambda x, p: F.cat([x, p.a], -1), lambda x, p: np.concatenate([x, p.a], -1),
         (2, 2, 3), {"a": (2, 2, 1)}),
    case("matmul-broadcast-both", lambda x, p: x @ p.w, lambda x, p: x @ p.w, (2, 1, 3, 4), {"w": (3, 4, 2)}),
    case("getitem-bool-rows", lambda x, p: x[np.array([True, False, True])],
         lambda x, p: x[np.array([True, False, True])], (3, 4)),
    case("softmax-large", lambda x, p: F.softmax(x * 40, 1) + F.log_softmax(x * 40, 0),
         lambda x, p: np_softmax(x * 40, 1) + np_log_softmax(x * 40, 0), (3, 4)),
    # one value used by several branches whose gradients are views of the same array: accumulating them must
    # not write into a gradient another branch still reads
    case("alias-reshapes", lambda x, p: x.reshape(4, 3).reshape(-1) + x.reshape(2, 6).reshape(-1) + x.reshape(-1),
         lambda x, p: 3 * x.reshape(-1), (3, 4)),
    case("alias-transposes", lambda x, p: x.T.T + x + x.transpose(0, 1).T * 2, lambda x, p: 4 * x, (3, 4)),
    case("alias-slices", lambda x, p: F.cat([x[:, :2] + x[:, 2:], x[0:1, :2]]) * x[:, 1:3].sum(0),
         lambda x, p: np.concatenate([x[:, :2] + x[:, 2:], x[0:1, :2]]) * x[:, 1:3].sum(0), (3, 4)),
    case("alias-identities", lambda x, p: F.dropout(x, 0.0) + F.dropout(x, 0.5, training=False) + F.squeeze(x, 0)
         + x.contiguous() * x, lambda x, p: 3 * x + x * x, (3, 4)),
    case("alias-expand", lambda x, p: F.relu(x.expand(2, 3, 4)) + x.expand(2, 3, 4) * x,
         lambda x, p: np.maximum(x, 0) + x * x + 0 * np.zeros((2, 3, 4)), (3, 4)),
    case("alias-unsqueeze", lambda x, p: x.unsqueeze(0) * x.unsqueeze(1) + x.unsqueeze(0),
         lambda x, p: x[None] * x[:, None] + x[None], (4,)),
    # NumPy functions on traced values
    case("np.swapaxes", lambda x, p: np.swapaxes(x, 0, 2), lambda x, p: np.swapaxes(x, 0, 2), (2, 3, 4)),
    case("np.transpose", lambda x, p: np.transpose(x), lambda x, p: np.transpose(x), (2, 3, 4)),
    case("np.transpose-axes", lambda x, p: np.transpose(x, (1, 0, 2)), lambda x, p: np.transpose(x, (1, 0, 2)),
         (2, 3, 4)),
    case("np.reshape", lambda x, p: np.reshape(x, (x.shape[0], -1)), lambda x, p: np.reshape(x, (2, -1)),
         (2, 3, 4)),
    case("np.reshape-keyword", lambda x, p: np.reshape(x, shape=(4, -1)), lambda x, p: np.reshape(x, (4, -1)),
         (2, 3, 4)),
    case("np.reshape-int", lambda x, p: np.reshape(x, -1), lambda x, p: np.reshape(x, -1), (2, 3)),
    case("np.concatenate", lambda x, p: np.concatenate([x, p.a * x], axis=1),
         lambda x, p: np.concatenate([x, p.a * x], 1), (3, 2), {"a": (3, 2)}),
    case("np.stack", lambda x, p: np.stack([x, -x, p.a]), lambda x, p: np.stack([x, -x, p.a]), (2, 3),
         {"a": (2, 3)}),
    case("np.expand_dims", lambda x, p: np.expand_dims(x, 1), lambda x, p: np.expand_dims(x, 1), (3, 4)),
    case("np.squeeze", lambda x, p: np.squeeze(x), lambda x, p: np.squeeze(x), (3, 1, 4)),
    case("np.squeeze-axis", lambda x, p: np.squeeze(x, axis=1), lambda x, p: np.squeeze(x, 1), (3, 1, 4)),
    case("np.sum", lambda x, p: np.sum(x, axis=1), lambda x, p: np.sum(x, 1), (2, 3, 4)),
    case("np.sum-keepdims", lambda x, p: np.sum(x, axis=(0, 2), keepdims=True),
         lambda x, p: np.sum(x, (0, 2), keepdims=True), (2, 3, 4)),
    case("np.sum-all", lambda x, p: np.sum(x), lambda x, p: np.sum(x), (3, 4)),
    case("np.mean", lambda x, p: np.mean(x), lambda x, p: np.mean(x), (3, 4)),
    case("np.mean-keepdims", lambda x, p: np.mean(x, axis=-1, keepdims=True),
         lambda x, p: np.mean(x, -1, keepdims=True), (2, 3, 4)),
    case("np.ufuncs", lambda x, p: np.exp(x) + np.tanh(x) + np.sqrt(np.abs(x)) + np.log(x * x + 1)
         + np.power(x, 2) + np.negative(x) + np.add(x, 1) * np.multiply(x, x) - np.subtract(x, 2)
         + np.true_divide(x, 3), lambda x, p: np.exp(x) + np.tanh(x) + np.sqrt(np.abs(x)) + np.log(x * x + 1)
         + x ** 2 - x + (x + 1) * x * x - (x - 2) + x / 3, (3, 4)),
]

# Cases that once failed (scalars from full reductions, np.matmul, 1-D @ 1-D, element-wise ==/!=, array
# exponents): kept as regressions.
FIXED = [
    case("np.matmul", lambda x, p: np.matmul(x, p.w), lambda x, p: x @ p.w, (3, 4), {"w": (4, 2)}),
    case("matmul-array-left", lambda x, p: A.T @ x, lambda x, p: A.T @ x, (3, 2)),
    case("matmul-1d-1d", lambda x, p: x @ p.v, lambda x, p: x @ p.v, (4,), {"v": (4,)}),
    case("sub-full-mean", lambda x, p: x - x.mean(), lambda x, p: x - x.mean(), (3, 4)),
    case("mul-full-sum", lambda x, p: x * F.sum(x), lambda x, p: x * x.sum(), (3, 4)),
    case("div-np-mean", lambda x, p: x / np.mean(x * x), lambda x, p: x / np.mean(x * x), (3, 4)),
    case("mul-scalar-index", lambda x, p: x[1, 2] * x, lambda x, p: x[1, 2] * x, (3, 4)),
    case("compare-eq-ne", lambda x, p: x * (x == x[:, :1]) + 2 * x * (x != x[:, 1:2]),
         lambda x, p: x * (x == x[:, :1]) + 2 * x * (x != x[:, 1:2]), (3, 4)),
    case("np.power-array-exponent", lambda x, p: np.power(2.0, x), lambda x, p: 2.0 ** x, (3, 4)),
    case("rpow", lambda x, p: 3.0 ** x, lambda x, p: 3.0 ** x, (3, 4)),
    case("pow-array-array", lambda x, p: x ** p.e, lambda x, p: x ** p.e, (3, 4), {"e": (1, 4)}, domain="pos"),
]


def module_for(c, params):
    """A traced module whose forward is c.fn, with `params` as Parameters."""
    class OpModule(nn.Module):
        def __init__(self):
            super().__init__()
            for k, v in params.items():
                setattr(self, k, nn.Parameter(v.copy()))

        def forward(self, x):
            return c.fn(x, self)
    return OpModule()


@pytest.mark.parametrize("c", FUNCTIONAL)
def test_eager_on_arrays_matches_numpy(c):
    x, p = c.arrays()
    y = c.fn(x, SimpleNamespace(**p))
    assert isinstance(y, np.ndarray) or np.ndim(y) == 0, type(y)  # full reductions give NumPy scalars, as NumPy
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, c.ref(x, SimpleNamespace(**p)), **F64)
    # Parameters are accepted where arrays are expected
    m = module_for(c, p)
    np.testing.assert_allclose(c.fn(x, m), y, **F64)


@pytest.mark.parametrize("c", FUNCTIONAL + OPERATORS + FIXED)
def test_traced_matches_numpy_and_finite_differences(c):
    x, p = c.arrays()
    m = module_for(c, p).double()
    y = m(x)
    # full reductions return a NumPy scalar (as NumPy), not a 0-d array
    assert isinstance(y, np.ndarray) or (np.ndim(y) == 0 and isinstance(y, np.floating)), type(y)
    np.testing.assert_allclose(y, c.ref(x, SimpleNamespace(**p)), **F64)
    check_module_gradients(m, x)
    for name, param in m.named_parameters():  # a gradient of every operand, of its own shape
        assert param.grad.shape == p[name].shape and np.any(param.grad != 0), name


@pytest.mark.parametrize("c", [k for k in FUNCTIONAL if k.values[0].f32])
def test_float32_matches_float64(c):
    x, p = c.arrays()
    x32, p32 = x.astype(np.float32), {k: v.astype(np.float32) for k, v in p.items()}
    want = c.fn(x32.astype(np.float64), SimpleNamespace(**{k: v.astype(np.float64) for k, v in p32.items()}))
    got = c.fn(x32, SimpleNamespace(**p32))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, **TOL[np.float32])
    # traced, forward and backward, in float32 against the same module in float64
    g = rng(5).standard_normal(want.shape)
    results = []
    for dtype in (np.float64, np.float32):
        m = module_for(c, p32).to(dtype)
        y = m(x32.astype(dtype))
        m.zero_grad()
        dx = m.backward(g.astype(dtype))
        assert y.dtype == dtype and dx.dtype == dtype
        results.append([y, dx] + [q.grad for _, q in m.named_parameters()])
    for got, want in zip(results[1], results[0]):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=TOL[np.float32]["rtol"],
                                   atol=TOL[np.float32]["rtol"] * max(1.0, float(np.max(np.abs(want)))))


def test_cases_cover_every_functional():
    covered = {c.id.split("-")[0][2:] for c in FUNCTIONAL}
    assert covered == set(F.__all__)


# ---- Parameters used on their own in a traced forward --------------------------------------------------------
class ParamFunction(nn.Module):
    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(np.array([0.5, -1.0, 2.0]))

    def forward(self, x):
        return x * F.tanh(self.p)


def test_functional_of_parameter_alone_is_traced():
    """F.tanh(self.p) has no traced value among its arguments: it must still be recorded, not run once at
    trace time as a constant (finite differences would not see that: the output would not move either)."""
    m = ParamFunction().double()
    x = np.ones((2, 3))
    m(x)
    m.zero_grad()
    m.backward(np.ones((2, 3)))
    np.testing.assert_allclose(m.p.grad, 2 * (1 - np.tanh(m.p.data) ** 2), **F64)
    m.p.data = np.zeros(3)
    np.testing.assert_allclose(m(x), np.zeros((2, 3)), **F64)


class ExpandParam(nn.Module):
    def __init__(self):
        super().__init__()
        self.token = nn.Parameter(np.array([[1.0, 2.0]]))

    def forward(self, x):
        return F.cat([x, self.token.expand(x.shape[0], -1)], 1)


def test_parameter_methods_in_traced_forward():
    """A ViT-style class token: self.token.expand(n, -1) inside a traced forward."""
    m = ExpandParam().double()
    x = sample((3, 2), "any", 0)
    np.testing.assert_allclose(m(x), np.concatenate([x, np.tile([[1.0, 2.0]], (3, 1))], 1), **F64)
    check_module_gradients(m, x)


# ---- traces that depend on shapes ---------------------------------------------------------------------------
class ShapeArithmetic(nn.Module):
    def forward(self, x):
        return x.reshape(x.shape[0], x.shape[1] * x.shape[2]) * (1.0 / x.shape[2])


def test_shape_arithmetic_holds_for_each_input_shape():
    # x.shape used as numbers specialises the trace to the input's shape; other shapes trace again
    m = ShapeArithmetic().double()
    for n, k in [(2, 3), (3, 3), (2, 5), (2, 3), (4, 5)]:
        x = sample((n, 2, k), "any", n * k)
        np.testing.assert_allclose(m(x), x.reshape(n, 2 * k) / k, **F64)
        g = rng(n).standard_normal((n, 2 * k))
        np.testing.assert_allclose(m.backward(g), g.reshape(n, 2, k) / k, **F64)


# ---- dropout ---------------------------------------------------------------------------------------------
class Drop(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, training=self.training) * 1.0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("p", [0.25, 0.6])
def test_dropout_mask(p, dtype):
    x = sample((10, 20), "any", 3).astype(dtype)
    fnn.manual_seed(7)
    y = F.dropout(x, p)
    assert y.dtype == dtype and y.shape == x.shape
    keep = y != 0                                               # x has no zeros
    mask = keep.astype(dtype) * dtype(1.0 / (1.0 - p))          # kept entries scaled by 1/(1-p)
    np.testing.assert_array_equal(y, x * mask)
    assert abs(np.mean(~keep) - p) < 0.1                        # 200 draws
    fnn.manual_seed(7)
    np.testing.assert_array_equal(F.dropout(x, p), y)          # the seed fixes the mask
    assert not np.array_equal(F.dropout(x, p), y)               # the next draw differs
    # traced: the trace draws nothing from the random stream; the gradient is the same mask
    m = Drop(p).to(dtype)
    fnn.manual_seed(7)
    np.testing.assert_array_equal(m(x), y)
    g = rng(4).standard_normal(x.shape).astype(dtype)
    np.testing.assert_array_equal(m.backward(g), g * mask)
    fnn.manual_seed(7)
    np.testing.assert_array_equal(m(x), y)                      # the cached trace, same seed, same mask
    m.eval()
    np.testing.assert_array_equal(m(x), x)
    np.testing.assert_array_equal(m.backward(g), g)


def test_dropout_edge_cases():
    x = sample((3, 4), "any", 0)
    g = rng(1).standard_normal((3, 4))
    np.testing.assert_array_equal(F.dropout(x, 0.5, training=False), x)
    np.testing.assert_array_equal(F.dropout(x, 0.0), x)
    np.testing.assert_array_equal(F.dropout(x, 1.0), np.zeros_like(x))
    for p, want_y, want_dx in [(0.0, x, g), (1.0, 0 * x, 0 * g)]:
        m = Drop(p).double()
        np.testing.assert_array_equal(m(x), want_y)
        np.testing.assert_array_equal(m.backward(g), want_dx)
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match="dropout"):
            F.dropout(x, p)


# ---- what cannot be traced ------------------------------------------------------------------------------------
class IfOnData(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # untraceable
            return x
        return -x


class FloatOfValue(nn.Module):
    def forward(self, x):
        return x * float(x.mean())  # untraceable


class IntOfValue(nn.Module):
    def forward(self, x):
        return x[int(x[0, 0])]  # untraceable


class AsArray(nn.Module):
    def forward(self, x):
        return np.asarray(x) + 1  # untraceable


class SetItem(nn.Module):
    def forward(self, x):
        x[0] = 1  # untraceable
        return x


class InplaceAdd(nn.Module):
    def forward(self, x):
        x += 1  # untraceable
        return x


class InplaceMul(nn.Module):
    def forward(self, x):
        y = x * 2
        y *= x  # untraceable
        return y


class Cumsum(nn.Module):
    def forward(self, x):
        return np.cumsum(x, axis=0)  # untraceable


class Maximum(nn.Module):
    def forward(self, x):
        return np.maximum(x, 0)  # untraceable


class Iterate(nn.Module):
    def forward(self, x):
        return F.stack([row * 2 for row in x])  # untraceable


class Item(nn.Module):
    def forward(self, x):
        return x * x.sum().item()  # untraceable


UNTRACEABLE = [IfOnData, FloatOfValue, IntOfValue, AsArray, SetItem, InplaceAdd, InplaceMul, Cumsum, Maximum,
               Iterate, Item]


@pytest.mark.parametrize("cls", UNTRACEABLE, ids=lambda cls: cls.__name__)
def test_untraceable_raises_trace_error(cls):
    assert issubclass(nn.TraceError, TypeError)
    lines, start = inspect.getsourcelines(cls.forward.__wrapped__)
    line = start + next(k for k, s in enumerate(lines) if "# untraceable" in s)
    m = cls()
    x = sample((3, 4), "any", 0)
    with pytest.raises(nn.TraceError) as info:
        m(x)
    msg = str(info.value)
    assert cls.__name__ in msg
    assert f"{os.path.basename(__file__)}:{line}" in msg, msg
    with pytest.raises(nn.TraceError):  # nothing half-recorded is kept
        m(x)


def test_np_exp_traces_as_f_exp():
    class NpExp(nn.Module):
        def forward(self, x):
            return np.exp(x) * 2

    x = sample((3, 4), "any", 0)
    m = NpExp().double()
    np.testing.assert_allclose(m(x), 2 * F.exp(x), **F64)
    dx = check_module_gradients(m, x)
    np.testing.assert_allclose(dx, 2 * np.exp(x) * rng(0).standard_normal((3, 4)), **F64)


# ---- Keras style: the same ops on fnn.nn.Input values ----------------------------------------------------------
def test_keras_graph_of_functional_ops():
    inp = nn.Input(shape=(3, 4))
    w = nn.Linear(4, 4)
    flat = inp.reshape(inp.shape[0], -1)                      # the batch size stays symbolic
    h = F.softmax(flat, dim=1) * F.flatten(F.gelu(w(inp)), 1) + F.log_softmax(flat[:, ::2], -1).sum(1, keepdim=True)
    out = F.cat([h, F.mean(inp, dim=(1, 2)).unsqueeze(1), (inp.transpose(1, 2) @ inp).flatten(1)], 1)
    g = nn.Graph(inp, out)

    def ref(x):
        f = x.reshape(len(x), -1)
        lin = x @ w.weight.data.T + w.bias.data
        hh = np_softmax(f, 1) * np_gelu(lin).reshape(len(x), -1) + np_log_softmax(f[:, ::2], -1).sum(1, keepdims=True)
        return np.concatenate([hh, x.mean((1, 2))[:, None], (np.swapaxes(x, 1, 2) @ x).reshape(len(x), -1)], 1)

    g.double()
    for n in (1, 2, 5):
        x = sample((n, 3, 4), "any", n)
        np.testing.assert_allclose(g(x), ref(x), **F64)
    check_module_gradients(g, sample((2, 3, 4), "any", 0))


def test_keras_untraceable_raises_trace_error():
    inp = nn.Input(shape=(4,))
    line = inspect.currentframe().f_lineno + 2
    with pytest.raises(nn.TraceError) as info:
        bool(inp.sum() > 0)
    assert "Keras-style" in str(info.value) and f"{os.path.basename(__file__)}:{line}" in str(info.value)
    line = inspect.currentframe().f_lineno + 2
    with pytest.raises(nn.TraceError, match="batch-dependent") as info:
        inp.reshape(inp.shape[0] * 2, -1)
    assert f"{os.path.basename(__file__)}:{line}" in str(info.value)
    with pytest.raises(nn.TraceError):
        np.cumsum(inp)
