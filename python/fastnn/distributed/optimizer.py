"""DistributedOptimizer: an optimizer whose step() first combines the gradients of every rank.

Gradients are packed, in reverse parameter order (the order backward produces them), into flat buckets of at
most `bucket_mb` megabytes (25 by default, as PyTorch DDP), one dtype per bucket (Horovod's tensor fusion);
each bucket's non-blocking MPI Iallreduce starts as soon as it is packed, so packing the next buckets overlaps
the reduction of the earlier ones, then each is unpacked as it completes. fastnn's backward has no per-parameter
hook, so the first reduction starts after backward has returned, not while it runs.

Weighting: step(num_samples=n) makes the result sum_r n_r * g_r / sum_r n_r, the gradient of the whole global
batch when each rank's loss is a mean over its n_r samples (an uneven last batch gives exactly one process's
gradient); without num_samples the gradients are averaged (op="average") or summed (op="sum", for losses with
reduction="sum").
"""
import time

import numpy as np

from . import world as _comm

_OPS = ("average", "sum")


class DistributedOptimizer:
    """Wraps an optimizer (fastnn.optim.*): step() allreduces the gradients, then steps. Everything else
    (zero_grad, lr, param_groups, state, state_dict, load_state_dict) is the wrapped optimizer's."""

    def __init__(self, optimizer, bucket_mb=25.0, op="average"):
        if isinstance(optimizer, DistributedOptimizer):
            raise TypeError("DistributedOptimizer: the optimizer is already a DistributedOptimizer")
        if not hasattr(optimizer, "param_groups") or not hasattr(optimizer, "step"):
            raise TypeError(f"DistributedOptimizer: expected a fastnn optimizer, got {type(optimizer).__name__}")
        if op not in _OPS:
            raise ValueError(f"DistributedOptimizer: op must be one of {_OPS}, got {op!r}")
        bucket_mb = float(bucket_mb)
        if not bucket_mb > 0:
            raise ValueError(f"DistributedOptimizer: bucket_mb must be > 0, got {bucket_mb}")
        self.optimizer = optimizer
        self.bucket_bytes = int(bucket_mb * 1024 * 1024)
        self.op = op
        self.allreduce_seconds = 0.0  # time spent reducing gradients (packing, MPI, unpacking), for benchmarks
        self._key = None
        self._buckets = []
        _comm.init()

    # -- the wrapped optimizer ----------------------------------------------------------------------------
    @property
    def param_groups(self):
        return self.optimizer.param_groups

    @property
    def state(self):
        return self.optimizer.state

    @property
    def lr(self):
        return self.optimizer.lr

    @lr.setter
    def lr(self, value):
        self.optimizer.lr = value

    def zero_grad(self):
        self.optimizer.zero_grad()

    def state_dict(self):
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict):
        self.optimizer.load_state_dict(state_dict)

    def __repr__(self):
        return f"DistributedOptimizer({self.optimizer!r}, bucket_mb={self.bucket_bytes / 2**20:g}, op={self.op!r})"

    # -- stepping -------------------------------------------------------------------------------------------
    def step(self, closure=None, num_samples=None):
        """closure() (if given) for the loss, then synchronize(num_samples), then the wrapped step."""
        loss = None if closure is None else closure()
        self.synchronize(num_samples)
        self.optimizer.step()
        return loss

    def _params(self):
        return [p for g in self.optimizer.param_groups for p in g["params"] if p.requires_grad][::-1]

    def _plan(self, params):
        key = tuple((id(p), p.dtype, p.size) for p in params)
        if key == self._key:
            return self._buckets
        buckets, current, used = [], None, 0
        for p in params:
            nbytes = p.size * p.dtype.itemsize
            if current is None or current[0] != p.dtype or (used + nbytes > self.bucket_bytes and current[1]):
                current, used = (p.dtype, []), 0
                buckets.append(current)
            current[1].append(p)
            used += nbytes
        self._buckets = [(params_, np.empty(sum(p.size for p in params_), dtype)) for dtype, params_ in buckets]
        self._key = key
        return self._buckets

    def synchronize(self, num_samples=None):
        """Replaces every rank's gradients by their combination over the ranks (see the module docstring)."""
        from mpi4py import MPI
        t0 = time.perf_counter()
        c = _comm.comm()
        buckets = self._plan(self._params())
        if num_samples is not None:
            scale = float(num_samples)
            weight = np.array([scale])
            wreq = c.Iallreduce(MPI.IN_PLACE, weight, op=MPI.SUM)
        else:
            scale, wreq = 1.0, None
        requests = []
        for params, flat in buckets:
            at = 0
            for p in params:
                g = p.grad
                view = flat[at:at + p.size]
                if scale == 1.0:
                    view[...] = g.reshape(-1)
                else:
                    np.multiply(g.reshape(-1), scale, out=view)
                at += p.size
            requests.append(c.Iallreduce(MPI.IN_PLACE, flat, op=MPI.SUM))
        if wreq is not None:
            wreq.Wait()
            total = float(weight[0])
            if total <= 0:
                raise ValueError(f"DistributedOptimizer.step: num_samples sum to {total} over the ranks")
            divide = total
        else:
            divide = float(c.Get_size()) if self.op == "average" else 1.0
        for (params, flat), req in zip(buckets, requests):
            req.Wait()
            at = 0
            for p in params:
                g = p.grad
                part = flat[at:at + p.size].reshape(g.shape)
                if divide == 1.0:
                    g[...] = part
                else:
                    np.divide(part, divide, out=g)
                at += p.size
        self.allreduce_seconds += time.perf_counter() - t0
