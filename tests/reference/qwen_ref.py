#!/usr/bin/env python3
"""Independent numpy reference of the Hugging Face Qwen2 and Qwen3 decoders.

Written from the architecture of transformers' modeling_qwen2.py / modeling_qwen3.py (RMSNorm,
GQA attention with HF rotate_half RoPE, SwiGLU MLP, optional Qwen3 q/k norms), not from
evolora's Rust code. Everything is computed in float64 from the weights as stored.

  make DIR --seed N --arch qwen2|qwen3 [--dtype f32|bf16|f16] [--prefix model|none] [--untied]
           [--shards K] [--attention-bias] [--hidden H] [--heads A] [--kv-heads K] [--head-dim D]
           [--layers L] [--intermediate I] [--vocab V] [--rope-theta T] [--eps E]
           [--batch B] [--seq T]
      random checkpoint (DIR/config.json, DIR/model.safetensors or shards plus index),
      a padded batch (DIR/inputs.safetensors) and the outputs (DIR/expected.safetensors)
  check DIR --actual F.safetensors [--tol 1e-5]
      compare the tensors in F (any subset of expected's) with DIR/expected.safetensors
      at the real (attention_mask == 1) positions
  verify DIR [--tol 1e-5]
      recompute the outputs from DIR's weights and inputs and compare them with
      DIR/expected.safetensors (used on the fixtures produced by transformers itself)
  lm-verify DIR [--tol 1e-5]
      the LM fixture of make_lm_fixtures.py: logits with and without each adapter, greedy
      generations
  lm-check BASE ACTUAL.safetensors [--adapter DIR] [--tol 1e-5]
      `evolora lm logits` output (ids, logits) recomputed from BASE with the LoRA adapter DIR
"""
import argparse
import json
import os
import re
import sys

import numpy as np

from safetensors_io import st_read, st_write

# ---- checkpoint loading ----

def load_config(d):
    with open(os.path.join(d, "config.json")) as f:
        return json.load(f)


def load_weights(d):
    """All tensors of a checkpoint directory (single file or HF shards), 'model.' prefix removed."""
    index = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    w = {}
    for fn in files:
        part, _ = st_read(os.path.join(d, fn))
        for name, t in part.items():
            w[name[len("model."):] if name.startswith("model.") else name] = t
    return w


