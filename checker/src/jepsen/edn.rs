//! A reader for the part of EDN that Jepsen histories use.
//!
//! Supported: nil, booleans, integers (an `N` suffix is accepted), floats (an `M`
//! suffix is accepted), strings with the usual escapes, characters, keywords, symbols,
//! lists, vectors, maps, sets, comments (`;` to the end of the line), the discard form
//! `#_`, and tagged values (`#inst "…"`, record literals such as `#jepsen.history.Op{…}`),
//! which are kept with their tag so the importer can look inside. Commas are
//! whitespace. Every error names the line and column. Ratios, namespaced maps and
//! reader conditionals are not supported, and nothing is evaluated.

use std::fmt;

/// One EDN value.
#[derive(Debug, Clone, PartialEq)]
pub enum Edn {
    /// `nil`.
    Nil,
    /// `true` / `false`.
    Bool(bool),
    /// An integer that fits in 64 bits.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A character such as `\a`.
    Char(char),
    /// A keyword, without the leading colon (`:type` is `Keyword("type")`).
    Keyword(String),
    /// A symbol.
    Symbol(String),
    /// `( … )`.
    List(Vec<Edn>),
    /// `[ … ]`.
    Vector(Vec<Edn>),
    /// `{ … }`, in source order.
    Map(Vec<(Edn, Edn)>),
    /// `#{ … }`, in source order.
    Set(Vec<Edn>),
    /// `#tag value`.
    Tagged(String, Box<Edn>),
}

impl Edn {
    /// The value under keyword `key` if this is a map (or a tagged map such as a record).
    pub fn get(&self, key: &str) -> Option<&Edn> {
        match self {
            Edn::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Edn::Keyword(name) if name == key))
                .map(|(_, v)| v),
            Edn::Tagged(_, inner) => inner.get(key),
            _ => None,
        }
    }

    /// The elements if this is a vector or a list.
    pub fn as_seq(&self) -> Option<&[Edn]> {
        match self {
            Edn::Vector(items) | Edn::List(items) => Some(items),
            _ => None,
        }
    }
}

impl fmt::Display for Edn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn seq(f: &mut fmt::Formatter<'_>, open: &str, items: &[Edn], close: &str) -> fmt::Result {
            f.write_str(open)?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                write!(f, "{item}")?;
            }
            f.write_str(close)
        }
        match self {
            Edn::Nil => f.write_str("nil"),
            Edn::Bool(b) => write!(f, "{b}"),
            Edn::Int(i) => write!(f, "{i}"),
            Edn::Float(x) => write!(f, "{x:?}"),
            Edn::Str(s) => write!(f, "{s:?}"),
            Edn::Char(c) => write!(f, "\\{c}"),
            Edn::Keyword(k) => write!(f, ":{k}"),
            Edn::Symbol(s) => f.write_str(s),
            Edn::List(items) => seq(f, "(", items, ")"),
            Edn::Vector(items) => seq(f, "[", items, "]"),
            Edn::Set(items) => seq(f, "#{", items, "}"),
            Edn::Map(entries) => {
                f.write_str("{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k} {v}")?;
                }
                f.write_str("}")
            }
            Edn::Tagged(tag, v) => write!(f, "#{tag} {v}"),
        }
    }
}

/// Why the text is not EDN, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {reason}")]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong.
    pub reason: String,
}

/// Deepest nesting accepted, so hostile input cannot overflow the stack.
pub const NESTING_DEPTH_MAX: usize = 256;

