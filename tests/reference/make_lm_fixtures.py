#!/usr/bin/env python3
"""Regenerates tests/fixtures/lm/: a tiny random Qwen2 causal LM as a complete Hugging Face
directory (with a small byte-level BPE tokenizer trained here), LoRA adapters written by PEFT
itself, and what transformers + peft compute with them.

Needs torch, transformers, peft and tokenizers (only to regenerate; the tests read the files):
    python3 -m venv /tmp/hfenv && /tmp/hfenv/bin/pip install numpy torch transformers peft safetensors
    /tmp/hfenv/bin/python tests/reference/make_lm_fixtures.py

Written:
  base/                     config.json, generation_config.json, model.safetensors (f32, tied head),
                            tokenizer.json (vocab 384, <|endoftext|> and the FIM tokens as specials)
  adapters/per-layer/       r 4, alpha 8, all seven projections, every layer its own random factors
  adapters/replicated/      r 8, alpha 16, all seven, one (A, B) per type shared by every layer
                            (the layout evolora's hypernetwork produces)
  adapters/rslora-partial/  r 4, alpha 6, rsLoRA (scale alpha/sqrt(r)), q_proj and v_proj only,
                            layer 1 only (layers_to_transform)
  expected.safetensors      input_ids, attention_mask I64 [3, 9] (row 1 right-padded by 2, row 2
                            left-padded by 3; pad id 0) and F32 logits.<name> [3, 9, vocab] for
                            name in base and each adapter, pad positions zero
  generations.json          three prompts (text and ids), max_new_tokens, eos ids, and per name the
                            greedy continuations of transformers' generate: one prompt at a time
                            ("greedy") and the three together, left-padded ("greedy_batched")
Afterwards everything is recomputed with qwen_ref.py's numpy model (lm-verify).
"""
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import Qwen2Config, Qwen2ForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import qwen_ref as ref  # noqa: E402
from make_qwen_fixtures import randomize  # noqa: E402

OUT = os.path.join(HERE, "..", "fixtures", "lm")
SPECIALS = ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|file_sep|>"]
VOCAB = 384
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ADAPTERS = {
    "per-layer": dict(r=4, lora_alpha=8, target_modules=ALL),
    "replicated": dict(r=8, lora_alpha=16, target_modules=ALL),
    "rslora-partial": dict(r=4, lora_alpha=6, target_modules=["q_proj", "v_proj"], use_rslora=True, layers_to_transform=[1]),
}
PROMPTS = ["def add(a, b):\n    return", "assert total == ", "import os\n\nclass Config:\n    def __init__(self):\n"]
MAX_NEW = 10


