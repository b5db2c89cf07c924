//! Finding the assertions of one test file and where each one's expected value starts.
//!
//! The five families and their targets follow the authors' `create_qnas_v2.py`:
//! - `assert a OP b ...`: only comparisons; the target is the first right-hand operand `b`
//!   (other `assert x` statements give no task);
//! - `self.M(...)` for the unittest methods of [`UNITTEST_METHODS`]: `assertRaises` and the
//!   one-argument checks (`assertTrue`, `assertFalse`, `assertIsNone`, `assertIsNotNone`)
//!   take their first argument, `assertRaisesRegex` its first and (when given) second,
//!   the others need two positional arguments and take the last;
//! - `pytest.raises(...)` and `pytest.approx(...)`: the first argument and the keywords;
//! - any other call of a name or attribute `assert_*` (NumPy's `assert_allclose`, mock's
//!   `assert_called_with`...) except `<x>.mock.assert_*`: the last positional argument.
//!
//! Call targets end with the call's `)`. A target spread over lines is put on one line
//! (whitespace runs made one space), as the authors do. The cut is where the target's first
//! expression starts in the file: the prefix ends right before it.

use tree_sitter::Node;

use crate::python::{self, children, is_python_space, operands, unparenthesized};

use super::Family;

/// The unittest methods mined as `self.<method>(...)`.
pub const UNITTEST_METHODS: [&str; 31] = [
    "assertEqual", "assertNotEqual", "assertTrue", "assertFalse", "assertIs", "assertIsNot", "assertIsNone", "assertIsNotNone",
    "assertIn", "assertNotIn", "assertIsInstance", "assertNotIsInstance", "assertRaises", "assertRaisesRegex", "assertAlmostEqual",
    "assertNotAlmostEqual", "assertDictEqual", "assertListEqual", "assertTupleEqual", "assertSetEqual", "assertSequenceEqual",
    "assertRegex", "assertNotRegex", "assertCountEqual", "assertWarns", "assertLogs", "assertMultiLineEqual", "assertGreater",
    "assertGreaterEqual", "assertLess", "assertLessEqual",
];

/// Methods whose whole first argument is the target.
pub const ONE_ARGUMENT_METHODS: [&str; 4] = ["assertTrue", "assertFalse", "assertIsNone", "assertIsNotNone"];

/// One assertion of a file, located in its syntax tree.
#[derive(Debug, Clone)]
pub struct Found<'t> {
    pub family: Family,
    /// The authors' `assertion_type`: `assert`, `self.<method>`, `pytest.raises`,
    /// `pytest.approx` or `assert_*`.
    pub kind: String,
    /// The assert statement or the call.
    pub node: Node<'t>,
    /// Byte offset where the expected value starts: the prefix ends here.
    pub cut: usize,
    pub target: String,
    /// The innermost function and class around the assertion.
    pub function: Option<Node<'t>>,
    pub class: Option<Node<'t>>,
}

/// The assertions of a parsed file, in source order.
pub fn find<'t>(tree: &'t tree_sitter::Tree, source: &str) -> Vec<Found<'t>> {
    let finder = Finder { source };
    let mut found = Vec::new();
    let mut cursor = tree.walk();
    loop {
        let node = cursor.node();
        let mined = match node.kind() {
            "assert_statement" => finder.plain_assert(node),
            "call" => finder.call(node),
            _ => None,
        };
        if let Some((family, kind, target_start, target)) = mined {
            let target = if target.contains('\n') { target.split(is_python_space).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ") } else { target };
            found.push(Found {
                family,
                kind,
                node,
                cut: target_start.start_byte(),
                target,
                function: innermost(node, "function_definition"),
                class: innermost(node, "class_definition"),
            });
        }
        if cursor.goto_first_child() || cursor.goto_next_sibling() {
            continue;
        }
        loop {
            if !cursor.goto_parent() {
                return found;
            }
            if cursor.goto_next_sibling() {
                break;
            }
        }
    }
}

fn innermost<'t>(node: Node<'t>, kind: &str) -> Option<Node<'t>> {
    let mut at = node.parent();
    while let Some(n) = at {
        if n.kind() == kind {
            return Some(n);
        }
        at = n.parent();
    }
    None
}

/// The name of a function or class definition.
pub fn name_of<'s>(definition: Node, source: &'s str) -> &'s str {
    definition.child_by_field_name("name").map_or("", |n| &source[n.byte_range()])
}

/// What one node mines: its family, kind, the node where the target starts, the target.
type Mined<'t> = (Family, String, Node<'t>, String);

struct Finder<'s> {
    source: &'s str,
}

