"""TrainerSync: what Trainer(..., distributed=True) does differently, in one object the Trainer calls.

* start(): rank 0's parameters, buffers, optimizer state and random generator state on every rank;
* shard(batches): each rank's contiguous share of every global batch (array_split sizes, so shares differ by at
  most one sample and an uneven last batch is split too);
* backward(fn, grad, n): the model's backward with the gradient buckets' reductions started while it runs
  (DistributedOptimizer.overlap_backward; a rank with no samples starts its empty round in zero_grads);
* step(n): gradients combined weighted by each rank's n samples (DistributedOptimizer), then the step;
* reduce(...): epoch loss sums, sample counts and metric counts summed over ranks, so history equals one
  process's;
* callbacks run on rank 0 only; sync_control() sends rank 0's stop_training flag and learning rate to all;
* fail(): an exception inside fit on any rank prints it with the rank and aborts every rank (MPI Abort).
"""
import traceback

import numpy as np

from . import world as _comm
from .optimizer import DistributedOptimizer
from .sync import broadcast_optimizer_state, broadcast_parameters, broadcast_random_state
from .sync_batchnorm import SyncBatchNorm

# Metric state summed over ranks: (numerator, count) attribute pairs of fastnn.metrics' metric classes.
_METRIC_STATE = (("correct", "total"), ("weighted_sum", "count"))


def _metric_state(metric):
    for names in _METRIC_STATE:
        if all(hasattr(metric, n) for n in names):
            return names
    return None


class ShardedBatches:
    """This rank's contiguous share of every batch of `batches` (a re-iterable of (x, y) with x an array or a
    tuple of arrays). Every pass starts from rank 0's random state, so a shuffled order is the same on every
    rank (and, without dropout, the one a single process draws); once it is drawn, ranks > 0 advance their
    generators so that dropout masks differ between ranks."""

    def __init__(self, batches, rank, size):
        self.batches, self.rank, self.size = batches, rank, size

    def __len__(self):
        return len(self.batches)

    def _cut(self, n):
        bounds = np.cumsum([0] + [len(part) for part in np.array_split(np.arange(n), self.size)])
        return slice(int(bounds[self.rank]), int(bounds[self.rank + 1]))

    def __iter__(self):
        broadcast_random_state()  # rank 0's generator draws the order, the same on every rank
        first = True
        for xb, yb in self.batches:
            if first and self.rank:
                bg = _random_bit_generator()
                if hasattr(bg, "advance"):
                    bg.advance(self.rank * (1 << 96))
            first = False
            rows = self._cut(len(yb))
            xs = tuple(a[rows] for a in xb) if isinstance(xb, tuple) else xb[rows]
            yield xs, yb[rows]


def _random_bit_generator():
    from .. import random as _random
    return _random.generator().bit_generator


