//! A reader for the subset of EDN that Jepsen and Knossos histories use, and a writer.
//!
//! Supported: `nil`, booleans, integers, floats, strings, characters are not, keywords, symbols,
//! vectors, lists, maps, sets, `;` comments, commas as whitespace, and tagged elements
//! (`#jepsen.history.Op{...}` reads as the map it tags). Errors carry a 1-based line and column.

use std::borrow::Cow;
use std::fmt::{self, Write};

/// An EDN value. Strings and names borrow from the parsed text where they can, so reading a
/// history allocates little.
#[derive(Debug, Clone, PartialEq)]
pub enum Edn<'a> {
    /// `nil`.
    Nil,
    /// `true` or `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(Cow<'a, str>),
    /// A keyword, without its leading colon.
    Keyword(Cow<'a, str>),
    /// A symbol.
    Symbol(Cow<'a, str>),
    /// `[...]`.
    Vector(Vec<Edn<'a>>),
    /// `(...)`.
    List(Vec<Edn<'a>>),
    /// `{...}`, in file order.
    Map(Vec<(Edn<'a>, Edn<'a>)>),
    /// `#{...}`.
    Set(Vec<Edn<'a>>),
    /// `#tag value`.
    Tagged(Cow<'a, str>, Box<Edn<'a>>),
}

impl<'a> Edn<'a> {
    /// A keyword.
    pub fn keyword(name: impl Into<Cow<'a, str>>) -> Self {
        Edn::Keyword(name.into())
    }

    /// The value at keyword `key` of a map (looking through tags).
    pub fn get(&self, key: &str) -> Option<&Edn<'a>> {
        match self {
            Edn::Map(entries) => entries.iter().find(|(k, _)| matches!(k, Edn::Keyword(s) if s == key)).map(|(_, v)| v),
            Edn::Tagged(_, inner) => inner.get(key),
            _ => None,
        }
    }

    /// The elements of a vector or list.
    pub fn as_seq(&self) -> Option<&[Edn<'a>]> {
        match self {
            Edn::Vector(v) | Edn::List(v) => Some(v),
            _ => None,
        }
    }

    /// A short name of the value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Edn::Nil => "nil",
            Edn::Bool(_) => "a boolean",
            Edn::Int(_) => "an integer",
            Edn::Float(_) => "a float",
            Edn::Str(_) => "a string",
            Edn::Keyword(_) => "a keyword",
            Edn::Symbol(_) => "a symbol",
            Edn::Vector(_) => "a vector",
            Edn::List(_) => "a list",
            Edn::Map(_) => "a map",
            Edn::Set(_) => "a set",
            Edn::Tagged(..) => "a tagged element",
        }
    }
}

/// A syntax error at a position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What was expected.
    pub message: String,
}

/// Reads EDN values one after another from a string.
pub struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
    line: usize,
    line_start: usize,
}

/// How deep collections may nest before the input is refused (a stack overflow is not an error
/// message).
const MAX_DEPTH: usize = 256;

impl<'a> Parser<'a> {
    /// A parser over `text`.
    pub fn new(text: &'a str) -> Self {
        Parser { text: text.as_bytes(), pos: 0, line: 1, line_start: 0 }
    }

    /// The byte offset of the parser's position in the text.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// The 1-based line of the parser's position.
    pub fn line(&self) -> usize {
        self.line
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError { line: self.line, column: self.pos - self.line_start + 1, message: message.into() }
    }

