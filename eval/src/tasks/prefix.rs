//! The text a model is shown before the expected value.
//!
//! - Evolution track: the whole test file up to the cut.
//! - Static track, built by line as the authors' `build_structured_prefix` does:
//!   1. the module's leading statements: imports, assignments and expressions (a bare string,
//!      the docstring, excluded) up to the first function or class;
//!   2. the enclosing class's `class` line, its assignments and its setup/teardown methods
//!      ([`SETUP_METHODS`]);
//!   3. helper functions that end before the cut's line: module-level functions not named
//!      `test_*`, and the class's methods that are neither tests nor setup methods;
//!   4. the test function from its first decorator to the line before the cut's line;
//!
//!   then, after a blank line, the cut's line up to the cut. Line groups that are not
//!   adjacent in the file are separated by a blank line, and only the last 600 lines are kept.
//!
//! Deviations from the authors' code, each where it would show text that is not in the file:
//! lines are Python's (ended by `\n`, `\r\n` or `\r`), not `str.splitlines`'s, which also
//! breaks at form feeds and other separators that Python's line numbers ignore; and the last
//! line is the target's own line cut at the target's byte offset, where the authors cut the
//! assertion's first line at the target's column (wrong text for a target on a later line of
//! a multi-line assertion, and for non-ASCII text before it). The blank line the authors
//! always put before the last line is kept: prompts look like the ones their adapters saw.

use std::collections::BTreeSet;

use tree_sitter::{Node, Tree};

use super::assertions::{Found, name_of, rows};

/// Methods the static prefix keeps whole as the class's setup.
pub const SETUP_METHODS: [&str; 8] = ["setUp", "setUpClass", "tearDown", "tearDownClass", "setup_method", "teardown_method", "setup", "teardown"];

/// The most lines a static prefix keeps (its last ones).
const MAX_STATIC_LINES: usize = 600;

/// The evolution-track prefix.
pub fn evolution(source: &str, found: &Found) -> String {
    source[..found.cut].to_owned()
}

/// A file cut into Python's lines.
pub struct Lines<'s> {
    source: &'s str,
    /// Byte offsets where lines start.
    starts: Vec<usize>,
}

impl<'s> Lines<'s> {
    pub fn new(source: &'s str) -> Self {
        let bytes = source.as_bytes();
        let mut starts = vec![0];
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n')) {
                starts.push(i + 1);
            }
        }
        Lines { source, starts }
    }

    /// The row holding byte `offset`.
    pub fn row_of(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset) - 1
    }

    /// How many lines: a final line break starts no line.
    fn count(&self) -> usize {
        if self.starts.len() > 1 && *self.starts.last().unwrap() == self.source.len() { self.starts.len() - 1 } else { self.starts.len() }
    }

    /// Row `row` without its line break.
    fn line(&self, row: usize) -> &'s str {
        let start = self.starts[row];
        let end = self.starts.get(row + 1).copied().unwrap_or(self.source.len());
        self.source[start..end].trim_end_matches(['\n', '\r'])
    }

    /// The cut's line, up to the cut.
    pub fn up_to(&self, offset: usize) -> &'s str {
        &self.source[self.starts[self.row_of(offset)]..offset]
    }
}

/// A definition inside a `decorated_definition`, or the node itself.
fn definition(node: Node) -> Node {
    if node.kind() == "decorated_definition" { node.child_by_field_name("definition").unwrap_or(node) } else { node }
}

fn is_function(node: Node) -> bool {
    definition(node).kind() == "function_definition"
}

fn statements(block: Node) -> Vec<Node> {
    let mut cursor = block.walk();
    block.named_children(&mut cursor).filter(|c| c.kind() != "comment").collect()
}

/// A statement that is only a string (not bytes, not an f-string): the module docstring
/// and its kind, which the authors leave out.
fn is_bare_string(statement: Node, source: &str) -> bool {
    let parts = statements(statement);
    let [only] = parts.as_slice() else { return false };
    let plain = |s: Node| {
        s.kind() == "string"
            && s.child(0).is_some_and(|start| !source[start.byte_range()].chars().take_while(|c| c.is_ascii_alphabetic()).any(|c| matches!(c, 'b' | 'B' | 'f' | 'F' | 't' | 'T')))
    };
    match only.kind() {
        "string" => plain(*only),
        "concatenated_string" => statements(*only).iter().all(|s| plain(*s)),
        _ => false,
    }
}

fn span(into: &mut BTreeSet<usize>, from: usize, to: usize) {
    into.extend(from..=to);
}

/// The static-track prefix of an assertion that has an enclosing function.
pub fn structured(tree: &Tree, source: &str, lines: &Lines, found: &Found) -> String {
    let cut_row = lines.row_of(found.cut);
    let mut keep = BTreeSet::new();
    let module = statements(tree.root_node());

    // 1. Leading module statements.
    for statement in &module {
        match statement.kind() {
            "function_definition" | "class_definition" | "decorated_definition" => break,
            "import_statement" | "import_from_statement" | "future_import_statement" => {
                let (a, b) = rows(*statement);
                span(&mut keep, a, b);
            }
            "expression_statement" if !is_bare_string(*statement, source) => {
                let (a, b) = rows(*statement);
                span(&mut keep, a, b);
            }
            _ => {}
        }
    }

    // 2. The class header, its assignments and setup methods.
    let class_body = found.class.and_then(|c| c.child_by_field_name("body")).map(statements).unwrap_or_default();
    if let Some(class) = found.class {
        keep.insert(class.start_position().row);
        for item in &class_body {
            if is_function(*item) {
                let def = definition(*item);
                if SETUP_METHODS.contains(&name_of(def, source)) {
                    let (a, b) = rows(def);
                    span(&mut keep, a, b);
                }
            } else if item.kind() == "expression_statement" && statements(*item).first().is_some_and(|e| e.kind() == "assignment") {
                let (a, b) = rows(*item);
                span(&mut keep, a, b);
            }
        }
    }

    // 3. Helpers that end before the cut's line.
    for item in module.iter().filter(|s| is_function(**s)) {
        let def = definition(*item);
        let (a, b) = rows(def);
        if b < cut_row && !name_of(def, source).starts_with("test_") {
            span(&mut keep, a, b);
        }
    }
    let function_name = found.function.map_or("", |f| name_of(f, source));
    for item in class_body.iter().filter(|s| is_function(**s)) {
        let def = definition(*item);
        let name = name_of(def, source);
        let (a, b) = rows(def);
        if b >= cut_row || (name.starts_with("test_") && name != function_name) {
            continue;
        }
        if !SETUP_METHODS.contains(&name) {
            span(&mut keep, a, b);
        }
    }

    // 4. The test function, decorators included, up to the cut's line.
    if let Some(function) = found.function {
        let mut first = function.start_position().row;
        if let Some(decorated) = function.parent().filter(|p| p.kind() == "decorated_definition") {
            first = first.min(decorated.start_position().row);
        }
        keep.extend(first..cut_row);
    }

    let mut out: Vec<&str> = Vec::new();
    let mut previous: Option<usize> = None;
    for row in keep.into_iter().filter(|&r| r < lines.count()) {
        if previous.is_some_and(|p| row > p + 1) {
            out.push("");
        }
        out.push(lines.line(row));
        previous = Some(row);
    }
    if !out.is_empty() {
        out.push("");
    }
    out.push(lines.up_to(found.cut));
    let skip = out.len().saturating_sub(MAX_STATIC_LINES);
    out[skip..].join("\n")
}
