//! The OData v4 the simulator understands: resource paths with key
//! predicates (`leads(<guid>)`, `leads(new_leadgateid='a''b')`, compound
//! `contacts(k1='a',k2='b')`), and the query options `$select`,
//! `$filter` (`eq`/`ne`/`gt`/`ge`/`lt`/`le`, `and`/`or`/`not`,
//! parentheses, `contains`/`startswith`/`endswith`), `$top`, `$orderby`
//! and `$count`.
//!
//! String comparisons ignore case, as Dataverse's SQL collation does.

use serde_json::Value;

use super::schema::{Schema, Table};
use super::wire::DvError;

/// How a path addresses one row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    /// By its primary key (lowercase GUID).
    Id(String),
    /// By alternate key values, column → value.
    Alternate(Vec<(String, String)>),
}

/// `leads`, `leads(<key>)` or `leads(<key>)/column`, percent-decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    pub set: String,
    pub key: Option<Key>,
    /// What follows the key (`/firstname`), if anything.
    pub rest: Option<String>,
}

/// A path segment percent-decoded (`+` stays a plus).
pub fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `s` is a GUID (`8-4-4-4-12` hex digits).
pub fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Parses the path after `/api/data/v9.x/` (still percent-encoded).
pub fn parse_resource(raw: &str) -> Result<Resource, DvError> {
    let path = decode(raw);
    let open = path.find(['(', '/']);
    let (set, after) = match open {
        Some(i) => (&path[..i], &path[i..]),
        None => (path.as_str(), ""),
    };
    if !after.starts_with('(') {
        let rest = after.strip_prefix('/').filter(|r| !r.is_empty());
        return Ok(Resource {
            set: set.to_owned(),
            key: None,
            rest: rest.map(str::to_owned),
        });
    }
    let close = closing_paren(after)
        .ok_or_else(|| DvError::bad_query("Bad Request - Error in query syntax."))?;
    let inner = &after[1..close];
    let rest = after[close + 1..]
        .strip_prefix('/')
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    if after.len() > close + 1 && rest.is_none() {
        return Err(DvError::bad_query("Bad Request - Error in query syntax."));
    }
    Ok(Resource {
        set: set.to_owned(),
        key: Some(parse_key(inner)?),
        rest,
    })
}

/// The index of the `)` closing the `(` at 0, skipping quoted text.
fn closing_paren(text: &str) -> Option<usize> {
    let mut quoted = false;
    let bytes = text.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' if quoted && bytes.get(i + 1) == Some(&b'\'') => i += 1,
            b'\'' => quoted = !quoted,
            b')' if !quoted => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// `<guid>`, `name=value` or `a='x',b='y'`.
fn parse_key(inner: &str) -> Result<Key, DvError> {
    let syntax = || DvError::bad_query("Bad Request - Error in query syntax.");
    let inner = inner.trim();
    if is_guid(inner) {
        return Ok(Key::Id(inner.to_ascii_lowercase()));
    }
    let mut pairs = Vec::new();
    let mut rest = inner;
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or_else(syntax)?;
        let name = rest[..eq].trim();
        if name.is_empty() {
            return Err(syntax());
        }
        let value_text = rest[eq + 1..].trim_start();
        let (value, consumed) = if let Some(quoted) = value_text.strip_prefix('\'') {
            let (text, used) = read_quoted(quoted).ok_or_else(syntax)?;
            (text, used + 1)
        } else {
            let end = value_text.find(',').unwrap_or(value_text.len());
            (value_text[..end].trim().to_owned(), end)
        };
        pairs.push((name.to_owned(), value));
        rest = value_text[consumed..].trim_start();
        if let Some(next) = rest.strip_prefix(',') {
            rest = next.trim_start();
            if rest.is_empty() {
                return Err(syntax());
            }
        } else if !rest.is_empty() {
            return Err(syntax());
        }
    }
    if pairs.is_empty() {
        return Err(syntax());
    }
    Ok(Key::Alternate(pairs))
}

/// The text of a quoted literal whose opening quote was consumed, with
/// `''` as one quote, and the bytes used including the closing quote.
fn read_quoted(text: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            if chars.peek().is_some_and(|(_, n)| *n == '\'') {
                chars.next();
                out.push('\'');
                continue;
            }
            return Some((out, i + 1));
        }
        out.push(c);
    }
    None
}

