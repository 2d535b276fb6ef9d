"""Shared benchmark helpers: interleaved timing of fastnn and PyTorch in the same run."""
import statistics
import time


def interleaved(candidates, steps, repeats):
    """candidates: {name: fn}. Runs each fn `steps` times per block, alternating names block by block,
    `repeats` blocks each; returns {name: median seconds per call}. Interleaving spreads machine noise
    (other processes, frequency changes) evenly over both libraries."""
    times = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(t) for name, t in times.items()}


def warm_up(candidates, steps):
    for fn in candidates.values():
        for _ in range(steps):
            fn()


def report(title, unit, scale, result, target=None):
    fast, torch_ = result["fastnn"] * scale, result["torch"] * scale
    ratio = result["fastnn"] / result["torch"]
    verdict = "" if target is None else (f"  target <= {target:.2f}: " + ("met" if ratio <= target else "MISSED"))
    print(f"{title:<58} fastnn {fast:9.1f} {unit}   torch {torch_:9.1f} {unit}   ratio {ratio:5.2f}{verdict}")
    return ratio


def classifier_training_steps(model, tmodel, x, y, lr=0.01, momentum=0.9, one_call=False):
    """One SGD + cross-entropy training step in fastnn, step by step (forward, loss, backward, step: the
    calls a hand-written loop makes), and in PyTorch, on the same weights and data (x an array, or a tuple of
    arrays for a model of several inputs), as {name: fn}. one_call=True adds "fastnn_one_call":
    model.train_step, the whole step in one call (as fastnn.Trainer runs a Sequential). Checks first that
    both compute the same loss, so the two really run the same network."""
    import torch

    import fastnn as fnn

    loss_fn = fnn.nn.CrossEntropyLoss()
    opt = fnn.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    xs = tuple(x) if isinstance(x, (tuple, list)) else (x,)  # several inputs: model(*xs)
    txs, ty = tuple(torch.from_numpy(a) for a in xs), torch.from_numpy(y)
    tloss = torch.nn.CrossEntropyLoss()
    topt = torch.optim.SGD(tmodel.parameters(), lr=lr, momentum=momentum)

    a = loss_fn(model(*xs), y)
    with torch.no_grad():
        b = float(tloss(tmodel(*txs), ty))
    assert abs(a - b) < 1e-4 * max(1.0, abs(b)), (a, b)

    def fastnn_step():
        loss_fn(model(*xs), y)
        model.backward_parameters(loss_fn.backward())
        opt.step()
        opt.zero_grad()

    def torch_step():
        topt.zero_grad()
        tloss(tmodel(*txs), ty).backward()
        topt.step()

    steps = {"fastnn": fastnn_step, "torch": torch_step}
    if one_call:
        steps["fastnn_one_call"] = lambda: model.train_step(xs[0], y, loss_fn, opt)
    return steps
