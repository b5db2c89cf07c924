"""Checks an adapter directory's adapter_model.gguf against its PEFT files, reading the GGUF
with llama.cpp's own Python reader (PyPI `gguf`) and applying the rules llama.cpp's adapter
loader applies (src/llama-adapter.cpp, ggml/src/gguf.cpp).

    python3 check_gguf.py ADAPTER_DIR BASE_CONFIG_JSON

BASE_CONFIG_JSON is a Hugging Face config.json of the base (model_type and shapes): the
loader checks every LoRA pair against the base's weight, whose ne is [in, out].
Exits non-zero naming the first mismatch; prints one line on success."""
import json
import os
import struct
import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType

MODULES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
# safetensors dtype -> (ggml type, general.file_type, raw element view)
TYPES = {
    "F32": (GGMLQuantizationType.F32, 0, "<u4"),
    "F16": (GGMLQuantizationType.F16, 1, "<u2"),
    "BF16": (GGMLQuantizationType.BF16, 32, "<u2"),
}
PREFIX = "base_model.model.model.layers."


class Mismatch(Exception):
    pass


def expect(cond, message):
    if not cond:
        raise Mismatch(message)


def read_safetensors_raw(path):
    """name -> (dtype, shape, raw bytes): raw, so that values compare bit for bit."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        lo, hi = info["data_offsets"]
        out[name] = (info["dtype"], list(info["shape"]), raw[8 + n + lo:8 + n + hi])
    return out


def gguf_name(peft_name):
    """base_model.model.model.layers.{i}.{block}.{x}_proj.lora_{A|B}.weight -> blk.{i}.{...}.weight.lora_{a|b}"""
    expect(peft_name.startswith(PREFIX), f"unexpected PEFT tensor {peft_name}")
    parts = peft_name[len(PREFIX):].split(".")
    expect(len(parts) == 5 and parts[3] in ("lora_A", "lora_B") and parts[4] == "weight", f"unexpected PEFT tensor {peft_name}")
    module = MODULES.get(f"{parts[1]}.{parts[2]}")
    expect(module is not None, f"unexpected PEFT module in {peft_name}")
    return f"blk.{int(parts[0])}.{module}.weight.lora_{parts[3][-1].lower()}"


def base_weight_ne(config, module):
    """ne [in, out] of the base's weight for a GGUF module name."""
    h = config["hidden_size"]
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or h // heads
    q = heads * head_dim
    kv = config.get("num_key_value_heads", heads) * head_dim
    inter = config["intermediate_size"]
    return {
        "attn_q": (h, q), "attn_k": (h, kv), "attn_v": (h, kv), "attn_output": (q, h),
        "ffn_gate": (h, inter), "ffn_up": (h, inter), "ffn_down": (inter, h),
    }[module]


def field(reader, key, vtype):
    f = reader.get_field(key)
    expect(f is not None, f"metadata {key} is missing")
    expect(f.types == [vtype], f"metadata {key} has type {f.types}, expected {vtype.name}")
    return f.contents()


