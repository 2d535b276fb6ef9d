"""Training under fnn.autocast("bfloat16") on real data (scikit-learn's digits): test accuracy close to float32
for the MLP and the CNN examples (bench/bench_bf16.py compares them at their full epoch counts). Apart from
tests/test_bf16.py so that the per-level kernel runs (tests/test_dispatch.py) do not train them three times."""
import fastnn as fnn
from harness import load_example


def test_digits_accuracy_with_autocast_close_to_float32():
    example = load_example("train_digits")
    _, fp32 = example.main(seed=0, epochs=25, verbose=0)
    with fnn.autocast("bfloat16"):
        _, bf16 = example.main(seed=0, epochs=25, verbose=0)
    assert bf16["accuracy"] >= 0.95
    assert abs(bf16["accuracy"] - fp32["accuracy"]) <= 0.015, (bf16, fp32)


def test_cnn_digits_accuracy_with_autocast_close_to_float32():
    example = load_example("train_digits_cnn")
    _, fp32 = example.main(seed=0, epochs=2, verbose=0)
    with fnn.autocast("bfloat16"):
        _, bf16 = example.main(seed=0, epochs=2, verbose=0)
    assert bf16["accuracy"] >= 0.85
    assert abs(bf16["accuracy"] - fp32["accuracy"]) <= 0.03, (bf16, fp32)
