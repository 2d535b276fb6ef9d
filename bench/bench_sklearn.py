"""scikit-learn estimators (issue 18): fastnn.sklearn.MLPClassifier against scikit-learn's MLPClassifier, and
against skorch's NeuralNetClassifier when skorch is installed, same settings, in the same run.

Data: 60,000 float32 rows of 100 features, 10 classes (sklearn's make_classification), 50,000 to train and
10,000 to test. Model and training, the same in all: hidden layers (256, 256) with ReLU, 5 epochs,
batch 128, shuffled every epoch, Adam lr 1e-3 (betas 0.9/0.999, eps 1e-8), scikit-learn's default L2
alpha = 1e-4 (fastnn: alpha=1e-4, the same penalty; skorch: Adam weight_decay = alpha/128, its gradient),
no validation split, no early stopping; "fastnn.Trainer" is the same training without the estimator (no
L2 penalty, no accuracy history), the floor under it. Timed: fit() alone. Runs are interleaved (fastnn, scikit-learn,
skorch, then again); the median and the best of --repeats runs are reported, with the test accuracy, and
how busy the machine was with other work meanwhile ("others": the share of all cores used by other
processes; on a shared machine runs during which it is high are slowed, fastnn's OpenMP threads most).

Target (issue 18): fastnn <= 0.25x scikit-learn's time at equal or better test accuracy.
Run: python bench/bench_sklearn.py [--repeats 3] [--threads 2]
"""
import argparse
import os
import platform
import statistics
import subprocess
import time
import warnings

import numpy as np
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SklearnMLP
from threadpoolctl import threadpool_limits

import fastnn as fnn
from fastnn.sklearn import MLPClassifier

HIDDEN, EPOCHS, BATCH, LR, ALPHA = (256, 256), 5, 128, 1e-3, 1e-4


def data():
    X, y = make_classification(n_samples=60_000, n_features=100, n_informative=40, n_redundant=10, n_classes=10,
                               n_clusters_per_class=2, class_sep=1.5, random_state=0)
    X = X.astype(np.float32)
    return X[:50_000], X[50_000:], y[:50_000], y[50_000:]


def fastnn_model():
    return MLPClassifier(hidden_layer_sizes=HIDDEN, batch_size=BATCH, lr=LR, alpha=ALPHA, max_epochs=EPOCHS,
                         random_state=0)


class TrainerByHand:
    """The same network and training with fastnn.Trainer and no estimator: the floor under the estimator's
    time (the difference is what the estimator adds: validation, the penalty, the accuracy history)."""

    def fit(self, X, y):
        fnn.manual_seed(0)
        layers, width = [], X.shape[1]
        for h in HIDDEN:
            layers += [fnn.nn.Linear(width, h), fnn.nn.ReLU()]
            width = h
        self.model = fnn.nn.Sequential(*layers, fnn.nn.Linear(width, 10))
        opt = fnn.optim.Adam(self.model.parameters(), lr=LR)
        fnn.Trainer(self.model, fnn.nn.CrossEntropyLoss(), opt, metrics=[]).fit(X, y, epochs=EPOCHS,
                                                                              batch_size=BATCH, verbose=0)
        return self

    def predict(self, X):
        return np.argmax(self.model.eval()(X), axis=1)


def sklearn_model():
    return SklearnMLP(hidden_layer_sizes=HIDDEN, batch_size=BATCH, learning_rate_init=LR, alpha=ALPHA,
                      max_iter=EPOCHS, random_state=0)


def skorch_model(threads):
    try:
        import skorch
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layers, width = [], 100
    for h in HIDDEN:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
        width = h
    module = torch.nn.Sequential(*layers, torch.nn.Linear(width, 10))
    return skorch.NeuralNetClassifier(module, criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=LR,
                                      optimizer__weight_decay=ALPHA / BATCH, max_epochs=EPOCHS, batch_size=BATCH,
                                      iterator_train__shuffle=True, train_split=None, verbose=0)


def busy_seconds():
    """CPU seconds all cores have been busy (Linux /proc/stat), or None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_name():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    fnn.set_num_threads(args.threads)
    X_train, X_test, y_train, y_test = data()
    makers = {"fastnn": fastnn_model, "scikit-learn": sklearn_model, "fastnn.Trainer": TrainerByHand}
    if skorch_model(args.threads) is not None:
        makers["skorch"] = lambda: skorch_model(args.threads)
    import sklearn
    print(f"{cpu_name()}; {args.threads} threads; fastnn {fnn.__version__}, scikit-learn {sklearn.__version__}"
          + (f", skorch {__import__('skorch').__version__} on torch {__import__('torch').__version__}"
             if "skorch" in makers else ", skorch not installed"))
    print(f"MLP {HIDDEN}, {EPOCHS} epochs on {X_train.shape[0]:,} x {X_train.shape[1]} float32 rows, 10 classes, "
          f"batch {BATCH}, Adam lr {LR:g}, alpha {ALPHA:g}")
    times = {name: [] for name in makers}
    others = {name: [] for name in makers}
    accuracy = {name: [] for name in makers}
    y_train32 = y_train.astype(np.int64)
    with warnings.catch_warnings(), threadpool_limits(args.threads):
        warnings.simplefilter("ignore", ConvergenceWarning)  # scikit-learn's: max_iter reached, as asked
        for _ in range(args.repeats):
            for name, make in makers.items():
                model = make()
                time.sleep(0.5)  # let the previous library's thread pool go idle
                busy, own = busy_seconds(), time.process_time()
                start = time.perf_counter()
                model.fit(X_train, y_train32)
                wall = time.perf_counter() - start
                times[name].append(wall)
                if busy is not None:
                    elsewhere = busy_seconds() - busy - (time.process_time() - own)
                    others[name].append(max(0.0, 100.0 * elsewhere / (wall * os.cpu_count())))
                accuracy[name].append(float(np.mean(model.predict(X_test) == y_test)))
    base, best_base = statistics.median(times["scikit-learn"]), min(times["scikit-learn"])
    for name in makers:
        t = statistics.median(times[name])
        runs = ", ".join(f"{s:.2f}" for s in times[name])
        load = "" if not others[name] else f"   others {max(others[name]):.0f}% at most"
        print(f"{name:<14} fit median {t:6.2f} s, best {min(times[name]):6.2f} s (runs {runs})   test accuracy "
              f"{statistics.median(accuracy[name]):.4f}   ratio to scikit-learn {t / base:5.3f} "
              f"(best {min(times[name]) / best_base:5.3f}){load}")
    ratio = statistics.median(times["fastnn"]) / base
    acc_ok = statistics.median(accuracy["fastnn"]) >= statistics.median(accuracy["scikit-learn"])
    print(f"target: fastnn <= 0.25x scikit-learn's time at equal or better accuracy: median ratio {ratio:.3f}, best "
          f"{min(times['fastnn']) / best_base:.3f}, accuracy {'equal or better' if acc_ok else 'WORSE'} -> "
          f"{'met' if ratio <= 0.25 and acc_ok else 'MISSED'}")
    if "skorch" in makers:
        skorch = statistics.median(times["fastnn"]) / statistics.median(times["skorch"])
        print(f"fastnn / skorch time: median {skorch:.3f}, best {min(times['fastnn']) / min(times['skorch']):.3f}")

if __name__ == "__main__":
    main()