impl<'s> Finder<'s> {
    fn text(&self, node: Node) -> &'s str {
        &self.source[node.byte_range()]
    }

    /// An expression as Python's `ast.get_source_segment` gives it: inside any parentheses.
    fn segment(&self, node: Node) -> &'s str {
        self.text(unparenthesized(node))
    }

    fn plain_assert<'t>(&self, node: Node<'t>) -> Option<Mined<'t>> {
        let test = unparenthesized(operands(node).next()?);
        if test.kind() != "comparison_operator" {
            return None;
        }
        let right = unparenthesized(operands(test).nth(1)?);
        Some((Family::Assert, "assert".into(), right, self.text(right).to_owned()))
    }

    fn call<'t>(&self, node: Node<'t>) -> Option<Mined<'t>> {
        let function = unparenthesized(node.child_by_field_name("function")?);
        let arguments = node.child_by_field_name("arguments")?;
        // `f(x for x in y)`: the generator, with the call's parentheses, is the argument.
        let (positional, keywords): (Vec<Node>, Vec<Node>) = if arguments.kind() == "generator_expression" {
            (vec![arguments], Vec::new())
        } else {
            operands(arguments).filter(|a| a.kind() != "dictionary_splat").partition(|a| a.kind() != "keyword_argument")
        };
        match function.kind() {
            "attribute" => {
                let owner = unparenthesized(function.child_by_field_name("object")?);
                let method = self.text(function.child_by_field_name("attribute")?);
                let owner_name = (owner.kind() == "identifier").then(|| self.text(owner));
                match (owner_name, method) {
                    (Some("self"), _) if UNITTEST_METHODS.contains(&method) => self.unittest(method, &positional),
                    (Some("pytest"), "raises") => self.with_keywords(Family::PytestRaises, "pytest.raises", &positional, &keywords),
                    (Some("pytest"), "approx") => self.with_keywords(Family::PytestApprox, "pytest.approx", &positional, &keywords),
                    _ => {
                        let mock_check = owner.kind() == "attribute" && owner.child_by_field_name("attribute").is_some_and(|a| self.text(a) == "mock");
                        if mock_check { None } else { self.assert_call(method, &positional) }
                    }
                }
            }
            "identifier" => self.assert_call(self.text(function), &positional),
            _ => None,
        }
    }

    fn unittest<'t>(&self, method: &str, args: &[Node<'t>]) -> Option<Mined<'t>> {
        let kind = format!("self.{method}");
        let first = unparenthesized(*args.first()?);
        let (start, target) = match method {
            "assertRaises" => (first, format!("{})", self.text(first))),
            "assertRaisesRegex" => match args.get(1) {
                Some(pattern) => (first, format!("{}, {})", self.text(first), self.segment(*pattern))),
                None => (first, format!("{})", self.text(first))),
            },
            _ if ONE_ARGUMENT_METHODS.contains(&method) => (first, format!("{})", self.text(first))),
            _ if args.len() >= 2 => {
                let last = unparenthesized(*args.last()?);
                (last, format!("{})", self.text(last)))
            }
            _ => return None,
        };
        Some((Family::Unittest, kind, start, target))
    }

    fn with_keywords<'t>(&self, family: Family, kind: &str, args: &[Node<'t>], keywords: &[Node]) -> Option<Mined<'t>> {
        let first = unparenthesized(*args.first()?);
        let mut target = self.text(first).to_owned();
        for keyword in keywords {
            let name = self.text(keyword.child_by_field_name("name")?);
            target.push_str(&format!(", {name}={}", self.segment(keyword.child_by_field_name("value")?)));
        }
        target.push(')');
        Some((family, kind.into(), first, target))
    }

    /// `assert_*(...)` or `x.assert_*(...)`: the last positional argument.
    fn assert_call<'t>(&self, name: &str, args: &[Node<'t>]) -> Option<Mined<'t>> {
        if !name.starts_with("assert_") || name == "assert_" {
            return None;
        }
        let last = unparenthesized(*args.last()?);
        Some((Family::AssertCall, "assert_*".into(), last, format!("{})", self.text(last))))
    }
}

/// Parses a file's text as Python 3 would; `None` when Python would reject it.
pub fn parse(source: &str) -> Option<tree_sitter::Tree> {
    python::parse(source)
}

/// The rows a statement spans, 0-based and inclusive, as Python's `ast` gives them: a
/// trailing comment tree-sitter keeps inside a block is not part of the statement.
pub fn rows(node: Node) -> (usize, usize) {
    (node.start_position().row, end_row(node))
}

fn end_row(node: Node) -> usize {
    let last = children(node).filter(|c| !c.is_extra() && c.kind() != "comment").last();
    match last {
        Some(child) if child.end_byte() > child.start_byte() => end_row(child),
        _ => {
            let end = node.end_position();
            if end.column == 0 && end.row > node.start_position().row { end.row - 1 } else { end.row }
        }
    }
}
