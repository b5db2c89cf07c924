#!/usr/bin/env python3
"""The commits the `paper` step policy keeps, computed independently of evolora.

Usage: kept_commits.py REPO [REV]    (prints the kept commits, oldest first, one sha a line)

A reference for daemon/src/job/steps.rs, written from the rules of the authors' Code2LoRA
pipeline (code2lora 0.3.3, `git_pipeline.process_repo`), in Python with the standard
library only, so that it uses Python's own parser as the authors' tool does:

* History: git's first-parent log, oldest first, with git's default rename detection
  (`git log --first-parent --reverse --raw --no-abbrev -M`); a merge is compared with its
  first parent. Paths are read as git prints them (quoted when unusual).
* A Python test file: a `.py` suffix in any case, no path component among SKIP_DIRS, and
  "test" in some component, in any case.
* Each test path has a set of assertion keys (kind, normalized full prefix, normalized
  target). A rename moves the old path's set to the new path, a deletion drops it. A commit
  is kept when a changed test file's keys include one its path's previous set lacks.

Unlike evolora, this walks the history once from its root with one running set per path,
as the authors' tool does; evolora decides each commit from its first parent alone.
"""

import ast
import os
import re
import subprocess
import sys
import warnings

SKIP_DIRS = {".git", "__pycache__", ".venv", "venv", "env", "node_modules", "dist", "build", ".tox", ".mypy_cache", "TEST_HYPERNET"}

# The unittest methods mined as `self.<method>(...)`.
UNITTEST_METHODS = set(
    "assertEqual assertNotEqual assertTrue assertFalse assertIs assertIsNot assertIsNone "
    "assertIsNotNone assertIn assertNotIn assertIsInstance assertNotIsInstance assertRaises "
    "assertRaisesRegex assertAlmostEqual assertNotAlmostEqual assertDictEqual assertListEqual "
    "assertTupleEqual assertSetEqual assertSequenceEqual assertRegex assertNotRegex "
    "assertCountEqual assertWarns assertLogs assertMultiLineEqual assertGreater "
    "assertGreaterEqual assertLess assertLessEqual".split()
)
# Methods whose whole first argument is the target.
ONE_ARGUMENT_METHODS = {"assertTrue", "assertFalse", "assertIsNone", "assertIsNotNone"}

COMPARISON_TEXT = {
    ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
    ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not",
}

GIT_ENV = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null")


def normalized(text):
    """Outer whitespace removed, inner runs of (Unicode) whitespace made one space."""
    return re.sub(r"\s+", " ", text.strip())


def is_python_test_file(path):
    parts = [p for p in path.split("/") if p]
    name = parts[-1] if parts else ""
    dot = name.rfind(".")
    suffix = name[dot:] if 0 < dot < len(name) - 1 else ""
    if suffix.lower() != ".py" or any(p in SKIP_DIRS for p in parts):
        return False
    return any("test" in p.lower() for p in parts)


def _positional(call):
    return list(call.args)


def _joined_with_last(source, head, args):
    """`head` + every argument but the last, each followed by ", "; and the last + ")"."""
    texts = [ast.get_source_segment(source, a) for a in args]
    if not texts[-1]:
        return None
    shown = [t for t in texts[:-1] if t]
    return head + ", ".join(shown) + ", ", texts[-1] + ")"


def _with_keywords(source, call, first):
    extra = ""
    for kw in call.keywords:
        if kw.arg is None:
            continue
        value = ast.get_source_segment(source, kw.value)
        if value:
            extra += f", {kw.arg}={value}"
    return first + extra + ")"


