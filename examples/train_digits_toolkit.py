"""Training toolkit: schedule, L2, early stopping, checkpoint
============================================================

The training toolkit on scikit-learn's digits: a learning-rate schedule, L2 regularisation, early stopping
and a checkpoint of the best model, which is reloaded at the end.

    python examples/train_digits_toolkit.py                      # checkpoint in a temporary directory
    python examples/train_digits_toolkit.py --checkpoint-dir ckpt --plot history.png

- 10% of the training images are held out for validation (the test images are only looked at at the end);
- fastnn.schedules.CosineDecay over the whole planned run sets the learning rate before every step;
- fastnn.regularizers.Regularized adds L2 weight decay λ/(2n)·Σw² on the weights (biases excluded);
- EarlyStopping(monitor="val_loss") stops after `patience` epochs without improvement and restores the
  best weights; ModelCheckpoint(save_best_only=True) keeps the best model on disk;
- the checkpoint is reloaded with fastnn.load and scored on the test set.
"""
import argparse
import os
import tempfile
import time

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import fastnn as fnn


def main(seed=0, epochs=60, verbose=1, checkpoint_dir=None, patience=10, plot=None):
    """Train, evaluate, reload the checkpoint. Returns a dict: model, test (evaluate of the trained model),
    reloaded_test (of the reloaded checkpoint), history, checkpoint (path; None if it lived in a temporary
    directory, now removed), stopped_epoch, best_epoch."""
    fnn.manual_seed(seed)
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    X_fit, X_val, y_fit, y_val = train_test_split(X_train, y_train, test_size=0.1, random_state=seed,
                                                  stratify=y_train)
    scaler = fnn.data.StandardScaler().fit(X_fit)
    X_fit, X_val, X_test = scaler.transform(X_fit), scaler.transform(X_val), scaler.transform(X_test)

    model = fnn.nn.Sequential(fnn.nn.Linear(64, 256), fnn.nn.ReLU(), fnn.nn.Dropout(0.2), fnn.nn.Linear(256, 10))
    batch_size = 32
    steps = epochs * -(-len(X_fit) // batch_size)
    schedule = fnn.schedules.CosineDecay(learning_rate=2e-3, decay_steps=max(steps, 1), alpha=0.05)
    optimizer = fnn.regularizers.Regularized(fnn.optim.Adam(model.parameters(), lr=2e-3),
                                             (model, fnn.regularizers.L2(lam=1.0, n=len(X_fit))))
    early = fnn.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)

    with tempfile.TemporaryDirectory(prefix="fastnn-digits-") as tmp:
        directory = tmp if checkpoint_dir is None else checkpoint_dir
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, "digits-mlp-best.fnn")
        checkpoint = fnn.callbacks.ModelCheckpoint(path, monitor="val_loss", save_best_only=True)
        trainer = fnn.Trainer(model, loss=fnn.nn.CrossEntropyLoss(), optimizer=optimizer, schedule=schedule,
                              metrics=["accuracy"],
                              callbacks=[fnn.regularizers.PenaltyLogger(), early, checkpoint])
        start = time.perf_counter()
        history = trainer.fit(X_fit, y_fit, epochs=epochs, batch_size=batch_size, validation_data=(X_val, y_val),
                              verbose=verbose)
        elapsed = time.perf_counter() - start
        test = trainer.evaluate(X_test, y_test)

        reloaded = fnn.load(path)
        reloaded_test = fnn.Trainer(reloaded, fnn.nn.CrossEntropyLoss(), optimizer=None).evaluate(X_test, y_test)

    if plot:
        import fastnn.plot
        fastnn.plot.history(history, metrics=["loss", "accuracy", "lr"], path=plot, title="digits MLP toolkit")

    if verbose:
        stopped = f"stopped early after epoch {early.stopped_epoch + 1}" if early.stopped_epoch else "ran all epochs"
        print(f"trained in {elapsed:.1f} s; {stopped}; best val_loss {early.best:.4f} at epoch {early.best_epoch + 1}")
        print(f"test loss {test['loss']:.4f}, test accuracy {test['accuracy']:.4f}")
        print(f"reloaded checkpoint {path}: test accuracy {reloaded_test['accuracy']:.4f}")
    return {"model": model, "test": test, "reloaded_test": reloaded_test, "history": history,
            "checkpoint": path if checkpoint_dir is not None else None,
            "stopped_epoch": early.stopped_epoch, "best_epoch": early.best_epoch}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    quick = os.environ.get("FASTNN_DOCS_QUICK") == "1"   # the documentation build: a few epochs only
    parser.add_argument("--epochs", type=int, default=6 if quick else 60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-dir", default=None, help="keep the checkpoint here (default: a temp dir)")
    parser.add_argument("--plot", default=None, help="save the training curves to this image (needs matplotlib)")
    args = parser.parse_args()
    result = main(seed=args.seed, epochs=args.epochs, checkpoint_dir=args.checkpoint_dir, plot=args.plot)
    if quick and args.plot is None:  # the documentation build shows the training curves on the page
        import fastnn.plot
        fastnn.plot.history(result["history"], metrics=["loss", "accuracy", "lr"], title="digits MLP toolkit")
