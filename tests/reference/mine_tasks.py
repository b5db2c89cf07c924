#!/usr/bin/env python3
"""RepoPeftBench assertion-completion tasks of a repository, computed independently of evolora.

Usage: mine_tasks.py REPO [--track static|evolution] [--rev REV] [--per-commit N]
Prints one JSON object per task, oldest commit first.

A reference for eval/src/tasks/, written from the rules (paper §4.2-4.5 and the authors'
create_qnas_v2.py / build_commit_parquet_db.py, with the choices documented in
eval/src/tasks/*.rs), with the standard library only, so that Python's own parser decides
what a file holds.

* History: `git log --first-parent --reverse --raw --no-abbrev -M`, merges against their
  first parent. Paths as git prints them.
* Test file: `.py` suffix (any case), no component in SKIP_DIRS, "test" in a component.
* Assertions of a file (families, targets, cut = where the target's first expression
  starts), ordered by position; filters; keys (kind, normalized text up to the cut,
  normalized target). Per path a key set; renames move it, deletions drop it. A commit's
  tasks: the tasks of its added/changed test files whose key the path lacked; kept when it
  has any; the first N per commit; chronological 80/10/10 split of kept commits.
"""

import argparse
import ast
import json
import os
import subprocess
import sys
import warnings

SKIP_DIRS = {".git", "__pycache__", ".venv", "venv", "env", "node_modules", "dist", "build", ".tox", ".mypy_cache", "TEST_HYPERNET"}
UNITTEST = set(
    "assertEqual assertNotEqual assertTrue assertFalse assertIs assertIsNot assertIsNone assertIsNotNone "
    "assertIn assertNotIn assertIsInstance assertNotIsInstance assertRaises assertRaisesRegex "
    "assertAlmostEqual assertNotAlmostEqual assertDictEqual assertListEqual assertTupleEqual "
    "assertSetEqual assertSequenceEqual assertRegex assertNotRegex assertCountEqual assertWarns "
    "assertLogs assertMultiLineEqual assertGreater assertGreaterEqual assertLess assertLessEqual".split()
)
FIRST_ARGUMENT_ONLY = {"assertTrue", "assertFalse", "assertIsNone", "assertIsNotNone"}
SETUP = {"setUp", "setUpClass", "tearDown", "tearDownClass", "setup_method", "teardown_method", "setup", "teardown"}
BRACKETS_ONLY = {")", "))", ")))", "]", "]]", "}"}
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
GIT_ENV = dict(os.environ, GIT_CONFIG_NOSYSTEM="1")


def git(repo, *args, binary=False):
    out = subprocess.run(["git", "-C", repo, "-c", "core.quotePath=true", *args], env=GIT_ENV, capture_output=True, check=True)
    return out.stdout if binary else out.stdout.decode("utf-8", "replace")


def is_test_file(path):
    parts = [p for p in path.split("/") if p]
    name = parts[-1] if parts else ""
    dot = name.rfind(".")
    suffix = name[dot:] if 0 < dot < len(name) - 1 else ""
    return suffix.lower() == ".py" and not any(p in SKIP_DIRS for p in parts) and any("test" in p.lower() for p in parts)


def history(repo, rev):
    text = git(repo, "log", "--first-parent", "--diff-merges=first-parent", "--reverse", "--raw", "--no-abbrev", "-M", "--format=commit %H %ct %P", rev, "--")
    commits = []
    for line in text.splitlines():
        if line.startswith("commit "):
            fields = line.split(" ")
            commits.append({"id": fields[1], "time": int(fields[2]), "parent": fields[3] if len(fields) > 3 and fields[3] else None, "changes": []})
        elif line.startswith(":"):
            meta, *paths = line[1:].split("\t")
            _, new_mode, _, new_blob, status = meta.split(" ")
            old, new = (paths[0], paths[1]) if len(paths) > 1 else (None, paths[0])
            gone = status.startswith("D") or new_mode == "160000" or set(new_blob) == {"0"}
            commits[-1]["changes"].append((status[0], old, new, None if gone else new_blob))
    return commits


def words(text):
    return " ".join(text.split())


