//! Python features from tree-sitter: imports, definitions with signatures, calls and
//! identifiers. Works on fragments too (the added lines of a diff): tree-sitter recovers
//! from syntax errors and still yields the nodes it recognises.

use std::cell::RefCell;

use tree_sitter::{Node, Parser};

/// Feature kinds; each has a fixed weight in the hashed encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Import,
    Def,
    Signature,
    Class,
    Call,
    Ident,
    Token,
}

impl Kind {
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Kind::Import => "import",
            Kind::Def => "def",
            Kind::Signature => "sig",
            Kind::Class => "class",
            Kind::Call => "call",
            Kind::Ident => "id",
            Kind::Token => "tok",
        }
    }

    pub(crate) fn weight(self) -> f32 {
        match self {
            Kind::Import => 3.0,
            Kind::Def | Kind::Class => 2.0,
            Kind::Signature => 1.5,
            Kind::Call => 1.0,
            Kind::Ident => 0.25,
            Kind::Token => 0.5,
        }
    }
}

/// Node kinds and fields the extractor looks at, as the grammar's numeric ids.
struct Ids {
    identifier: u16,
    import: u16,
    import_from: u16,
    function: u16,
    class: u16,
    call: u16,
    attribute: u16,
    parameters: u16,
    name: Option<std::num::NonZeroU16>,
    params_field: Option<std::num::NonZeroU16>,
    function_field: Option<std::num::NonZeroU16>,
    attribute_field: Option<std::num::NonZeroU16>,
}

impl Ids {
    fn of(lang: &tree_sitter::Language) -> Self {
        let kind = |k: &str| lang.id_for_node_kind(k, true);
        Ids {
            identifier: kind("identifier"),
            import: kind("import_statement"),
            import_from: kind("import_from_statement"),
            function: kind("function_definition"),
            class: kind("class_definition"),
            call: kind("call"),
            attribute: kind("attribute"),
            parameters: kind("parameters"),
            name: lang.field_id_for_name("name"),
            params_field: lang.field_id_for_name("parameters"),
            function_field: lang.field_id_for_name("function"),
            attribute_field: lang.field_id_for_name("attribute"),
        }
    }
}

struct PythonExtractor {
    parser: Parser,
    ids: Ids,
}

thread_local! {
    static EXTRACTOR: RefCell<Option<PythonExtractor>> = const { RefCell::new(None) };
}

fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The child in field `f`, if it is of kind `kind`.
fn field<'t>(n: Node<'t>, f: Option<std::num::NonZeroU16>, kind: u16) -> Option<Node<'t>> {
    f.and_then(|f| n.child_by_field_id(f.get())).filter(|c| c.kind_id() == kind)
}

