//! The assertion keys of one Python test file, by the rules of the authors' Code2LoRA
//! pipeline (code2lora 0.3.3, `assertions.extract_assertions_from_source`): the `paper`
//! policy keeps a commit when a changed test file gains a key. Parsing is tree-sitter's; the
//! rules below make its tree say what Python's `ast` says.
//!
//! What is mined, and as which inline prefix and target:
//! - `assert a OP b ...` (a comparison: its first operator and operand) as `assert a OP ` and
//!   `b`; any other `assert t` as `assert ` and `t`.
//! - `self.M(...)` for the 31 unittest methods of [`UNITTEST_METHODS`]: `assertRaises` keeps
//!   its first argument, `assertRaisesRegex` its first two, the four one-argument checks
//!   their first; the others need two arguments and keep the last.
//! - `pytest.raises(...)` and `pytest.approx(...)`: the first argument and the keywords.
//! - any other call of a name or attribute `assert_*`, except `<x>.mock.assert_*` and
//!   `unittest.<x>.assert_*`: the last argument (so `m.assert_called_once_with(1, 2)` is
//!   mined, target `2)`).
//!
//! A key is (kind, normalized full prefix, normalized target). The full prefix is the whole
//! file text before the assertion plus the inline prefix, cut where the authors cut it:
//! `str.splitlines` lines (which also break at form feeds, \x1c-\x1e, \x85, \u2028 and
//! \u2029, unlike Python's line numbers) and the node's UTF-8 byte column used as a count of
//! characters. Normalized: outer whitespace stripped, inner runs made one space, where
//! whitespace is Python's `str.isspace`. A file Python would not parse has no keys.

use std::collections::HashSet;

use sha2::{Digest, Sha256};
use evolora_eval::python::{self, children, operands, unparenthesized};
pub use evolora_eval::python::is_python_space;
use tree_sitter::Node;

/// A key, as the first 16 bytes of a SHA-256 of (kind, normalized prefix, normalized
/// target): the prefixes hold whole files, so they are hashed as they are normalized.
pub type AssertionKey = [u8; 16];

// The unittest methods both pipelines mine, and those whose first argument is the target:
// the authors' lists, kept once in the task miner.
use evolora_eval::tasks::assertions::{ONE_ARGUMENT_METHODS, UNITTEST_METHODS};


/// One mined assertion, before normalization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// `assert`, `self.<method>`, `pytest.raises`, `pytest.approx` or `assert_*`.
    pub kind: String,
    /// Byte offset of the statement or call in the source.
    pub start: usize,
    /// What the model is shown after the file text: e.g. `assert x == `.
    pub inline_prefix: String,
    pub target: String,
}

/// The assertion keys of a test file's text; empty when Python would not parse it.
pub fn assertion_keys(source: &str) -> HashSet<AssertionKey> {
    let Some(found) = mine(source) else { return HashSet::new() };
    let cuts = PrefixCuts::new(source);
    let mut by_cut: Vec<(usize, &Assertion)> = found.iter().map(|a| (cuts.end_of_prefix(a.start), a)).collect();
    by_cut.sort_by_key(|(cut, _)| *cut);
    // One pass over the file: the prefix hash state is cloned at each assertion's cut.
    let mut file = Normalizer::new(Sha256::new());
    let mut fed = 0;
    let mut keys = HashSet::with_capacity(by_cut.len());
    for (cut, a) in by_cut {
        file.feed(&source[fed..cut]);
        fed = cut;
        let mut prefix = file.clone();
        prefix.feed(&a.inline_prefix);
        let mut key = Sha256::new();
        key.update(a.kind.as_bytes());
        key.update([0]);
        key.update(prefix.sink.finalize());
        key.update(normalized(&a.target).as_bytes());
        let digest = key.finalize();
        keys.insert(digest[..16].try_into().expect("a SHA-256 digest has 32 bytes"));
    }
    keys
}