/// `$select`: the columns asked for, checked (the id column is always
/// answered). `None`: every column.
pub fn select(
    schema: &Schema,
    table: Table,
    raw: Option<&str>,
) -> Result<Option<Vec<String>>, DvError> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let mut names = Vec::new();
    for name in raw.split(',').map(str::trim) {
        if !schema.readable(table, name) {
            return Err(DvError::no_such_property(table, name));
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    Ok(Some(names))
}

/// `$top`.
pub fn top(raw: Option<&str>) -> Result<Option<usize>, DvError> {
    match raw.map(str::trim) {
        None => Ok(None),
        Some(text) => text.parse::<usize>().map(Some).map_err(|_| {
            DvError::bad_query(format!(
                "Invalid value '{text}' for $top query option found. The $top query option requires a non-negative integer value."
            ))
        }),
    }
}

/// `$orderby=col [asc|desc], …`.
pub fn order_by(
    schema: &Schema,
    table: Table,
    raw: Option<&str>,
) -> Result<Vec<(String, bool)>, DvError> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(|part| {
            let mut words = part.split_whitespace();
            let name = words.next().unwrap_or_default();
            let descending = match words.next() {
                None => false,
                Some(w) if w.eq_ignore_ascii_case("asc") => false,
                Some(w) if w.eq_ignore_ascii_case("desc") => true,
                Some(_) => return Err(DvError::syntax(part.len(), raw)),
            };
            if !schema.readable(table, name) {
                return Err(DvError::no_such_property(table, name));
            }
            Ok((name.to_owned(), descending))
        })
        .collect()
}

/// Compares two column values the way `$orderby` does: nulls first,
/// numbers numerically, text ignoring case.
pub fn compare(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let a = a.filter(|v| !v.is_null());
    let b = b.filter(|v| !v.is_null());
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
            _ => text_of(a).to_lowercase().cmp(&text_of(b).to_lowercase()),
        },
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A literal in a filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Text(String),
    Number(f64),
    Bool(bool),
    Null,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    Contains,
    StartsWith,
    EndsWith,
}

/// A parsed `$filter`.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    Compare(String, Op, Literal),
    Call(Func, String, String),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
}

impl Filter {
    /// Whether a row (its values by column) matches.
    pub fn matches(&self, get: &impl Fn(&str) -> Option<Value>) -> bool {
        match self {
            Filter::And(a, b) => a.matches(get) && b.matches(get),
            Filter::Or(a, b) => a.matches(get) || b.matches(get),
            Filter::Not(a) => !a.matches(get),
            Filter::Call(func, column, needle) => {
                let Some(Value::String(held)) = get(column) else {
                    return false;
                };
                let (held, needle) = (held.to_lowercase(), needle.to_lowercase());
                match func {
                    Func::Contains => held.contains(&needle),
                    Func::StartsWith => held.starts_with(&needle),
                    Func::EndsWith => held.ends_with(&needle),
                }
            }
            Filter::Compare(column, op, literal) => {
                let held = get(column).filter(|v| !v.is_null());
                let ordering = match (held.as_ref(), literal) {
                    (None, Literal::Null) => Some(std::cmp::Ordering::Equal),
                    (None, _) | (Some(_), Literal::Null) => None,
                    (Some(Value::String(h)), Literal::Text(t)) => {
                        Some(h.to_lowercase().cmp(&t.to_lowercase()))
                    }
                    (Some(Value::Bool(h)), Literal::Bool(b)) => Some(h.cmp(b)),
                    (Some(v), Literal::Number(n)) => v.as_f64().and_then(|h| h.partial_cmp(n)),
                    (Some(v), Literal::Text(t)) => {
                        Some(text_of(v).to_lowercase().cmp(&t.to_lowercase()))
                    }
                    _ => None,
                };
                use std::cmp::Ordering::{Equal, Greater, Less};
                match (op, ordering) {
                    (Op::Eq, Some(o)) => o == Equal,
                    (Op::Ne, Some(o)) => o != Equal,
                    (Op::Ne, None) => true,
                    (_, None) => false,
                    (Op::Gt, Some(o)) => o == Greater,
                    (Op::Ge, Some(o)) => o != Less,
                    (Op::Lt, Some(o)) => o == Less,
                    (Op::Le, Some(o)) => o != Greater,
                }
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Number(f64),
    Open,
    Close,
    Comma,
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, DvError> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                tokens.push((at, Token::Open));
                i += 1;
            }
            ')' => {
                tokens.push((at, Token::Close));
                i += 1;
            }
            ',' => {
                tokens.push((at, Token::Comma));
                i += 1;
            }
            '\'' => {
                let (value, used) =
                    read_quoted(&text[at + 1..]).ok_or_else(|| DvError::syntax(at, text))?;
                tokens.push((at, Token::Text(value)));
                let end = at + 1 + used;
                while i < chars.len() && chars[i].0 < end {
                    i += 1;
                }
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].1.is_ascii_alphanumeric() || matches!(chars[i].1, '_' | '-' | '.'))
                {
                    i += 1;
                }
                let end = chars.get(i).map_or(text.len(), |(p, _)| *p);
                let word = &text[at..end];
                let starts_numeric = chars[start].1.is_ascii_digit() || chars[start].1 == '-';
                match word.parse::<f64>() {
                    Ok(n) if starts_numeric && !is_guid(word) => {
                        tokens.push((at, Token::Number(n)));
                    }
                    _ => tokens.push((at, Token::Word(word.to_owned()))),
                }
            }
            _ => return Err(DvError::syntax(at, text)),
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<(usize, Token)>,
    pos: usize,
    /// Checks a property name (`Err`: the error naming it).
    known: &'a dyn Fn(&str) -> Result<(), DvError>,
}

