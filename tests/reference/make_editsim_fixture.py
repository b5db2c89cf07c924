#!/usr/bin/env python3
"""Writes eval/tests/fixtures/editsim.json: (a, b, ratio) triples from Python's
difflib.SequenceMatcher(None, a, b).ratio(), the edit similarity the paper reports.

Usage: python3 tests/reference/make_editsim_fixture.py   (standard library only)

The pairs cover short completions, unicode, and long and repetitive texts (200 characters
and more) where difflib's popular-element heuristic (autojunk) changes the result.
"""

import json
import os
import random
from difflib import SequenceMatcher

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pairs():
    fixed = [
        ("", ""), ("a", ""), ("", "b"), ("abc", "abc"), ("abcd", "bcde"), ("1)", "1)"),
        ("ValueError)", "ValueError, match='x')"), ("self.v)", "self.value)"),
        ("[1, 2, 3]", "[1,2,3]"), ("'héllo wörld'", "'hello world'"), ("αβγδ", "γδαβ"),
        ("private Thread currentThread;", "private volatile Thread currentThread;"),
    ]
    yield from fixed
    rng = random.Random(13)
    alphabets = ["ab", "abc ", "abcdefghij(),. '", "0123456789", "xyz\n\t "]
    for _ in range(150):
        alphabet = rng.choice(alphabets)
        n, m = rng.choice([(5, 7), (30, 25), (120, 150), (199, 201), (250, 240), (400, 380), (800, 300)])
        a = "".join(rng.choice(alphabet) for _ in range(n))
        b = "".join(rng.choice(alphabet) for _ in range(m))
        yield a, b
    # Junk-heavy: b of 200+ characters dominated by a few characters, with rare ones around.
    for k in range(20):
        core = "assert x == " + str(k) * 3
        a = (" " * 150) + core + ("." * 100)
        b = ("." * 120) + core.replace("x", "y") + (" " * (90 + k)) + "end"
        yield a, b
        yield b, a
    # A long completion against its reference with small edits.
    text = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz _()") for _ in range(1500))
    edited = text[:300] + "QQ" + text[310:900] + text[950:]
    yield text, edited
    yield edited, text


def main():
    out = [{"a": a, "b": b, "ratio": SequenceMatcher(None, a, b).ratio()} for a, b in pairs()]
    path = os.path.join(ROOT, "eval", "tests", "fixtures", "editsim.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"{len(out)} pairs written to {path}")


if __name__ == "__main__":
    main()
