#!/usr/bin/env python3
"""Regenerates tests/fixtures/tokenizer/golden.json: token ids that Hugging Face's own
`tokenizers` (the Python package, Rust core with the onig regex engine) gives for the
corpus in tests/fixtures/tokenizer/corpus/ (sources in tests/fixtures/tokenizer/SOURCES.md),
with the genuine Qwen tokenizer.json.

Needs the `tokenizers` package only to regenerate (the tests read the committed file):
    python3 -m venv /tmp/tokenv && /tmp/tokenv/bin/pip install tokenizers==0.23.3
    ./scripts/fetch-qwen-tokenizer.sh
    /tmp/tokenv/bin/python tests/reference/make_tokenizer_golden.py target/qwen-tokenizer/tokenizer.json

Cases per corpus file:
  plain          encode(text, add_special_tokens=False)
  embedding      the Qwen3-Embedding variant (a post-processor appending <|endoftext|>),
                 add_special_tokens=True
  truncated_64, truncated_512
                 the embedding variant with truncation=True, max_length=N
  windows_512    the diff recipe: plain ids cut in windows of 512 overlapping by 64 (at least
                 16), each decoded with skip_special_tokens=True and encoded again with the
                 embedding variant truncated at 512
  windows_2048   the snapshot recipe: windows of 2048 overlapping by 256 (at least 8)
"""
import json
import os
import sys

from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures", "tokenizer")


def embedding_variant(tokenizer_json):
    """The Qwen3-Embedding form of a Qwen tokenizer.json: its ByteLevel post-processor followed
    by a template that appends <|endoftext|> (id 151643) to every sequence."""
    data = json.loads(tokenizer_json)
    eos = "<|endoftext|>"
    eos_id = next(t["id"] for t in data["added_tokens"] if t["content"] == eos)
    template = {
        "type": "TemplateProcessing",
        "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": eos, "type_id": 0}}],
        "pair": [
            {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": eos, "type_id": 0}},
            {"Sequence": {"id": "B", "type_id": 1}},
            {"SpecialToken": {"id": eos, "type_id": 1}},
        ],
        "special_tokens": {eos: {"id": eos, "ids": [eos_id], "tokens": [eos]}},
    }
    data["post_processor"] = {"type": "Sequence", "processors": [data["post_processor"], template]}
    return json.dumps(data)


def windows(ids, chunk, overlap, min_window):
    out = []
    step = chunk - overlap
    for start in range(0, len(ids), step):
        end = min(start + chunk, len(ids))
        if end - start >= min_window:
            out.append(ids[start:end])
        if end >= len(ids):
            break
    return out


def main():
    path = sys.argv[1]
    with open(path, encoding="utf-8") as f:
        text = f.read()
    plain = Tokenizer.from_str(text)
    embed = Tokenizer.from_str(embedding_variant(text))

    def truncated(n):
        t = Tokenizer.from_str(embedding_variant(text))
        t.enable_truncation(max_length=n)
        return t

    t64, t512, t2048 = truncated(64), truncated(512), truncated(2048)
    corpus = os.path.join(FIXTURES, "corpus")
    out = {}
    for name in sorted(os.listdir(corpus)):
        with open(os.path.join(corpus, name), "rb") as f:
            doc = f.read().decode("utf-8", errors="replace")
        ids = plain.encode(doc, add_special_tokens=False).ids
        entry = {
            "plain": ids,
            "embedding": embed.encode(doc, add_special_tokens=True).ids,
            "truncated_64": t64.encode(doc).ids,
            "truncated_512": t512.encode(doc).ids,
        }
        for key, (chunk, overlap, minimum, trunc) in {"windows_512": (512, 64, 16, t512), "windows_2048": (2048, 256, 8, t2048)}.items():
            entry[key] = [trunc.encode(plain.decode(w, skip_special_tokens=True)).ids for w in windows(ids, chunk, overlap, minimum)]
        out[name] = entry
    with open(os.path.join(FIXTURES, "golden.json"), "w") as f:
        json.dump({"tokenizer_sha256": "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4", "files": out}, f, separators=(",", ":"))
    print(f"{len(out)} files, {sum(len(e['plain']) for e in out.values())} tokens")


if __name__ == "__main__":
    main()
