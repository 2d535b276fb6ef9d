"""The MPI world fastnn trains in: init(), rank(), world_size(), and NumPy collectives (allreduce, allgather,
broadcast) on mpi4py. mpi4py is imported by init() only, so `import fastnn` (and `import fastnn.distributed`)
never loads MPI.

init() also
* sets each rank's kernel thread count to cores / ranks on this machine (unless OMP_NUM_THREADS is set or
  `threads` is given), so ranks x threads does not oversubscribe the machine;
* installs a sys.excepthook that prints the error with the rank that raised and calls MPI Abort, so an
  uncaught exception on one rank ends every rank at once instead of leaving them waiting in a collective.
"""
import json
import os
import sys
import time
import traceback

import numpy as np

_state = {"comm": None, "local": None, "threads": None, "threads_by": None}

_OPS = ("sum", "mean", "max", "min")
_ABORT_GRACE_S = 0.5


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("fastnn.distributed needs mpi4py and an MPI library: pip install 'fastnn[mpi]' "
                          "(mpi4py and mpich)") from e
    return MPI


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def init(comm=None, threads=None, abort_on_exception=True):
    """Starts (or joins) MPI and returns the communicator. Safe to call more than once.

    comm: an mpi4py communicator (default MPI.COMM_WORLD). threads: kernel threads for this rank; None means
    OMP_NUM_THREADS when set, else max(1, cores // ranks on this machine). abort_on_exception: install the
    excepthook that aborts every rank when one raises an uncaught exception."""
    if _state["comm"] is not None and comm is None:
        return _state["comm"]
    MPI = _mpi()
    comm = MPI.COMM_WORLD if comm is None else comm
    local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    _state["comm"], _state["local"] = comm, local
    from .. import ops
    if threads is not None:
        n, by = int(threads), "init(threads=...)"
    elif "OMP_NUM_THREADS" in os.environ:
        n, by = ops.get_num_threads(), "OMP_NUM_THREADS"
    else:
        n, by = max(1, _cores() // local.Get_size()), f"{_cores()} cores / {local.Get_size()} local ranks"
    if n < 1:
        raise ValueError(f"fastnn.distributed.init: threads must be >= 1, got {threads!r}")
    ops.set_num_threads(n)
    _state["threads"], _state["threads_by"] = n, by
    if abort_on_exception:
        sys.excepthook = _abort_hook
    return comm


def _abort_hook(kind, value, tb):
    if _state.get("aborting"):  # Trainer.fit already reported the error and called Abort
        abort(1)
        return
    text = "".join(traceback.format_exception(kind, value, tb))
    report_and_abort(f"fastnn.distributed: rank {rank()} of {world_size()} raised {kind.__name__}: {value}\n"
                     f"{text}fastnn.distributed: aborting all ranks (MPI Abort)\n")


def abort(code=1):
    """Ends every rank now (MPI Abort)."""
    _state["aborting"] = True
    comm().Abort(code)
    os._exit(code)  # MPICH's Abort can return before the process manager ends this rank


def report_and_abort(message, code=1):
    """Writes message to stderr, then ends every rank (MPI Abort). mpiexec stops forwarding a rank's output
    once it kills the ranks, so the message gets a moment (_ABORT_GRACE_S) to reach the terminal first."""
    sys.stderr.write(message)
    sys.stderr.flush()
    time.sleep(_ABORT_GRACE_S)
    abort(code)


def is_initialized():
    return _state["comm"] is not None


def comm():
    """The communicator fastnn uses (init() is called if needed)."""
    return _state["comm"] if _state["comm"] is not None else init()


def rank():
    return comm().Get_rank()


def world_size():
    return comm().Get_size()


def size():
    """world_size() (Horovod's name)."""
    return world_size()


def local_rank():
    """This rank's index among the ranks on the same machine."""
    comm()
    return _state["local"].Get_rank()


def local_size():
    """Ranks on this machine."""
    comm()
    return _state["local"].Get_size()


def barrier():
    comm().Barrier()


def config_info():
    """What show_config() prints under "distributed" (None before init())."""
    if _state["comm"] is None:
        return None
    MPI = _mpi()
    return {"rank": rank(), "world size": world_size(), "local ranks": local_size(),
            "threads per rank": _state["threads"], "threads chosen by": _state["threads_by"],
            "mpi": MPI.Get_library_version().splitlines()[0].strip()}


def _mpi_op(op, where):
    MPI = _mpi()
    if op not in _OPS:
        raise ValueError(f"{where}: op must be one of {_OPS}, got {op!r}")
    return {"sum": MPI.SUM, "mean": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}[op]


def _numeric(where, a):
    a = np.ascontiguousarray(a)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{where}: expected a numeric array, got dtype {a.dtype}")
    return a


def _check_same_shape(where, a):
    """Every rank's array has rank 0's shape and dtype (a clear error otherwise, on every rank)."""
    sig = np.array([a.ndim, *a.shape, a.dtype.num], np.int64)
    sigs = _allgather_bytes(sig.tobytes())
    if len(set(sigs)) != 1:
        shapes = [tuple(int(d) for d in np.frombuffer(s, np.int64)[1:-1]) for s in sigs]
        raise ValueError(f"{where}: the ranks' arrays differ in shape or dtype (this rank: {a.shape} {a.dtype}); "
                         f"shapes by rank: {shapes}")


def allreduce(a, op="sum"):
    """A new array: a combined over every rank element-wise ("sum", "mean", "max" or "min"). Every rank must
    give the same shape and dtype (checked: a clear ValueError names the shapes)."""
    where = "fastnn.distributed.allreduce"
    a = _numeric(where, a)
    _check_same_shape(where, a)
    out = np.empty_like(a)
    comm().Allreduce(a, out, op=_mpi_op(op, where))
    if op == "mean":
        out = out / world_size()
    return out


def allgather(a):
    """Every rank's array concatenated along the first axis in rank order (Horovod's allgather): the first
    dimension may differ between ranks, the others and the dtype may not. A 0-d array counts as one item."""
    where = "fastnn.distributed.allgather"
    a = _numeric(where, a)
    if a.ndim == 0:
        a = a.reshape(1)
    c = comm()
    tails = _allgather_bytes(np.array([*a.shape[1:], a.dtype.num], np.int64).tobytes())
    if len(set(tails)) != 1:
        raise ValueError(f"{where}: the ranks' arrays must agree in every dimension but the first and in dtype; "
                         f"got trailing shapes {[tuple(np.frombuffer(t, np.int64)[:-1]) for t in tails]}")
    counts = _allgather_int(a.shape[0])
    item = int(np.prod(a.shape[1:], dtype=np.int64))
    out = np.empty((int(counts.sum()), *a.shape[1:]), a.dtype)
    c.Allgatherv(a, [out, (counts * item).tolist()])
    return out


def broadcast(a, root=0):
    """rank `root`'s array on every rank (a new array; every rank gives an array of the same shape and dtype,
    its contents ignored except on root)."""
    where = "fastnn.distributed.broadcast"
    a = _numeric(where, a)
    _check_same_shape(where, a)
    out = np.array(a, copy=True)
    comm().Bcast(out, root=root)
    return out


# -- byte and JSON helpers (no pickle: everything travels as bytes of JSON or of arrays) -------------------
def _allgather_int(n):
    out = np.empty(world_size(), np.int64)
    comm().Allgather(np.array([n], np.int64), out)
    return out


def _allgather_bytes(data):
    """Every rank's bytes, in rank order."""
    c = comm()
    buf = np.frombuffer(data, np.uint8)
    counts = _allgather_int(len(buf))
    out = np.empty(int(counts.sum()), np.uint8)
    c.Allgatherv(buf, [out, counts.tolist()])
    ends = np.cumsum(counts)
    return [out[e - n:e].tobytes() for e, n in zip(ends, counts)]


def bcast_json(value, root=0):
    """rank root's JSON-able value on every rank (sent as JSON text, never pickled)."""
    c = comm()
    data = json.dumps(value).encode() if c.Get_rank() == root else b""
    n = np.array([len(data)], np.int64)
    c.Bcast(n, root=root)
    buf = np.frombuffer(data, np.uint8).copy() if c.Get_rank() == root else np.empty(int(n[0]), np.uint8)
    c.Bcast(buf, root=root)
    return json.loads(buf.tobytes().decode())