/// Calls `emit(kind, text)` for every feature of `source`. Returns false if the grammar
/// could not be loaded (the caller then falls back to tokens).
///
/// Features, for every node of the syntax tree (error-recovery nodes included): an
/// identifier; an import statement (text, whitespace collapsed); a function definition's
/// name and `name(params)` signature; a class name; the name a call calls (a plain name, or
/// the attribute of `x.attr(...)`).
pub(crate) fn features(source: &str, emit: &mut dyn FnMut(Kind, &str)) -> bool {
    EXTRACTOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let lang: tree_sitter::Language = tree_sitter_python::LANGUAGE.into();
            let mut parser = Parser::new();
            if parser.set_language(&lang).is_err() {
                return false;
            }
            *slot = Some(PythonExtractor { parser, ids: Ids::of(&lang) });
        }
        let ex = slot.as_mut().expect("initialised above");
        let Some(tree) = ex.parser.parse(source, None) else { return false };
        let ids = &ex.ids;
        let bytes = source.as_bytes();
        let text = |n: Node| n.utf8_text(bytes).ok();
        // A pre-order walk with one cursor: no allocation per node.
        let mut cursor = tree.walk();
        loop {
            let node = cursor.node();
            let k = node.kind_id();
            if k == ids.identifier {
                if let Some(t) = text(node) {
                    emit(Kind::Ident, t);
                }
            } else if k == ids.import || k == ids.import_from {
                if let Some(t) = text(node) {
                    emit(Kind::Import, &collapse_ws(t));
                }
            } else if k == ids.function {
                if let (Some(name), Some(params)) = (field(node, ids.name, ids.identifier), field(node, ids.params_field, ids.parameters))
                    && let (Some(n), Some(p)) = (text(name), text(params))
                {
                    emit(Kind::Def, n);
                    emit(Kind::Signature, &format!("{n}{}", collapse_ws(p)));
                }
            } else if k == ids.class {
                if let Some(t) = field(node, ids.name, ids.identifier).and_then(text) {
                    emit(Kind::Class, t);
                }
            } else if k == ids.call {
                let callee = ids.function_field.and_then(|f| node.child_by_field_id(f.get()));
                let name = match callee {
                    Some(c) if c.kind_id() == ids.identifier => Some(c),
                    Some(c) if c.kind_id() == ids.attribute => field(c, ids.attribute_field, ids.identifier),
                    _ => None,
                };
                if let Some(t) = name.and_then(text) {
                    emit(Kind::Call, t);
                }
            }
            if cursor.goto_first_child() {
                continue;
            }
            while !cursor.goto_next_sibling() {
                if !cursor.goto_parent() {
                    return true;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tree_sitter::{Query, QueryCursor, StreamingIterator};

    /// The same features as a tree-sitter query: an independent statement of what
    /// [`features`] must find, node for node.
    const QUERY: &str = r#"
(import_statement) @import
(import_from_statement) @import
(function_definition name: (identifier) @def parameters: (parameters) @sig)
(class_definition name: (identifier) @class)
(call function: [(identifier) @call (attribute attribute: (identifier) @call)])
(identifier) @ident
"#;

    fn by_query(source: &str) -> Vec<(Kind, String)> {
        let lang: tree_sitter::Language = tree_sitter_python::LANGUAGE.into();
        let mut parser = Parser::new();
        parser.set_language(&lang).unwrap();
        let query = Query::new(&lang, QUERY).unwrap();
        let tree = parser.parse(source, None).unwrap();
        let names = query.capture_names();
        let mut cursor = QueryCursor::new();
        let mut captures = cursor.captures(&query, tree.root_node(), source.as_bytes());
        let mut out = Vec::new();
        let mut last_def = String::new();
        while let Some((m, idx)) = captures.next() {
            let cap = m.captures[*idx];
            let text = cap.node.utf8_text(source.as_bytes()).unwrap().to_owned();
            match names[cap.index as usize] {
                "import" => out.push((Kind::Import, collapse_ws(&text))),
                "def" => {
                    last_def = text.clone();
                    out.push((Kind::Def, text))
                }
                "sig" => out.push((Kind::Signature, format!("{last_def}{}", collapse_ws(&text)))),
                "class" => out.push((Kind::Class, text)),
                "call" => out.push((Kind::Call, text)),
                _ => out.push((Kind::Ident, text)),
            }
        }
        out
    }

    fn by_walk(source: &str) -> Vec<(Kind, String)> {
        let mut out = Vec::new();
        assert!(features(source, &mut |k, t| out.push((k, t.to_owned()))));
        out
    }

    fn sorted(mut v: Vec<(Kind, String)>) -> Vec<(String, String)> {
        let mut s: Vec<(String, String)> = v.drain(..).map(|(k, t)| (k.tag().to_owned(), t)).collect();
        s.sort();
        s
    }

    #[test]
    fn the_tree_walk_finds_what_the_query_finds_in_whole_files_and_fragments() {
        let corpus = [include_str!("../../../tests/reference/code2lora_ref.py"), include_str!("../../../tests/reference/make_pt_fixtures.py")];
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |n: usize| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % n as u64) as usize
        };
        let mut compared = 0;
        for file in corpus {
            assert_eq!(sorted(by_walk(file)), sorted(by_query(file)));
            let lines: Vec<&str> = file.lines().collect();
            // Diff-like fragments: random runs of lines glued together, as added lines are.
            for _ in 0..150 {
                let mut fragment = String::new();
                for _ in 0..1 + next(4) {
                    let start = next(lines.len());
                    for line in &lines[start..(start + 1 + next(12)).min(lines.len())] {
                        fragment.push_str(line);
                        fragment.push('\n');
                    }
                }
                let (walk, query) = (sorted(by_walk(&fragment)), sorted(by_query(&fragment)));
                assert_eq!(walk, query, "fragment:\n{fragment}");
                compared += walk.len();
            }
        }
        assert!(compared > 10_000, "the corpus exercised the extractor ({compared} features)");
    }
}
