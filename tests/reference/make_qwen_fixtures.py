#!/usr/bin/env python3
"""Regenerates tests/fixtures/qwen/: tiny random Qwen2/Qwen3 checkpoints saved by Hugging Face
transformers itself, a padded batch, and transformers' own float32 eager outputs on it.

Needs torch and transformers (only to regenerate; the test suite reads the committed files):
    python3 -m venv /tmp/hfenv && /tmp/hfenv/bin/pip install numpy torch transformers safetensors
    /tmp/hfenv/bin/python tests/reference/make_qwen_fixtures.py

Each directory holds what save_pretrained wrote (config.json, model.safetensors or shards plus
model.safetensors.index.json, generation_config.json for causal LMs) and:
  inputs.safetensors    input_ids, attention_mask  I64 [B, T]  (row 0 unpadded, row 1 right-padded
                        by 2, row 2 left-padded by 3, pad id 0)
  expected.safetensors  F32 last_hidden_state [B, T, hidden] (after the final norm), logits
                        [B, T, vocab] (causal LMs only), masked_mean [B, hidden] over real positions;
                        pad positions are zero in the per-position tensors
The outputs come from the checkpoint as reloaded from disk, so the bf16 fixture's expectation is
that of the rounded weights. Afterwards every directory is checked with qwen_ref.py's numpy model.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM, Qwen3Model

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import qwen_ref as ref  # noqa: E402

OUT = os.path.join(HERE, "..", "fixtures", "qwen")
B, T = 3, 9

SMALL = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=101, rms_norm_eps=1e-6, max_position_embeddings=4096)

FIXTURES = [
    # name, model class, config, save dtype, max_shard_size
    ("qwen2-causal", Qwen2ForCausalLM,
     Qwen2Config(**SMALL, rope_theta=10000.0, tie_word_embeddings=True), torch.float32, None),
    ("qwen2-untied-sharded", Qwen2ForCausalLM,
     Qwen2Config(**{**SMALL, "num_key_value_heads": 1}, rope_theta=50000.0, tie_word_embeddings=False),
     torch.float32, 60_000),
    # head_dim 16 with hidden 32 and 4 heads: q is 64 wide, o_proj maps 64 -> 32.
    ("qwen3-causal-bf16", Qwen3ForCausalLM,
     Qwen3Config(**SMALL, head_dim=16, rope_theta=1000000.0, tie_word_embeddings=True), torch.bfloat16, None),
    ("qwen3-bias-untied", Qwen3ForCausalLM,
     Qwen3Config(**{**SMALL, "num_attention_heads": 6, "num_key_value_heads": 3, "rms_norm_eps": 1e-5},
                 head_dim=8, attention_bias=True, rope_theta=20000.0, tie_word_embeddings=False),
     torch.float32, None),
    # Stored like Qwen3-Embedding-0.6B: a bare Qwen3Model, tensor names without "model.", no lm_head.
    ("qwen3-embedding-style", Qwen3Model,
     Qwen3Config(**SMALL, head_dim=16, rope_theta=1000000.0, tie_word_embeddings=True), torch.float32, None),
]


def randomize(model, seed):
    """transformers' init (std 0.02, unit norms, zero biases) would make a weak test: scale it up."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * r)
            elif name.endswith(".bias"):
                p.copy_(0.1 * r)
            elif "embed_tokens" in name:
                p.copy_(0.5 * r)
            else:
                p.copy_(0.2 * r)


def build(seed, name, cls, cfg, dtype, shard):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    torch.manual_seed(seed)
    cfg._attn_implementation = "eager"
    model = cls(cfg).eval()
    randomize(model, seed)
    kw = {"max_shard_size": shard} if shard else {}
    model.to(dtype).save_pretrained(d, safe_serialization=True, **kw)

    # Reload what was written: the expectation must be that of the stored (possibly rounded) weights.
    m = cls.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    ids, mask = ref.padded_batch(np.random.default_rng(seed), B, T, cfg.vocab_size)
    ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
    with torch.no_grad():
        base = m if cls is Qwen3Model else m.model
        h = base(input_ids=ids_t, attention_mask=mask_t).last_hidden_state
        logits = None if cls is Qwen3Model else m(input_ids=ids_t, attention_mask=mask_t).logits
    real = mask_t.to(torch.float32)[..., None]
    out = {"last_hidden_state": h * real, "masked_mean": (h * real).sum(1) / real.sum(1)}
    if logits is not None:
        out["logits"] = logits * real
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(d, "expected.safetensors"), {"format": "pt"})
    save_file({"input_ids": ids_t, "attention_mask": mask_t}, os.path.join(d, "inputs.safetensors"), {"format": "pt"})
    return d


def main():
    os.makedirs(OUT, exist_ok=True)
    dirs = [build(100 + i, *f) for i, f in enumerate(FIXTURES)]
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write(f"""# Qwen2/Qwen3 fixtures

Made by `tests/reference/make_qwen_fixtures.py` with torch {torch.__version__} and transformers
{transformers.__version__}: tiny random models built with transformers' own classes, written by
`save_pretrained` (configs in that version's format: `rope_parameters`, `dtype`), and their float32
eager-attention outputs on a padded batch (`inputs.safetensors`, `expected.safetensors`; see the
script's docstring for the conventions).

| directory | what it covers |
|---|---|
| qwen2-causal | Qwen2ForCausalLM, GQA 4/2, q/k/v biases, tied head, f32 |
| qwen2-untied-sharded | Qwen2ForCausalLM, MQA 4/1, separate lm_head.weight, two shards + index, f32 |
| qwen3-causal-bf16 | Qwen3ForCausalLM, GQA 4/2, head_dim 16 != 32/4, q/k norms, tied head, bf16 |
| qwen3-bias-untied | Qwen3ForCausalLM, GQA 6/3, attention_bias (q/k/v/o), eps 1e-5, untied, f32 |
| qwen3-embedding-style | bare Qwen3Model, no `model.` prefix, no lm_head (no logits expected), f32 |

`python3 tests/reference/qwen_ref.py verify DIR` recomputes a directory's outputs with the numpy
reference and compares them with transformers'.
""")
    for d in dirs:
        subprocess.run([sys.executable, os.path.join(HERE, "qwen_ref.py"), "verify", d], check=True)


if __name__ == "__main__":
    main()
