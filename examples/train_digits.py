"""MLP on the handwritten digits
=============================

Train an MLP on scikit-learn's handwritten digits (8×8 images, 10 classes) and print test accuracy.

    python examples/train_digits.py
"""
import os
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import fastnn as fnn


def main(seed=0, epochs=80, verbose=1):
    fnn.manual_seed(seed)
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    scaler = fnn.data.StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

    model = fnn.nn.Sequential(fnn.nn.Linear(64, 256), fnn.nn.ReLU(), fnn.nn.Dropout(0.3), fnn.nn.Linear(256, 10))
    trainer = fnn.Trainer(model, loss=fnn.nn.CrossEntropyLoss(),
                          optimizer=fnn.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4),
                          metrics=["accuracy"])
    start = time.perf_counter()
    # All 1437 training images train; the 360 test images are only looked at once, at the end.
    trainer.fit(X_train, y_train, epochs=epochs, batch_size=32, verbose=verbose)
    elapsed = time.perf_counter() - start
    test = trainer.evaluate(X_test, y_test)
    if verbose:
        print(model.summary(input_shape=(64,)))
        print(f"trained in {elapsed:.1f} s; test loss {test['loss']:.4f}, test accuracy {test['accuracy']:.4f}")
    return model, test


if __name__ == "__main__":
    # The documentation build sets FASTNN_DOCS_QUICK=1: a few epochs only, so its accuracy is lower.
    main(epochs=10 if os.environ.get("FASTNN_DOCS_QUICK") == "1" else 80)
