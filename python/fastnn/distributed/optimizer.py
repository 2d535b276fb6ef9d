"""DistributedOptimizer: an optimizer whose step() first combines the gradients of every rank.

Gradients are packed, in reverse parameter order (the order backward produces them), into flat buckets of at
most `bucket_mb` megabytes (25 by default, as PyTorch DDP), one dtype per bucket (Horovod's tensor fusion).
Each bucket is reduced by a non-blocking MPI Iallreduce on a communicator of its own (a Dup of the world's, so
the batch-norm and control collectives in between never mix with it).

Overlap with backward (as DDP's reducer): inside ``with opt.overlap_backward(model, num_samples):`` the model's
backward (a Sequential, Graph or traced module: fastnn.nn.executor.gradient_ready) reports each parameter as
soon as its gradient is final; it is packed at once, and a bucket's Iallreduce starts as soon as all its
gradients are packed, while backward still computes the earlier layers'. Buckets start in bucket order on every
rank (MPI needs the same order everywhere), so a bucket waits for the ones before it. The first buckets follow
reverse registration order; after the first overlapped step, rank 0's observed order of readiness is broadcast
and the buckets are rebuilt in it (as DDP does), which matters when layers are registered in another order
than they run. step() packs what was not reported, waits for every bucket and unpacks. Without
overlap_backward (or with overlap=False) everything is packed and reduced in step().

Weighting: step(num_samples=n) makes the result sum_r n_r * g_r / sum_r n_r, the gradient of the whole global
batch when each rank's loss is a mean over its n_r samples (an uneven last batch gives exactly one process's
gradient); without num_samples the gradients are averaged (op="average") or summed (op="sum", for losses with
reduction="sum"). With overlap the weights are applied while packing, so n is given to overlap_backward.
"""
import contextlib
import time

import numpy as np

from . import world as _comm

_OPS = ("average", "sum")


class _Round:
    """One step's reduction in flight: the weight request, which gradients are packed, the bucket requests."""
    __slots__ = ("num_samples", "scale", "weight", "wreq", "packed", "missing", "requests", "observed")

    def __init__(self, num_samples, buckets, nparams):
        self.num_samples = num_samples
        self.scale = 1.0 if num_samples is None else float(num_samples)
        self.weight = self.wreq = None
        self.packed = bytearray(nparams)
        self.missing = [len(params) for params, _, _ in buckets]
        self.requests = []
        self.observed = []  # parameter positions in the order backward reported them


