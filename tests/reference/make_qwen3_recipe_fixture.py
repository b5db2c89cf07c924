#!/usr/bin/env python3
"""Regenerates tests/fixtures/qwen3-recipe/: the Code2LoRA authors' Qwen3-Embedding recipe run
by Hugging Face transformers on a tiny random Qwen3 model with the real vocabulary, over real
files and diffs of tests/fixtures/tokenizer/corpus, for evolora's Rust implementation to match.

Needs torch, transformers and tokenizers only to regenerate (the tests read the committed
files), plus the genuine tokenizer from ./scripts/fetch-qwen-tokenizer.sh:
    python3 -m venv /tmp/hfenv && /tmp/hfenv/bin/pip install torch transformers tokenizers
    /tmp/hfenv/bin/python tests/reference/make_qwen3_recipe_fixture.py

The recipe, as written here from its description (windows, decode and re-encode with the
tokenizer's special tokens and truncation, masked mean of last_hidden_state in batches of 8,
[max; mean] per diff, L2-normalised [mean; max] per snapshot).
"""
import json
import os
import sys

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3Model

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "qwen3-recipe")
CORPUS = os.path.join(ROOT, "tests", "fixtures", "tokenizer", "corpus")
sys.path.insert(0, HERE)
from make_tokenizer_golden import embedding_variant, windows  # noqa: E402
from safetensors_io import st_write  # noqa: E402

BATCH = 8


def embed_windows(model, tok, ids, chunk, overlap, minimum, max_length):
    texts = [tok.decode(w, skip_special_tokens=True) for w in windows(ids, chunk, overlap, minimum)]
    out = []
    for i in range(0, len(texts), BATCH):
        enc = tok(texts[i:i + BATCH], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            last = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(last.dtype)
        out.append((last * mask).sum(1) / mask.sum(1).clamp(min=1))
    return torch.cat(out, 0) if out else torch.empty(0, model.config.hidden_size), len(texts)


def diff_vector(model, tok, text):
    h = model.config.hidden_size
    if not text.strip():
        return np.zeros(2 * h, np.float32), 0
    ids = tok.encode(text, add_special_tokens=False)
    w, n = embed_windows(model, tok, ids, 512, 64, 16, 512)
    if n == 0:
        return np.zeros(2 * h, np.float32), 0
    return torch.cat([w.max(0).values, w.mean(0)]).numpy().astype(np.float32), n


def file_vector(model, tok, text):
    if not text:
        return None, 0
    ids = tok.encode(text, add_special_tokens=False)
    if not ids:
        return None, 0
    w, n = embed_windows(model, tok, ids, 2048, 256, 8, 2048)
    if n == 0:
        return None, 0
    return w.mean(0).numpy().astype(np.float32), n


def read(name):
    with open(os.path.join(CORPUS, name), "rb") as f:
        return f.read().decode("utf-8", errors="replace")


def main():
    tokenizer_json = os.path.join(ROOT, "target", "qwen-tokenizer", "tokenizer.json")
    with open(tokenizer_json, encoding="utf-8") as f:
        variant = embedding_variant(f.read())
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(variant))
    tok.pad_token = "<|endoftext|>"
    tok.padding_side = "right"
    assert tok(["x"], truncation=True, max_length=512)["input_ids"][0][-1] == 151643

    torch.manual_seed(11)
    cfg = Qwen3Config(vocab_size=151669, hidden_size=8, intermediate_size=16, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=8, rope_theta=1e6,
                      rms_norm_eps=1e-6, tie_word_embeddings=True, max_position_embeddings=4096)
    model = Qwen3Model(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif "embed_tokens" in name:
                p.copy_(torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
    model_dir = os.path.join(OUT, "model")
    model.to(torch.bfloat16).save_pretrained(model_dir, safe_serialization=True)
    gen = os.path.join(model_dir, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)
    # The reference sees exactly the stored (bf16-rounded) weights, computed in f32.
    model = Qwen3Model.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()

    rust = read("rust.diff")
    reference = read("code2lora_ref.py")
    tensors, counts = {}, {}
    for name, text in [("diff.rust", rust), ("diff.python", read("python.diff")), ("diff.empty", ""), ("diff.long", rust * 4)]:
        tensors[name], counts[name] = diff_vector(model, tok, text)
    files = [("file.code2lora_ref", reference), ("file.make_qwen_fixtures", read("make_qwen_fixtures.py")),
             ("file.edge_cases", read("edge_cases.py")), ("file.empty", read("empty.py")), ("file.long", reference * 3)]
    vectors = []
    for name, text in files:
        v, counts[name] = file_vector(model, tok, text)
        if v is not None:
            tensors[name] = v
            vectors.append(v)
    sub = np.stack(vectors)
    snap = np.concatenate([sub.mean(0), sub.max(0)])
    tensors["snapshot"] = (snap / (np.linalg.norm(snap) + 1e-12)).astype(np.float32)
    versions = f"torch {torch.__version__}, transformers {__import__('transformers').__version__}, tokenizers {__import__('tokenizers').__version__}"
    st_write(os.path.join(OUT, "expected.safetensors"), tensors, {"windows": json.dumps(counts), "versions": versions})
    print(json.dumps(counts))
    print(versions)


if __name__ == "__main__":
    main()