/// The keys as text, (kind, normalized full prefix, normalized target): what
/// [`assertion_keys`] hashes. For tests and diagnosis (quadratic in the file's size).
pub fn assertion_key_texts(source: &str) -> Vec<(String, String, String)> {
    let Some(found) = mine(source) else { return Vec::new() };
    let cuts = PrefixCuts::new(source);
    found
        .iter()
        .map(|a| {
            let mut prefix = Normalizer::new(String::new());
            prefix.feed(&source[..cuts.end_of_prefix(a.start)]);
            prefix.feed(&a.inline_prefix);
            (a.kind.clone(), prefix.sink, normalized(&a.target))
        })
        .collect()
}

/// The assertions of a source, or `None` when Python's parser would reject it.
pub fn mine(source: &str) -> Option<Vec<Assertion>> {
    if source.is_empty() {
        return Some(Vec::new());
    }
    let tree = python::parse(source)?;
    let miner = Miner { source };
    let mut found = Vec::new();
    let mut cursor = tree.walk();
    loop {
        let node = cursor.node();
        let mined = match node.kind() {
            "assert_statement" => miner.plain_assert(node),
            "call" => miner.call(node),
            _ => None,
        };
        if let Some(a) = mined.filter(|a| !is_blank(&a.target) && !a.target.trim_start_matches(is_python_space).starts_with(',')) {
            found.push(a);
        }
        if cursor.goto_first_child() || cursor.goto_next_sibling() {
            continue;
        }
        loop {
            if !cursor.goto_parent() {
                return Some(found);
            }
            if cursor.goto_next_sibling() {
                break;
            }
        }
    }
}

struct Miner<'s> {
    source: &'s str,
}

impl<'s> Miner<'s> {
    fn text(&self, node: Node) -> &'s str {
        &self.source[node.start_byte()..node.end_byte()]
    }

    /// An expression's text as Python's `ast.get_source_segment` gives it.
    fn segment(&self, node: Node) -> &'s str {
        self.text(unparenthesized(node))
    }

    fn plain_assert(&self, node: Node) -> Option<Assertion> {
        let test = unparenthesized(operands(node).next()?);
        let (inline_prefix, target) = if test.kind() == "comparison_operator" {
            let mut sides = operands(test);
            let (left, right) = (sides.next()?, sides.next()?);
            let operator = children(test).find(|c| !c.is_named() && !c.is_extra())?;
            let operator = match operator.kind() {
                "not in" => "not in",
                "is not" => "is not",
                _ => self.text(operator),
            };
            (format!("assert {} {operator} ", self.segment(left)), self.segment(right).to_owned())
        } else {
            ("assert ".to_owned(), self.segment(test).to_owned())
        };
        Some(Assertion { kind: "assert".into(), start: node.start_byte(), inline_prefix, target })
    }

    fn call(&self, node: Node) -> Option<Assertion> {
        let function = unparenthesized(node.child_by_field_name("function")?);
        let arguments = node.child_by_field_name("arguments")?;
        // `f(x for x in y)`: the generator, with the call's parentheses, is the argument.
        let (positional, keywords): (Vec<Node>, Vec<Node>) = if arguments.kind() == "generator_expression" {
            (vec![arguments], Vec::new())
        } else {
            let all: Vec<Node> = operands(arguments).filter(|a| a.kind() != "dictionary_splat").collect();
            all.into_iter().partition(|a| a.kind() != "keyword_argument")
        };
        let (kind, inline_prefix, target) = match function.kind() {
            "attribute" => {
                let owner = unparenthesized(function.child_by_field_name("object")?);
                let method = self.text(function.child_by_field_name("attribute")?);
                let owner_name = (owner.kind() == "identifier").then(|| self.text(owner));
                match owner_name {
                    Some("self") if UNITTEST_METHODS.contains(&method) => self.unittest_method(method, &positional)?,
                    Some("pytest") if method == "raises" || method == "approx" => {
                        let first = self.segment(*positional.first()?);
                        let mut target = first.to_owned();
                        for kw in &keywords {
                            let name = self.text(kw.child_by_field_name("name")?);
                            target.push_str(&format!(", {name}={}", self.segment(kw.child_by_field_name("value")?)));
                        }
                        target.push(')');
                        (format!("pytest.{method}"), format!("pytest.{method}("), target)
                    }
                    _ if is_mock_check(self, owner) => return None,
                    _ => self.assert_underscore(method, function, &positional)?,
                }
            }
            "identifier" => self.assert_underscore(self.text(function), function, &positional)?,
            _ => return None,
        };
        Some(Assertion { kind, start: node.start_byte(), inline_prefix, target })
    }

    fn unittest_method(&self, method: &str, args: &[Node]) -> Option<(String, String, String)> {
        let kind = format!("self.{method}");
        let head = format!("self.{method}(");
        let first = self.segment(*args.first()?);
        match method {
            "assertRaises" => Some((kind, head, format!("{first})"))),
            "assertRaisesRegex" => Some((kind, head, format!("{first}, {})", self.segment(*args.get(1)?)))),
            _ if ONE_ARGUMENT_METHODS.contains(&method) => Some((kind, head, format!("{first})"))),
            _ if args.len() >= 2 => {
                let (inline, target) = self.all_but_last(head, args);
                Some((kind, inline, target))
            }
            _ => None,
        }
    }

    /// `assert_*(...)` or `x.assert_*(...)` (numpy.testing and the like, mock checks too).
    fn assert_underscore(&self, name: &str, function: Node, args: &[Node]) -> Option<(String, String, String)> {
        if !name.starts_with("assert_") || name == "assert_" || args.is_empty() {
            return None;
        }
        let (inline, target) = self.all_but_last(format!("{}(", self.text(function)), args);
        Some(("assert_*".into(), inline, target))
    }

    /// `head` + each argument but the last followed by ", ", and the last argument + ")".
    fn all_but_last(&self, head: String, args: &[Node]) -> (String, String) {
        let (last, rest) = args.split_last().expect("callers pass at least one argument");
        let mut inline = head;
        for a in rest {
            inline.push_str(self.segment(*a));
            inline.push_str(", ");
        }
        if rest.is_empty() {
            inline.push_str(", ");
        }
        (inline, format!("{})", self.segment(*last)))
    }
}

