//! Python features from a lexer (the hashed encoder's version 2): the same kinds as the
//! tree-sitter extractor of version 1 — imports, definitions with signatures, class names,
//! calls and identifiers — found from tokens and their neighbours instead of a syntax tree.
//! A syntax tree of a diff's added lines is mostly error recovery, which made tree-sitter
//! parse fragments at 1–3 MB/s; tokens need no recovery and run two orders of magnitude
//! faster.
//!
//! The rules, exactly (the spec `tests/reference/hashed_v2.py` implements independently):
//! - Tokens: names (`_`, an ASCII letter or any non-ASCII character, then any of those or
//!   ASCII digits: no Unicode tables, so no toolchain or Python version changes a name);
//!   numbers (a digit, then ASCII letters, digits, `_` and
//!   `.`); strings (an optional prefix of one or two letters — `r u f b t` alone, or a pair
//!   of `r` with one of `b f t`, any case — then `'`, `"` or a triple of either, up to the
//!   same closing quote, a backslash escaping the next byte; single-quoted ones also end
//!   at a line end); every other ASCII byte except whitespace is a one-byte operator.
//!   `#` to the line end is a comment; a backslash before a line end joins the lines.
//!   Whitespace is ASCII's: space, tab, line feed, carriage return, vertical tab, form feed.
//! - A token starts a line if a line end (not a joined one) lies between it and the
//!   previous token; a statement starts at the first token, at a line start, and after `;`.
//! - For each name, in order: a hard keyword (Python's 35) yields nothing, except `import`
//!   or `from` starting a statement: the import, the text from the keyword to the end of
//!   the last token of its statement, whitespace collapsed. The statement runs until `;`
//!   or a line start outside the brackets opened after the keyword, and at most
//!   [`SPAN_MAX_TOKENS`] tokens past the keyword. Any other name yields
//!   an identifier, then: after `def`, if `(` follows and its bracket closes (counting
//!   `( [ {` against `) ] }`) at most [`SPAN_MAX_TOKENS`] tokens later, a definition (the
//!   name) and a signature (the name and the text from `(` to its closing `)`, whitespace
//!   collapsed); after `class`, a class name; otherwise, if `(` follows, a call.
//! - An import or signature whose text (before collapsing) is longer than
//!   [`SPAN_MAX_BYTES`] is not emitted. With the token bound, this keeps the work linear in
//!   the text whatever it holds.

use std::cell::RefCell;

use super::python::Kind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Name,
    Number,
    Str,
    Op(u8),
}

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Tok,
    start: u32,
    end: u32,
    /// First token on its physical line (a backslash-joined line does not count).
    line_start: bool,
}

const KEYWORDS: [&str; 35] = [
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del", "elif", "else", "except", "finally", "for", "from",
    "global", "if", "import", "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while", "with", "yield",
];

fn is_keyword(name: &str) -> bool {
    // Keywords are 2–8 ASCII bytes; most names are rejected by length or first byte.
    (2..=8).contains(&name.len()) && KEYWORDS.contains(&name)
}

fn is_string_prefix(name: &[u8]) -> bool {
    match name {
        [a] => b"rRuUfFbBtT".contains(a),
        [a, b] => {
            let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
            matches!((a, b), (b'r', b'b' | b'f' | b't') | (b'b' | b'f' | b't', b'r'))
        }
        _ => false,
    }
}

