"""The model benchmark's work done the way the authors' tool does it, in PyTorch on the CPU,
for the table beside ours (docs/BENCHMARKS.md): the head's forward (nn.Linear heads, tanh,
clamped scales), a lone commit's GRU step (diff projection, LayerNorm, nn.GRU, output
LayerNorm) and the PEFT export (every layer's copy of each factor in one dict, saved by
safetensors.torch.save_file, then fsynced). Random weights, the dimensions given.

Called by `cargo bench -p evolora-model --bench model` when a Python with torch is around
(EVOLORA_TORCH_PYTHON, else python3); prints one JSON line of milliseconds (medians).

    python3 model/benches/pytorch_same_work.py --gru 2048 --hidden 1024 --rank 16 --dir DIR
"""

import argparse
import json
import os
import statistics
import time

import torch
from safetensors.torch import save_file

# Qwen2.5-Coder-1.5B: (type, in, out), sorted as the authors' head sorts them.
TYPES = [
    ("down_proj", 8960, 1536),
    ("gate_proj", 1536, 8960),
    ("k_proj", 1536, 256),
    ("o_proj", 1536, 1536),
    ("q_proj", 1536, 1536),
    ("up_proj", 1536, 8960),
    ("v_proj", 1536, 256),
]
LAYERS = 28
INPUT = 2048


def median_ms(fn, runs):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gru", type=int, default=2048)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--dir", required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    g, h, r = args.gru, args.hidden, args.rank

    with torch.inference_mode():
        trunk = torch.nn.Sequential(torch.nn.Linear(g, h), torch.nn.GELU(), torch.nn.Linear(h, h), torch.nn.GELU())
        heads_a = {t: torch.nn.Linear(h, r * i) for t, i, _ in TYPES}
        heads_b = {t: torch.nn.Linear(h, o * r) for t, _, o in TYPES}
        scale = torch.tensor(-3.5).exp().clamp(1e-5, 0.3)

        def head(ctx):
            z = trunk(ctx)
            z = torch.nn.functional.normalize(z, dim=-1) * (h**0.5)
            return {t: ((heads_a[t](z).tanh() * scale).view(r, i), (heads_b[t](z).tanh() * scale).view(o, r)) for t, i, o in TYPES}

        diff_proj = torch.nn.Sequential(torch.nn.Linear(INPUT, g), torch.nn.LayerNorm(g))
        gru = torch.nn.GRU(g, g, num_layers=1, batch_first=True)
        output_norm = torch.nn.LayerNorm(g)
        state = torch.zeros(1, 1, g)
        diff = torch.randn(1, 1, INPUT)

        def step():
            _, hn = gru(diff_proj(diff), state)
            return output_norm(hn[0])

        ctx = step()
        head(ctx)  # warm-up
        head_ms = median_ms(lambda: head(ctx), 5)
        step_ms = median_ms(step, 10)

        pairs = head(ctx)
        os.makedirs(args.dir, exist_ok=True)
        path = os.path.join(args.dir, "adapter_model.safetensors")

        def export():
            tensors = {}
            for layer in range(LAYERS):
                for t, (a, b) in pairs.items():
                    block = "mlp" if t in ("down_proj", "gate_proj", "up_proj") else "self_attn"
                    prefix = f"base_model.model.model.layers.{layer}.{block}.{t}"
                    tensors[f"{prefix}.lora_A.weight"] = a.clone()
                    tensors[f"{prefix}.lora_B.weight"] = b.clone()
            save_file(tensors, path, metadata={"format": "pt"})
            fd = os.open(path, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)

        export_ms = median_ms(export, 3)
    print(json.dumps({"threads": torch.get_num_threads(), "head_ms": head_ms, "gru_step_ms": step_ms, "export_ms": export_ms}))


if __name__ == "__main__":
    main()
