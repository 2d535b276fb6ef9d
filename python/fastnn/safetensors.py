"""A small, dependency-free reader and writer for the safetensors format (numpy arrays).

Layout of a file (https://github.com/huggingface/safetensors):

    8 bytes      N, the header length, unsigned little-endian
    N bytes      UTF-8 JSON: {name: {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
                              "__metadata__": {str: str}}   (optional metadata; padded with spaces)
    rest         the tensors' raw little-endian bytes; offsets are relative to the start of this section

The reader trusts nothing in the file: the header length is capped (`MAX_HEADER_SIZE`), the JSON must be an
object without duplicate keys, every dtype must be known, every shape × itemsize must equal its byte range,
and the byte ranges must tile the data section exactly (no gaps, no overlaps, nothing left over). Any
violation raises `SafetensorsError` (a ValueError) naming the file. Nothing is ever unpickled or executed.

The writer (`save_file`) writes atomically: a temporary file in the target's directory, flushed and
fsync'ed, then `os.replace`d onto the target; on failure the temporary file is removed and an existing
target is left untouched.
"""
import io
import json
import math
import os
import secrets
from collections import OrderedDict

import numpy as np

__all__ = ["SafetensorsError", "save_file", "load_file", "read", "read_metadata", "serialize", "deserialize",
           "MAX_HEADER_SIZE"]

#: Largest accepted JSON header (the reference implementation's limit, 100 MB).
MAX_HEADER_SIZE = 100_000_000

# safetensors dtype code -> little-endian numpy dtype (as stored in the file).
_DTYPES = OrderedDict([
    ("F64", np.dtype("<f8")), ("F32", np.dtype("<f4")), ("F16", np.dtype("<f2")),
    ("BF16", np.dtype("<u2")),  # no numpy bfloat16: read as float32 (exact), never written
    ("I64", np.dtype("<i8")), ("I32", np.dtype("<i4")), ("I16", np.dtype("<i2")), ("I8", np.dtype("i1")),
    ("U64", np.dtype("<u8")), ("U32", np.dtype("<u4")), ("U16", np.dtype("<u2")), ("U8", np.dtype("u1")),
    ("BOOL", np.dtype("u1")),
])
# numpy dtype (native kind + size) -> safetensors code, for writing.
_CODES = {
    ("f", 8): "F64", ("f", 4): "F32", ("f", 2): "F16",
    ("i", 8): "I64", ("i", 4): "I32", ("i", 2): "I16", ("i", 1): "I8",
    ("u", 8): "U64", ("u", 4): "U32", ("u", 2): "U16", ("u", 1): "U8",
    ("b", 1): "BOOL",
}
_MAX_DIM = 2 ** 62


class SafetensorsError(ValueError):
    """The file is not a valid safetensors file (truncated, corrupted or not safetensors at all)."""


def _name(path):
    return os.fspath(path) if isinstance(path, (str, bytes, os.PathLike)) else repr(path)