/// `<x>.mock.assert_*(...)` and `unittest.<x>.assert_*(...)` are not mined.
fn is_mock_check(miner: &Miner, owner: Node) -> bool {
    if owner.kind() != "attribute" {
        return false;
    }
    let attribute = owner.child_by_field_name("attribute").map(|a| miner.text(a));
    let object = owner.child_by_field_name("object").map(unparenthesized);
    attribute == Some("mock") || object.is_some_and(|o| o.kind() == "identifier" && miner.text(o) == "unittest")
}

fn is_blank(s: &str) -> bool {
    s.chars().all(is_python_space)
}

/// Whitespace-normalized text: stripped, inner runs made one space.
pub fn normalized(s: &str) -> String {
    let mut n = Normalizer::new(String::new());
    n.feed(s);
    n.sink
}

/// Where normalized text goes: a string, or a hash of it.
trait Sink: Clone {
    fn put(&mut self, s: &str);
}

impl Sink for String {
    fn put(&mut self, s: &str) {
        self.push_str(s)
    }
}

impl Sink for Sha256 {
    fn put(&mut self, s: &str) {
        self.update(s.as_bytes())
    }
}

/// Streaming whitespace normalization: a space is written only before the next
/// non-space, so a trailing run is dropped, and none before the first.
#[derive(Clone)]
struct Normalizer<S: Sink> {
    sink: S,
    started: bool,
    space_pending: bool,
}

impl<S: Sink> Normalizer<S> {
    fn new(sink: S) -> Self {
        Normalizer { sink, started: false, space_pending: false }
    }