class File:
    """One test file's text, its lines by Python's numbering, and its tree."""

    def __init__(self, text):
        self.text = text
        self.data = text.encode("utf-8")
        self.starts = [0]
        for i, byte in enumerate(self.data):
            if byte == 0x0A or (byte == 0x0D and self.data[i + 1:i + 2] != b"\n"):
                self.starts.append(i + 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.tree = ast.parse(text)
        self.parents = {}
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node

    def offset(self, node):
        return self.starts[node.lineno - 1] + node.col_offset

    def row_of(self, offset):
        row = 0
        while row + 1 < len(self.starts) and self.starts[row + 1] <= offset:
            row += 1
        return row

    def line_count(self):
        return len(self.starts) - 1 if len(self.starts) > 1 and self.starts[-1] == len(self.data) else len(self.starts)

    def line(self, row):
        end = self.starts[row + 1] if row + 1 < len(self.starts) else len(self.data)
        return self.data[self.starts[row]:end].decode("utf-8").rstrip("\r\n")

    def before(self, offset):
        return self.data[:offset].decode("utf-8")

    def cut_line(self, offset):
        return self.data[self.starts[self.row_of(offset)]:offset].decode("utf-8")

    def seg(self, node):
        return ast.get_source_segment(self.text, node)

    def enclosing(self, node, kinds):
        at = self.parents.get(node)
        while at is not None and not isinstance(at, kinds):
            at = self.parents.get(at)
        return at


def target_of(f, node):
    """(family, kind, first target expression, target text) of an assertion, else None."""
    if isinstance(node, ast.Assert):
        if isinstance(node.test, ast.Compare):
            right = node.test.comparators[0]
            return "assert", "assert", right, f.seg(right)
        return None
    if not isinstance(node, ast.Call):
        return None
    func, args = node.func, node.args

    def closing(first, text):
        return first, text + ")"

    def assert_call(name):
        if not name.startswith("assert_") or name == "assert_" or not args:
            return None
        return ("assert_*", "assert_*", *closing(args[-1], f.seg(args[-1])))

    if isinstance(func, ast.Name):
        return assert_call(func.id)
    if not isinstance(func, ast.Attribute):
        return None
    owner = func.value.id if isinstance(func.value, ast.Name) else None
    if owner == "self" and func.attr in UNITTEST:
        if not args:
            return None
        kind = "self." + func.attr
        if func.attr == "assertRaises" or func.attr in FIRST_ARGUMENT_ONLY:
            return ("self.assert", kind, *closing(args[0], f.seg(args[0])))
        if func.attr == "assertRaisesRegex":
            text = f.seg(args[0]) + (", " + f.seg(args[1]) if len(args) > 1 else "")
            return ("self.assert", kind, *closing(args[0], text))
        if len(args) < 2:
            return None
        return ("self.assert", kind, *closing(args[-1], f.seg(args[-1])))
    if owner == "pytest" and func.attr in ("raises", "approx"):
        if not args:
            return None
        text = f.seg(args[0]) + "".join(f", {kw.arg}={f.seg(kw.value)}" for kw in node.keywords if kw.arg)
        return ("pytest." + func.attr, "pytest." + func.attr, *closing(args[0], text))
    if isinstance(func.value, ast.Attribute) and func.value.attr == "mock":
        return None
    return assert_call(func.attr)


def rows(node):
    return range(node.lineno - 1, node.end_lineno)


def static_prefix(f, found):
    cut_row = f.row_of(found["cut"])
    keep = set()
    for stmt in f.tree.body:
        if isinstance(stmt, (*FUNCTIONS, ast.ClassDef)):
            break
        docstring = isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)
        if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Expr)) and not docstring:
            keep.update(rows(stmt))
    cls, function = found["class"], found["function"]
    if cls is not None:
        keep.add(cls.lineno - 1)
        for item in cls.body:
            if isinstance(item, FUNCTIONS) and item.name in SETUP or isinstance(item, (ast.Assign, ast.AnnAssign)):
                keep.update(rows(item))
    for item in f.tree.body:
        if isinstance(item, FUNCTIONS) and item.end_lineno - 1 < cut_row and not item.name.startswith("test_"):
            keep.update(rows(item))
    if cls is not None:
        for item in cls.body:
            if not isinstance(item, FUNCTIONS) or item.end_lineno - 1 >= cut_row:
                continue
            if item.name.startswith("test_") and item.name != function.name:
                continue
            if item.name not in SETUP:
                keep.update(rows(item))
    first = min([function.lineno - 1] + [d.lineno - 1 for d in function.decorator_list])
    keep.update(range(first, cut_row))
    out, previous = [], None
    for row in sorted(r for r in keep if r < f.line_count()):
        if previous is not None and row > previous + 1:
            out.append("")
        out.append(f.line(row))
        previous = row
    if out:
        out.append("")
    out.append(f.cut_line(found["cut"]))
    return "\n".join(out[-600:])