def train_tokenizer(path):
    """A byte-level BPE like Qwen's (no normalizer, byte-level pre-tokenizer and decoder), trained on
    the tokenizer fixture corpus: small enough for a tiny model, real enough for the CLI."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    texts = []
    for source in sorted(glob.glob(os.path.join(HERE, "..", "fixtures", "tokenizer", "corpus", "*.py"))):
        with open(source, "rb") as f:
            texts.append(f.read().decode("utf-8", errors="replace"))
    tok.train_from_iterator(texts, trainer)
    tok.save(path)
    return tok


def randomize_lora(model, seed, shared):
    """PEFT starts B at zero (the adapter would change nothing): draw both factors instead; with
    shared, every layer gets the same factors per projection type."""
    g = torch.Generator().manual_seed(seed)
    drawn = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" not in name:
                continue
            parts = name.split(".")
            # ...layers.{i}.{block}.{module}.lora_{A|B}.default.weight
            key = (parts[-4], parts[-3]) if shared else name
            if key not in drawn:
                drawn[key] = torch.randn(p.shape, generator=g) * 0.3
            p.copy_(drawn[key])


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    base_dir = os.path.join(OUT, "base")
    os.makedirs(base_dir)
    tok = train_tokenizer(os.path.join(OUT, "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    cfg = Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                      vocab_size=tok.get_vocab_size(), rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=True,
                      max_position_embeddings=4096, bos_token_id=eos, eos_token_id=eos)
    cfg._attn_implementation = "eager"
    torch.manual_seed(7)
    model = Qwen2ForCausalLM(cfg).eval()
    randomize(model, 7)
    model.save_pretrained(base_dir, safe_serialization=True)
    # save_pretrained clears the directory of files it does not know: the tokenizer goes in after.
    os.replace(os.path.join(OUT, "tokenizer.json"), os.path.join(base_dir, "tokenizer.json"))

    def fresh_base():
        return Qwen2ForCausalLM.from_pretrained(base_dir, dtype=torch.float32, attn_implementation="eager").eval()

    for i, (name, kw) in enumerate(ADAPTERS.items()):
        m = get_peft_model(fresh_base(), LoraConfig(lora_dropout=0.0, bias="none", task_type="CAUSAL_LM", **kw))
        randomize_lora(m, 300 + i, shared=name == "replicated")
        d = os.path.join(OUT, "adapters", name)
        m.save_pretrained(d)
        os.remove(os.path.join(d, "README.md"))  # PEFT's model-card template
        # The absolute path of this machine's fixture is no name a reader can use.
        cpath = os.path.join(d, "adapter_config.json")
        with open(cpath) as f:
            c = json.load(f)
        c["base_model_name_or_path"] = "evolora-tiny-qwen2"
        with open(cpath, "w") as f:
            json.dump(c, f, indent=2, sort_keys=True)

    ids, mask = ref.padded_batch(np.random.default_rng(11), 3, 9, cfg.vocab_size)
    ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
    real = mask_t.to(torch.float32)[..., None]
    expected = {"input_ids": ids_t, "attention_mask": mask_t}
    prompt_ids = [tok.encode(p).ids for p in PROMPTS]
    gens = {"prompts": [{"text": p, "ids": i} for p, i in zip(PROMPTS, prompt_ids)], "max_new_tokens": MAX_NEW, "eos": [eos],
            "adapters": list(ADAPTERS), "greedy": {}, "greedy_batched": {}}
    for name in ["base"] + list(ADAPTERS):
        # Expectations from the adapter as reloaded from disk, the way users load it.
        m = fresh_base() if name == "base" else PeftModel.from_pretrained(fresh_base(), os.path.join(OUT, "adapters", name)).eval()
        with torch.no_grad():
            expected[f"logits.{name}"] = (m(input_ids=ids_t, attention_mask=mask_t).logits * real).contiguous()
            one = []
            for p in prompt_ids:
                x = torch.tensor([p])
                out = m.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=MAX_NEW, do_sample=False,
                                 eos_token_id=eos, pad_token_id=eos)
                one.append(out[0, len(p):].tolist())
            width = max(map(len, prompt_ids))
            pad = 0
            batch = torch.tensor([[pad] * (width - len(p)) + p for p in prompt_ids])
            bmask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids])
            out = m.generate(input_ids=batch, attention_mask=bmask, max_new_tokens=MAX_NEW, do_sample=False, eos_token_id=eos,
                             pad_token_id=eos)
            batched = []
            for row in out[:, width:].tolist():
                # Rows that stopped early are filled with the pad id after their eos.
                cut = row.index(eos) + 1 if eos in row else len(row)
                batched.append(row[:cut])
        gens["greedy"][name] = [g[: g.index(eos) + 1] if eos in g else g for g in one]
        gens["greedy_batched"][name] = batched
    # Stopping: the base model again, with a token it is known to produce early declared an eos.
    stop = gens["greedy"]["base"][0][3]
    m = fresh_base()
    with torch.no_grad():
        out = m.generate(input_ids=batch, attention_mask=bmask, max_new_tokens=MAX_NEW, do_sample=False, eos_token_id=[eos, stop],
                         pad_token_id=eos)
    gens["stop"] = {"eos": [eos, stop], "greedy_batched": [r[: min([r.index(t) + 1 for t in (eos, stop) if t in r] or [len(r)])]
                                                          for r in out[:, width:].tolist()]}
    save_file(expected, os.path.join(OUT, "expected.safetensors"), {"format": "pt"})
    with open(os.path.join(OUT, "generations.json"), "w") as f:
        json.dump(gens, f, indent=1)
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write(f"""# Base LM and LoRA fixtures

Made by `tests/reference/make_lm_fixtures.py` with torch {torch.__version__}, transformers
{transformers.__version__} and peft {peft.__version__}; the script's docstring lists every file.
`python3 tests/reference/qwen_ref.py lm-verify tests/fixtures/lm` recomputes the logits and the
greedy generations with the numpy reference.
""")
    subprocess.run([sys.executable, os.path.join(HERE, "qwen_ref.py"), "lm-verify", OUT], check=True)


if __name__ == "__main__":
    main()
