"""safetensors read and written by hand (8-byte little-endian header length, JSON header, raw
data), for the numpy references and the fixture scripts: no package beyond numpy."""
import json
import struct

import numpy as np

FLOATS = {"F32": np.float32, "F16": np.float16, "F64": np.float64}
INTS = {"I64": np.int64, "I32": np.int32, "U8": np.uint8, "BOOL": np.bool_}


def st_read(path):
    """Floating tensors come back as float64 (exactly: every stored dtype fits), integers as is."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, info in header.items():
        lo, hi = info["data_offsets"]
        buf = raw[base + lo:base + hi]
        dt = info["dtype"]
        if dt == "BF16":
            bits = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32).astype(np.float64)
        elif dt in FLOATS:
            arr = np.frombuffer(buf, dtype=np.dtype(FLOATS[dt]).newbyteorder("<")).astype(np.float64)
        else:
            arr = np.frombuffer(buf, dtype=np.dtype(INTS[dt]).newbyteorder("<")).copy()
        out[name] = arr.reshape(info["shape"])
    return out, meta


def to_bf16_bits(x):
    """float32 -> bfloat16 bit patterns, round to nearest even (what torch's .to(bfloat16) does)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return bits.astype("<u2")


def encode(x, code):
    if code == "BF16":
        return to_bf16_bits(x).tobytes()
    np_type = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64}[code]
    # f16 goes through f32 first so that both low-precision formats round from the same values.
    if code == "F16":
        x = np.asarray(x, dtype=np.float32)
    return np.ascontiguousarray(x, dtype=np.dtype(np_type).newbyteorder("<")).tobytes()


def st_write(path, tensors, meta=None, code="F32"):
    """code: one dtype for every tensor, or a dict name -> dtype code."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        c = code[name] if isinstance(code, dict) else code
        b = encode(tensors[name], c)
        header[name] = {"dtype": c, "shape": list(np.shape(tensors[name])), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