def head_dim(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def rope_theta(cfg):
    # transformers >= 5 writes it under rope_parameters; older configs (and the released Qwen ones) at top level.
    rp = cfg.get("rope_parameters") or {}
    if rp.get("rope_type", "default") != "default":
        sys.exit(f"rope_type {rp['rope_type']} is not modelled here")
    return float(rp.get("rope_theta", cfg.get("rope_theta", 10000.0)))


# ---- the model ----

def rms_norm(x, w, eps):
    return w * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def linear(x, w, b=None):
    y = x @ w.T
    return y if b is None else y + b


def silu(x):
    return x / (1.0 + np.exp(-x))


def rope(positions, d, theta):
    """cos, sin [B, 1, T, d] for positions [B, T] (or [T], shared by every row)."""
    inv_freq = 1.0 / theta ** (np.arange(0, d, 2, dtype=np.float64) / d)
    pos = np.atleast_2d(np.asarray(positions, dtype=np.float64))
    ang = pos[..., None] * inv_freq
    emb = np.concatenate([ang, ang], axis=-1)[:, None]
    return np.cos(emb), np.sin(emb)


def load_lora(d):
    """A PEFT LoRA directory as {module path: (A [r, in], B [out, r])} and its scale (alpha/r, or
    alpha/sqrt(r) with rsLoRA). Module paths are those of load_weights, e.g. 'layers.0.self_attn.q_proj'."""
    with open(os.path.join(d, "adapter_config.json")) as f:
        c = json.load(f)
    r, alpha = c["r"], c["lora_alpha"]
    scale = alpha / (r ** 0.5 if c.get("use_rslora") else r)
    tensors, _ = st_read(os.path.join(d, "adapter_model.safetensors"))
    pairs = {}
    for name, t in tensors.items():
        m = re.fullmatch(r"base_model\.model\.model\.(.+)\.lora_([AB])\.weight", name)
        if not m:
            sys.exit(f"{name}: not a LoRA factor of a decoder layer")
        pairs.setdefault(m.group(1), {})[m.group(2)] = t
    return {k: (v["A"], v["B"]) for k, v in pairs.items()}, scale


def projection(x, w, p, lora):
    """The Linear p (weight, optional bias) with its LoRA branch, when lora holds one: W x + b + s B A x."""
    y = linear(x, w[p + ".weight"], w.get(p + ".bias"))
    if lora is not None and p in lora[0]:
        a, b = lora[0][p]
        y = y + lora[1] * ((x @ a.T) @ b.T)
    return y


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def attention(x, w, p, cfg, cos, sin, allowed, lora=None):
    B, T, _ = x.shape
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], head_dim(cfg)
    eps = cfg["rms_norm_eps"]
    q = projection(x, w, p + "q_proj", lora).reshape(B, T, nh, hd)
    k = projection(x, w, p + "k_proj", lora).reshape(B, T, nkv, hd)
    v = projection(x, w, p + "v_proj", lora).reshape(B, T, nkv, hd)
    if p + "q_norm.weight" in w:
        # Qwen3: per-head RMSNorm over head_dim, before RoPE.
        q = rms_norm(q, w[p + "q_norm.weight"], eps)
        k = rms_norm(k, w[p + "k_norm.weight"], eps)
    q, k, v = (t.transpose(0, 2, 1, 3) for t in (q, k, v))  # [B, heads, T, hd]
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    # GQA: kv head j serves query heads j*n_rep .. (j+1)*n_rep-1.
    n_rep = nh // nkv
    k = np.repeat(k, n_rep, axis=1)
    v = np.repeat(v, n_rep, axis=1)
    s = q @ k.transpose(0, 1, 3, 2) * hd ** -0.5
    s = np.where(allowed[:, None], s, -np.inf)
    m = s.max(-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(s - m)
    den = e.sum(-1, keepdims=True)
    # A query with no visible key (a left-pad position) gets zeros; it is never compared.
    a = (e / np.where(den > 0, den, 1.0)) @ v
    a = a.transpose(0, 2, 1, 3).reshape(B, T, nh * hd)
    return projection(a, w, p + "o_proj", lora)


def forward(w, cfg, input_ids, attention_mask, lora=None, positions=None):
    """Returns (last_hidden_state [B,T,H], logits [B,T,V]) in float64; positions are arange(T)
    unless given per row ([B, T]); lora is load_lora's result or None."""
    B, T = input_ids.shape
    eps = cfg["rms_norm_eps"]
    cos, sin = rope(np.arange(T) if positions is None else positions, head_dim(cfg), rope_theta(cfg))
    causal = np.tril(np.ones((T, T), dtype=bool))
    allowed = causal[None] & (attention_mask[:, None, :] != 0)  # [B, query, key]
    x = w["embed_tokens.weight"][input_ids]
    for i in range(cfg["num_hidden_layers"]):
        p = f"layers.{i}."
        x = x + attention(rms_norm(x, w[p + "input_layernorm.weight"], eps), w, p + "self_attn.", cfg, cos, sin, allowed, lora)
        y = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        m = p + "mlp."
        x = x + projection(silu(projection(y, w, m + "gate_proj", lora)) * projection(y, w, m + "up_proj", lora), w, m + "down_proj", lora)
    h = rms_norm(x, w["norm.weight"], eps)
    head = w.get("lm_head.weight", w["embed_tokens.weight"])
    return h, h @ head.T


def outputs(w, cfg, input_ids, attention_mask, logits=True):
    """The expected.safetensors tensors: pad positions zeroed, masked mean over real positions."""
    h, lg = forward(w, cfg, input_ids, attention_mask)
    m = (attention_mask != 0).astype(np.float64)
    out = {"last_hidden_state": h * m[..., None],
           "masked_mean": (h * m[..., None]).sum(1) / np.maximum(m.sum(1, keepdims=True), 1.0)}
    if logits:
        out["logits"] = lg * m[..., None]
    return out


def greedy(w, cfg, prompt, max_new, eos, lora=None):
    """Greedy continuation of one prompt (a list of ids), recomputing the whole sequence at each
    step (no cache); stops after an eos id, which is kept. The first maximum wins a tie."""
    ids = list(prompt)
    out = []
    for _ in range(max_new):
        x = np.array([ids], dtype=np.int64)
        _, lg = forward(w, cfg, x, np.ones_like(x), lora)
        nxt = int(np.argmax(lg[0, -1]))
        out.append(nxt)
        ids.append(nxt)
        if nxt in eos:
            break
    return out


def lm_verify(args):
    """The LM fixture (make_lm_fixtures.py's output): logits with and without each adapter and
    the greedy generations, recomputed here and compared."""
    d = args.dir
    base = os.path.join(d, "base")
    cfg, w = load_config(base), load_weights(base)
    exp, _ = st_read(os.path.join(d, "expected.safetensors"))
    with open(os.path.join(d, "generations.json")) as f:
        gens = json.load(f)
    ids, mask = exp["input_ids"], exp["attention_mask"]
    failures = []
    for name in ["base"] + gens["adapters"]:
        lora = None if name == "base" else load_lora(os.path.join(d, "adapters", name))
        _, lg = forward(w, cfg, ids, mask, lora)
        failures += compare({f"logits.{name}": lg * (mask != 0)[..., None]}, exp, mask, args.tol, "")
        for i, prompt in enumerate(gens["prompts"]):
            got = greedy(w, cfg, prompt["ids"], gens["max_new_tokens"], gens["eos"], lora)
            want = gens["greedy"][name][i]
            if got != want:
                failures.append(f"greedy {name} prompt {i}: numpy {got}, fixture {want}")
        print(f"{name}: greedy generations agree" if not failures else f"{name}: checked")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)