    fn skip_ws(&mut self) {
        while let Some(&b) = self.text.get(self.pos) {
            match b {
                b'\n' => {
                    self.pos += 1;
                    self.line += 1;
                    self.line_start = self.pos;
                }
                b' ' | b'\t' | b'\r' | b',' => self.pos += 1,
                b';' => {
                    while self.text.get(self.pos).is_some_and(|b| *b != b'\n') {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    /// Whether only whitespace and comments remain.
    pub fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos >= self.text.len()
    }

    /// Reads the next value.
    pub fn next_value(&mut self) -> Result<Edn<'a>, ParseError> {
        self.value(0)
    }

    fn value(&mut self, depth: usize) -> Result<Edn<'a>, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("collections nested deeper than {MAX_DEPTH}")));
        }
        self.skip_ws();
        let Some(&b) = self.text.get(self.pos) else {
            return Err(self.error("unexpected end of input, expected a value"));
        };
        match b {
            b'[' => self.collection(b']', depth).map(Edn::Vector),
            b'(' => self.collection(b')', depth).map(Edn::List),
            b'{' => {
                let items = self.collection(b'}', depth)?;
                if items.len() % 2 != 0 {
                    return Err(self.error("map has an odd number of forms"));
                }
                let mut it = items.into_iter();
                let mut entries = Vec::new();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    entries.push((k, v));
                }
                Ok(Edn::Map(entries))
            }
            b'#' => {
                self.pos += 1;
                match self.text.get(self.pos) {
                    Some(b'{') => self.collection(b'}', depth).map(Edn::Set),
                    Some(b'_') => {
                        self.pos += 1;
                        self.value(depth + 1)?; // #_ discards the next form
                        self.value(depth)
                    }
                    _ => {
                        let tag = self.token();
                        if tag.is_empty() {
                            return Err(self.error("expected a tag after '#'"));
                        }
                        Ok(Edn::Tagged(tag.into(), Box::new(self.value(depth + 1)?)))
                    }
                }
            }
            b'"' => self.string(),
            b':' => {
                self.pos += 1;
                let t = self.token();
                if t.is_empty() {
                    return Err(self.error("expected a keyword name after ':'"));
                }
                Ok(Edn::Keyword(t.into()))
            }
            b']' | b')' | b'}' => Err(self.error(format!("unexpected '{}'", b as char))),
            _ => {
                let start_col = self.pos - self.line_start + 1;
                let t = self.token();
                if t.is_empty() {
                    return Err(self.error(format!("unexpected character `{}`", b as char)));
                }
                Ok(match t {
                    "nil" => Edn::Nil,
                    "true" => Edn::Bool(true),
                    "false" => Edn::Bool(false),
                    _ if t.starts_with(|c: char| c.is_ascii_digit())
                        || (t.len() > 1
                            && t.starts_with(['-', '+'])
                            && t[1..].starts_with(|c: char| c.is_ascii_digit())) =>
                    {
                        let n = t.trim_end_matches('N').trim_end_matches('M');
                        if let Ok(i) = n.parse::<i64>() {
                            Edn::Int(i)
                        } else if let Ok(f) = n.parse::<f64>() {
                            Edn::Float(f)
                        } else {
                            return Err(ParseError {
                                line: self.line,
                                column: start_col,
                                message: format!("`{t}` is not a number"),
                            });
                        }
                    }
                    _ => Edn::Symbol(t.into()),
                })
            }
        }
    }

    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while let Some(&b) = self.text.get(self.pos) {
            if b.is_ascii_whitespace() || b",;()[]{}\"".contains(&b) {
                break;
            }
            self.pos += 1;
        }
        // Tokens stop only at ASCII bytes, so they are valid UTF-8 slices of valid UTF-8 input.
        std::str::from_utf8(&self.text[start..self.pos]).unwrap_or("")
    }

    /// Reads a top-level vector or list with the 1-based line each element starts on, so that an
    /// error about an element can name its line; `None` (nothing read) when the next value is
    /// something else.
    pub fn next_seq_with_lines(&mut self) -> Option<Result<Vec<(usize, Edn<'a>)>, ParseError>> {
        self.skip_ws();
        let close = match self.text.get(self.pos) {
            Some(b'[') => b']',
            Some(b'(') => b')',
            _ => return None,
        };
        Some(self.collection_with(close, 0, |line, v| (line, v)))
    }

    fn collection(&mut self, close: u8, depth: usize) -> Result<Vec<Edn<'a>>, ParseError> {
        self.collection_with(close, depth, |_, v| v)
    }

    /// Reads a collection closed by `close`, each element through `item` with its line.
    fn collection_with<T>(
        &mut self,
        close: u8,
        depth: usize,
        mut item: impl FnMut(usize, Edn<'a>) -> T,
    ) -> Result<Vec<T>, ParseError> {
        let (open_line, open_col) = (self.line, self.pos - self.line_start + 1);
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            match self.text.get(self.pos) {
                None => {
                    let open = match close {
                        b']' => '[',
                        b')' => '(',
                        _ => '{',
                    };
                    return Err(self.error(format!(
                        "unexpected end of input: '{open}' opened at line {open_line}, column {open_col} is never closed"
                    )));
                }
                Some(&b) if b == close => {
                    self.pos += 1;
                    return Ok(items);
                }
                Some(_) => {
                    let line = self.line;
                    items.push(item(line, self.value(depth + 1)?));
                }
            }
        }
    }

    fn string(&mut self) -> Result<Edn<'a>, ParseError> {
        self.pos += 1;
        let mut out = String::new();
        let start = self.pos;
        let mut run_start = start;
        loop {
            let Some(&b) = self.text.get(self.pos) else {
                return Err(self.error("unexpected end of input inside a string"));
            };
            match b {
                b'"' => {
                    let run = std::str::from_utf8(&self.text[run_start..self.pos]).unwrap_or("");
                    self.pos += 1;
                    if run_start == start {
                        return Ok(Edn::Str(run.into())); // no escapes: borrow
                    }
                    out.push_str(run);
                    return Ok(Edn::Str(out.into()));
                }
                b'\\' => {
                    out.push_str(std::str::from_utf8(&self.text[run_start..self.pos]).unwrap_or(""));
                    let esc = self.text.get(self.pos + 1).copied();
                    out.push(match esc {
                        Some(b'n') => '\n',
                        Some(b't') => '\t',
                        Some(b'r') => '\r',
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        _ => return Err(self.error("unsupported escape in string")),
                    });
                    self.pos += 2;
                    run_start = self.pos;
                }
                b'\n' => {
                    self.pos += 1;
                    self.line += 1;
                    self.line_start = self.pos;
                }
                _ => self.pos += 1,
            }
        }
    }
}

