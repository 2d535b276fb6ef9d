"""CNN on the handwritten digits
=============================

Train a small CNN on scikit-learn's handwritten digits (1×8×8 images, 10 classes); print test accuracy.

    python examples/train_digits_cnn.py
"""
import os
import time

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import fastnn as fnn


def build_model():
    nn = fnn.nn
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1), nn.ReLU(),    # 16×8×8
        nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.ReLU(),   # 32×8×8
        nn.MaxPool2d(2),                                          # 32×4×4
        nn.Dropout2d(0.1),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(64, 10),
    )


def main(seed=0, epochs=50, verbose=1):
    fnn.manual_seed(seed)
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    # Pixel values 0..16 -> [0, 1], as images (N, 1, 8, 8).
    X_train = (X_train / 16.0).reshape(-1, 1, 8, 8).astype("float32")
    X_test = (X_test / 16.0).reshape(-1, 1, 8, 8).astype("float32")

    model = build_model()
    steps = epochs * -(-len(X_train) // 32)
    trainer = fnn.Trainer(model, loss=fnn.nn.CrossEntropyLoss(),
                          optimizer=fnn.optim.Adam(model.parameters(), lr=2e-3),
                          schedule=fnn.schedules.CosineDecay(learning_rate=2e-3, decay_steps=steps, alpha=0.01),
                          metrics=["accuracy"])
    start = time.perf_counter()
    # All 1437 training images train; the 360 test images are only looked at once, at the end.
    trainer.fit(X_train, y_train, epochs=epochs, batch_size=32, verbose=verbose)
    elapsed = time.perf_counter() - start
    test = trainer.evaluate(X_test, y_test)
    if verbose:
        print(model.summary(input_shape=(1, 8, 8)))
        print(f"trained in {elapsed:.1f} s; test loss {test['loss']:.4f}, test accuracy {test['accuracy']:.4f}")
    return model, test


if __name__ == "__main__":
    # The documentation build sets FASTNN_DOCS_QUICK=1: a few epochs only, so its accuracy is lower.
    main(epochs=4 if os.environ.get("FASTNN_DOCS_QUICK") == "1" else 50)
