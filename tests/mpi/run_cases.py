"""Run under mpiexec by tests/test_distributed.py: every case of cases.py with distributed=True; rank 0 saves
the weights and history to the .npz given as argv[1], and the thread count show_config() reports."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fastnn as fnn  # noqa: E402
from fastnn import distributed as dist  # noqa: E402

dist.init()
import cases  # noqa: E402

out = {}
for name in sys.argv[2:] or cases.CASES:
    w, history = cases.CASES[name](True)
    for k, v in w.items():
        out[f"{name}/w/{k}"] = v
        out[f"{name}/spread/{k}"] = dist.allreduce(v, op="max") - dist.allreduce(v, op="min")  # between ranks
    for k, v in history.items():
        out[f"{name}/h/{k}"] = np.array(v)
out["overlap/events"] = np.array(cases.overlap_events())
r = dist.rank()
out["collectives/allgather"] = dist.allgather(np.arange(r + 1, dtype=np.float32) + 10 * r)
out["collectives/allreduce_sum"] = dist.allreduce(np.array([1.0, r]))
out["collectives/allreduce_max"] = dist.allreduce(np.array([3 - r, r], np.int64), op="max")
out["collectives/allreduce_mean"] = dist.allreduce(np.array([2.0 * r]), op="mean")
out["collectives/broadcast"] = dist.broadcast(np.full(2, 5.0 + r))
try:
    dist.allreduce(np.zeros(2 + r))
    out["collectives/shape_error"] = np.array("no error")
except ValueError as e:
    out["collectives/shape_error"] = np.array(str(e))
config = fnn.show_config(mode="dicts")["distributed"]
out["config/threads"] = np.array([config["threads per rank"], config["local ranks"], fnn.get_num_threads()])
if dist.rank() == 0:
    np.savez(sys.argv[1], **out)