def file_tasks(text, track):
    """[(key, task)] of a file's text in position order, or None when it does not parse."""
    try:
        f = File(text)
    except (SyntaxError, ValueError):
        return None
    found = []
    for node in ast.walk(f.tree):
        mined = target_of(f, node)
        if mined is None or mined[3] is None:
            continue
        family, kind, first, target = mined
        if "\n" in target:
            target = " ".join(target.split())
        found.append({
            "node": node, "family": family, "kind": kind, "target": target, "cut": f.offset(first),
            "function": f.enclosing(node, FUNCTIONS), "class": f.enclosing(node, ast.ClassDef),
        })
    found.sort(key=lambda x: (x["node"].lineno, x["node"].col_offset))
    seen, out = set(), []
    for x in found:
        target = x["target"].strip()
        if not target or target.startswith(",") or target in BRACKETS_ONLY or len(target) > 500 or x["function"] is None:
            continue
        if "(," in f.cut_line(x["cut"]).strip():
            continue
        if (id(x["function"]), x["target"]) in seen:
            continue
        seen.add((id(x["function"]), x["target"]))
        before = f.before(x["cut"])
        key = (x["kind"], words(before), words(x["target"]))
        out.append((key, {
            "line": x["node"].lineno, "function": x["function"].name,
            "class": x["class"].name if x["class"] is not None else None,
            "family": x["family"], "kind": x["kind"],
            "prefix": before if track == "evolution" else static_prefix(f, x),
            "target": x["target"],
        }))
    return out


def splits(n):
    if n < 3:
        return ["train"] * n
    train, val = max(1, int(n * 0.8)), max(1, int(n * 0.1))
    if n - train - val < 1:
        val = val - 1 if val > 1 else val
        if n - train - val < 1:
            train = max(1, train - 1)
    return ["train"] * train + ["val"] * val + ["test"] * (n - train - val)


def mine(repo, track, rev, per_commit):
    keys = {}
    kept = []
    for commit in history(repo, rev):
        new = []
        for status, old, path, blob in commit["changes"]:
            if old is not None and old != path and old in keys:
                keys[path] = keys.pop(old)
            if status == "D":
                keys.pop(path, None)
                continue
            if blob is None or not is_test_file(path):
                continue
            data = git(repo, "cat-file", "blob", blob, binary=True)
            tasks = None if b"\0" in data else file_tasks(data.decode("utf-8", "replace"), track)
            previous = keys.pop(path, set())
            if tasks is None:
                print(f"warning: {commit['id'][:12]} {path}: skipped", file=sys.stderr)
                continue
            keys[path] = {key for key, _ in tasks}
            new += [dict(task, file=path) for key, task in tasks if key not in previous]
        if new:
            kept.append((commit, new[:per_commit]))
    for index, ((commit, tasks), split) in enumerate(zip(kept, splits(len(kept)))):
        for task in tasks:
            yield dict(task, commit=commit["id"], parent=commit["parent"], time=commit["time"], kept_index=index, split=split, track=track)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("repo")
    parser.add_argument("--track", choices=["static", "evolution"], default="static")
    parser.add_argument("--rev", default="HEAD")
    parser.add_argument("--per-commit", type=int, default=8)
    args = parser.parse_args()
    for task in mine(args.repo, args.track, args.rev, args.per_commit):
        print(json.dumps(task, ensure_ascii=False))


if __name__ == "__main__":
    main()
