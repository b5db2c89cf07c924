#!/usr/bin/env python3
"""Regenerates tests/fixtures/released-layouts/: small checkpoints in the two layouts the
Code2LoRA authors released, saved by PyTorch itself, plus the same weights as evolora
safetensors and PyTorch's own outputs on fixed embeddings.

Needs PyTorch (only to regenerate; the test suite reads the committed files):
    python3 -m pip install torch numpy && python3 tests/reference/make_pt_fixtures.py

The modules below follow the released code's structure (nn.Sequential indices, ParameterDict
log-scales, a single-layer nn.GRU), so their state_dict keys are the released ones.
"""
import json
import math
import os
import sys

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import code2lora_ref as ref  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "released-layouts")
BASE = ref.BASE
D, G, H, R, ALPHA = 24, 20, 12, 4, 8


def type_dims():
    return {t: list(ref.in_out(BASE, t)) for t in ref.TYPES}


class Code2LoRAHead(nn.Module):
    def __init__(self, input_dim, hidden, rank, dims, num_tasks=0, task_dim=0):
        super().__init__()
        self.rank, self.dims = rank, dims
        self.task_embedding = nn.Embedding(num_tasks, task_dim) if num_tasks else None
        self.trunk = nn.Sequential(nn.Linear(input_dim + task_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU())
        self.heads_A = nn.ModuleDict({t: nn.Linear(hidden, rank * dims[t][0]) for t in sorted(dims)})
        self.heads_B = nn.ModuleDict({t: nn.Linear(hidden, dims[t][1] * rank) for t in sorted(dims)})
        self.log_scale_A = nn.ParameterDict({t: nn.Parameter(torch.tensor(-3.5)) for t in sorted(dims)})
        self.log_scale_B = nn.ParameterDict({t: nn.Parameter(torch.tensor(-3.5)) for t in sorted(dims)})

    def forward(self, ctx, task=None):
        if self.task_embedding is not None:
            ctx = torch.cat([ctx, self.task_embedding(torch.tensor(task or 0))], -1)
        h = self.trunk(ctx)
        h = F.normalize(h, dim=-1) * math.sqrt(h.shape[-1])
        out = {}
        for t in sorted(self.dims):
            i, o = self.dims[t]
            a = torch.tanh(self.heads_A[t](h)).view(self.rank, i) * self.log_scale_A[t].exp().clamp(1e-5, 0.3)
            b = torch.tanh(self.heads_B[t](h)).view(o, self.rank) * self.log_scale_B[t].exp().clamp(1e-5, 0.3)
            out[t] = (a, b)
        return out


class CommitGRU(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.diff_proj = nn.Sequential(nn.Linear(d, hidden), nn.LayerNorm(hidden))
        self.repo_init_proj = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.LayerNorm(hidden))
        self.gru = nn.GRU(hidden, hidden, num_layers=1, batch_first=True)
        self.output_norm = nn.LayerNorm(hidden)

    def forward(self, snapshot, diffs):
        h = self.repo_init_proj(snapshot).view(1, 1, -1)
        x = self.diff_proj(diffs).unsqueeze(0)
        _, h = self.gru(x, h)
        h = h.view(-1)
        return h, self.output_norm(h)


def randomise(module, gen):
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_((torch.rand(p.shape, generator=gen, dtype=torch.float64) * 1.2 - 0.6).float())
            if "log_scale" in name:
                p.copy_(torch.tensor(float(torch.rand((), generator=gen) * 5.0 - 4.0)))


def flat(prefix, state):
    return {prefix + k: v.detach().double().numpy() for k, v in state.items()}


def main():
    os.makedirs(os.path.join(OUT, "base"), exist_ok=True)
    with open(os.path.join(OUT, "base", "config.json"), "w") as f:
        json.dump(BASE, f, indent=1)
    gen = torch.Generator().manual_seed(2606)
    emb = {"snapshot": torch.randn(D, generator=gen, dtype=torch.float64).float(),
           "diffs": torch.randn(4, D, generator=gen, dtype=torch.float64).float()}
    ref.st_write(os.path.join(OUT, "embeddings.safetensors"), {k: v.numpy() for k, v in emb.items()})
    dims = type_dims()

    # Evo, multi-task revision: {gru_state, head_state, head_config, gru_config, args, ...}
    gru, head = CommitGRU(D, G), Code2LoRAHead(G, H, R, dims, num_tasks=2, task_dim=6)
    randomise(gru, gen)
    randomise(head, gen)
    torch.save({
        "gru_state": gru.state_dict(),
        "head_state": head.state_dict(),
        "head_config": {"input_dim": G, "hidden_dim": H, "rank": R, "types": sorted(dims), "type_dims": dims, "num_tasks": 2, "task_dim": 6},
        "gru_config": {"diff_input_dim": D, "repo_state_dim": D, "hidden_dim": G},
        "type_dims": dims,
        "args": {"alpha": ALPHA, "rank": R},
        "per_step_input": "diff",
    }, os.path.join(OUT, "evo.pt"))
    ref.st_write(os.path.join(OUT, "evo.safetensors"), {**flat("gru.", gru.state_dict()), **flat("head.", head.state_dict())},
                 {"format": "pt", "evolora.alpha": str(ALPHA)})
    with torch.no_grad():
        state, ctx = gru(emb["snapshot"], emb["diffs"])
        out = head(ctx, task=1)
    expected = {"state": state.numpy()}
    for t, (a, b) in out.items():
        expected[f"{t}.A"], expected[f"{t}.B"] = a.numpy(), b.numpy()
    ref.st_write(os.path.join(OUT, "evo.torch-expected.safetensors"), expected)

    # Static: {state_dict, config, type_dims, args}
    head = Code2LoRAHead(D, H, R, dims)
    randomise(head, gen)
    torch.save({
        "state_dict": head.state_dict(),
        "config": {"input_dim": D, "hidden_dim": H, "rank": R, "types": sorted(dims), "type_dims": dims, "num_tasks": 0, "task_dim": 0},
        "type_dims": dims,
        "args": {"alpha": ALPHA, "rank": R},
    }, os.path.join(OUT, "static.pt"))
    ref.st_write(os.path.join(OUT, "static.safetensors"), flat("head.", head.state_dict()), {"format": "pt", "evolora.alpha": str(ALPHA)})
    with torch.no_grad():
        out = head(emb["snapshot"])
    expected = {"state": emb["snapshot"].numpy()}
    for t, (a, b) in out.items():
        expected[f"{t}.A"], expected[f"{t}.B"] = a.numpy(), b.numpy()
    ref.st_write(os.path.join(OUT, "static.torch-expected.safetensors"), expected)
    print("wrote", os.path.abspath(OUT))


if __name__ == "__main__":
    main()
