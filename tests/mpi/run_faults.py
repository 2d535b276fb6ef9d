"""Run under mpiexec by tests/test_distributed.py. argv[1]:
raise  - rank 1's model raises in its second epoch: every rank must end at once (MPI Abort), not hang;
shapes - rank 1 builds a wider model: Trainer(distributed=True) must fail before training;
batches - rank 1's batch iterable is shorter: fit must fail before training."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fastnn as fnn  # noqa: E402
from fastnn import distributed as dist, nn  # noqa: E402

dist.init()
import cases  # noqa: E402

x, y = cases.data()
if sys.argv[1] == "raise":
    class Failing(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = cases.mlp(0)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            if dist.rank() == 1 and self.calls > 2:
                raise ValueError("rank 1 fails in epoch 2")
            return self.inner(x)

        def backward(self, g, need_input_grad=True):
            return self.inner.backward(g, need_input_grad=need_input_grad)

    model = Failing()
    epochs = 10000  # rank 0 would train long after rank 1 failed: the test's timeout catches a hang
elif sys.argv[1] == "batches":  # rank 1's own shard has fewer batches
    model = cases.mlp(0)
    x = fnn.data.ArrayBatches(x[:40 if dist.rank() == 0 else 30], y[:40 if dist.rank() == 0 else 30], 10)
    y = None
    epochs = 1
else:
    fnn.manual_seed(0)
    width = 8 if dist.rank() == 0 else 9
    model = nn.Sequential(nn.Linear(6, width), nn.ReLU(), nn.Linear(width, 3)).double()
    epochs = 1
trainer = fnn.Trainer(model, nn.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=0.1), distributed=True)
print("started training", flush=True)
trainer.fit(x, y, epochs=epochs, batch_size=26, verbose=0)
print("finished training", flush=True)
