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


def classifier_training_steps(model, tmodel, x, y, lr=0.01, momentum=0.9):
    """One SGD + cross-entropy training step in fastnn (as fastnn.Trainer runs it per batch) and in PyTorch,
    on the same weights and data, as {name: fn}. Checks first that both compute the same loss, so the
    two really run the same network."""
    import torch

    import fastnn as fnn

    loss_fn = fnn.nn.CrossEntropyLoss()
    opt = fnn.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    tloss = torch.nn.CrossEntropyLoss()
    topt = torch.optim.SGD(tmodel.parameters(), lr=lr, momentum=momentum)

    a = loss_fn(model(x), y)
    with torch.no_grad():
        b = float(tloss(tmodel(tx), ty))
    assert abs(a - b) < 1e-4 * max(1.0, abs(b)), (a, b)

    def fastnn_step():
        loss_fn(model(x), y)
        model.backward_parameters(loss_fn.backward())
        opt.step()
        opt.zero_grad()

    def torch_step():
        topt.zero_grad()
        tloss(tmodel(tx), ty).backward()
        topt.step()

    return {"fastnn": fastnn_step, "torch": torch_step}
