"""The hashed encoder's version 2, written from its specification (model/src/encoder/hashed.rs
and python_lex.rs) without the Rust code, and the fixture the Rust tests compare against.

    python3 tests/reference/hashed_v2.py   # writes tests/fixtures/hashed_v2.json

Only the standard library and numpy (for float32 arithmetic in the order the spec gives).
"""

import json
import keyword
import os
import random

import numpy as np

HALF = 1024
WEIGHTS = {"import": 3.0, "def": 2.0, "class": 2.0, "sig": 1.5, "call": 1.0, "id": 0.25, "tok": 0.5}
HARD_KEYWORDS = set(keyword.kwlist)
assert len(HARD_KEYWORDS) == 35, "Python's hard keywords, as the spec counts them"
SPAN_MAX_TOKENS = 256
SPAN_MAX_BYTES = 2048
WHITESPACE = " \t\n\r\x0b\x0c"
PREFIXES = {"r", "u", "f", "b", "t", "rb", "br", "rf", "fr", "rt", "tr"}


def name_start(ch):
    return ch == "_" or "a" <= ch <= "z" or "A" <= ch <= "Z" or ord(ch) >= 128


def name_part(ch):
    return name_start(ch) or "0" <= ch <= "9"


def skip_string(s, q):
    """Index just past the string literal whose quote is at q."""
    quote = s[q]
    if s.startswith(quote * 3, q):
        i = q + 3
        while i < len(s):
            if s[i] == "\\":
                i += 2
                continue
            if s.startswith(quote * 3, i):
                return i + 3
            i += 1
        return len(s)
    i = q + 1
    while i < len(s):
        if s[i] == "\\":
            i += 2
        elif s[i] == "\n":
            return i
        elif s[i] == quote:
            return i + 1
        else:
            i += 1
    return len(s)


def tokens(s):
    """(kind, start, end, line_start) for every token; kind 'name', 'num', 'str' or the operator."""
    out, i, at_line_start = [], 0, True
    while i < len(s):
        ch, start = s[i], i
        if ch == "\n":
            at_line_start, i = True, i + 1
            continue
        if ch in " \t\r\x0b\x0c":
            i += 1
            continue
        if ch == "\\":
            i += 1
            if s.startswith("\r", i):
                i += 1
            if s.startswith("\n", i):
                i += 1
            continue
        if ch == "#":
            end = s.find("\n", i)
            i = len(s) if end < 0 else end
            continue
        if ch in "'\"":
            kind, i = "str", min(skip_string(s, i), len(s))
        elif "0" <= ch <= "9":
            i += 1
            while i < len(s) and s[i].isascii() and (s[i].isalnum() or s[i] in "_."):
                i += 1
            kind = "num"
        elif name_start(ch):
            i += 1
            while i < len(s) and name_part(s[i]):
                i += 1
            if i < len(s) and s[i] in "'\"" and s[start:i].lower() in PREFIXES:
                kind, i = "str", min(skip_string(s, i), len(s))
            else:
                kind = "name"
        else:
            kind, i = ch, i + 1
        out.append((kind, start, i, at_line_start))
        at_line_start = False
    return out


def collapse(text):
    parts, word = [], ""
    for ch in text:
        if ch in WHITESPACE:
            if word:
                parts.append(word)
            word = ""
        else:
            word += ch
    if word:
        parts.append(word)
    return " ".join(parts)


def utf8_len(text):
    return len(text.encode("utf-8"))


def python_features(s):
    toks = tokens(s)
    text = lambda t: s[t[1]:t[2]]
    out = []
    for j, t in enumerate(toks):
        if t[0] != "name":
            continue
        word = text(t)
        if word in HARD_KEYWORDS:
            starts = j == 0 or t[3] or toks[j - 1][0] == ";"
            if word in ("import", "from") and starts:
                depth, last = 0, j
                for k in range(j + 1, min(len(toks), j + 1 + SPAN_MAX_TOKENS)):
                    if toks[k][0] == ";" or (toks[k][3] and depth == 0):
                        break
                    if toks[k][0] in "([{":
                        depth += 1
                    elif toks[k][0] in ")]}":
                        depth = max(depth - 1, 0)
                    last = k
                if utf8_len(s[t[1]:toks[last][2]]) <= SPAN_MAX_BYTES:
                    out.append(("import", collapse(s[t[1]:toks[last][2]])))
            continue
        out.append(("id", word))
        follows_paren = j + 1 < len(toks) and toks[j + 1][0] == "("
        before = text(toks[j - 1]) if j > 0 and toks[j - 1][0] == "name" else None
        if before == "def":
            if follows_paren:
                depth = 0
                for k in range(j + 1, len(toks)):
                    depth += toks[k][0] in "([{"
                    depth -= toks[k][0] in ")]}"
                    if depth == 0:
                        params = s[toks[j + 1][1]:toks[k][2]]
                        if k - (j + 1) <= SPAN_MAX_TOKENS and utf8_len(params) <= SPAN_MAX_BYTES:
                            out.append(("def", word))
                            out.append(("sig", word + collapse(params)))
                        break
        elif before == "class":
            out.append(("class", word))
        elif follows_paren:
            out.append(("call", word))
    return out