# ---------------------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------------------
def _prepare(tensors, metadata):
    """Validate inputs; return (header bytes padded to a multiple of 8, [(name, little-endian array)])."""
    if not isinstance(tensors, dict):
        raise TypeError(f"safetensors: tensors must be a dict name -> numpy array, got {type(tensors).__name__}")
    header = OrderedDict()
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise TypeError(f"safetensors: metadata must be a dict str -> str, got {type(metadata).__name__}")
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"safetensors: metadata must map str to str; key {k!r} has a value of type "
                                f"{type(v).__name__}")
        header["__metadata__"] = dict(metadata)
    arrays = []
    offset = 0
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"safetensors: tensor names must be str, got {name!r}")
        if name == "__metadata__":
            raise ValueError("safetensors: '__metadata__' is reserved and cannot name a tensor")
        arr = np.asarray(value)
        code = _CODES.get((arr.dtype.kind, arr.dtype.itemsize))
        if code is None:
            raise TypeError(f"safetensors: tensor '{name}' has dtype {arr.dtype}, which safetensors cannot "
                            f"store (supported: float16/32/64, int8..int64, uint8..uint64, bool)")
        little = arr.dtype.newbyteorder("<") if arr.dtype.itemsize > 1 else arr.dtype
        arr = np.asarray(arr, dtype=little, order="C")  # (not ascontiguousarray: that makes 0-d arrays 1-d)
        nbytes = arr.nbytes
        header[name] = {"dtype": code, "shape": [int(s) for s in arr.shape],
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
        arrays.append((name, arr))
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the data section starts 8-byte aligned, as the reference writer does
    return raw, arrays


def _write_array(f, arr):
    """Write one array's bytes (a hook so tests can make a save fail midway)."""
    f.write(memoryview(arr).cast("B") if arr.size else b"")


def _emit(f, header, arrays):
    f.write(len(header).to_bytes(8, "little"))
    f.write(header)
    for _, arr in arrays:
        _write_array(f, arr)


def write(f, tensors, metadata=None):
    """Write `tensors` (dict name -> array) and `metadata` (dict str -> str) to the binary file object f."""
    _emit(f, *_prepare(tensors, metadata))


def serialize(tensors, metadata=None):
    """The safetensors bytes of `tensors` and `metadata`."""
    buf = io.BytesIO()
    write(buf, tensors, metadata)
    return buf.getvalue()


def atomic_write(path, writer):
    """Call writer(f) on a temporary file next to `path`, fsync it, then rename it onto `path`.
    On any failure the temporary file is removed and an existing `path` is untouched."""
    path = os.fspath(path)
    directory, base = os.path.split(os.path.abspath(path))
    while True:
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            # 0o666 & ~umask, like a plain open(); O_EXCL: never clobber somebody else's file.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    # Make the rename itself durable (POSIX); not possible (nor needed) everywhere.
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def save_file(tensors, path, metadata=None):
    """Write a safetensors file atomically. tensors: dict name -> numpy array (kept in this order);
    metadata: optional dict str -> str."""
    header, arrays = _prepare(tensors, metadata)  # validate before touching the file system
    atomic_write(path, lambda f: _emit(f, header, arrays))


# ---------------------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------------------
def _no_duplicates(pairs):
    d = OrderedDict()
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r}")
        d[k] = v
    return d


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _read_header(f, size, where):
    """Parse and validate the header. Returns (entries [(name, code, shape, begin, end)] in header order,
    metadata dict, start of the data section)."""
    def fail(msg):
        raise SafetensorsError(f"{where}: not a valid safetensors file: {msg}")

    if size < 8:
        fail(f"the file is {size} bytes long, too short to hold the 8-byte header length (empty or truncated)")
    f.seek(0)
    n = int.from_bytes(f.read(8), "little")
    if n > MAX_HEADER_SIZE:
        fail(f"header length {n} exceeds the {MAX_HEADER_SIZE}-byte limit (corrupted file?)")
    if 8 + n > size:
        fail(f"header length {n} runs past the end of the {size}-byte file (truncated?)")
    if n < 2:
        fail(f"header length {n} is too small for a JSON object")
    raw = f.read(n)
    if len(raw) != n:
        fail("the header could not be read in full (truncated?)")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        fail(f"the header is not valid UTF-8 JSON ({e})")
    if not isinstance(header, dict):
        fail(f"the header must be a JSON object, got {type(header).__name__}")

    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        fail("'__metadata__' must be an object mapping strings to strings")

    data_start = 8 + n
    data_len = size - data_start
    entries = []
    for name, info in header.items():
        if not isinstance(info, dict):
            fail(f"entry '{name}' must be an object with dtype, shape and data_offsets")
        code, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if code not in _DTYPES:
            fail(f"tensor '{name}' has unknown dtype {code!r} (known: {', '.join(_DTYPES)})")
        if (not isinstance(shape, list) or len(shape) > 32
                or not all(_is_int(s) and 0 <= s < _MAX_DIM for s in shape)):
            fail(f"tensor '{name}' has an invalid shape {shape!r} (a list of at most 32 non-negative ints)")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
            fail(f"tensor '{name}' has invalid data_offsets {offsets!r} (expected [begin, end])")
        begin, end = offsets
        if not 0 <= begin <= end <= data_len:
            fail(f"tensor '{name}' has data_offsets [{begin}, {end}] outside the {data_len}-byte data section "
                 f"(truncated?)")
        expected = math.prod(shape) * _DTYPES[code].itemsize
        if end - begin != expected:
            fail(f"tensor '{name}' of dtype {code} and shape {shape} needs {expected} bytes, "
                 f"but its data_offsets [{begin}, {end}] span {end - begin}")
        entries.append((name, code, tuple(shape), begin, end))

    # The byte ranges must tile the data section: sorted by position, each starts where the previous ended.
    position = 0
    for name, _, _, begin, end in sorted(entries, key=lambda e: (e[3], e[4])):
        if begin < position:
            fail(f"tensor '{name}' (bytes {begin}..{end}) overlaps the previous tensor, which ends at {position}")
        if begin > position:
            fail(f"bytes {position}..{begin} of the data section belong to no tensor")
        position = end
    if position != data_len:
        fail(f"the data section has {data_len} bytes but the tensors cover only {position} "
             f"(trailing garbage or corrupted header)")
    return entries, metadata, data_start