def lm_check(args):
    """`evolora lm logits` output (tensors ids [T], logits [T, vocab]) recomputed from the base
    directory and, if given, the adapter directory."""
    base = args.base
    cfg, w = load_config(base), load_weights(base)
    got, _ = st_read(args.actual)
    ids = got["ids"].astype(np.int64)[None, :]
    lora = load_lora(args.adapter) if args.adapter else None
    _, lg = forward(w, cfg, ids, np.ones_like(ids), lora)
    failures = compare({"logits": got["logits"]}, {"logits": lg[0]}, np.ones(ids.shape[1]), args.tol, "lm logits ")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)


# ---- random checkpoints ----

def padded_batch(rng, B, T, vocab):
    """Row 0 unpadded, row 1 right-padded by 2, row 2 left-padded by 3 (pattern cycles); pad id 0."""
    ids = rng.integers(1, vocab, size=(B, T)).astype(np.int64)
    mask = np.ones((B, T), dtype=np.int64)
    for b in range(B):
        if b % 3 == 1:
            mask[b, T - min(2, T - 1):] = 0
        elif b % 3 == 2:
            mask[b, :min(3, T - 1)] = 0
    ids[mask == 0] = 0
    return ids, mask


def random_weights(rng, cfg, arch, untied):
    H, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], head_dim(cfg)
    n = lambda *s: rng.normal(size=s) * 0.2
    norm = lambda d: 1.0 + rng.normal(size=d) * 0.1
    bias_qkv = arch == "qwen2" or cfg.get("attention_bias", False)
    bias_o = arch == "qwen3" and cfg.get("attention_bias", False)
    w = {"embed_tokens.weight": rng.normal(size=(V, H)) * 0.5}
    for i in range(cfg["num_hidden_layers"]):
        p = f"layers.{i}."
        w[p + "input_layernorm.weight"] = norm(H)
        w[p + "post_attention_layernorm.weight"] = norm(H)
        for name, (o, d) in {"q": (nh * hd, H), "k": (nkv * hd, H), "v": (nkv * hd, H), "o": (H, nh * hd)}.items():
            w[p + f"self_attn.{name}_proj.weight"] = n(o, d)
            if (name != "o" and bias_qkv) or (name == "o" and bias_o):
                w[p + f"self_attn.{name}_proj.bias"] = rng.normal(size=o) * 0.1
        if arch == "qwen3":
            w[p + "self_attn.q_norm.weight"] = norm(hd)
            w[p + "self_attn.k_norm.weight"] = norm(hd)
        w[p + "mlp.gate_proj.weight"] = n(I, H)
        w[p + "mlp.up_proj.weight"] = n(I, H)
        w[p + "mlp.down_proj.weight"] = n(H, I)
    w["norm.weight"] = norm(H)
    if untied:
        w["lm_head.weight"] = n(V, H)
    return w


