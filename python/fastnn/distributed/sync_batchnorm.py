"""SyncBatchNorm: batch norm whose training-mode statistics are taken over the whole global batch, every rank's
share together (PyTorch's torch.nn.SyncBatchNorm), so that data-parallel training gives the single-process
result where plain BatchNorm (per-rank statistics, the default as in DDP) does not.

Forward reduces per-channel sums over the ranks twice (the mean, then the squared deviations from it: the
two-pass variance one process computes); backward reduces the per-channel sums of g and g·x̂ that the input
gradient needs. The weight and bias gradients stay per rank (the DistributedOptimizer combines them). In eval
mode, or outside MPI / on one rank, it is BatchNorm2d's kernel path exactly.

Shares of different sizes (an uneven last batch): each rank's loss gradient is scaled by its own batch (a mean
loss over n_r samples), so backward first brings the per-channel sums to one scale: with loss_reduction="mean"
(default: a mean loss, as Trainer and DistributedOptimizer.step(num_samples=n) combine them) rank r's sums are
weighted by its share n_r / N of the global batch; loss_reduction="sum" (a reduction="sum" loss; Trainer sets it)
adds them as they are. Either way the result is one process's on the whole batch."""
import numpy as np

from .. import nn
from . import world as _world


class SyncBatchNorm(nn.BatchNorm2d):
    """Batch norm of (N, C, ...) input (any number of trailing axes) with statistics over every rank's batch.
    Same arguments, parameters and buffers as BatchNorm1d/2d; loss_reduction: "mean" or "sum", how the loss
    the gradients come from reduces over samples (see the module docstring)."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 loss_reduction="mean"):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine,
                         track_running_stats=track_running_stats)
        if loss_reduction not in ("mean", "sum"):
            raise ValueError(f"SyncBatchNorm: loss_reduction must be 'mean' or 'sum', got {loss_reduction!r}")
        self.loss_reduction = loss_reduction

    def _check_ndim(self, x):
        if x.ndim < 2:
            raise ValueError(f"{self!r}: expected input (N, {self.num_features}, ...), got shape {x.shape}")

    def _synced(self):
        return self.training and _world.is_initialized() and _world.world_size() > 1

    def forward(self, x):
        if not self._synced():
            self._sync_state = None
            if np.ndim(x) == 4:
                return super().forward(x)
        x = np.ascontiguousarray(x, dtype=self._dtype(np.asarray(x)))
        self._check_ndim(x)
        c = self.num_features
        if x.shape[1] != c:
            raise ValueError(f"{self!r}: expected input with {c} channels (dimension 1), got shape {x.shape}")
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, c) + (1,) * (x.ndim - 2)
        use_batch_stats = self.training or not self.track_running_stats
        if not use_batch_stats:  # eval with running statistics, any number of axes
            invstd = 1.0 / np.sqrt(self.running_var + self.eps)
            xhat = (x - self.running_mean.reshape(shape)) * invstd.reshape(shape)
            self._sync_state = (xhat, invstd, None, None)
            return self._affine(xhat, shape)
        reduce = _world.allreduce if self._synced() else (lambda a: a)
        first = reduce(np.concatenate([x.sum(axis=axes), [x.size // c]]).astype(x.dtype))
        count = int(first[-1])
        if self.training and count <= 1:
            raise ValueError(f"{self!r}: Expected more than 1 value per channel when training, got input size "
                             f"{x.shape} (over all ranks: {count} values per channel)")
        mean = first[:-1] / count
        centred = x - mean.reshape(shape)
        var = reduce((centred * centred).sum(axis=axes)) / count
        invstd = 1.0 / np.sqrt(var + self.eps)
        xhat = centred * invstd.reshape(shape)
        if self.training and self.track_running_stats:
            self.num_batches_tracked[...] += 1
            m = 1.0 / int(self.num_batches_tracked) if self.momentum is None else self.momentum
            self.running_mean[...] = (1 - m) * self.running_mean + m * mean
            self.running_var[...] = (1 - m) * self.running_var + m * var * count / (count - 1)
        self._sync_state = (xhat, invstd, count if self._synced() else -count, x.size // c)
        return self._affine(xhat, shape)

    def _affine(self, xhat, shape):
        if self.weight is None:
            return xhat
        return xhat * self.weight.data.reshape(shape) + self.bias.data.reshape(shape)

    def backward(self, grad_output, need_input_grad=True):
        state = getattr(self, "_sync_state", None)
        if state is None:
            return super().backward(grad_output, need_input_grad)
        xhat, invstd, count = state[:3]
        g = np.asarray(grad_output, dtype=xhat.dtype)
        if g.shape != xhat.shape:
            raise ValueError(f"{self!r}: grad_output has shape {g.shape}, the output has {xhat.shape}")
        axes = (0,) + tuple(range(2, xhat.ndim))
        shape = (1, self.num_features) + (1,) * (xhat.ndim - 2)
        sums = np.stack([g.sum(axis=axes), (g * xhat).sum(axis=axes)])
        if self.weight is not None:
            if self.weight.requires_grad:
                self.weight.add_grad(sums[1])
            if self.bias.requires_grad:
                self.bias.add_grad(sums[0])
        if not need_input_grad:
            return None
        scale = invstd if self.weight is None else invstd * self.weight.data
        if count is None:  # eval: the statistics are constants
            return g * scale.reshape(shape)
        m, share = abs(count), 1.0
        if count > 0:
            if self.loss_reduction == "mean":  # this rank's gradients, scaled by 1/its samples, to the global scale
                share = state[3] / m
            sums = _world.allreduce(sums * share) / share
        return scale.reshape(shape) * (g - sums[0].reshape(shape) / m - xhat * sums[1].reshape(shape) / m)