/// Reads every top-level form of `text`, each with the line it starts on.
///
/// With `unwrap_vector`, a text that is one top-level vector gives that vector's
/// elements instead, each with its own line.
pub fn parse_all(text: &str, unwrap_vector: bool) -> Result<Vec<(usize, Edn)>, ParseError> {
    let mut r = Reader {
        chars: text.chars().collect(),
        pos: 0,
        line: 1,
        column: 1,
        depth: 0,
    };
    r.skip_blank()?;
    if unwrap_vector && r.peek() == Some('[') {
        r.bump();
        let items = r.seq_with_lines(']')?;
        r.skip_blank()?;
        if r.peek().is_some() {
            return Err(r.error("more forms after the top-level vector"));
        }
        return Ok(items);
    }
    let mut forms = Vec::new();
    loop {
        r.skip_blank()?;
        if r.peek().is_none() {
            return Ok(forms);
        }
        let line = r.line;
        if let Some(form) = r.form()? {
            forms.push((line, form));
        }
    }
}

struct Reader {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    column: usize,
    depth: usize,
}

fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || matches!(c, ',' | '(' | ')' | '[' | ']' | '{' | '}' | '"' | ';')
}

impl Reader {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn error(&self, reason: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line,
            column: self.column,
            reason: reason.into(),
        }
    }

    /// Skips whitespace, commas and comments.
    fn skip_blank(&mut self) -> Result<(), ParseError> {
        while let Some(c) = self.peek() {
            if c.is_whitespace() || c == ',' {
                self.bump();
            } else if c == ';' {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.bump();
                }
            } else {
                break;
            }
        }
        Ok(())
    }

    /// Reads one form; None for a discarded (`#_`) form.
    fn form(&mut self) -> Result<Option<Edn>, ParseError> {
        let Some(c) = self.peek() else {
            return Err(self.error("unexpected end of input"));
        };
        self.depth += 1;
        if self.depth > NESTING_DEPTH_MAX {
            return Err(self.error(format!("nesting deeper than {NESTING_DEPTH_MAX}")));
        }
        let result = match c {
            '(' => self.bump_then(|r| r.seq(')').map(Edn::List)),
            '[' => self.bump_then(|r| r.seq(']').map(Edn::Vector)),
            '{' => self.bump_then(|r| r.map()),
            '"' => self.bump_then(|r| r.string()),
            '\\' => self.bump_then(|r| r.character()),
            '#' => {
                self.bump();
                self.dispatch()
            }
            ')' | ']' | '}' => Err(self.error(format!("unexpected '{c}'"))),
            _ => self.atom().map(Some),
        };
        self.depth -= 1;
        result
    }

    fn bump_then(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<Edn, ParseError>,
    ) -> Result<Option<Edn>, ParseError> {
        self.bump();
        f(self).map(Some)
    }

    /// After `#`: a set, a discard, or a tagged value.
    fn dispatch(&mut self) -> Result<Option<Edn>, ParseError> {
        match self.peek() {
            Some('{') => {
                self.bump();
                self.seq('}').map(|items| Some(Edn::Set(items)))
            }
            Some('_') => {
                self.bump();
                self.skip_blank()?;
                self.form()?;
                Ok(None)
            }
            Some(c) if c.is_alphabetic() => {
                let tag = self.token();
                self.skip_blank()?;
                let value = self
                    .form()?
                    .ok_or_else(|| self.error(format!("tag #{tag} has no value")))?;
                Ok(Some(Edn::Tagged(tag, Box::new(value))))
            }
            _ => Err(self.error("unsupported dispatch after '#'")),
        }
    }

    /// Forms up to the closing `close`.
    fn seq(&mut self, close: char) -> Result<Vec<Edn>, ParseError> {
        Ok(self
            .seq_with_lines(close)?
            .into_iter()
            .map(|(_, f)| f)
            .collect())
    }

    /// Forms up to the closing `close`, each with the line it starts on.
    fn seq_with_lines(&mut self, close: char) -> Result<Vec<(usize, Edn)>, ParseError> {
        // The opening bracket was just read; an unclosed one is reported where it opened.
        let (line, column) = (self.line, self.column.saturating_sub(1).max(1));
        let mut items = Vec::new();
        loop {
            self.skip_blank()?;
            match self.peek() {
                None => {
                    return Err(ParseError {
                        line,
                        column,
                        reason: format!("missing '{close}' for the bracket opened here"),
                    });
                }
                Some(c) if c == close => {
                    self.bump();
                    return Ok(items);
                }
                Some(_) => {
                    let line = self.line;
                    if let Some(item) = self.form()? {
                        items.push((line, item));
                    }
                }
            }
        }
    }

    fn map(&mut self) -> Result<Edn, ParseError> {
        let (line, column) = (self.line, self.column);
        let items = self.seq('}')?;
        if items.len() % 2 != 0 {
            return Err(ParseError {
                line,
                column,
                reason: "map with an odd number of forms".into(),
            });
        }
        let mut entries = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            entries.push((k, v));
        }
        Ok(Edn::Map(entries))
    }

    fn string(&mut self) -> Result<Edn, ParseError> {
        let (line, column) = (self.line, self.column.saturating_sub(1).max(1));
        let unterminated = || ParseError {
            line,
            column,
            reason: "unterminated string starting here".into(),
        };
        let mut s = String::new();
        loop {
            match self.bump() {
                None => return Err(unterminated()),
                Some('"') => return Ok(Edn::Str(s)),
                Some('\\') => match self.bump() {
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    Some('r') => s.push('\r'),
                    Some('"') => s.push('"'),
                    Some('\\') => s.push('\\'),
                    Some('u') => {
                        let hex: String = (0..4).filter_map(|_| self.bump()).collect();
                        let c = u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| self.error(format!("bad \\u escape '{hex}'")))?;
                        s.push(c);
                    }
                    Some(c) => return Err(self.error(format!("unknown escape '\\{c}'"))),
                    None => return Err(unterminated()),
                },
                Some(c) => s.push(c),
            }
        }
    }

    fn character(&mut self) -> Result<Edn, ParseError> {
        let name = self.token();
        let c = match name.as_str() {
            "newline" => '\n',
            "space" => ' ',
            "tab" => '\t',
            "return" => '\r',
            _ => {
                let mut cs = name.chars();
                match (cs.next(), cs.next()) {
                    (Some(c), None) => c,
                    // A delimiter right after the backslash is the character itself.
                    (None, _) => self.bump().ok_or_else(|| self.error("bad character"))?,
                    _ => return Err(self.error(format!("unknown character '\\{name}'"))),
                }
            }
        };
        Ok(Edn::Char(c))
    }

    /// Characters up to the next delimiter.
    fn token(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if is_delimiter(c) || (c == '#' && s.is_empty()) {
                break;
            }
            s.push(c);
            self.bump();
        }
        s
    }

    fn atom(&mut self) -> Result<Edn, ParseError> {
        let (line, column) = (self.line, self.column);
        let token = self.token();
        let err = |reason: String| ParseError {
            line,
            column,
            reason,
        };
        if token.is_empty() {
            return Err(err("unexpected character".into()));
        }
        if let Some(name) = token.strip_prefix(':') {
            if name.is_empty() {
                return Err(err("empty keyword".into()));
            }
            return Ok(Edn::Keyword(name.to_string()));
        }
        match token.as_str() {
            "nil" => return Ok(Edn::Nil),
            "true" => return Ok(Edn::Bool(true)),
            "false" => return Ok(Edn::Bool(false)),
            _ => {}
        }
        let first = token.chars().next().unwrap_or(' ');
        let second = token.chars().nth(1);
        let numeric = first.is_ascii_digit()
            || (matches!(first, '+' | '-') && second.is_some_and(|c| c.is_ascii_digit()));
        if !numeric {
            return Ok(Edn::Symbol(token));
        }
        let digits = token.strip_suffix('N').unwrap_or(&token);
        if let Ok(i) = digits.parse::<i64>() {
            return Ok(Edn::Int(i));
        }
        let decimal = token.strip_suffix('M').unwrap_or(&token);
        if let Ok(x) = decimal.parse::<f64>() {
            return Ok(Edn::Float(x));
        }
        Err(err(format!("bad number '{token}'")))
    }
}
