"""Reads a `.pt` checkpoint the way `torch.load(..., weights_only=True)` does, without
PyTorch: the zip's `data.pkl` unpickled with only the globals that loader allows, each
storage read from `data/<key>`. Written from PyTorch's serialization format, not from
evolora's writer.

    weights, top = pt_read(path)   # flat names ("gru.*", "head.*"), float64 arrays
"""
import collections
import io
import pickle
import struct
import zipfile

import numpy as np


class FloatStorage:
    """Stands for torch.FloatStorage in persistent ids."""


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks, metadata=None):
    if not size:
        return storage[offset:offset + 1].reshape(()).copy()
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size, strides=[s * storage.itemsize for s in stride])
    return view.copy()


# What torch.load's weights-only unpickler lets through, among what a checkpoint of float32
# tensors needs.
ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch", "FloatStorage"): FloatStorage,
}


def _data_offset(raw, info):
    """Where a stored record's bytes start: after its local header, name and extra field."""
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    return info.header_offset + 30 + name_len + extra_len


def pt_read(path):
    with open(path, "rb") as f:
        raw = f.read()
    z = zipfile.ZipFile(io.BytesIO(raw))
    prefix = z.namelist()[0].split("/")[0]
    records = {n[len(prefix) + 1:]: z.getinfo(n) for n in z.namelist()}
    for need in ("data.pkl", "version"):
        if need not in records:
            raise ValueError(f"{path}: no {prefix}/{need} record")
    if z.read(f"{prefix}/byteorder").decode() != "little":
        raise ValueError("big-endian storages")

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) not in ALLOWED:
                raise pickle.UnpicklingError(f"{module}.{name} is not allowed by a weights-only load")
            return ALLOWED[(module, name)]

        def persistent_load(self, pid):
            kind, cls, key, location, numel = pid
            if kind != "storage" or cls is not FloatStorage or location != "cpu":
                raise pickle.UnpicklingError(f"unexpected storage {pid!r}")
            info = records[f"data/{key}"]
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"storage {key} is compressed")
            start = _data_offset(raw, info)
            if start % 64:
                raise ValueError(f"storage {key} starts at {start}, not on a 64-byte boundary")
            data = np.frombuffer(raw[start:start + info.file_size], dtype="<f4")
            if data.size != numel:
                raise ValueError(f"storage {key}: {data.size} values, {numel} declared")
            return data

    top = Unpickler(io.BytesIO(z.read(f"{prefix}/data.pkl"))).load()
    if "gru_state" in top:
        sections = [("gru.", top["gru_state"]), ("head.", top["head_state"])]
    else:
        sections = [("head.", top["state_dict"])]
    weights = {}
    for p, state in sections:
        if not isinstance(state, collections.OrderedDict):
            raise ValueError(f"{p[:-1]} state is a {type(state).__name__}, not an OrderedDict")
        for k, v in state.items():
            weights[p + k] = np.asarray(v, dtype=np.float64)
    return weights, top