/// Where the string literal whose opening quote is at `q` ends (exclusive).
fn string_end(b: &[u8], q: usize) -> usize {
    let quote = b[q];
    let n = b.len();
    if q + 2 < n && b[q + 1] == quote && b[q + 2] == quote {
        let mut i = q + 3;
        while i < n {
            if b[i] == b'\\' {
                i += 2;
            } else if b[i] == quote && i + 2 < n && b[i + 1] == quote && b[i + 2] == quote {
                return i + 3;
            } else {
                i += 1;
            }
        }
        return n;
    }
    let mut i = q + 1;
    while i < n {
        match b[i] {
            b'\\' => i += 2,
            b'\n' => return i,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    n
}

fn tokenize(text: &str, out: &mut Vec<Token>) {
    out.clear();
    let b = text.as_bytes();
    let n = b.len();
    let mut i = 0;
    let mut line_start = true;
    while i < n {
        let c = b[i];
        let start = i;
        let kind = match c {
            b'\n' => {
                line_start = true;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' | 0x0c | 0x0b => {
                i += 1;
                continue;
            }
            b'\\' => {
                // A joined line; a stray backslash is skipped too.
                i += 1;
                if b.get(i) == Some(&b'\r') {
                    i += 1;
                }
                if b.get(i) == Some(&b'\n') {
                    i += 1;
                }
                continue;
            }
            b'#' => {
                while i < n && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'\'' | b'"' => {
                i = string_end(b, i).min(n);
                Tok::Str
            }
            b'0'..=b'9' => {
                i += 1;
                while i < n && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                    i += 1;
                }
                Tok::Number
            }
            c if c == b'_' || c.is_ascii_alphabetic() || c >= 0x80 => {
                // UTF-8 continuation bytes are ≥ 0x80 too: a name always ends on a char
                // boundary.
                while i < n && (b[i] == b'_' || b[i].is_ascii_alphanumeric() || b[i] >= 0x80) {
                    i += 1;
                }
                if i < n && (b[i] == b'\'' || b[i] == b'"') && is_string_prefix(&b[start..i]) {
                    i = string_end(b, i).min(n);
                    Tok::Str
                } else {
                    Tok::Name
                }
            }
            c => {
                i += 1;
                Tok::Op(c)
            }
        };
        out.push(Token { kind, start: start as u32, end: i as u32, line_start });
        line_start = false;
    }
}

fn opens(t: &Token) -> bool {
    matches!(t.kind, Tok::Op(b'(' | b'[' | b'{'))
}

fn closes(t: &Token) -> bool {
    matches!(t.kind, Tok::Op(b')' | b']' | b'}'))
}

/// Tokens an import's statement may run past its keyword, and a signature's closing `)`
/// past its `(`. Bounds the work on text that is not Python (a megabyte of `import (` or
/// nested `def a(` would otherwise take quadratic time).
pub(crate) const SPAN_MAX_TOKENS: usize = 256;

/// Longest import or signature text emitted, in bytes (one long string token could
/// otherwise be hashed once per import before it).
pub(crate) const SPAN_MAX_BYTES: usize = 2048;

/// For every token, the index of the token closing the bracket it opens (`u32::MAX`: none
/// or not an opener), in one pass: the bracket a forward count from an opener closes is
/// the one a stack of open brackets pairs with it.
fn closers(toks: &[Token], out: &mut Vec<u32>) {
    out.clear();
    out.resize(toks.len(), u32::MAX);
    let mut open: Vec<usize> = Vec::new();
    for (k, t) in toks.iter().enumerate() {
        if opens(t) {
            open.push(k);
        } else if closes(t)
            && let Some(o) = open.pop()
        {
            out[o] = k as u32;
        }
    }
}

/// Index of the last token of the statement starting at `first`.
fn statement_last(toks: &[Token], first: usize) -> usize {
    let mut depth = 0usize;
    let mut last = first;
    for (k, t) in toks.iter().enumerate().skip(first + 1).take(SPAN_MAX_TOKENS) {
        if t.kind == Tok::Op(b';') || (t.line_start && depth == 0) {
            break;
        }
        if opens(t) {
            depth += 1;
        } else if closes(t) {
            depth = depth.saturating_sub(1);
        }
        last = k;
    }
    last
}

/// Runs of ASCII whitespace become one space; leading and trailing ones go.
fn collapse_ws(s: &str) -> String {
    s.split([' ', '\t', '\n', '\r', '\x0b', '\x0c']).filter(|p| !p.is_empty()).collect::<Vec<_>>().join(" ")
}

thread_local! {
    static TOKENS: RefCell<(Vec<Token>, Vec<u32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Calls `emit(kind, text)` for every feature of `source`, in the order the rules give.
pub(crate) fn features(source: &str, emit: &mut dyn FnMut(Kind, &str)) {
    TOKENS.with(|cell| {
        let mut scratch = cell.borrow_mut();
        let (toks, closer) = &mut *scratch;
        tokenize(source, toks);
        closers(toks, closer);
        let (toks, closer) = (&toks[..], &closer[..]);
        let text = |t: &Token| &source[t.start as usize..t.end as usize];
        let is_name = |k: usize, word: &str| toks.get(k).is_some_and(|t| t.kind == Tok::Name && text(t) == word);
        for (j, t) in toks.iter().enumerate() {
            if t.kind != Tok::Name {
                continue;
            }
            let name = text(t);
            if is_keyword(name) {
                let statement_start = j == 0 || t.line_start || toks[j - 1].kind == Tok::Op(b';');
                if (name == "import" || name == "from") && statement_start {
                    let last = &toks[statement_last(toks, j)];
                    let statement = &source[t.start as usize..last.end as usize];
                    if statement.len() <= SPAN_MAX_BYTES {
                        emit(Kind::Import, &collapse_ws(statement));
                    }
                }
                continue;
            }
            emit(Kind::Ident, name);
            let paren_next = toks.get(j + 1).is_some_and(|n| n.kind == Tok::Op(b'('));
            if j > 0 && is_name(j - 1, "def") {
                let close = closer.get(j + 1).map_or(usize::MAX, |&c| c as usize);
                if paren_next && close - (j + 1) <= SPAN_MAX_TOKENS {
                    let params = &source[toks[j + 1].start as usize..toks[close].end as usize];
                    if params.len() <= SPAN_MAX_BYTES {
                        emit(Kind::Def, name);
                        emit(Kind::Signature, &format!("{name}{}", collapse_ws(params)));
                    }
                }
            } else if j > 0 && is_name(j - 1, "class") {
                emit(Kind::Class, name);
            } else if paren_next {
                emit(Kind::Call, name);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(source: &str) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        features(source, &mut |k, t| out.push((k.tag(), t.to_owned())));
        out
    }

    fn has(v: &[(&'static str, String)], kind: &str, text: &str) -> bool {
        v.iter().any(|(k, t)| *k == kind && t == text)
    }

    #[test]
    fn each_rule_on_its_own() {
        let f = found("import os.path as p\nfrom a.b import (c,\n    d)  # tail\nx = 1\n");
        assert!(has(&f, "import", "import os.path as p"), "{f:?}");
        assert!(has(&f, "import", "from a.b import (c, d)"), "{f:?}");
        assert!(!f.iter().any(|(_, t)| t.contains("tail") || t.contains("x =")), "{f:?}");

        let f = found("async def run(self, *a, key: str = \"(\") -> int:\n    return self.go(a)(key)\n");
        assert!(has(&f, "def", "run"));
        assert!(has(&f, "sig", "run(self, *a, key: str = \"(\")"), "{f:?}");
        assert!(has(&f, "call", "go") && !has(&f, "call", "run"), "{f:?}");
        assert!(!has(&f, "id", "def") && !has(&f, "id", "return") && has(&f, "id", "self"));

        let f = found("class Cache(dict):\n    pass\n");
        assert!(has(&f, "class", "Cache") && !has(&f, "call", "Cache") && has(&f, "id", "dict"));

        // Strings and comments hide names; prefixes are not names; numbers are not.
        let f = found("s = rb'open(x)' + f\"{y}\" + '''\nimport z\n''' # call(w)\nn = 0x1f + 1e5\n");
        assert_eq!(f.iter().filter(|(k, _)| *k == "id").map(|(_, t)| t.as_str()).collect::<Vec<_>>(), ["s", "n"], "{f:?}");

        // An import's statement ends at `;` and at a new line outside its brackets.
        let f = found("import a; import b\nfrom c import \\\n    d\n");
        assert!(has(&f, "import", "import a") && has(&f, "import", "import b") && has(&f, "import", "from c import \\ d"), "{f:?}");
        // `from` inside a statement is not an import.
        let f = found("raise E from err\nyield from gen()\n");
        assert!(!f.iter().any(|(k, _)| *k == "import"), "{f:?}");
    }

    /// Text built to make per-name scans quadratic: many unclosed definitions and imports.
    #[test]
    fn hostile_text_takes_linear_time() {
        let text = "def a(\nimport (\n".repeat(12_500);
        let started = std::time::Instant::now();
        let f = found(&text);
        assert_eq!(f.iter().filter(|(k, _)| *k == "import").count(), 12_500);
        assert!(!f.iter().any(|(k, _)| *k == "def"), "no parameters ever close");
        // Nested definitions whose brackets all close, each signature spanning the rest.
        let nested = format!("{}{}", "def a(".repeat(12_500), ")".repeat(12_500));
        let g = found(&nested);
        assert_eq!(g.iter().filter(|(k, _)| *k == "sig").count(), SPAN_MAX_TOKENS / 4, "only the innermost close within the bound");
        // Quadratic scans (each to the end of the text) would take minutes here.
        assert!(started.elapsed().as_secs() < 30, "{:?}", started.elapsed());
        // One long string after many imports is not hashed once per import.
        let long_token = format!("{}'{}'\n", "import (\n".repeat(200), "s".repeat(1 << 19));
        assert!(found(&long_token).iter().filter(|(k, _)| *k == "import").all(|(_, t)| t.len() <= SPAN_MAX_BYTES));
        // A long parenthesised import is cut at the bound, the same way every time.
        let long = format!("from m import ({})\nx = 1\n", (0..2000).map(|i| format!("n{i}")).collect::<Vec<_>>().join(","));
        let import = found(&long).into_iter().find(|(k, _)| *k == "import").unwrap().1;
        assert!(import.starts_with("from m import (n0,n1,") && import.ends_with(&format!("n{}", (SPAN_MAX_TOKENS - 3) / 2)), "{}", &import[import.len() - 20..]);
    }

    #[test]
    fn fragments_never_fail() {
        // Unclosed brackets and strings, a def whose parameters never close, stray bytes.
        let f = found("    def half(a,\n'unterminated\n\"\"\"open\nfoo(]) \u{e9}t\u{e9} = 変数 + \u{2603}\\");
        assert!(has(&f, "id", "half") && !has(&f, "def", "half"));
        // Every non-ASCII character is part of a name, letters or not.
        let f = found("x = 変数 + \u{2603}y + \u{e01}\u{e34}\u{e19}\\");
        assert_eq!(f.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(), ["x", "変数", "\u{2603}y", "\u{e01}\u{e34}\u{e19}"], "{f:?}");
        let f = found("résumé = naïve(x)\n");
        assert!(has(&f, "id", "résumé") && has(&f, "call", "naïve"), "{f:?}");
        assert!(found("").is_empty());
    }

    /// On whole, valid files the lexer finds what tree-sitter's syntax tree gives version 1,
    /// except names and calls inside f-strings' braces (strings to the lexer).
    #[test]
    fn on_valid_files_the_lexer_agrees_with_the_syntax_tree() {
        let corpus = [
            include_str!("../../../tests/reference/code2lora_ref.py"),
            include_str!("../../../tests/reference/make_pt_fixtures.py"),
            include_str!("../../../tests/reference/qwen_ref.py"),
            include_str!("../../../tests/reference/mine_tasks.py"),
        ];
        let (mut same, mut total) = (0usize, 0usize);
        for file in corpus {
            let mut tree = Vec::new();
            assert!(crate::encoder::python::features(file, &mut |k, t| tree.push((k.tag(), t.to_owned()))));
            let mut lexed = found(file);
            tree.sort();
            lexed.sort();
            let (mut a, mut b) = (tree.iter().peekable(), lexed.iter().peekable());
            let mut only_tree = Vec::new();
            let mut only_lexed = Vec::new();
            loop {
                match (a.peek(), b.peek()) {
                    (Some(x), Some(y)) if x == y => {
                        same += 1;
                        a.next();
                        b.next();
                    }
                    (Some(x), Some(y)) if x < y => only_tree.push(a.next().unwrap()),
                    (Some(_), Some(_)) | (None, Some(_)) => only_lexed.push(b.next().unwrap()),
                    (Some(_), None) => only_tree.push(a.next().unwrap()),
                    (None, None) => break,
                }
            }
            total += tree.len().max(lexed.len());
            // The lexer finds nothing the tree lacks; it misses only the names and calls
            // inside f-strings' braces.
            assert!(only_lexed.is_empty() && only_tree.iter().all(|(k, _)| *k == "id" || *k == "call"), "lexer only: {only_lexed:?}\ntree only: {only_tree:?}");
        }
        assert!(same as f64 >= 0.97 * total as f64, "{same} of {total} features agree");
        assert!(total > 4_000, "the corpus exercised both ({total} features)");
    }
}
