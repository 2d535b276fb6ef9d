"""Data-parallel training over MPI
===============================

Train the digits MLP data-parallel over MPI: every rank takes its share of each global batch of 64, and the
result is the one a single process gets with the same seed (no dropout here, so equal to rounding).

One machine, 2 processes (fastnn gives each rank cores / ranks kernel threads)::

    pip install ".[mpi,examples]"
    mpiexec -n 2 python examples/train_digits_mpi.py

Several machines: list them in a hostfile ("node1:4" per line: host and ranks), with fastnn and the data at the
same path on each, then::

    mpiexec -f hostfile -n 8 python examples/train_digits_mpi.py
"""
import time

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import fastnn as fnn
from fastnn import distributed as dist


def main(seed=0, epochs=30, verbose=1):
    dist.init()
    root = dist.rank() == 0
    fnn.manual_seed(seed)  # rank 0's weights and shuffling are broadcast anyway
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    scaler = fnn.data.StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

    model = fnn.nn.Sequential(fnn.nn.Linear(64, 256), fnn.nn.ReLU(), fnn.nn.Linear(256, 10))
    trainer = fnn.Trainer(model, loss=fnn.nn.CrossEntropyLoss(),
                          optimizer=fnn.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4),
                          distributed=True)
    start = time.perf_counter()
    trainer.fit(X_train, y_train, epochs=epochs, batch_size=64, verbose=verbose if root else 0)
    elapsed = time.perf_counter() - start
    test = trainer.evaluate(X_test, y_test)  # every rank evaluates its share; the result is over all of them
    if verbose and root:
        fnn.show_config()
        print(f"{dist.world_size()} ranks trained in {elapsed:.1f} s; test loss {test['loss']:.4f}, "
              f"test accuracy {test['accuracy']:.4f}")
    return model, test


if __name__ == "__main__":
    main()
