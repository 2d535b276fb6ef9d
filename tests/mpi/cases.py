"""Training runs the MPI tests compare: each runs single-process (distributed=False) in the pytest process and
under `mpiexec -n 2` (distributed=True, tests/mpi/run_cases.py), and must give the same float64 weights.

In a distributed run, ranks > 0 build their models and draw their shuffling seed from other seeds, so equality
also shows that rank 0's weights, optimizer state and random state are broadcast."""
import numpy as np

import fastnn as fnn
from fastnn import nn


def _rank():
    from fastnn import distributed as dist
    return dist.rank() if dist.is_initialized() else 0


def data(n=52, d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 0.8)
    return x, y.astype(np.int64) % classes


def mlp(seed):
    fnn.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)).double()


def weights(model):
    return {k: np.array(v) for k, v in model.state_dict().items()}


def trainer_mlp(distributed):
    """Trainer with Adam (with state already), validation_split (41 training samples: batches 16, 16, 9; the last split 5 / 4)."""
    x, y = data()
    model = mlp(1 + 10 * _rank())
    opt = fnn.optim.Adam(model.parameters(), lr=0.02)
    # one step on other data first, different on each rank: rank 0's Adam moments and step count must be broadcast
    x0, y0 = data(n=8, seed=20 + _rank())
    loss = nn.CrossEntropyLoss()
    loss(model(x0), y0)
    model.backward(loss.backward())
    opt.step()
    trainer = fnn.Trainer(model, nn.CrossEntropyLoss(), opt, distributed=distributed)
    fnn.manual_seed(5 + 10 * _rank())
    history = trainer.fit(x, y, epochs=4, batch_size=16, validation_split=0.2, verbose=0)
    return weights(model), history


def loop_mlp(distributed, overlap=False):
    """A hand-written loop: every rank takes its contiguous share of each global batch of 8 (29 samples: the
    last 5 split 3 / 2); SGD with momentum; DistributedOptimizer with tiny buckets (several per step);
    overlap: backward inside overlap_backward (buckets reduced while it runs)."""
    x, y = data(n=29)
    model = mlp(2 + 10 * _rank())
    opt = fnn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = nn.CrossEntropyLoss()
    rank, size = 0, 1
    if distributed:
        from fastnn import distributed as dist
        dist.broadcast_parameters(model)
        opt = dist.DistributedOptimizer(opt, bucket_mb=0.0002)
        rank, size = dist.rank(), dist.world_size()
    rng = np.random.default_rng(7)
    for _ in range(3):
        order = rng.permutation(len(x))
        for start in range(0, len(x), 8):
            rows = order[start:start + 8]
            part = np.array_split(rows, size)[rank]
            opt.zero_grad()
            loss(model(x[part]), y[part])
            if distributed and overlap:
                with opt.overlap_backward(model, num_samples=len(part)):
                    model.backward(loss.backward())
                opt.step()
                continue
            model.backward(loss.backward())
            if distributed:
                opt.step(num_samples=len(part))
            else:
                opt.step()
    return weights(model), {}


def graph_model(seed):
    fnn.manual_seed(seed)
    a = nn.Input(shape=(6,), dtype="float64")
    b = nn.Input(shape=(4,), dtype="float64")
    h = nn.Tanh()(nn.Linear(6, 5)(a)) + nn.Linear(4, 5)(b)
    out = nn.Linear(5, 3)(nn.ReLU()(h))
    return nn.Graph(inputs=[a, b], outputs=out).double()