impl Parser<'_> {
    fn error(&self) -> DvError {
        let at = self
            .tokens
            .get(self.pos)
            .map_or(self.text.len(), |(p, _)| *p);
        DvError::syntax(at, self.text)
    }

    fn peek_word(&self, word: &str) -> bool {
        matches!(self.tokens.get(self.pos), Some((_, Token::Word(w))) if w.eq_ignore_ascii_case(word))
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        token
    }

    fn or(&mut self) -> Result<Filter, DvError> {
        let mut left = self.and()?;
        while self.peek_word("or") {
            self.pos += 1;
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, DvError> {
        let mut left = self.unary()?;
        while self.peek_word("and") {
            self.pos += 1;
            left = Filter::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, DvError> {
        if self.peek_word("not") {
            self.pos += 1;
            return Ok(Filter::Not(Box::new(self.unary()?)));
        }
        match self.tokens.get(self.pos).map(|(_, t)| t.clone()) {
            Some(Token::Open) => {
                self.pos += 1;
                let inner = self.or()?;
                match self.next() {
                    Some(Token::Close) => Ok(inner),
                    _ => {
                        self.pos -= 1;
                        Err(self.error())
                    }
                }
            }
            Some(Token::Word(word)) => {
                self.pos += 1;
                let func = match word.to_ascii_lowercase().as_str() {
                    "contains" => Some(Func::Contains),
                    "startswith" => Some(Func::StartsWith),
                    "endswith" => Some(Func::EndsWith),
                    _ => None,
                };
                if let Some(func) = func
                    && matches!(self.tokens.get(self.pos), Some((_, Token::Open)))
                {
                    self.pos += 1;
                    let column = self.column()?;
                    if self.next() != Some(Token::Comma) {
                        self.pos -= 1;
                        return Err(self.error());
                    }
                    let Some(Token::Text(needle)) = self.next() else {
                        self.pos -= 1;
                        return Err(self.error());
                    };
                    if self.next() != Some(Token::Close) {
                        self.pos -= 1;
                        return Err(self.error());
                    }
                    return Ok(Filter::Call(func, column, needle));
                }
                self.pos -= 1;
                let column = self.column()?;
                let op = match self.next() {
                    Some(Token::Word(w)) => match w.to_ascii_lowercase().as_str() {
                        "eq" => Op::Eq,
                        "ne" => Op::Ne,
                        "gt" => Op::Gt,
                        "ge" => Op::Ge,
                        "lt" => Op::Lt,
                        "le" => Op::Le,
                        _ => {
                            self.pos -= 1;
                            return Err(self.error());
                        }
                    },
                    _ => {
                        self.pos -= 1;
                        return Err(self.error());
                    }
                };
                let literal = match self.next() {
                    Some(Token::Text(t)) => Literal::Text(t),
                    Some(Token::Number(n)) => Literal::Number(n),
                    Some(Token::Word(w)) if w == "null" => Literal::Null,
                    Some(Token::Word(w)) if w == "true" => Literal::Bool(true),
                    Some(Token::Word(w)) if w == "false" => Literal::Bool(false),
                    Some(Token::Word(w)) if is_guid(&w) => Literal::Text(w.to_ascii_lowercase()),
                    _ => {
                        self.pos -= 1;
                        return Err(self.error());
                    }
                };
                Ok(Filter::Compare(column, op, literal))
            }
            _ => Err(self.error()),
        }
    }

    fn column(&mut self) -> Result<String, DvError> {
        match self.next() {
            Some(Token::Word(name)) => (self.known)(&name).map(|()| name),
            _ => {
                self.pos -= 1;
                Err(self.error())
            }
        }
    }
}

/// Parses `$filter` against the table's columns.
pub fn filter(schema: &Schema, table: Table, raw: Option<&str>) -> Result<Option<Filter>, DvError> {
    let known = |name: &str| {
        if schema.readable(table, name) {
            Ok(())
        } else {
            Err(DvError::no_such_property(table, name))
        }
    };
    filter_with(raw, &known)
}

/// Parses `$filter` with `known` deciding which names are properties.
pub fn filter_with(
    raw: Option<&str>,
    known: &dyn Fn(&str) -> Result<(), DvError>,
) -> Result<Option<Filter>, DvError> {
    let Some(text) = raw.filter(|s| !s.trim().is_empty()) else {
        return Ok(None);
    };
    let mut parser = Parser {
        text,
        tokens: tokenize(text)?,
        pos: 0,
        known,
    };
    let parsed = parser.or()?;
    if parser.pos < parser.tokens.len() {
        return Err(parser.error());
    }
    Ok(Some(parsed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_and_keys() {
        let r = parse_resource("leads").unwrap();
        assert_eq!((r.set.as_str(), r.key, r.rest), ("leads", None, None));
        let r = parse_resource("leads(6B29FC40-CA47-1067-B31D-00DD010662DA)").unwrap();
        assert_eq!(
            r.key,
            Some(Key::Id("6b29fc40-ca47-1067-b31d-00dd010662da".into()))
        );
        let r = parse_resource("leads(new_leadgateid='o''neil%2Fdyn%2Fv1')").unwrap();
        assert_eq!(
            r.key,
            Some(Key::Alternate(vec![(
                "new_leadgateid".into(),
                "o'neil/dyn/v1".into()
            )]))
        );
        let r = parse_resource("contacts(a='x,)y',b=5)/firstname").unwrap();
        assert_eq!(
            r.key,
            Some(Key::Alternate(vec![
                ("a".into(), "x,)y".into()),
                ("b".into(), "5".into())
            ]))
        );
        assert_eq!(r.rest.as_deref(), Some("firstname"));
        let r = parse_resource("leads(new_leadgateid=%27a%20b%27)").unwrap();
        assert_eq!(
            r.key,
            Some(Key::Alternate(vec![(
                "new_leadgateid".into(),
                "a b".into()
            )]))
        );
        assert!(parse_resource("leads(abc").is_err());
        assert!(parse_resource("leads(k='x'").is_err());
        assert!(parse_resource("leads(k='x',)").is_err());
    }

    #[test]
    fn filters() {
        let schema = Schema::default();
        let row = json!({"emailaddress1": "Jane@X.io", "firstname": "Jane", "leadsourcecode": 8});
        let get = |c: &str| row.get(c).cloned();
        let f = |text: &str| {
            filter(&schema, Table::Lead, Some(text))
                .unwrap()
                .unwrap()
                .matches(&get)
        };
        assert!(f("emailaddress1 eq 'jane@x.io'"));
        assert!(!f("emailaddress1 eq 'john@x.io'"));
        assert!(f("emailaddress1 eq 'john@x.io' or firstname eq 'JANE'"));
        assert!(!f("emailaddress1 eq 'jane@x.io' and firstname eq 'John'"));
        assert!(f(
            "(firstname eq 'x' or firstname eq 'jane') and not (lastname ne null)"
        ));
        assert!(f("lastname eq null"));
        assert!(f(
            "leadsourcecode eq 8 and leadsourcecode gt 7 and leadsourcecode le 8"
        ));
        assert!(f(
            "contains(emailaddress1,'@x.') and startswith(firstname, 'ja')"
        ));
        assert!(f("endswith(emailaddress1,'.IO')"));
        let err = filter(&schema, Table::Lead, Some("foo eq 'x'")).unwrap_err();
        assert_eq!(err.code, "0x80060888");
        assert!(
            err.message
                .contains("Could not find a property named 'foo'")
        );
        let err = filter(&schema, Table::Lead, Some("firstname eqq 'x'")).unwrap_err();
        assert_eq!(
            err.message,
            "Syntax error at position 10 in 'firstname eqq 'x''."
        );
        assert!(filter(&schema, Table::Lead, Some("firstname eq 'x")).is_err());
        assert!(filter(&schema, Table::Lead, Some("(firstname eq 'x'")).is_err());
        let guid = filter(
            &schema,
            Table::Lead,
            Some("leadid eq 6B29FC40-CA47-1067-B31D-00DD010662DA"),
        )
        .unwrap()
        .unwrap();
        let row = json!({"leadid": "6b29fc40-ca47-1067-b31d-00dd010662da"});
        assert!(guid.matches(&|c: &str| row.get(c).cloned()));
    }

    #[test]
    fn select_top_order() {
        let schema = Schema::default();
        assert_eq!(select(&schema, Table::Lead, None).unwrap(), None);
        assert_eq!(
            select(&schema, Table::Lead, Some("firstname,leadid,firstname")).unwrap(),
            Some(vec!["firstname".to_owned(), "leadid".to_owned()])
        );
        assert_eq!(
            select(&schema, Table::Lead, Some("nope")).unwrap_err().code,
            "0x80060888"
        );
        assert_eq!(top(Some("5")).unwrap(), Some(5));
        assert!(top(Some("-1")).is_err());
        assert_eq!(
            order_by(&schema, Table::Lead, Some("createdon desc, lastname")).unwrap(),
            vec![
                ("createdon".to_owned(), true),
                ("lastname".to_owned(), false)
            ]
        );
    }
}
