"""ONNX export of the digits CNN, run in onnxruntime
===================================================

Export the digits CNN (examples/train_digits_cnn.py) to ONNX, run it in onnxruntime, compare its outputs
with fastnn's and print the speed of both on the 360 test images.

    pip install "fastnn[onnx]" onnxruntime
    python examples/onnx_digits.py [--epochs 50] [--out digits_cnn.onnx]
"""
import argparse
import importlib.util
import os
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import fastnn as fnn


def _train_example():
    try:
        here = os.path.dirname(os.path.abspath(__file__))
    except NameError:  # sphinx-gallery runs examples without __file__, from the examples folder
        here = os.getcwd()
    path = os.path.join(here, "train_digits_cnn.py")
    spec = importlib.util.spec_from_file_location("train_digits_cnn", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _best_time(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(epochs=50, out="digits_cnn.onnx", repeats=20, verbose=1):
    import onnxruntime as ort
    model, test = _train_example().main(seed=0, epochs=epochs, verbose=0)
    X, y = load_digits(return_X_y=True)
    _, X_test, _, y_test = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    X_test = (X_test / 16.0).reshape(-1, 1, 8, 8).astype("float32")

    model.eval()
    fnn.onnx.export(model, out, input_shape=(1, 1, 8, 8))        # batch axis dynamic: any batch size runs
    session = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    ours = model(X_test)
    theirs = session.run(None, {name: X_test})[0]
    diff = float(np.abs(ours - theirs).max())
    agree = float((ours.argmax(1) == theirs.argmax(1)).mean())
    acc_ours, acc_ort = float((ours.argmax(1) == y_test).mean()), float((theirs.argmax(1) == y_test).mean())
    t_ours = _best_time(lambda: model(X_test), repeats)
    t_ort = _best_time(lambda: session.run(None, {name: X_test}), repeats)
    if verbose:
        print(f"exported to {out} ({os.path.getsize(out):,} bytes)")
        print(f"test accuracy: fastnn {acc_ours:.4f}, onnxruntime {acc_ort:.4f}; predictions agree on "
              f"{agree:.2%}; largest output difference {diff:.2e}")
        print(f"360 test images, best of {repeats}: fastnn {t_ours * 1e3:.2f} ms, onnxruntime {t_ort * 1e3:.2f} ms")
    return {"max_diff": diff, "agree": agree, "accuracy_fastnn": acc_ours, "accuracy_onnxruntime": acc_ort,
            "ms_fastnn": t_ours * 1e3, "ms_onnxruntime": t_ort * 1e3}


if __name__ == "__main__":
    if os.environ.get("FASTNN_DOCS_QUICK") == "1":  # the documentation build: a few epochs, a temporary file
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            main(epochs=3, out=os.path.join(tmp, "digits_cnn.onnx"))
    else:
        parser = argparse.ArgumentParser(description="Export the digits CNN to ONNX and compare with onnxruntime.")
        parser.add_argument("--epochs", type=int, default=50)
        parser.add_argument("--out", default="digits_cnn.onnx")
        args = parser.parse_args()
        main(args.epochs, args.out)