class DistributedOptimizer:
    """Wraps an optimizer (fastnn.optim.*): step() allreduces the gradients, then steps. Everything else
    (zero_grad, lr, param_groups, state, state_dict, load_state_dict) is the wrapped optimizer's.

    bucket_mb: bucket size in megabytes; op: "average" or "sum" (without num_samples); overlap: False to
    reduce only in step() even inside overlap_backward. After a step: allreduce_seconds (all time spent in the
    reduction: packing, starting, waiting, unpacking) and wait_seconds (time blocked waiting for MPI in step),
    both summed over steps; trace: set to a list to record ("start", bucket) and ("wait", bucket) events, in
    order (tests append their own events to the same list to show the overlap)."""

    def __init__(self, optimizer, bucket_mb=25.0, op="average", overlap=True):
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
        self.overlap = bool(overlap)
        self.allreduce_seconds = 0.0
        self.wait_seconds = 0.0
        self.trace = None
        self._key = None
        self._buckets = []
        self._where = {}
        self._order = None      # bucket order (parameter positions) once rebuilt from observed readiness
        self._rebuild = False   # the first step after planning: adopt rank 0's observed order
        self._round = None
        self._pending_samples = None
        _comm.init()
        self._comm = _comm.comm().Dup()  # collective: every rank constructs its DistributedOptimizer

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
        return (f"DistributedOptimizer({self.optimizer!r}, bucket_mb={self.bucket_bytes / 2**20:g}, op={self.op!r}, "
                f"overlap={self.overlap})")

    # -- stepping -------------------------------------------------------------------------------------------
    def step(self, closure=None, num_samples=None):
        """closure() (if given) for the loss, then synchronize(num_samples), then the wrapped step."""
        loss = None if closure is None else closure()
        self.synchronize(num_samples)
        self.optimizer.step()
        return loss

    @contextlib.contextmanager
    def overlap_backward(self, model, num_samples=None):
        """Within this block, `model`'s backward starts the gradient buckets' reductions as their gradients
        become final; the next step()/synchronize() finishes them. num_samples: this rank's sample count, the
        weight step(num_samples=...) would apply (give it here; step may repeat it). Every rank must enter it
        for the same steps (a rank with no samples: num_samples=0 and no backward)."""
        t0 = time.perf_counter()
        if self._round is not None:
            raise RuntimeError("DistributedOptimizer.overlap_backward: the previous overlapped backward's step() "
                               "was not taken")
        if not self.overlap:
            self._pending_samples = num_samples
            yield
            return
        from ..nn.executor import gradient_ready
        self._begin(num_samples)
        self.allreduce_seconds += time.perf_counter() - t0
        with gradient_ready(model, self._ready):
            yield

    def finish(self):
        """Completes a reduction that overlap_backward started but no step() finished (training stopped between
        backward and step): every rank must call it at the same point (the gradients get the combination)."""
        if self._round is not None:
            self.synchronize()
        self._pending_samples = None

    def _params(self):
        return [p for g in self.optimizer.param_groups for p in g["params"] if p.requires_grad][::-1]

    def _plan(self, params):
        key = tuple((id(p), p.dtype, p.size) for p in params)
        if key == self._key:
            return self._buckets
        self._order = None
        self._rebuild = True
        self._key = key
        self._make_buckets(params, range(len(params)))
        return self._buckets

    def _make_buckets(self, params, order):
        buckets, current, used = [], None, 0
        for k in order:
            p = params[k]
            nbytes = p.size * p.dtype.itemsize
            if current is None or current[0] != p.dtype or (used + nbytes > self.bucket_bytes and current[1]):
                current, used = (p.dtype, []), 0
                buckets.append(current)
            current[1].append(k)
            used += nbytes
        self._buckets, self._where, self._params_list = [], {}, params
        for b, (dtype, ks) in enumerate(buckets):
            offsets, at = [], 0
            for k in ks:
                self._where[id(params[k])] = (k, b, at)
                offsets.append(at)
                at += params[k].size
            self._buckets.append(([params[k] for k in ks], np.empty(at, dtype), offsets))

    def _begin(self, num_samples):
        """A new round: the plan, the weight's reduction (always the first request of a round)."""
        from mpi4py import MPI
        params = self._params()
        buckets = self._plan(params)
        r = self._round = _Round(num_samples, buckets, len(params))
        if num_samples is not None:
            r.weight = np.array([r.scale])
            r.wreq = self._comm.Iallreduce(MPI.IN_PLACE, r.weight, op=MPI.SUM)
        return r

    def _pack(self, r, p):
        k, b, at = self._where[id(p)]
        if r.packed[k]:
            return
        r.packed[k] = 1
        view = self._buckets[b][1][at:at + p.size]
        g = p.grad.reshape(-1)
        if r.scale == 1.0:
            view[...] = g
        else:
            np.multiply(g, r.scale, out=view)
        r.missing[b] -= 1
        r.observed.append(k)

    def _start_ready(self, r):
        from mpi4py import MPI
        while len(r.requests) < len(self._buckets) and r.missing[len(r.requests)] == 0:
            b = len(r.requests)
            r.requests.append(self._comm.Iallreduce(MPI.IN_PLACE, self._buckets[b][1], op=MPI.SUM))
            if self.trace is not None:
                self.trace.append(("start", b))

    def _ready(self, params):
        """gradient_ready's listener: pack the final gradients, start the buckets now complete."""
        from mpi4py import MPI
        t0 = time.perf_counter()
        r, where = self._round, self._where
        for p in params:
            if id(p) in where:  # not a parameter of this optimizer: not ours
                self._pack(r, p)
        self._start_ready(r)
        if r.requests:  # MPI progresses non-blocking collectives inside MPI calls: let it, now and then
            MPI.Request.Testall(r.requests)
        self.allreduce_seconds += time.perf_counter() - t0

    def synchronize(self, num_samples=None):
        """Replaces every rank's gradients by their combination over the ranks (see the module docstring)."""
        t0 = time.perf_counter()
        r = self._round
        if r is None:
            pending, self._pending_samples = self._pending_samples, None
            if num_samples is None:
                num_samples = pending
            r = self._begin(num_samples)
        elif num_samples is None:
            num_samples = r.num_samples
        elif r.num_samples is None or float(num_samples) != r.scale:
            self._round = None
            raise ValueError(f"DistributedOptimizer.step: num_samples={num_samples} but overlap_backward was given "
                             f"num_samples={r.num_samples}; give the same count to both")
        self._round = None
        for params, _, _ in self._buckets:
            for p in params:
                self._pack(r, p)
        self._start_ready(r)
        tw = time.perf_counter()
        if r.wreq is not None:
            r.wreq.Wait()
            total = float(r.weight[0])
            if total <= 0:
                raise ValueError(f"DistributedOptimizer.step: num_samples sum to {total} over the ranks")
            divide = total
        else:
            divide = float(self._comm.Get_size()) if self.op == "average" else 1.0
        wait = time.perf_counter() - tw
        for b, ((params, flat, offsets), req) in enumerate(zip(self._buckets, r.requests)):
            tw = time.perf_counter()
            req.Wait()
            wait += time.perf_counter() - tw
            if self.trace is not None:
                self.trace.append(("wait", b))
            for p, at in zip(params, offsets):
                g = p.grad
                part = flat[at:at + p.size].reshape(g.shape)
                if divide == 1.0:
                    g[...] = part
                else:
                    np.divide(part, divide, out=g)
        if self._rebuild:
            self._adopt_order(r)
        self.wait_seconds += wait
        self.allreduce_seconds += time.perf_counter() - t0

    def _adopt_order(self, r):
        """Once per plan, on every rank: buckets rebuilt in rank 0's observed order of readiness (the
        parameters backward reported first lead; those it did not report follow in the planned order)."""
        self._rebuild = False
        params = self._params_list
        order = np.full(len(params), -1, np.int64)
        if self._comm.Get_rank() == 0 and len(r.observed) == len(params) and r.observed != sorted(r.observed):
            order[:] = r.observed
        self._comm.Bcast(order, root=0)
        if order[0] >= 0 and sorted(order.tolist()) == list(range(len(params))):
            self._make_buckets(params, order.tolist())