def trainer_graph(distributed):
    """A two-input Graph, SGD, reduction='sum' loss, 31 samples in batches of 10: the last batch has 1 sample,
    so rank 1's share is empty (it contributes zero gradients); validation data; a DistributedOptimizer given."""
    x, y = data(n=31, d=10, seed=3)
    xv, yv = data(n=11, d=10, seed=4)
    model = graph_model(3 + 10 * _rank())
    opt = fnn.optim.SGD(model.parameters(), lr=0.01)
    if distributed:  # the Trainer takes a DistributedOptimizer's bucket size (here several buckets per step)
        from fastnn import distributed as dist
        opt = dist.DistributedOptimizer(opt, bucket_mb=0.0001)
    trainer = fnn.Trainer(model, nn.CrossEntropyLoss(reduction="sum"), opt, distributed=distributed)
    fnn.manual_seed(6 + 10 * _rank())
    history = trainer.fit([x[:, :6], x[:, 6:]], y, epochs=3, batch_size=10, verbose=0,
                          validation_data=([xv[:, :6], xv[:, 6:]], yv))
    return weights(model), history


def cnn(seed, distributed):
    """Conv -> batch norm (SyncBatchNorm on several ranks, plain BatchNorm2d in one process) -> Linear."""
    fnn.manual_seed(seed)
    if distributed:
        from fastnn.distributed import SyncBatchNorm as Norm
    else:
        Norm = nn.BatchNorm2d
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), Norm(3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3 * 5 * 5, 3)).double()


def trainer_cnn(distributed, reduction="mean"):
    """A CNN with SyncBatchNorm: 35 images in batches of 8 (4 per rank; the last 3 split 2 / 1), momentum SGD,
    validation data (the running statistics, eval mode); a mean or a summed loss."""
    x, y = data(n=43, d=25, seed=5)
    x = x.reshape(-1, 1, 5, 5)
    model = cnn(4 + 10 * _rank(), distributed)
    opt = fnn.optim.SGD(model.parameters(), lr=0.05 if reduction == "mean" else 0.01, momentum=0.9)
    trainer = fnn.Trainer(model, nn.CrossEntropyLoss(reduction=reduction), opt, distributed=distributed)
    fnn.manual_seed(8 + 10 * _rank())
    history = trainer.fit(x[:35], y[:35], epochs=3, batch_size=8, verbose=0, validation_data=(x[35:], y[35:]))
    return weights(model), history


def trainer_early_stop(distributed, log_dir=None):
    """EarlyStopping (decided on rank 0: the loss never improves by min_delta=10, so training stops after the
    second of 6 epochs and rank 0 restores the first epoch's weights) and a CSVLogger named after the rank:
    only rank 0's file is written."""
    import os
    import tempfile
    log_dir = log_dir or os.environ.get("FASTNN_MPI_TEST_DIR") or tempfile.mkdtemp()
    x, y = data(n=30, seed=9)
    model = mlp(5 + 10 * _rank())
    opt = fnn.optim.Adam(model.parameters(), lr=0.05)
    callbacks = [fnn.callbacks.EarlyStopping(monitor="loss", patience=1, min_delta=10.0),
                 fnn.callbacks.CSVLogger(os.path.join(log_dir, f"log{_rank()}.csv"))]
    trainer = fnn.Trainer(model, nn.CrossEntropyLoss(), opt, callbacks=callbacks, distributed=distributed)
    fnn.manual_seed(9 + 10 * _rank())
    history = trainer.fit(x, y, epochs=6, batch_size=7, verbose=0)
    return weights(model), history