def write_checkpoint(d, w, code, prefix, shards):
    named = {(k if k == "lm_head.weight" or not prefix else prefix + "." + k): v for k, v in w.items()}
    if shards <= 1:
        st_write(os.path.join(d, "model.safetensors"), named, {"format": "pt"}, code)
        return
    # Contiguous groups of the sorted names, of roughly equal byte size, like HF's size-based split.
    names = sorted(named)
    size = {k: np.size(named[k]) for k in names}
    total = sum(size.values())
    groups, cur, acc = [], [], 0
    for k in names:
        cur.append(k)
        acc += size[k]
        if acc >= total * (len(groups) + 1) / shards and len(groups) < shards - 1:
            groups.append(cur)
            cur = []
    groups.append(cur)
    groups = [g for g in groups if g]
    weight_map = {}
    for i, g in enumerate(groups):
        fn = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        st_write(os.path.join(d, fn), {k: named[k] for k in g}, {"format": "pt"}, code)
        weight_map.update({k: fn for k in g})
    nbytes = {"F32": 4, "F16": 2, "BF16": 2}[code]
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_parameters": total, "total_size": total * nbytes}, "weight_map": weight_map}, f, indent=2, sort_keys=True)


def make(args):
    arch = args.arch
    heads = args.heads
    hd = args.head_dim or (args.hidden // heads if arch == "qwen2" else 16)
    theta = args.rope_theta if args.rope_theta is not None else (10000.0 if arch == "qwen2" else 1000000.0)
    code = {"f32": "F32", "bf16": "BF16", "f16": "F16"}[args.dtype]
    prefix = "" if args.prefix == "none" else "model"
    if prefix:
        archs = ["Qwen2ForCausalLM" if arch == "qwen2" else "Qwen3ForCausalLM"]
    else:
        archs = ["Qwen2Model" if arch == "qwen2" else "Qwen3Model"]
    cfg = {"architectures": archs, "model_type": arch, "hidden_size": args.hidden,
           "intermediate_size": args.intermediate, "num_hidden_layers": args.layers,
           "num_attention_heads": heads, "num_key_value_heads": args.kv_heads,
           "rms_norm_eps": args.eps, "rope_theta": theta, "vocab_size": args.vocab,
           "tie_word_embeddings": not args.untied, "hidden_act": "silu", "attention_dropout": 0.0,
           "torch_dtype": {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}[args.dtype],
           "max_position_embeddings": 4096, "use_sliding_window": False, "use_cache": True}
    if arch == "qwen3" or args.head_dim:
        cfg["head_dim"] = hd
    if arch == "qwen3":
        cfg["attention_bias"] = bool(args.attention_bias)
    elif args.attention_bias:
        sys.exit("--attention-bias is a Qwen3 option (Qwen2 always has q/k/v biases)")
    if args.untied and not prefix:
        sys.exit("--untied needs --prefix model: a bare model checkpoint has no lm_head")
    if heads % args.kv_heads:
        sys.exit("--heads must be a multiple of --kv-heads")
    os.makedirs(args.dir, exist_ok=True)
    with open(os.path.join(args.dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    rng = np.random.default_rng(args.seed)
    w = random_weights(rng, cfg, arch, args.untied)
    write_checkpoint(args.dir, w, code, prefix, args.shards)
    ids, mask = padded_batch(rng, args.batch, args.seq, args.vocab)
    st_write(os.path.join(args.dir, "inputs.safetensors"), {"input_ids": ids, "attention_mask": mask}, code="I64")
    # Recompute from the files, so the expectation is that of the weights as stored (rounded).
    st_write(os.path.join(args.dir, "expected.safetensors"),
             outputs(load_weights(args.dir), cfg, ids, mask), {"format": "pt"})


# ---- comparison ----

def compare(got, want, mask, tol, label):
    """Max relative error per tensor over the real positions; returns the failure lines."""
    real = mask != 0
    failures = []
    for name in sorted(got):
        if name not in want:
            failures.append(f"{name}: not in the expected outputs ({', '.join(sorted(want))})")
            continue
        a, e = got[name], want[name]
        if a.shape != e.shape:
            failures.append(f"{name}: shape {list(a.shape)}, want {list(e.shape)}")
            continue
        if a.ndim == 3:
            a, e = a[real], e[real]
        err = float(np.max(np.abs(a - e)) / max(float(np.max(np.abs(e))), 1e-6))
        ok = np.isfinite(err) and err <= tol
        print(f"{label}{name}: max relative error {err:.3e}" + ("" if ok else f" (tolerance {tol:g})"))
        if not ok:
            failures.append(f"{name}: max relative error {err:.3e} > {tol:g}")
    return failures


def check(args):
    want, _ = st_read(os.path.join(args.dir, "expected.safetensors"))
    got, _ = st_read(args.actual)
    inp, _ = st_read(os.path.join(args.dir, "inputs.safetensors"))
    failures = compare(got, want, inp["attention_mask"], args.tol, "")
    if not got:
        failures.append(f"{args.actual} holds no tensors")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)


def verify(args):
    cfg = load_config(args.dir)
    inp, _ = st_read(os.path.join(args.dir, "inputs.safetensors"))
    want, _ = st_read(os.path.join(args.dir, "expected.safetensors"))
    ours = outputs(load_weights(args.dir), cfg, inp["input_ids"], inp["attention_mask"], "logits" in want)
    failures = compare(ours, want, inp["attention_mask"], args.tol, f"{os.path.basename(os.path.normpath(args.dir))} ")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("dir")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--arch", choices=["qwen2", "qwen3"], default="qwen2")
    m.add_argument("--dtype", choices=["f32", "bf16", "f16"], default="f32")
    m.add_argument("--prefix", choices=["model", "none"], default="model")
    m.add_argument("--untied", action="store_true")
    m.add_argument("--shards", type=int, default=1)
    m.add_argument("--attention-bias", action="store_true")
    m.add_argument("--hidden", type=int, default=32)
    m.add_argument("--heads", type=int, default=4)
    m.add_argument("--kv-heads", type=int, default=2)
    m.add_argument("--head-dim", type=int, default=None)
    m.add_argument("--layers", type=int, default=2)
    m.add_argument("--intermediate", type=int, default=48)
    m.add_argument("--vocab", type=int, default=97)
    m.add_argument("--rope-theta", type=float, default=None)
    m.add_argument("--eps", type=float, default=1e-6)
    m.add_argument("--batch", type=int, default=3)
    m.add_argument("--seq", type=int, default=7)
    c = sub.add_parser("check")
    c.add_argument("dir")
    c.add_argument("--actual", required=True)
    c.add_argument("--tol", type=float, default=1e-5)
    v = sub.add_parser("verify")
    v.add_argument("dir")
    v.add_argument("--tol", type=float, default=1e-5)
    lv = sub.add_parser("lm-verify")
    lv.add_argument("dir")
    lv.add_argument("--tol", type=float, default=1e-5)
    lc = sub.add_parser("lm-check")
    lc.add_argument("base")
    lc.add_argument("actual")
    lc.add_argument("--adapter")
    lc.add_argument("--tol", type=float, default=1e-5)
    args = p.parse_args()
    {"make": make, "check": check, "verify": verify, "lm-verify": lm_verify, "lm-check": lm_check}[args.cmd](args)


if __name__ == "__main__":
    main()