def _read_tensor(f, where, name, code, shape, begin, end, data_start):
    stored = _DTYPES[code]
    try:
        arr = np.empty(shape, dtype=stored)
    except (ValueError, OverflowError, MemoryError) as e:
        raise SafetensorsError(f"{where}: tensor '{name}' with shape {list(shape)} cannot be allocated ({e})") from None
    if end > begin:
        f.seek(data_start + begin)
        got = f.readinto(memoryview(arr).cast("B"))
        if got != end - begin:
            raise SafetensorsError(f"{where}: not a valid safetensors file: tensor '{name}' is truncated "
                                   f"({got} of {end - begin} bytes)")
    if code == "BF16":
        return (arr.astype(np.uint32) << 16).view(np.float32)
    if code == "BOOL":
        if arr.size and arr.max() > 1:
            raise SafetensorsError(f"{where}: not a valid safetensors file: bool tensor '{name}' holds bytes "
                                   f"other than 0 and 1")
        return arr.view(np.bool_)
    if not stored.isnative:
        arr = arr.astype(stored.newbyteorder("="))
    return arr


def _open_source(source):
    """(file object, size, display name) for a path or a bytes-like object."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return io.BytesIO(data), len(data), "<bytes>"
    where = _name(source)
    f = open(source, "rb")
    try:
        size = os.fstat(f.fileno()).st_size
    except BaseException:
        f.close()
        raise
    return f, size, where


def read(source):
    """(tensors, metadata) from a safetensors file path or bytes. tensors: OrderedDict name -> numpy array
    in header order (independent, aligned, writable arrays in native byte order); metadata: dict str -> str.
    BF16 tensors are returned as float32 (exact). Raises SafetensorsError (a ValueError) on any corruption."""
    f, size, where = _open_source(source)
    with f:
        entries, metadata, data_start = _read_header(f, size, where)
        tensors = OrderedDict()
        for name, code, shape, begin, end in entries:
            tensors[name] = _read_tensor(f, where, name, code, shape, begin, end, data_start)
    return tensors, metadata


def deserialize(data):
    """(tensors, metadata) from safetensors bytes."""
    return read(bytes(data))


def load_file(path):
    """OrderedDict name -> numpy array of a safetensors file."""
    return read(path)[0]


def read_metadata(path):
    """The '__metadata__' dict of a safetensors file, without reading the tensors (header is validated)."""
    f, size, where = _open_source(path)
    with f:
        return _read_header(f, size, where)[1]