/// Writes `v` as EDN.
pub fn write(v: &Edn<'_>, out: &mut String) {
    match v {
        Edn::Nil => out.push_str("nil"),
        Edn::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Edn::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Edn::Float(f) => {
            let _ = write!(out, "{f:?}");
        }
        Edn::Str(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        Edn::Keyword(k) => {
            out.push(':');
            out.push_str(k);
        }
        Edn::Symbol(s) => out.push_str(s),
        Edn::Vector(items) => seq(out, "[", "]", items),
        Edn::List(items) => seq(out, "(", ")", items),
        Edn::Set(items) => seq(out, "#{", "}", items),
        Edn::Map(entries) => {
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write(k, out);
                out.push(' ');
                write(v, out);
            }
            out.push('}');
        }
        Edn::Tagged(tag, inner) => {
            out.push('#');
            out.push_str(tag);
            out.push(' ');
            write(inner, out);
        }
    }
}

fn seq(out: &mut String, open: &str, close: &str, items: &[Edn<'_>]) {
    out.push_str(open);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write(item, out);
    }
    out.push_str(close);
}

impl fmt::Display for Edn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        write(self, &mut s);
        f.write_str(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Edn<'_>, ParseError> {
        Parser::new(s).next_value()
    }

    #[test]
    fn reads_history_shapes() {
        let v = parse("{:process 7, :type :invoke, :f :cas, :value [2 3] :time -5 :s \"a\\\"b\"} ; c").unwrap();
        assert_eq!(v.get("process"), Some(&Edn::Int(7)));
        assert_eq!(v.get("value"), Some(&Edn::Vector(vec![Edn::Int(2), Edn::Int(3)])));
        assert_eq!(v.get("time"), Some(&Edn::Int(-5)));
        assert_eq!(v.get("s"), Some(&Edn::Str("a\"b".into())));
        assert!(matches!(v.get("type"), Some(Edn::Keyword(Cow::Borrowed("invoke")))));
        let tagged = parse("#jepsen.history.Op{:index 0 :f :read}").unwrap();
        assert_eq!(tagged.get("f"), Some(&Edn::Keyword("read".into())));
        assert_eq!(parse("#{1 2}").unwrap(), Edn::Set(vec![Edn::Int(1), Edn::Int(2)]));
        assert_eq!(parse("[#_ 1 2]").unwrap(), Edn::Vector(vec![Edn::Int(2)]));
    }

    #[test]
    fn round_trips_through_the_writer() {
        let text = r#"[{:process :nemesis, :type :info, :f :start, :value nil} (1 -2 3.5 "x\ny" true sym)]"#;
        let v = parse(text).unwrap();
        assert_eq!(parse(&v.to_string()).unwrap(), v);
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse("[1 2\n 3 }").unwrap_err();
        assert_eq!((e.line, e.column), (2, 4));
        assert!(e.message.contains("unexpected '}'"), "{e}");
        let e = parse("{:a 1\n:b").unwrap_err();
        assert!(e.message.contains("never closed"), "{e}");
        assert!(parse("{:a}").unwrap_err().message.contains("odd number"));
        assert!(parse(&"[".repeat(1000)).unwrap_err().message.contains("nested deeper"));
        assert!(parse("12abc").unwrap_err().message.contains("not a number"));
    }
}
