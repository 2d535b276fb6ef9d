"""The `fastnn` command (also `python -m fastnn`).

    fastnn info                                   version, threads, ISA flags, build flags, numpy
    fastnn train --example digits-mlp             train on scikit-learn's digits, print test accuracy
    fastnn train --example digits-cnn --epochs 10 --seed 1 --threads 2

`main(argv=None)` returns the exit code (0 success, 1 failure such as scikit-learn missing, 2 bad arguments,
with argparse's message on stderr), so it can be called from Python and tests.

The training runs are the models of examples/train_digits.py and examples/train_digits_cnn.py (examples/
is not installed with the package, so the same models and recipes live here in `train_digits`).
"""
import argparse
import platform
import sys
import time

__all__ = ["main", "train_digits", "build_digits_model", "EXAMPLES"]

# name -> (description, default epochs)
EXAMPLES = {
    "digits-mlp": ("MLP 64-256-10 with dropout, Adam; as examples/train_digits.py", 80),
    "digits-cnn": ("CNN conv16-conv32-pool-fc64 with dropout, Adam + cosine decay; as examples/train_digits_cnn.py",
                   50),
}


def build_digits_model(example):
    """The untrained model of an example ("digits-mlp" or "digits-cnn")."""
    from . import nn
    if example == "digits-mlp":
        return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 10))
    if example == "digits-cnn":
        return nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1), nn.ReLU(),    # 16×8×8
            nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.ReLU(),   # 32×8×8
            nn.MaxPool2d(2),                                          # 32×4×4
            nn.Dropout2d(0.1),
            nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Dropout(0.3),
            nn.Linear(64, 10),
        )
    raise ValueError(f"unknown example {example!r}; choose from {sorted(EXAMPLES)}")


def _load_digits_split():
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as e:
        raise ImportError("the digits examples need scikit-learn (its bundled digits data set): "
                          "pip install fastnn[examples]  (or: pip install scikit-learn)") from e
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)


def train_digits(example="digits-mlp", epochs=None, seed=0, verbose=1, batch_size=32):
    """Train an example model on scikit-learn's digits (fixed stratified 80/20 split, random_state=0) and
    return (model, test), test = {"loss": ..., "accuracy": ...} on the 360 held-out images."""
    import fastnn as fnn
    if example not in EXAMPLES:
        raise ValueError(f"unknown example {example!r}; choose from {sorted(EXAMPLES)}")
    if epochs is None:
        epochs = EXAMPLES[example][1]
    fnn.manual_seed(seed)
    X_train, X_test, y_train, y_test = _load_digits_split()
    model = build_digits_model(example)
    if example == "digits-mlp":
        scaler = fnn.data.StandardScaler().fit(X_train)
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
        optimizer = fnn.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
        schedule = None
    else:
        X_train = (X_train / 16.0).reshape(-1, 1, 8, 8).astype("float32")
        X_test = (X_test / 16.0).reshape(-1, 1, 8, 8).astype("float32")
        optimizer = fnn.optim.Adam(model.parameters(), lr=2e-3)
        steps = max(1, epochs * -(-len(X_train) // batch_size))
        schedule = fnn.schedules.CosineDecay(learning_rate=2e-3, decay_steps=steps, alpha=0.01)
    trainer = fnn.Trainer(model, loss=fnn.nn.CrossEntropyLoss(), optimizer=optimizer, schedule=schedule,
                          metrics=["accuracy"])
    trainer.fit(X_train, y_train, epochs=epochs, batch_size=batch_size, verbose=verbose)
    return model, trainer.evaluate(X_test, y_test)


def _info(args):
    import numpy as np

    import fastnn as fnn
    info = fnn.build_info()
    isa = [name for name in ("avx512", "avx2", "fma", "avx", "sse4_2", "neon") if info.get(name) is True]
    print(f"fastnn {fnn.__version__}")
    print(f"threads: {fnn.get_num_threads()}")
    print(f"ISA: {' '.join(isa) if isa else 'baseline (no SIMD extensions reported)'}")
    flags = ", ".join(f"{k}={v}" for k, v in sorted(info.items()))
    print(f"build: {flags}")
    print(f"numpy {np.__version__}")
    print(f"python {platform.python_version()} ({platform.machine()}, {platform.system()})")
    return 0


def _train(args):
    import fastnn as fnn
    if args.threads is not None:
        fnn.set_num_threads(args.threads)
    verbose = 0 if args.quiet else 1
    start = time.perf_counter()
    try:
        model, test = train_digits(args.example, epochs=args.epochs, seed=args.seed, verbose=verbose)
    except ImportError as e:
        print(f"fastnn train: {e}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start
    epochs = args.epochs if args.epochs is not None else EXAMPLES[args.example][1]
    print(f"{args.example}: {epochs} epochs, seed {args.seed}, {fnn.get_num_threads()} threads, "
          f"{elapsed:.1f} s")
    print(f"test loss {test['loss']:.4f}")
    print(f"test accuracy {test['accuracy']:.4f}")
    return 0


def _nonnegative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_int(text):
    value = _nonnegative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(prog="fastnn", description="fastnn: fast CPU neural-network training.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p_info = sub.add_parser("info", help="version, threads, ISA flags, build flags, numpy version")
    p_info.set_defaults(func=_info)
    p_train = sub.add_parser("train", help="train an example model on scikit-learn's digits",
                             description="Train an example on scikit-learn's digits (fixed 80/20 split) and "
                                         "print the test accuracy. " +
                                         "; ".join(f"{k}: {v[0]}, {v[1]} epochs" for k, v in EXAMPLES.items()))
    p_train.add_argument("--example", required=True, choices=sorted(EXAMPLES), help="which example to train")
    p_train.add_argument("--epochs", type=_nonnegative_int, default=None,
                         help="epochs (default: the example's own)")
    p_train.add_argument("--seed", type=_nonnegative_int, default=0, help="fastnn.manual_seed (default 0)")
    p_train.add_argument("--threads", type=_positive_int, default=None,
                         help="kernel threads (default: fastnn's current setting)")
    p_train.add_argument("-q", "--quiet", action="store_true", help="no per-epoch progress output")
    p_train.set_defaults(func=_train)
    return parser


def main(argv=None):
    """Run the command line; returns the exit code (argparse's 2 for bad arguments, 0 for --help)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits on errors (2) and --help (0)
        return e.code if isinstance(e.code, int) else 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
