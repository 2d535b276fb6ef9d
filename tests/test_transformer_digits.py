"""End to end on real data: examples/train_transformer_digits.py (scikit-learn's digits as 8 row tokens of 8
pixels, a 2-layer pre-norm Transformer encoder with a learned positional table, AdamW and a cosine schedule)
reaches the >= 97% test accuracy issue 16 asks of it, and the trained model survives save/load bit for bit."""
import numpy as np

import fastnn as fnn
from harness import load_example


def test_transformer_on_digits_reaches_97_percent(tmp_path):
    model, test = load_example("train_transformer_digits").main(seed=0, verbose=0)
    assert test["accuracy"] >= 0.97, test
    path = str(tmp_path / "digits_transformer.fnn")
    fnn.save(model, path)
    loaded = fnn.load(path)
    x = np.random.default_rng(0).random((16, 64)).astype(np.float32)
    assert loaded.eval()(x).tobytes() == model.eval()(x).tobytes()