def check(adapter_dir, config_path):
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        peft_config = json.load(f)
    with open(config_path) as f:
        base = json.load(f)
    peft = read_safetensors_raw(os.path.join(adapter_dir, "adapter_model.safetensors"))
    path = os.path.join(adapter_dir, "adapter_model.gguf")
    try:
        reader = GGUFReader(path)
    except (ValueError, KeyError, IndexError) as e:
        # A truncated or misplaced tensor fails the reader's reshape.
        raise Mismatch(f"gguf.GGUFReader cannot read it: {type(e).__name__}: {e}") from e

    expect(reader.get_field("GGUF.version").contents() == 3, "not GGUF version 3")
    expect(field(reader, "general.type", GGUFValueType.STRING) == "adapter", "general.type is not adapter")
    expect(field(reader, "adapter.type", GGUFValueType.STRING) == "lora", "adapter.type is not lora")
    arch = field(reader, "general.architecture", GGUFValueType.STRING)
    expect(arch == base["model_type"], f"general.architecture {arch!r}, the base is {base['model_type']!r}")
    alpha = field(reader, "adapter.lora.alpha", GGUFValueType.FLOAT32)
    expect(alpha == np.float32(peft_config["lora_alpha"]), f"adapter.lora.alpha {alpha}, adapter_config.json says {peft_config['lora_alpha']}")
    alignment = field(reader, "general.alignment", GGUFValueType.UINT32)
    expect(alignment == 32, f"general.alignment {alignment}")
    field(reader, "general.name", GGUFValueType.STRING)

    dtypes = {d for d, _, _ in peft.values()}
    expect(len(dtypes) == 1 and next(iter(dtypes)) in TYPES, f"PEFT dtypes {dtypes}")
    st_dtype = next(iter(dtypes))
    ggml_type, file_type, raw_view = TYPES[st_dtype]
    found_file_type = field(reader, "general.file_type", GGUFValueType.UINT32)
    expect(found_file_type == file_type, f"general.file_type {found_file_type}, {st_dtype} is {file_type}")

    # One GGUF tensor per PEFT tensor and nothing else.
    wanted = {gguf_name(name): name for name in peft}
    expect(len(wanted) == len(peft), "two PEFT tensors map to one GGUF name")
    tensors = {t.name: t for t in reader.tensors}
    expect(len(tensors) == len(reader.tensors), "duplicate GGUF tensor names")
    missing = sorted(set(wanted) - set(tensors))
    extra = sorted(set(tensors) - set(wanted))
    expect(not missing, f"GGUF lacks {missing[:3]} ({len(missing)} in all)")
    expect(not extra, f"GGUF has tensors PEFT does not: {extra[:3]} ({len(extra)} in all)")

    # ggml/src/gguf.cpp: offsets are the running sum of the padded sizes, no gaps; the data
    # section starts aligned and the file ends with the last tensor's padding.
    expect(reader.data_offset % alignment == 0, f"data section at {reader.data_offset}, not aligned")
    offset = 0
    for t in reader.tensors:
        rel = t.data_offset - reader.data_offset
        expect(rel == offset, f"{t.name} at offset {rel}, expected {offset}")
        offset += -(-int(t.n_bytes) // alignment) * alignment
    size = os.path.getsize(path)
    expect(size == reader.data_offset + offset, f"file is {size} bytes, its tensors end at {reader.data_offset + offset}")

    for name, t in tensors.items():
        dtype, shape, raw = peft[wanted[name]]
        expect(t.tensor_type == ggml_type, f"{name} has ggml type {t.tensor_type.name}, PEFT has {dtype}")
        ne = [int(d) for d in t.shape]
        expect(ne == shape[::-1], f"{name} has ne {ne}, PEFT shape {shape} reversed is {shape[::-1]}")
        got = np.frombuffer(reader.data[t.data_offset:t.data_offset + t.n_bytes].tobytes(), dtype=raw_view)
        want = np.frombuffer(raw, dtype=raw_view)
        expect(got.shape == want.shape and np.array_equal(got, want), f"{name}: values differ from {wanted[name]} (first at {int(np.argmax(got != want)) if got.shape == want.shape else 'length'})")

    # src/llama-adapter.cpp: W.ne[0] == A.ne[0], W.ne[1] == B.ne[1], A.ne[1] == B.ne[0], and
    # every pair complete.
    layers = base["num_hidden_layers"]
    pairs = 0
    for name, a in tensors.items():
        if not name.endswith(".lora_a"):
            continue
        stem = name[:-len(".lora_a")]
        b = tensors.get(stem + ".lora_b")
        expect(b is not None, f"{stem} has lora_a without lora_b")
        _, layer, module, _ = stem.split(".")
        expect(int(layer) < layers, f"{stem}: the base has {layers} layers")
        w = base_weight_ne(base, module)
        a_ne, b_ne = [int(d) for d in a.shape], [int(d) for d in b.shape]
        expect(w[0] == a_ne[0] and w[1] == b_ne[1] and a_ne[1] == b_ne[0],
               f"{stem}: llama.cpp refuses A ne {a_ne}, B ne {b_ne} for W ne {list(w)}")
        expect(b_ne[0] == peft_config["r"], f"{stem}: rank {b_ne[0]}, adapter_config.json says r={peft_config['r']}")
        pairs += 1
    expect(2 * pairs == len(tensors), "a lora_b without its lora_a")
    print(f"gguf ok: {path}: {arch}, {st_dtype}, {pairs} pairs over {layers} layers, alpha {alpha}, {size} bytes")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    try:
        check(sys.argv[1], sys.argv[2])
    except Mismatch as e:
        sys.exit(f"gguf mismatch in {sys.argv[1]}: {e}")


if __name__ == "__main__":
    main()
