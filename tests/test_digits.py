"""End to end on real data: an MLP on scikit-learn's digits (fixed 80/20 split, StandardScaler) through
examples/train_digits.py, the README's main job."""
import numpy as np

import fastnn as fnn
from harness import load_example


def test_mlp_on_digits_reaches_97_percent(tmp_path):
    model, test = load_example("train_digits").main(seed=0, verbose=0)
    assert test["accuracy"] >= 0.97, test
    # The trained model survives a save/load round trip bit for bit.
    path = tmp_path / "digits.fnn"
    fnn.save(model, str(path))
    loaded = fnn.load(str(path))
    x = np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32)
    assert loaded.eval()(x).tobytes() == model.eval()(x).tobytes()


def test_digits_training_is_reproducible():
    example = load_example("train_digits")
    a, _ = example.main(seed=3, epochs=3, verbose=0)
    b, _ = example.main(seed=3, epochs=3, verbose=0)
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert pa.data.tobytes() == pb.data.tobytes(), name