def _mined(source, node):
    """(kind, inline prefix, target) of one node, or None when it is not an assertion."""
    seg = lambda n: ast.get_source_segment(source, n)
    if isinstance(node, ast.Assert):
        test = node.test
        if isinstance(test, ast.Compare):
            left, right = seg(test.left), seg(test.comparators[0])
            if not left or not right:
                return None
            return "assert", f"assert {left} {COMPARISON_TEXT[type(test.ops[0])]} ", right
        return "assert", "assert ", seg(test) or ""
    if not isinstance(node, ast.Call):
        return None
    func, args = node.func, _positional(node)
    if isinstance(func, ast.Attribute):
        owner = func.value.id if isinstance(func.value, ast.Name) else None
        method = func.attr
        if owner == "self" and method in UNITTEST_METHODS:
            if not args:
                return None
            kind = f"self.{method}"
            if method == "assertRaises":
                first = seg(args[0])
                return (kind, "self.assertRaises(", first + ")") if first else None
            if method == "assertRaisesRegex":
                if len(args) < 2:
                    return None
                exc, pattern = seg(args[0]), seg(args[1])
                return (kind, "self.assertRaisesRegex(", f"{exc}, {pattern})") if exc and pattern else None
            if method in ONE_ARGUMENT_METHODS:
                first = seg(args[0])
                return (kind, f"self.{method}(", first + ")") if first else None
            if len(args) < 2:
                return None
            pair = _joined_with_last(source, f"self.{method}(", args)
            return (kind, *pair) if pair else None
        if owner == "pytest" and method in ("raises", "approx"):
            if not args:
                return None
            first = seg(args[0])
            return (f"pytest.{method}", f"pytest.{method}(", _with_keywords(source, node, first)) if first else None
        if not method.startswith("assert_") or method == "assert_":
            return None
        # `<x>.mock.assert_*` and `unittest.<x>.assert_*` are mock checks, not assertions.
        if isinstance(func.value, ast.Attribute):
            inner = func.value
            if inner.attr == "mock" or (isinstance(inner.value, ast.Name) and inner.value.id == "unittest"):
                return None
        name = method
    elif isinstance(func, ast.Name):
        name = func.id
        if not name.startswith("assert_") or name == "assert_":
            return None
    else:
        return None
    if not args:
        return None
    pair = _joined_with_last(source, f"{seg(func) or name}(", args)
    return ("assert_*", *pair) if pair else None


def assertion_keys(source):
    """The key set of one test file's text (empty when Python cannot parse it)."""
    if not source:
        return set()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    # The full prefix counts lines the way str.splitlines does, which is not always the way
    # the parser numbers them (form feeds, \x1c-\x1e, \x85, \u2028, \u2029); columns are
    # the parser's UTF-8 byte offsets used as character counts. That is the authors' rule.
    lines = source.splitlines(True)
    keys = set()
    for node in ast.walk(tree):
        found = _mined(source, node)
        if found is None:
            continue
        kind, inline, target = found
        if not target.strip() or target.lstrip().startswith(","):
            continue
        row = node.lineno - 1
        above = "".join(lines[:row])
        line = lines[row] if row < len(lines) else ""
        prefix = above + line[: max(node.col_offset, 0)] + inline
        keys.add((kind, normalized(prefix), normalized(target)))
    return keys


def git(repo, *args):
    return ["git", "-C", repo, "-c", "core.quotePath=true", "-c", "diff.renameLimit=1000", *args]


class Blobs:
    """Blob text through one `git cat-file --batch`; None for what is not a readable blob."""

    def __init__(self, repo):
        self.proc = subprocess.Popen(git(repo, "cat-file", "--batch"), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=GIT_ENV)

    def text(self, oid):
        if set(oid) == {"0"}:
            return None
        self.proc.stdin.write(oid.encode() + b"\n")
        self.proc.stdin.flush()
        header = self.proc.stdout.readline().split()
        if len(header) != 3:
            return None  # "<oid> missing"
        body = self.proc.stdout.read(int(header[2]))
        self.proc.stdout.read(1)
        return body.decode("utf-8", errors="replace") if header[1] == b"blob" else None


def first_parent_changes(repo, rev):
    """(sha, [(status, old path, new path, new blob)]) per first-parent commit, oldest first."""
    log = subprocess.run(
        git(repo, "log", "--first-parent", "--reverse", "--raw", "--no-abbrev", "-M", "--format=@@%H", rev),
        capture_output=True, check=True, env=GIT_ENV,
    ).stdout.decode("utf-8", errors="replace")
    commit = None
    for line in log.split("\n"):
        if line.startswith("@@"):
            if commit:
                yield commit
            commit = (line[2:], [])
        elif line.startswith(":") and commit:
            meta, _, paths = line.partition("\t")
            fields = meta.split()
            status, blob = fields[4], fields[3]
            names = paths.split("\t")
            commit[1].append((status[0], names[0], names[-1], blob))
    if commit:
        yield commit


def kept_commits(repo, rev="HEAD"):
    blobs = Blobs(repo)
    keys_by_path = {}
    for sha, changes in first_parent_changes(repo, rev):
        kept = False
        for status, old, new, blob in changes:
            if status == "R" and old in keys_by_path:
                keys_by_path[new] = keys_by_path.pop(old)
            if status == "D":
                keys_by_path.pop(new, None)
                continue
            if not is_python_test_file(new):
                continue
            text = blobs.text(blob)
            if text is None:
                keys_by_path.pop(new, None)
                continue
            keys = assertion_keys(text)
            if keys - keys_by_path.get(new, set()):
                kept = True
            keys_by_path[new] = keys
        if kept:
            yield sha


if __name__ == "__main__":
    for sha in kept_commits(*sys.argv[1:3]):
        print(sha)
