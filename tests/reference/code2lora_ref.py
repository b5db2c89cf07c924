#!/usr/bin/env python3
"""Independent numpy reference of Code2LoRA (Static head and Evo CommitGRU).

Written from the equations in the paper and the released checkpoints' tensor names, not from
evolora's Rust code. Everything is computed in float64 from PyTorch-layout weights.

  make DIR --seed S --arch evo|static [--tasks N] [--f16]
      random checkpoint (DIR/checkpoint.safetensors), embeddings (DIR/embeddings.safetensors)
      and a small base-model config (DIR/base/config.json)
  check DIR --adapter ADAPTER_DIR [--checkpoint CK.safetensors|CK.pt] [--state STATE.safetensors]
        [--task K] [--tol 1e-5]
      recompute the adapter (and final state) and compare with what evolora wrote
"""
import argparse
import json
import math
import os
import sys

import numpy as np

from pt_io import pt_read
from safetensors_io import st_read, st_write

TYPES = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


# ---- the model ----

_erf = np.vectorize(math.erf)


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def layer_norm(x, g, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def linear(x, w, b):
    return x @ w.T + b


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def gru_cell(x, h, w):
    """One torch.nn.GRU step, gates packed (r, z, n), reset applied after the hidden product."""
    H = h.shape[-1]
    gi = x @ w["gru.gru.weight_ih_l0"].T + w["gru.gru.bias_ih_l0"]
    gh = h @ w["gru.gru.weight_hh_l0"].T + w["gru.gru.bias_hh_l0"]
    r = sigmoid(gi[:H] + gh[:H])
    z = sigmoid(gi[H:2 * H] + gh[H:2 * H])
    n = np.tanh(gi[2 * H:] + r * gh[2 * H:])
    return (1.0 - z) * n + z * h


def evo_state(w, snapshot, diffs):
    h = layer_norm(gelu(linear(snapshot, w["gru.repo_init_proj.0.weight"], w["gru.repo_init_proj.0.bias"])),
                   w["gru.repo_init_proj.2.weight"], w["gru.repo_init_proj.2.bias"])
    for e in diffs:
        x = layer_norm(linear(e, w["gru.diff_proj.0.weight"], w["gru.diff_proj.0.bias"]),
                       w["gru.diff_proj.1.weight"], w["gru.diff_proj.1.bias"])
        h = gru_cell(x, h, w)
    return h


def head(w, ctx, base, rank, task=None):
    if "head.task_embedding.weight" in w:
        ctx = np.concatenate([ctx, w["head.task_embedding.weight"][task or 0]])
    z = gelu(linear(ctx, w["head.trunk.0.weight"], w["head.trunk.0.bias"]))
    z = gelu(linear(z, w["head.trunk.2.weight"], w["head.trunk.2.bias"]))
    H = z.shape[-1]
    z = z / max(np.linalg.norm(z), 1e-12) * math.sqrt(H)
    out = {}
    for t in TYPES:
        if f"head.heads_A.{t}.weight" not in w:
            continue
        d_in, d_out = in_out(base, t)
        sa = min(max(math.exp(float(w[f"head.log_scale_A.{t}"].reshape(-1)[0])), 1e-5), 0.3)
        sb = min(max(math.exp(float(w[f"head.log_scale_B.{t}"].reshape(-1)[0])), 1e-5), 0.3)
        a = np.tanh(linear(z, w[f"head.heads_A.{t}.weight"], w[f"head.heads_A.{t}.bias"])).reshape(rank, d_in) * sa
        b = np.tanh(linear(z, w[f"head.heads_B.{t}.weight"], w[f"head.heads_B.{t}.bias"])).reshape(d_out, rank) * sb
        out[t] = (a, b)
    return out


def in_out(base, t):
    h = base["hidden_size"]
    hd = base.get("head_dim") or h // base["num_attention_heads"]
    q = base["num_attention_heads"] * hd
    kv = base["num_key_value_heads"] * hd
    return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
            "gate_proj": (h, base["intermediate_size"]), "up_proj": (h, base["intermediate_size"]),
            "down_proj": (base["intermediate_size"], h)}[t]


# ---- commands ----

BASE = {"_name_or_path": "test/tiny-qwen2", "hidden_size": 32, "intermediate_size": 48,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "num_hidden_layers": 3}