class TrainerSync:
    def __init__(self, model, optimizer, loss, metrics, bucket_mb=25.0):
        _comm.init()
        self.rank, self.size = _comm.rank(), _comm.world_size()
        self.is_root = self.rank == 0
        self.sum_loss = getattr(loss, "reduction", "mean") == "sum"
        for m in metrics:
            if _metric_state(m) is None:
                raise TypeError(f"Trainer(distributed=True): metric {m!r} keeps no state that can be summed over "
                                f"ranks (attributes {' / '.join('+'.join(n) for n in _METRIC_STATE)}); use "
                                f"fastnn.metrics.Accuracy, TopKAccuracy or MeanMetric")
        overlap = True
        if isinstance(optimizer, DistributedOptimizer):  # its bucket size and overlap, the reduction this loss needs
            optimizer, bucket_mb, overlap = optimizer.optimizer, optimizer.bucket_bytes / 2**20, optimizer.overlap
        self.optimizer = DistributedOptimizer(optimizer, bucket_mb, op="sum" if self.sum_loss else "average",
                                              overlap=overlap)
        self.model = model
        if self.sum_loss:  # SyncBatchNorm combines its backward sums as the loss reduces
            for m in (model.modules() if hasattr(model, "modules") else []):
                if isinstance(m, SyncBatchNorm):
                    m.loss_reduction = "sum"
        broadcast_parameters(model)
        broadcast_optimizer_state(self.optimizer)

    def start(self, num_batches=None):
        """At the start of fit: rank 0's weights, optimizer state and random state everywhere. num_batches
        (per epoch, None when unknown) must agree between ranks: a rank that runs out of batches first would
        leave the others waiting for it in a collective forever."""
        counts = _comm.allgather(np.array([-1 if num_batches is None else int(num_batches)], np.int64))
        if len(set(counts.tolist())) != 1:
            listed = ", ".join(f"rank {r}: {n if n >= 0 else 'unknown'}" for r, n in enumerate(counts.tolist()))
            raise ValueError(f"Trainer.fit(distributed=True): the ranks have different numbers of batches per "
                             f"epoch ({listed}); "
                             f"every rank must take the same number of steps (give steps_per_epoch, or shards "
                             f"of equal length)")
        broadcast_parameters(self.model)
        broadcast_optimizer_state(self.optimizer)
        broadcast_random_state()

    def end(self):
        """After the callbacks' on_train_end (EarlyStopping may restore weights on rank 0): a reduction left in
        flight by a batch that stopped before its step is completed, then rank 0's weights."""
        self.optimizer.finish()
        broadcast_parameters(self.model)

    def shard(self, batches):
        return ShardedBatches(batches, self.rank, self.size)

    def callbacks(self, callbacks):
        return callbacks if self.is_root else []

    def backward(self, backward, grad, num_samples):
        """backward(grad) with the gradient buckets reduced as their gradients become final."""
        with self.optimizer.overlap_backward(self.model, None if self.sum_loss else num_samples):
            backward(grad)

    def step(self, num_samples):
        self.optimizer.step(num_samples=None if self.sum_loss else num_samples)

    def zero_grads(self, model):
        """A rank whose share of a batch is empty contributes zero gradients (in a round of its own, as the
        ranks that run backward start one)."""
        for p in model.parameters():
            p.grad.fill(0)
        with self.optimizer.overlap_backward(self.model, None if self.sum_loss else 0):
            pass

    def reduce(self, loss_sum, seen, metric_objs):
        """(loss_sum, seen) summed over ranks; each metric's counts replaced by their sums over ranks."""
        values = [loss_sum, seen]
        for m in metric_objs:
            values += [getattr(m, n) for n in _metric_state(m)]
        total = _comm.allreduce(np.array(values, np.float64))
        for m, k in zip(metric_objs, range(2, len(values), 2)):
            a, b = _metric_state(m)
            setattr(m, a, type(getattr(m, a))(total[k]))
            setattr(m, b, type(getattr(m, b))(total[k + 1]))
        return float(total[0]), int(total[1])

    def sync_control(self, trainer):
        """Rank 0's trainer.stop_training and learning rate on every rank (callbacks ran on rank 0 only)."""
        lr = getattr(trainer.optimizer, "lr", None)
        msg = np.array([float(bool(trainer.stop_training)), np.nan if lr is None else float(lr)])
        _comm.comm().Bcast(msg, root=0)
        trainer.stop_training = bool(msg[0])
        if not self.is_root and lr is not None and not np.isnan(msg[1]) and msg[1] != lr:
            trainer.optimizer.lr = float(msg[1])

    def fail(self, error):
        """An exception inside fit on this rank: print it with the rank, then end every rank (MPI Abort), since
        the others would wait for this one in a collective forever."""
        _comm.report_and_abort(f"fastnn.distributed: Trainer.fit failed on rank {self.rank} of {self.size}: "
                               f"{type(error).__name__}: {error}\n{traceback.format_exc()}"
                               f"fastnn.distributed: aborting all ranks (MPI Abort)\n")
