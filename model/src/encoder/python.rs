//! Python features from tree-sitter: imports, definitions with signatures, calls and
//! identifiers. Works on fragments too (the added lines of a diff): tree-sitter recovers
//! from syntax errors and still yields the nodes it recognises.

use std::cell::RefCell;

use tree_sitter::{Parser, Query, QueryCursor, StreamingIterator};

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

const QUERY: &str = r#"
(import_statement) @import
(import_from_statement) @import
(function_definition name: (identifier) @def parameters: (parameters) @sig)
(class_definition name: (identifier) @class)
(call function: [(identifier) @call (attribute attribute: (identifier) @call)])
(identifier) @ident
"#;

struct PythonExtractor {
    parser: Parser,
    query: Query,
}

thread_local! {
    static EXTRACTOR: RefCell<Option<PythonExtractor>> = const { RefCell::new(None) };
}

fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Calls `emit(kind, text)` for every feature of `source`. Returns false if the grammar
/// could not be loaded (the caller then falls back to tokens).
pub(crate) fn features(source: &str, emit: &mut dyn FnMut(Kind, &str)) -> bool {
    EXTRACTOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let lang: tree_sitter::Language = tree_sitter_python::LANGUAGE.into();
            let mut parser = Parser::new();
            if parser.set_language(&lang).is_err() {
                return false;
            }
            let Ok(query) = Query::new(&lang, QUERY) else { return false };
            *slot = Some(PythonExtractor { parser, query });
        }
        let ex = slot.as_mut().expect("initialised above");
        let Some(tree) = ex.parser.parse(source, None) else { return false };
        let names = ex.query.capture_names();
        let mut cursor = QueryCursor::new();
        let mut captures = cursor.captures(&ex.query, tree.root_node(), source.as_bytes());
        let mut last_def = String::new();
        while let Some((m, idx)) = captures.next() {
            let cap = m.captures[*idx];
            let Ok(text) = cap.node.utf8_text(source.as_bytes()) else { continue };
            match names[cap.index as usize] {
                "import" => emit(Kind::Import, &collapse_ws(text)),
                "def" => {
                    last_def = text.to_owned();
                    emit(Kind::Def, text)
                }
                "sig" => emit(Kind::Signature, &format!("{last_def}{}", collapse_ws(text))),
                "class" => emit(Kind::Class, text),
                "call" => emit(Kind::Call, text),
                "ident" => emit(Kind::Ident, text),
                _ => {}
            }
        }
        true
    })
}