def make(args):
    rng = np.random.default_rng(args.seed)
    D, G, H, R = 24, 20, 12, 4
    os.makedirs(os.path.join(args.dir, "base"), exist_ok=True)
    with open(os.path.join(args.dir, "base", "config.json"), "w") as f:
        json.dump(BASE, f)
    u = lambda *shape: rng.uniform(-0.6, 0.6, size=shape)
    w = {}
    head_in = (G if args.arch == "evo" else D) + (6 if args.tasks else 0)
    w["head.trunk.0.weight"], w["head.trunk.0.bias"] = u(H, head_in), u(H)
    w["head.trunk.2.weight"], w["head.trunk.2.bias"] = u(H, H), u(H)
    # Log-scales spread across the clamp: some below 1e-5, some above 0.3.
    scales = iter(rng.permutation(np.array([-12.0, -3.5, -2.0, -1.5, -0.9, 0.5, -2.7, -1.1, -3.0, -1.3, 0.0, -2.2, -1.7, -0.5])))
    for t in TYPES:
        d_in, d_out = in_out(BASE, t)
        w[f"head.heads_A.{t}.weight"], w[f"head.heads_A.{t}.bias"] = u(R * d_in, H), u(R * d_in)
        w[f"head.heads_B.{t}.weight"], w[f"head.heads_B.{t}.bias"] = u(d_out * R, H), u(d_out * R)
        w[f"head.log_scale_A.{t}"] = np.array(next(scales))
        w[f"head.log_scale_B.{t}"] = np.array(next(scales))
    if args.tasks:
        w["head.task_embedding.weight"] = u(args.tasks, 6)
    if args.arch == "evo":
        w["gru.diff_proj.0.weight"], w["gru.diff_proj.0.bias"] = u(G, D), u(G)
        w["gru.diff_proj.1.weight"], w["gru.diff_proj.1.bias"] = 1 + u(G), u(G)
        w["gru.repo_init_proj.0.weight"], w["gru.repo_init_proj.0.bias"] = u(G, D), u(G)
        w["gru.repo_init_proj.2.weight"], w["gru.repo_init_proj.2.bias"] = 1 + u(G), u(G)
        w["gru.gru.weight_ih_l0"], w["gru.gru.weight_hh_l0"] = u(3 * G, G), u(3 * G, G)
        w["gru.gru.bias_ih_l0"], w["gru.gru.bias_hh_l0"] = u(3 * G), u(3 * G)
        w["gru.output_norm.weight"], w["gru.output_norm.bias"] = 1 + u(G), u(G)
    st_write(os.path.join(args.dir, "checkpoint.safetensors"), w,
             {"format": "pt", "evolora.alpha": "8", "evolora.encoder": "reference"})
    emb = {"snapshot": rng.normal(size=D), "diffs": rng.normal(size=(5, D))}
    st_write(os.path.join(args.dir, "embeddings.safetensors"), emb, code="F16" if args.f16 else "F32")


def rel_err(got, want):
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


def check(args):
    path = args.checkpoint or os.path.join(args.dir, "checkpoint.safetensors")
    w, _ = pt_read(path) if path.endswith(".pt") else st_read(path)
    emb, _ = st_read(os.path.join(args.dir, "embeddings.safetensors"))
    with open(os.path.join(args.dir, "base", "config.json")) as f:
        base = json.load(f)
    with open(os.path.join(args.adapter, "adapter_config.json")) as f:
        cfg = json.load(f)
    rank = cfg["r"]
    evo = "gru.gru.weight_ih_l0" in w
    diffs = emb.get("diffs", np.zeros((0, emb["snapshot"].shape[0])))
    if evo:
        state = evo_state(w, emb["snapshot"], diffs)
        ctx = layer_norm(state, w["gru.output_norm.weight"], w["gru.output_norm.bias"])
    else:
        state = emb["snapshot"]
        ctx = state
    want = head(w, ctx, base, rank, args.task)
    got, meta = st_read(os.path.join(args.adapter, "adapter_model.safetensors"))
    worst = 0.0
    failures = []
    if args.torch_expected:
        # PyTorch's own forward pass on the same weights: the reference must agree with it.
        tx, _ = st_read(args.torch_expected)
        pairs = [("state", tx["state"], state)] + [(f"{t}.{f}", tx[f"{t}.{f}"], ab[i]) for t, ab in want.items() for i, f in enumerate("AB")]
        for name, theirs, ours in pairs:
            e = rel_err(ours, theirs)
            if e > args.tol:
                failures.append(f"numpy reference vs PyTorch, {name}: relative error {e:.3e}")
    if args.state:
        s, _ = st_read(args.state)
        e = rel_err(s["state"], state)
        worst = max(worst, e)
        if e > args.tol:
            failures.append(f"state: relative error {e:.3e}")
    blocks = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
              "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
    expected_keys = 0
    for t, (a, b) in want.items():
        for layer in range(base["num_hidden_layers"]):
            for factor, ref in (("A", a), ("B", b)):
                key = f"base_model.model.model.layers.{layer}.{blocks[t]}.{t}.lora_{factor}.weight"
                expected_keys += 1
                if key not in got:
                    failures.append(f"missing {key}")
                    continue
                if got[key].shape != ref.shape:
                    failures.append(f"{key}: shape {got[key].shape}, want {ref.shape}")
                    continue
                e = rel_err(got[key], ref)
                worst = max(worst, e)
                if e > args.tol:
                    failures.append(f"{key}: relative error {e:.3e}")
    if len(got) != expected_keys:
        failures.append(f"{len(got)} tensors in the adapter, want {expected_keys}")
    if abs(cfg["lora_alpha"] - float(args.alpha)) > 1e-9:
        failures.append(f"lora_alpha {cfg['lora_alpha']}, want {args.alpha}")
    print(f"max relative error {worst:.3e} over {expected_keys} tensors" + (" and the state" if args.state else ""))
    if failures:
        print("\n".join(failures[:20]), file=sys.stderr)
        sys.exit(1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("dir")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--arch", choices=["evo", "static"], default="evo")
    m.add_argument("--tasks", type=int, default=0)
    m.add_argument("--f16", action="store_true")
    c = sub.add_parser("check")
    c.add_argument("dir")
    c.add_argument("--adapter", required=True)
    c.add_argument("--checkpoint")
    c.add_argument("--state")
    c.add_argument("--task", type=int, default=0)
    c.add_argument("--alpha", default="8")
    c.add_argument("--tol", type=float, default=1e-5)
    c.add_argument("--torch-expected", help="PyTorch outputs written by make_pt_fixtures.py")
    args = p.parse_args()
    {"make": make, "check": check}[args.cmd](args)


if __name__ == "__main__":
    main()
