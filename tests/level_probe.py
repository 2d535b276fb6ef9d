"""Run as `FASTNN_CPU=<level> python tests/level_probe.py out.npz`: computes one seeded result of each kind of
kernel (GEMMs, convolution, pooling, norms, recurrent steps, element-wise, losses, optimizers, a few training
steps) on two threads and saves them, with the level that computed them, for test_dispatch.py to compare."""
import sys

import numpy as np

import fastnn as fnn


def rng(seed):
    return np.random.default_rng(seed)


def f32(*shape, seed):
    return rng(seed).standard_normal(shape).astype(np.float32)


def probe():
    fnn.set_num_threads(2)
    ops, out = fnn.ops, {}

    x, w, b, dy = f32(64, 784, seed=1), f32(256, 784, seed=2), f32(256, seed=3), f32(64, 256, seed=4)
    out["linear_y"] = ops.linear_forward(x, w, b)
    gw, gb = np.zeros_like(w), np.zeros_like(b)
    out["linear_dx"] = ops.linear_backward(dy, x, w, gw, gb)
    out["linear_dw"], out["linear_db"] = gw, gb
    out["linear_y_f64"] = ops.linear_forward(rng(30).standard_normal((64, 784)), rng(31).standard_normal((256, 784)))

    for kind in ("ReLU", "ELU", "Sigmoid", "Tanh", "Softplus", "SiLU", "Softsign"):
        layer = getattr(fnn.nn, kind)()
        z = f32(70, 1000, seed=5) * 3
        out[f"act_{kind}"] = layer(z)
        out[f"act_{kind}_grad"] = layer.backward(f32(70, 1000, seed=6))
    out["softmax"] = ops.softmax_forward(f32(128, 1000, seed=7))

    fnn.manual_seed(0)
    cnn = fnn.nn.Sequential(fnn.nn.Conv2d(3, 16, 3, padding=1), fnn.nn.BatchNorm2d(16), fnn.nn.ReLU(),
                            fnn.nn.MaxPool2d(2), fnn.nn.Conv2d(16, 32, 3, stride=2, padding=1), fnn.nn.ReLU(),
                            fnn.nn.AvgPool2d(2), fnn.nn.Flatten(), fnn.nn.Linear(32 * 4 * 4, 10))
    images = f32(16, 3, 32, 32, seed=8)
    out["cnn_y"] = cnn(images)
    cnn.backward(f32(16, 10, seed=9))
    for k, p in enumerate(cnn.parameters()):
        out[f"cnn_grad_{k}"] = p.grad
    cnn.eval()
    out["cnn_eval_y"] = cnn(images)

    fnn.manual_seed(1)
    norm = fnn.nn.LayerNorm(300)
    out["layer_norm"] = norm(f32(50, 300, seed=10))
    out["layer_norm_dx"] = norm.backward(f32(50, 300, seed=11))

    for name, cls in (("lstm", fnn.nn.LSTM), ("gru", fnn.nn.GRU)):
        fnn.manual_seed(2)
        rnn = cls(32, 64)
        seq, _ = rnn(f32(20, 16, 32, seed=12))
        out[f"{name}_y"] = seq
        out[f"{name}_dx"] = rnn.backward(f32(*seq.shape, seed=13))

    logits, labels = f32(256, 10, seed=14), rng(15).integers(0, 10, 256)
    out["cross_entropy"], out["cross_entropy_grad"] = ops.cross_entropy(logits, labels)

    fnn.manual_seed(3)
    mlp = fnn.nn.Sequential(fnn.nn.Linear(784, 256), fnn.nn.ReLU(), fnn.nn.Linear(256, 10))
    loss_fn, opt = fnn.nn.CrossEntropyLoss(), fnn.optim.SGD(mlp.parameters(), lr=0.05, momentum=0.9)
    xs, ys = f32(256, 784, seed=16), rng(17).integers(0, 10, 256)
    for _ in range(5):
        loss_fn(mlp(xs), ys)
        mlp.backward_parameters(loss_fn.backward())
        opt.step()
        opt.zero_grad()
    for k, p in enumerate(mlp.parameters()):
        out[f"train_sgd_{k}"] = p.data
    mlp.eval()
    out["mlp_eval"] = mlp(xs[:1])  # batch-1 inference: the one-call dense plan

    # Adam, RMSprop, Adagrad on given gradients (gradients near zero would make Adam's step a coin toss).
    for name in ("Adam", "RMSprop", "Adagrad"):
        params = [fnn.nn.Parameter(f32(300, 200, seed=18)), fnn.nn.Parameter(f32(777, seed=19))]
        opt = getattr(fnn.optim, name)(params, lr=1e-2)
        for step in range(3):
            for k, p in enumerate(params):
                p.grad = f32(*p.data.shape, seed=20 + 2 * step + k)
            opt.step()
        for k, p in enumerate(params):
            out[f"optim_{name}_{k}"] = p.data
    out["level"] = np.array(fnn.ops.runtime_info()["level"])
    return out


if __name__ == "__main__":
    np.savez(sys.argv[1], **probe())
