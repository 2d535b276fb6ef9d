"""Data-parallel training over MPI (mpi4py): `mpiexec -n 4 python train.py`.

    from fastnn import distributed as dist
    dist.init()                                   # MPI; rank(), world_size(); kernel threads = cores / local ranks
    trainer = fnn.Trainer(model, loss, opt, distributed=True)
    history = trainer.fit(x, y, batch_size=64)    # batch_size is the global batch; equal to one process
    opt = dist.DistributedOptimizer(opt)          # hand-written loops: step() combines gradients first
    with opt.overlap_backward(model, num_samples=n):  # buckets' allreduce started while backward runs
        model.backward(loss.backward())
    dist.broadcast_parameters(model); dist.allreduce(a); dist.allgather(a)

Gradients are reduced in buckets (25 MB by default) by non-blocking MPI allreduces that start while backward
still runs, as soon as a bucket's gradients are final (fastnn.nn.executor.gradient_ready; the Trainer does it
for every step), as PyTorch DDP's reducer does; step() waits for what is still in flight.

mpi4py is imported by init() (and the functions that need it), never by importing this package.
"""
from .world import (abort, allgather, allreduce, barrier, broadcast, comm, config_info, init, is_initialized,
                   local_rank, local_size, rank, size, world_size)
from .optimizer import DistributedOptimizer
from .sync import broadcast_optimizer_state, broadcast_parameters, broadcast_random_state
from .sync_batchnorm import SyncBatchNorm

__all__ = ["init", "is_initialized", "comm", "rank", "world_size", "size", "local_rank", "local_size", "barrier",
           "abort", "allreduce", "allgather", "broadcast", "config_info", "DistributedOptimizer",
           "broadcast_parameters", "broadcast_optimizer_state", "broadcast_random_state", "SyncBatchNorm"]