    fn feed(&mut self, text: &str) {
        let mut run: Option<usize> = None;
        for (i, c) in text.char_indices() {
            if is_python_space(c) {
                if let Some(start) = run.take() {
                    self.sink.put(&text[start..i]);
                }
                self.space_pending |= self.started;
            } else if run.is_none() {
                if self.space_pending {
                    self.sink.put(" ");
                    self.space_pending = false;
                }
                self.started = true;
                run = Some(i);
            }
        }
        if let Some(start) = run {
            self.sink.put(&text[start..]);
        }
    }
}

/// Where each assertion's file prefix ends, by the authors' arithmetic: Python numbers
/// lines at \n, \r\n and \r and counts columns in UTF-8 bytes; the prefix is the first
/// `line - 1` lines of `str.splitlines` and then `column` characters of the next.
struct PrefixCuts<'s> {
    source: &'s str,
    /// Byte offsets where Python's numbered lines start.
    parser_lines: Vec<usize>,
    /// Byte offsets where `str.splitlines` lines start (and the text's end, last).
    split_lines: Vec<usize>,
}

impl<'s> PrefixCuts<'s> {
    fn new(source: &'s str) -> Self {
        let bytes = source.as_bytes();
        let mut parser_lines = vec![0];
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n')) {
                parser_lines.push(i + 1);
            }
        }
        let mut split_lines = vec![0];
        let mut chars = source.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            let breaks = matches!(c, '\n' | '\r' | '\u{b}' | '\u{c}' | '\u{1c}' | '\u{1d}' | '\u{1e}' | '\u{85}' | '\u{2028}' | '\u{2029}');
            if breaks {
                let mut end = i + c.len_utf8();
                if c == '\r' && chars.peek().is_some_and(|&(_, n)| n == '\n') {
                    chars.next();
                    end += 1;
                }
                split_lines.push(end);
            }
        }
        // splitlines gives no empty line after a final line break.
        if split_lines.last() != Some(&source.len()) {
            split_lines.push(source.len());
        }
        PrefixCuts { source, parser_lines, split_lines }
    }

    /// The byte offset where the file part of the full prefix of a node at `start` ends.
    fn end_of_prefix(&self, start: usize) -> usize {
        let row = self.parser_lines.partition_point(|&s| s <= start) - 1;
        let column = start - self.parser_lines[row];
        let lines = self.split_lines.len() - 1;
        if row >= lines {
            return self.source.len();
        }
        let (from, to) = (self.split_lines[row], self.split_lines[row + 1]);
        self.source[from..to].char_indices().nth(column).map_or(to, |(i, _)| from + i)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tabs_and_spaces_python_cannot_order_make_a_file_unparsable() {
        // Each verdict is Python 3.11's (`ast.parse`): TabError, fine, TabError, TabError.
        assert_eq!(mine("def f():\n\tx = 1\n        y = 2\n"), None);
        assert!(mine("def f():\n\tx = 1\n\tif x:\n\t\ty = 2\n    \n").is_some());
        assert_eq!(mine("def test_a():\n        x = 1\n\tassert x == 1\n"), None);
        assert_eq!(mine("if x:\n  if y:\n\tpass\n"), None, "deeper at tab width 8, not at tab width 1");
    }

    use super::*;

    /// The (kind, inline prefix, target) triples of a source, in any order.
    fn mined(source: &str) -> Vec<(String, String, String)> {
        let mut found: Vec<_> = mine(source).expect("parses").into_iter().map(|a| (a.kind, a.inline_prefix, a.target)).collect();
        found.sort();
        found
    }

    fn triple(kind: &str, inline: &str, target: &str) -> (String, String, String) {
        (kind.into(), inline.into(), target.into())
    }

    #[test]
    fn plain_asserts_split_at_the_first_comparison() {
        assert_eq!(mined("assert f(1) == 2\n"), [triple("assert", "assert f(1) == ", "2")]);
        assert_eq!(mined("assert a < b <= c\n"), [triple("assert", "assert a < ", "b")], "chained: the first operator");
        assert_eq!(mined("assert x  not   in y\n"), [triple("assert", "assert x not in ", "y")]);
        assert_eq!(mined("assert x is  not None\n"), [triple("assert", "assert x is not ", "None")]);
        assert_eq!(mined("assert not x, 'message'\n"), [triple("assert", "assert ", "not x")]);
        assert_eq!(mined("assert x == [\n    1,\n    2]\n")[0].2, "[\n    1,\n    2]", "flattened only when normalized");
    }

    #[test]
    fn parentheses_are_not_part_of_an_operand_but_a_tuple_keeps_its_own() {
        assert_eq!(mined("assert (a) == (b)\n"), [triple("assert", "assert a == ", "b")]);
        assert_eq!(mined("assert (a == b)\n"), [triple("assert", "assert a == ", "b")]);
        assert_eq!(mined("assert ((a, 1)) == (  # why\n  (b, 2))\n"), [triple("assert", "assert (a, 1) == ", "(b, 2)")]);
        assert_eq!(mined("assert (a == b, 'not a comparison')\n"), [triple("assert", "assert ", "(a == b, 'not a comparison')")]);
        assert_eq!(mined("self.assertTrue((x))\n"), [triple("self.assertTrue", "self.assertTrue(", "x)")]);
        assert_eq!(mined("assert_all(x for x in y)\n"), [triple("assert_*", "assert_all(, ", "(x for x in y))")], "a lone generator keeps the call's parentheses");
    }

    #[test]
    fn unittest_methods() {
        assert_eq!(mined("self.assertRaises(ValueError, f, 1)\n"), [triple("self.assertRaises", "self.assertRaises(", "ValueError)")]);
        assert_eq!(mined("self.assertRaisesRegex(KeyError, 'k.*', d.pop)\n"), [triple("self.assertRaisesRegex", "self.assertRaisesRegex(", "KeyError, 'k.*')")]);
        assert_eq!(mined("self.assertTrue(ok, 'message')\n"), [triple("self.assertTrue", "self.assertTrue(", "ok)")]);
        assert_eq!(mined("self.assertEqual(a, b, msg)\n"), [triple("self.assertEqual", "self.assertEqual(a, b, ", "msg)")]);
        assert_eq!(mined("self.assertEqual(a, second=b)\n"), [], "one positional argument is not enough");
        assert_eq!(mined("self.assertEqual(*pair)\n"), []);
        assert_eq!(mined("self.assertFalse(*flags)\n"), [triple("self.assertFalse", "self.assertFalse(", "*flags)")]);
        assert_eq!(mined("self.assertSomething(a, b)\n"), [], "not one of the 31");
        assert_eq!(mined("other.assertEqual(a, b)\n"), []);
    }

    #[test]
    fn pytest_raises_and_approx_keep_their_keywords() {
        assert_eq!(mined("with pytest.raises(ValueError, match=(r'bad'), **extra):\n    f()\n"), [triple("pytest.raises", "pytest.raises(", "ValueError, match=r'bad')")]);
        assert_eq!(mined("pytest.raises(match='x')\n"), [], "no positional argument");
        let approx = mined("assert f() == pytest.approx(0.1, rel=1e-3)\n");
        assert!(approx.contains(&triple("pytest.approx", "pytest.approx(", "0.1, rel=1e-3)")));
        assert!(approx.contains(&triple("assert", "assert f() == ", "pytest.approx(0.1, rel=1e-3)")));
    }

    #[test]
    fn assert_underscore_calls_are_mined_except_mock_checks() {
        assert_eq!(mined("x.assert_called_once_with(1, 2)\n"), [triple("assert_*", "x.assert_called_once_with(1, ", "2)")]);
        assert_eq!(mined("np.testing.assert_allclose(x, 1.0)\n"), [triple("assert_*", "np.testing.assert_allclose(x, ", "1.0)")]);
        assert_eq!(mined("assert_equal(a, b)\n"), [triple("assert_*", "assert_equal(a, ", "b)")]);
        assert_eq!(mined("self.mock.assert_called_with(1)\nunittest.foo.assert_x(1)\n"), []);
        assert_eq!(mined("mock.assert_called_with(1)\n"), [triple("assert_*", "mock.assert_called_with(, ", "1)")], "a bare name `mock` is mined");
        assert_eq!(mined("m.assert_called_once()\nassert_(x)\nm.assertx_y(1)\n"), []);
    }

    #[test]
    fn what_python_rejects_has_no_assertions() {
        for source in [
            "print 'x'\nassert x == 1\n",
            "exec code in ns\nassert x == 1\n",
            "try:\n    f()\nexcept ValueError, e:\n    pass\nassert x == 1\n",
            "raise ValueError, 'no'\nassert x == 1\n",
            "x = 0777\nassert x == 1\n",
            "x = 10L\nassert x == 1\n",
            "x = ur'a'\nassert x == 1\n",
            "assert a <> b\n",
            "assert x == 1\n\0",
            "\u{feff}assert x == 1\n",
            "def f(:\n    assert x == 1\n",
        ] {
            assert!(mine(source).is_none(), "{source:?}");
            assert!(assertion_keys(source).is_empty(), "{source:?}");
        }
        for source in ["x = 00\nassert x == 1\n", "x = 0o777 + 0x1F + 10j + 0777j\nassert x == 1\n", "x = rb'a' + Rb'b' + f'{x}' + U'u'\nassert x == 1\n", "print('x')\nexec('y')\nassert x == 1\n"] {
            assert_eq!(mine(source).map(|m| m.len()), Some(1), "{source:?}");
        }
    }

    #[test]
    fn the_full_prefix_is_the_file_above_normalized() {
        let keys = assertion_key_texts("import os\n\n\ndef test_a():\n    x = 1\n    assert x  ==  1\n");
        assert_eq!(keys, [triple("assert", "import os def test_a(): x = 1 assert x ==", "1")]);
        // Two assertions on one line: the second's prefix holds the first.
        let keys = assertion_key_texts("assert a == 1; assert b == 2\n");
        assert!(keys.contains(&triple("assert", "assert a == 1; assert b ==", "2")));
    }

    #[test]
    fn columns_are_bytes_used_as_characters() {
        // `assert` starts at byte 10 but character 9: the prefix takes one character more.
        let keys = assertion_key_texts("x = \"\u{e9}\"; assert x == \"\u{e9}\"\n");
        assert_eq!(keys, [triple("assert", "x = \"\u{e9}\"; aassert x ==", "\"\u{e9}\"")]);
    }

    #[test]
    fn lines_are_counted_by_splitlines_but_numbered_by_the_parser() {
        // A form feed ends a `splitlines` line but not a Python line: the assertion's line
        // number then picks an earlier line, and the cut falls there.
        let keys = assertion_key_texts("x = 1\n\u{c}\ndef test():\n    assert a == 1\n");
        assert_eq!(keys, [triple("assert", "x = 1 def assert a ==", "1")]);
        // \r alone ends a line for both.
        let keys = assertion_key_texts("x = 1\rassert x == 1\r\n");
        assert_eq!(keys, [triple("assert", "x = 1 assert x ==", "1")]);
    }

    #[test]
    fn normalization_is_pythons_whitespace() {
        assert_eq!(normalized("  a \t\u{1c}\u{a0} b\u{2028}\n"), "a b");
        assert_eq!(normalized("\u{200b}a"), "\u{200b}a", "a zero-width space is not whitespace");
        // Hashing and text agree: the same texts make the same keys.
        let a = assertion_keys("def test():\n    assert f()  ==  1\n");
        let b = assertion_keys("def test():\n  assert f() == 1");
        assert_eq!(a, b);
        assert_ne!(a, assertion_keys("def test():\n    assert f() == 2\n"));
        assert_ne!(a, assertion_keys("def test():\n    x = 0\n    assert f() == 1\n"));
    }
}
