//! Parsing Python source with tree-sitter so that it accepts what Python 3's own parser
//! (`ast.parse`) accepts, and the small tree helpers that make tree-sitter's tree read like
//! Python's `ast`. Shared by the task miner and the daemon's kept-commit rule, which both
//! must agree with miners written against Python's `ast`.

use tree_sitter::{Node, Parser, Tree};

/// Nodes tree-sitter-python accepts for Python 2 that Python 3's parser rejects.
const PYTHON2_NODES: [&str; 3] = ["print_statement", "exec_statement", "<>"];

/// The syntax tree of `source`, or `None` when Python's parser would reject it (a syntax
/// error, Python 2 syntax, ambiguous tabs, a NUL byte, a byte-order mark in the text).
/// Byte offsets in the tree are offsets in `source`.
pub fn parse(source: &str) -> Option<Tree> {
    // Python refuses NUL bytes, and a byte-order mark in a str (as opposed to a file).
    if source.contains('\0') || source.starts_with('\u{feff}') {
        return None;
    }
    let mut parser = Parser::new();
    parser.set_language(&tree_sitter_python::LANGUAGE.into()).ok()?;
    // Python ends a line at a lone \r too; tree-sitter-python does not. Same length, so the
    // tree's byte offsets hold for the source.
    let tree = if source.contains('\r') {
        let bytes = source.as_bytes();
        let unix: Vec<u8> = bytes.iter().enumerate().map(|(i, &b)| if b == b'\r' && bytes.get(i + 1) != Some(&b'\n') { b'\n' } else { b }).collect();
        parser.parse(&unix, None)?
    } else {
        parser.parse(source, None)?
    };
    let root = tree.root_node();
    if root.has_error() || ambiguous_tabs(root, source) || any_python2_only(root, source) {
        return None;
    }
    Some(tree)
}

fn any_python2_only(root: Node, source: &str) -> bool {
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        if python2_only(node, source) {
            return true;
        }
        stack.extend(children(node));
    }
    false
}

/// Python's `TabError`: the indentation of logical lines, read with tabs to multiples of 8
/// and again with tabs as one column, must order the lines the same way (its tokenizer keeps
/// both stacks). tree-sitter accepts what this rejects. Logical lines at bracket depth 0 are
/// the statements of modules and blocks and the clauses (`else:`, `except:`...) that begin a
/// line.
fn ambiguous_tabs(root: Node, source: &str) -> bool {
    if !source.contains('\t') {
        return false;
    }
    const CLAUSES: [&str; 6] = ["elif_clause", "else_clause", "except_clause", "except_group_clause", "finally_clause", "case_clause"];
    let mut starts = Vec::new();
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        let mut cursor = node.walk();
        for child in node.named_children(&mut cursor) {
            let parent_is_suite = matches!(node.kind(), "module" | "block");
            if (parent_is_suite && child.kind() != "comment") || CLAUSES.contains(&child.kind()) {
                starts.push(child.start_byte());
            }
            stack.push(child);
        }
    }
    starts.sort_unstable();
    starts.dedup();
    let (mut cols, mut alts) = (vec![0usize], vec![0usize]);
    for start in starts {
        let line_start = source[..start].rfind(['\n', '\r']).map_or(0, |i| i + 1);
        let lead = &source[line_start..start];
        // A statement after `;` or a clause on its header's line begins no line.
        if !lead.chars().all(|c| c == ' ' || c == '\t' || c == '\x0c') {
            continue;
        }
        let (mut col, mut alt) = (0, 0);
        for c in lead.chars() {
            match c {
                ' ' => (col, alt) = (col + 1, alt + 1),
                '\t' => (col, alt) = ((col / 8 + 1) * 8, alt + 1),
                _ => (col, alt) = (0, 0),
            }
        }
        let top = cols.len() - 1;
        if col == cols[top] {
            if alt != alts[top] {
                return true;
            }
        } else if col > cols[top] {
            if alt <= alts[top] {
                return true;
            }
            cols.push(col);
            alts.push(alt);
        } else {
            while cols.len() > 1 && col < cols[cols.len() - 1] {
                cols.pop();
                alts.pop();
            }
            if col == cols[cols.len() - 1] && alt != alts[alts.len() - 1] {
                return true;
            }
        }
    }
    false
}

/// Python 2 syntax tree-sitter-python parses without an error: print and exec statements,
/// `<>`, `except E, name:`, `raise E, value`, `0777` and `10L` literals, `ur''` strings.
fn python2_only(node: Node, source: &str) -> bool {
    let kind = node.kind();
    if PYTHON2_NODES.contains(&kind) {
        return true;
    }
    let text = || &source[node.start_byte()..node.end_byte()];
    match kind {
        "except_clause" => children(node).any(|c| c.kind() == ","),
        "raise_statement" => children(node).any(|c| c.kind() == "expression_list"),
        "integer" => {
            let digits = text().as_bytes();
            let decimal = !matches!(digits.get(1), Some(b'x' | b'X' | b'o' | b'O' | b'b' | b'B'));
            let long = matches!(digits.last(), Some(b'l' | b'L'));
            let imaginary = matches!(digits.last(), Some(b'j' | b'J'));
            let leading_zero = decimal && !imaginary && digits.len() > 1 && digits[0] == b'0' && digits.iter().any(|&d| (b'1'..=b'9').contains(&d));
            long || leading_zero
        }
        "string_start" => {
            let prefix: String = text().chars().take_while(|c| c.is_ascii_alphabetic()).map(|c| c.to_ascii_lowercase()).collect();
            !matches!(prefix.as_str(), "" | "r" | "u" | "f" | "b" | "br" | "rb" | "fr" | "rf")
        }
        _ => false,
    }
}

pub fn children(node: Node) -> impl Iterator<Item = Node> {
    (0..node.child_count()).filter_map(move |i| node.child(i as u32))
}

/// Named children that are part of the syntax (comments are not).
pub fn operands(node: Node) -> impl Iterator<Item = Node> {
    children(node).filter(|c| c.is_named() && !c.is_extra())
}

/// The expression inside any parentheses: Python's tree has no node for them, so a
/// parenthesized operand's text starts inside them. (Tuples keep theirs: they are a
/// `tuple` node.)
pub fn unparenthesized(mut node: Node) -> Node {
    while node.kind() == "parenthesized_expression" {
        match operands(node).next() {
            Some(inner) => node = inner,
            None => break,
        }
    }
    node
}


/// Python's `str.isspace`: Unicode White_Space plus the separators \x1c-\x1f.
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