class SharedNet(nn.Module):
    """A traced module with a layer used twice, its layers declared in another order than they run (so the
    reverse registration order is not backward's: the buckets are rebuilt after the first step)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(5, 3)
        self.shared = nn.Linear(5, 5)
        self.first = nn.Linear(6, 5)

    def forward(self, x):
        return self.head(nn.functional.relu(self.shared(nn.functional.tanh(self.shared(self.first(x))))))


def shared_model(seed):
    fnn.manual_seed(seed)
    return SharedNet().double()


def trainer_shared(distributed):
    """The shared-layer model, Adam, one bucket per parameter: 33 samples in batches of 8 (the last 1 split
    1 / 0: rank 1's share is empty)."""
    x, y = data(n=33, seed=13)
    model = shared_model(7 + 10 * _rank())
    opt = fnn.optim.Adam(model.parameters(), lr=0.01)
    if distributed:
        from fastnn import distributed as dist
        opt = dist.DistributedOptimizer(opt, bucket_mb=1e-6)
    trainer = fnn.Trainer(model, nn.CrossEntropyLoss(), opt, distributed=distributed)
    fnn.manual_seed(12 + 10 * _rank())
    history = trainer.fit(x, y, epochs=3, batch_size=8, verbose=0)
    return weights(model), history


class StopAfterBackward(fnn.callbacks.Callback):
    """Stops training after the backward of global step `step`, before its optimizer step."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_backward_end(self, batch, logs=None):
        if logs["step"] == self.step:
            self.trainer.stop_training = True


def trainer_stop_after_backward(distributed):
    """Training stopped between a backward and its step (on rank 0, followed by rank 1), at the batch whose
    share on rank 1 is empty (33 samples in batches of 8: the fifth has 1): the reductions the overlapped
    backward started are completed at the end of fit on every rank, and a second fit goes on normally."""
    x, y = data(n=33, seed=16)
    model = shared_model(17 + 10 * _rank())
    opt = fnn.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    trainer = fnn.Trainer(model, nn.CrossEntropyLoss(), opt, distributed=distributed)
    fnn.manual_seed(18 + 10 * _rank())
    first = trainer.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[StopAfterBackward(4)])
    second = trainer.fit(x, y, epochs=2, batch_size=8, verbose=0)
    return weights(model), {"first": first["loss"], "second": second["loss"]}


def overlap_events(steps=2):
    """On the ranks: the shared-layer model, one bucket per parameter, `steps` overlapped steps; the order of
    the optimizer's events ("start:b" when bucket b's Iallreduce starts, "wait:b") and of the first layer's
    backward ("backward:first"), with "step" between steps."""
    from fastnn import distributed as dist
    x, y = data(n=8, seed=14)
    model = shared_model(15)
    dist.broadcast_parameters(model)
    opt = dist.DistributedOptimizer(fnn.optim.SGD(model.parameters(), lr=0.1), bucket_mb=1e-6)
    events = opt.trace = []
    real = model.first.backward

    def first_backward(*args, **kw):
        events.append(("backward", "first"))
        return real(*args, **kw)

    model.first.backward = first_backward
    loss = nn.CrossEntropyLoss()
    part = np.array_split(np.arange(len(x)), dist.world_size())[dist.rank()]
    for _ in range(steps):
        opt.zero_grad()
        loss(model(x[part]), y[part])
        with opt.overlap_backward(model, num_samples=len(part)):
            model.backward(loss.backward())
        opt.step()
        events.append(("step", ""))
    return [f"{a}:{b}" for a, b in events]


def trainer_batches(distributed):
    """Data as an iterable of batches: each rank gives its own share of every global batch of 10 (of 37: the
    last 7 split 4 / 3); one process gives the whole batches."""
    x, y = data(n=37, seed=11)
    size = 1
    if distributed:
        from fastnn import distributed as dist
        size = dist.world_size()

    class Shares:
        def __iter__(self):
            for start in range(0, len(x), 10):
                rows = np.array_split(np.arange(start, min(start + 10, len(x))), size)[_rank()]
                yield x[rows], y[rows]

    model = mlp(6 + 10 * _rank())
    opt = fnn.optim.RMSprop(model.parameters(), lr=0.01)
    trainer = fnn.Trainer(model, nn.CrossEntropyLoss(), opt, distributed=distributed)
    history = trainer.fit(Shares(), epochs=3, verbose=0)
    return weights(model), history


CASES = {"trainer_mlp": trainer_mlp, "loop_mlp": loop_mlp, "trainer_graph": trainer_graph,
         "trainer_cnn": trainer_cnn, "trainer_cnn_sum": lambda distributed: trainer_cnn(distributed, "sum"), "trainer_early_stop": trainer_early_stop,
         "trainer_batches": trainer_batches, "trainer_shared": trainer_shared,
         "loop_mlp_overlap": lambda distributed: loop_mlp(distributed, overlap=True),
         "trainer_stop_after_backward": trainer_stop_after_backward}