def word_tokens(s):
    word, out = "", []
    for ch in s + " ":
        if ch.isascii() and (ch.isalnum() or ch == "_"):
            word += ch
            continue
        if len(word) >= 2 and not word[0].isdigit():
            out.append(("tok", word))
        word = ""
    return out


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def features(path, text):
    if path.endswith(".py") or path.endswith(".pyi"):
        return python_features(text)
    return word_tokens(text)


def accumulate(acc, path, text, channel):
    for kind, feature in features(path, text):
        h = fnv1a64(f"{kind}:{channel}:{feature}".encode())
        sign = np.float32(1.0 if h >> 63 == 0 else -1.0)
        acc[h % HALF] = np.float32(acc[h % HALF] + sign * np.float32(WEIGHTS[kind]))


def normalise(v):
    total = np.float32(0.0)
    for x in v:
        total = np.float32(total + np.float32(x * x))
    norm = np.float32(np.sqrt(total))
    return v / norm if norm > 0 else v


def file_vector(path, text, channel):
    acc = np.zeros(HALF, dtype=np.float32)
    accumulate(acc, path, text, channel)
    return normalise(acc)


def diff_vector(files):
    vectors = []
    for path, added, removed in files:
        acc = np.zeros(HALF, dtype=np.float32)
        accumulate(acc, path, added, "+")
        accumulate(acc, path, removed, "-")
        vectors.append(normalise(acc))
    mean = np.zeros(HALF, dtype=np.float32)
    for v in vectors:
        mean = (mean + v).astype(np.float32)
    mean = (mean / np.float32(len(vectors))).astype(np.float32)
    return np.concatenate([mean, np.max(np.stack(vectors), axis=0)])


EDGE_CASES = [
    "import os.path as p\nfrom a.b import (c,\n    d)  # tail\nx = 1\n",
    "async def run(self, *a, key: str = \"(\") -> int:\n    return self.go(a)(key)\n",
    "class Cache(dict, metaclass=Meta):\n    pass\n",
    "s = rb'open(x)' + f\"{y}\" + '''\nimport z\n''' # call(w)\nn = 0x1f + 1e5\n",
    "import a; import b\nfrom c import \\\n    d\nraise E from err\nyield from gen()\n",
    "    def half(a,\n'unterminated\n\"\"\"open\nfoo(]) = 1",
    "x = \u53d8\u6570 + \u2603y\\",
    "r\u00e9sum\u00e9 = na\u00efve(x)\n",
    "@app.route('/')\ndef index(): return render(t)(u)\nprint (x)\nif(y): pass\n",
    "def f(a=(1, [2, {3: ')'}]), *, b): ...\nclass\nclass K(\n",
    "   )] import q\n\t\x0bfrom m import n\r\nu'x' t'y' Rb\"z\" bR'w' xr'v'\n",
    "from m import (" + ", ".join(f"n{i}" for i in range(200)) + ")\nimport (\n" * 3 + "def a(\n",
    "\u0e01\u0e34\u0e19 = 1\n\u0939\u093f\u0928\u094d\u0926\u0940(a)\n\u216b = 2\n\U0002ebf0 = x\u00a0y\n",
    "from m import a\x1fb\ndef f(a\x1cb, c\x1e): pass\n",
    "def a(" * 80 + ")" * 80 + "\n",
    "import (\n" * 5 + "'" + "s" * 3000 + "'\ndef g(x='" + "t" * 3000 + "'): pass\n",
    "",
]


def fragments(files, rng, count):
    """Diff-like fragments: runs of lines glued together, as a diff's added lines are."""
    out = []
    for _ in range(count):
        lines = rng.choice(files).splitlines()
        fragment = []
        for _ in range(rng.randint(1, 4)):
            start = rng.randrange(len(lines))
            fragment += lines[start:start + rng.randint(1, 12)]
        out.append("\n".join(fragment) + "\n")
    return out


def sparse(v):
    """[[index, value], ...] of the non-zero entries (float32 values, exact in JSON)."""
    return [[i, float(x)] for i, x in enumerate(v) if x != 0]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    names = ["code2lora_ref.py", "make_pt_fixtures.py", "qwen_ref.py", "mine_tasks.py"]
    files = [open(os.path.join(here, n), encoding="utf-8").read() for n in names]
    rng = random.Random(2)
    texts = EDGE_CASES + files + fragments(files, rng, 60)
    cases = []
    for i, text in enumerate(texts):
        path = "pkg/m.py" if i % 7 != 3 else "docs/notes.md"
        channel = "+-="[i % 3]
        cases.append({
            "path": path,
            "channel": channel,
            "text": text,
            "features": [list(f) for f in features(path, text)],
            "vector": sparse(file_vector(path, text, channel)),
        })
    diffs = []
    for k in range(4):
        picked = [("pkg/a.py", *rng.sample(texts, 2)), ("README.md", rng.choice(texts), ""), ("pkg/b.pyi", "", rng.choice(texts))][: k + 1 if k < 3 else 3]
        diffs.append({"files": [list(f) for f in picked], "vector": sparse(diff_vector(picked))})
    out = os.path.join(here, "..", "fixtures", "hashed_v2.json")
    dims = {"file": HALF, "diff": 2 * HALF}
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"dims": dims, "cases": cases, "diffs": diffs}, f, ensure_ascii=False)
    print(f"wrote {out}: {len(cases)} texts, {len(diffs)} diffs")


if __name__ == "__main__":
    main()
