//! The slice of SOQL a connector needs to find a record before writing:
//!
//! ```text
//! SELECT f1, f2 FROM Object [WHERE F = 'v' [AND|OR F2 != 'v2' …]] [LIMIT n]
//! ```
//!
//! As in Salesforce: keywords, field and object names ignore case; text
//! comparisons ignore case (`Email = 'JANE@x.io'` finds `jane@x.io`);
//! string literals are single-quoted with backslash escapes (`\'`, `\\`,
//! `\n`…); values may also be `null`, `true`, `false` or numbers;
//! `AND` and `OR` cannot be mixed without parentheses (which this subset
//! does not have). Anything else is `MALFORMED_QUERY`, an unknown object
//! `INVALID_TYPE`, an unknown field `INVALID_FIELD`, each with
//! Salesforce's caret-and-position message.

use axum::http::StatusCode;
use serde_json::Value;

use super::schema::{SObject, Schema};
use super::wire::SfError;

/// A value a condition compares with.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Literal {
    Text(String),
    Number(String),
    Bool(bool),
    Null,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Condition {
    /// The field's API name.
    pub field: String,
    pub negated: bool,
    pub value: Literal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Join {
    And,
    Or,
}

/// A parsed query.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Query {
    pub object: SObject,
    /// API names, in the order selected.
    pub fields: Vec<String>,
    pub conditions: Vec<Condition>,
    pub join: Join,
    pub limit: Option<usize>,
}

impl Condition {
    fn holds(&self, value: Option<&Value>) -> bool {
        let value = value.filter(|v| !v.is_null());
        let equal = match (&self.value, value) {
            (Literal::Null, None) => true,
            (Literal::Null, Some(_)) | (_, None) => false,
            (Literal::Text(t) | Literal::Number(t), Some(Value::String(s))) => {
                s.eq_ignore_ascii_case(t)
            }
            (Literal::Bool(b), Some(Value::Bool(v))) => b == v,
            (Literal::Number(t), Some(Value::Number(n))) => n.to_string() == *t,
            _ => false,
        };
        equal != self.negated
    }
}

impl Query {
    /// Whether a record (its fields by API name) matches the WHERE clause.
    pub(crate) fn matches(&self, get: impl Fn(&str) -> Option<Value>) -> bool {
        let mut results = self
            .conditions
            .iter()
            .map(|c| c.holds(get(&c.field).as_ref()));
        match self.join {
            Join::And => results.all(|r| r),
            Join::Or => self.conditions.is_empty() || results.any(|r| r),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Number(String),
    Comma,
    Eq,
    Ne,
    Other(char),
    End,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Word(w) => w.clone(),
            Token::Text(t) => format!("'{t}'"),
            Token::Number(n) => n.clone(),
            Token::Comma => ",".into(),
            Token::Eq => "=".into(),
            Token::Ne => "!=".into(),
            Token::Other(c) => c.to_string(),
            Token::End => "<EOF>".into(),
        }
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        matches!(self, Token::Word(w) if w.eq_ignore_ascii_case(keyword))
    }
}

/// Tokens with their 1-based column.
fn tokenize(query: &str) -> Result<Vec<(Token, usize)>, (String, usize)> {
    let chars: Vec<char> = query.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '.')
            {
                i += 1;
            }
            tokens.push((Token::Word(chars[start..i].iter().collect()), column));
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            tokens.push((Token::Number(chars[start..i].iter().collect()), column));
        } else if c == '\'' {
            i += 1;
            let mut text = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(("unterminated string literal".into(), column)),
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        let escaped = match chars.get(i + 1) {
                            Some('n') => '\n',
                            Some('r') => '\r',
                            Some('t') => '\t',
                            Some('b') => '\u{8}',
                            Some('f') => '\u{c}',
                            Some(c @ ('\'' | '"' | '\\' | '_' | '%')) => *c,
                            _ => {
                                return Err((
                                    "Invalid string literal: illegal escape sequence".into(),
                                    i + 1,
                                ));
                            }
                        };
                        // `\_` and `\%` keep their backslash outside LIKE.
                        if matches!(escaped, '_' | '%') {
                            text.push('\\');
                        }
                        text.push(escaped);
                        i += 2;
                    }
                    Some(c) => {
                        text.push(*c);
                        i += 1;
                    }
                }
            }
            tokens.push((Token::Text(text), column));
        } else if c == ',' {
            tokens.push((Token::Comma, column));
            i += 1;
        } else if c == '=' {
            tokens.push((Token::Eq, column));
            i += 1;
        } else if (c == '!' && chars.get(i + 1) == Some(&'='))
            || (c == '<' && chars.get(i + 1) == Some(&'>'))
        {
            tokens.push((Token::Ne, column));
            i += 2;
        } else {
            tokens.push((Token::Other(c), column));
            i += 1;
        }
    }
    tokens.push((Token::End, chars.len() + 1));
    Ok(tokens)
}

/// Salesforce's error message layout: the query, a caret under the
/// column, the position, the reason.
fn positioned(query: &str, column: usize, reason: &str) -> String {
    format!(
        "\n{query}\n{}^\nERROR at Row:1:Column:{column}\n{reason}",
        " ".repeat(column.saturating_sub(1))
    )
}

struct Parser<'q> {
    query: &'q str,
    tokens: Vec<(Token, usize)>,
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &(Token, usize) {
        &self.tokens[self.at.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> (Token, usize) {
        let token = self.peek().clone();
        self.at += 1;
        token
    }

    fn malformed(&self, token: &(Token, usize)) -> SfError {
        SfError::new(
            StatusCode::BAD_REQUEST,
            "MALFORMED_QUERY",
            positioned(
                self.query,
                token.1,
                &format!("unexpected token: {}", token.0.describe()),
            ),
        )
    }

    fn expect_keyword(&mut self, keyword: &str) -> Result<(), SfError> {
        let token = self.next();
        if token.0.is_keyword(keyword) {
            Ok(())
        } else {
            Err(self.malformed(&token))
        }
    }

    fn word(&mut self) -> Result<(String, usize), SfError> {
        match self.next() {
            (Token::Word(w), column) => Ok((w, column)),
            other => Err(self.malformed(&other)),
        }
    }
}

const RESERVED: [&str; 6] = ["select", "from", "where", "and", "or", "limit"];

/// Parses a query against the org's schema.
pub(crate) fn parse(query: &str, schema: &Schema) -> Result<Query, SfError> {
    let tokens = tokenize(query).map_err(|(reason, column)| {
        SfError::new(
            StatusCode::BAD_REQUEST,
            "MALFORMED_QUERY",
            positioned(query, column, &reason),
        )
    })?;
    let mut p = Parser {
        query,
        tokens,
        at: 0,
    };
    p.expect_keyword("SELECT")?;
    let mut selected = Vec::new();
    loop {
        let (name, column) = p.word()?;
        if RESERVED.iter().any(|k| name.eq_ignore_ascii_case(k)) {
            return Err(p.malformed(&(Token::Word(name), column)));
        }
        selected.push((name, column));
        if p.peek().0 == Token::Comma {
            p.next();
        } else {
            break;
        }
    }
    p.expect_keyword("FROM")?;
    let (object_name, object_column) = p.word()?;
    let Some(object) = SObject::parse(&object_name) else {
        return Err(SfError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_TYPE",
            positioned(
                query,
                object_column,
                &format!(
                    "sObject type '{object_name}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names."
                ),
            ),
        ));
    };
    let resolve = |name: &str, column: usize| {
        schema
            .field(object, name)
            .map(|f| f.name.clone())
            .ok_or_else(|| {
                SfError::new(
                    StatusCode::BAD_REQUEST,
                    "INVALID_FIELD",
                    positioned(
                        query,
                        column,
                        &format!(
                            "No such column '{name}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
                            object.name()
                        ),
                    ),
                )
            })
    };
    let mut fields: Vec<String> = Vec::new();
    for (name, column) in &selected {
        let field = resolve(name, *column)?;
        if fields.contains(&field) {
            return Err(SfError::new(
                StatusCode::BAD_REQUEST,
                "MALFORMED_QUERY",
                format!("duplicate field selected: {field}"),
            ));
        }
        fields.push(field);
    }
    let mut conditions = Vec::new();
    let mut join: Option<Join> = None;
    if p.peek().0.is_keyword("WHERE") {
        p.next();
        loop {
            let (name, column) = p.word()?;
            let field = resolve(&name, column)?;
            let negated = match p.next() {
                (Token::Eq, _) => false,
                (Token::Ne, _) => true,
                other => return Err(p.malformed(&other)),
            };
            let value = match p.next() {
                (Token::Text(t), _) => Literal::Text(t),
                (Token::Number(n), _) => Literal::Number(n),
                (Token::Word(w), _) if w.eq_ignore_ascii_case("null") => Literal::Null,
                (Token::Word(w), _) if w.eq_ignore_ascii_case("true") => Literal::Bool(true),
                (Token::Word(w), _) if w.eq_ignore_ascii_case("false") => Literal::Bool(false),
                other => return Err(p.malformed(&other)),
            };
            conditions.push(Condition {
                field,
                negated,
                value,
            });
            let this = if p.peek().0.is_keyword("AND") {
                Join::And
            } else if p.peek().0.is_keyword("OR") {
                Join::Or
            } else {
                break;
            };
            if join.is_some_and(|j| j != this) {
                let token = p.peek().clone();
                return Err(p.malformed(&token));
            }
            join = Some(this);
            p.next();
        }
    }
    let mut limit = None;
    if p.peek().0.is_keyword("LIMIT") {
        p.next();
        match p.next() {
            (Token::Number(n), column) => match n.parse::<usize>() {
                Ok(n) => limit = Some(n),
                Err(_) => return Err(p.malformed(&(Token::Number(n), column))),
            },
            other => return Err(p.malformed(&other)),
        }
    }
    let rest = p.next();
    if rest.0 != Token::End {
        return Err(p.malformed(&rest));
    }
    Ok(Query {
        object,
        fields,
        conditions,
        join: join.unwrap_or(Join::And),
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        Schema::default()
    }

    #[test]
    fn parses_the_subset() {
        let q = parse(
            "select id, EMAIL from lead where Email = 'o\\'brien@x.io' and leadgate_id__c != null limit 5",
            &schema(),
        )
        .unwrap();
        assert_eq!(q.object, SObject::Lead);
        assert_eq!(q.fields, vec!["Id", "Email"]);
        assert_eq!(
            q.conditions,
            vec![
                Condition {
                    field: "Email".into(),
                    negated: false,
                    value: Literal::Text("o'brien@x.io".into())
                },
                Condition {
                    field: "Leadgate_Id__c".into(),
                    negated: true,
                    value: Literal::Null
                },
            ]
        );
        assert_eq!((q.join, q.limit), (Join::And, Some(5)));
        let q = parse(
            "SELECT Id FROM Contact WHERE Email = 'a@x.io' OR Phone = '1'",
            &schema(),
        )
        .unwrap();
        assert_eq!(q.join, Join::Or);
    }

    #[test]
    fn matching_ignores_case_and_handles_null() {
        let q = parse(
            "SELECT Id FROM Lead WHERE Email = 'JANE@X.IO' AND Title = null",
            &schema(),
        )
        .unwrap();
        let record = json!({"Email": "jane@x.io"});
        assert!(q.matches(|f| record.get(f).cloned()));
        let record = json!({"Email": "jane@x.io", "Title": "CEO"});
        assert!(!q.matches(|f| record.get(f).cloned()));
        let q = parse("SELECT Id FROM Lead WHERE IsConverted = true", &schema()).unwrap();
        assert!(q.matches(|_| Some(Value::Bool(true))));
    }

    #[test]
    fn errors_carry_salesforce_codes() {
        let code = |q: &str| parse(q, &schema()).unwrap_err().code;
        assert_eq!(code("SELECT Id FROM Lead WHERE"), "MALFORMED_QUERY");
        assert_eq!(
            code("SELECT Id FROM Lead WHERE A__c = 'x'"),
            "INVALID_FIELD"
        );
        assert_eq!(code("SELECT Foo FROM Lead"), "INVALID_FIELD");
        assert_eq!(code("SELECT Id FROM Account"), "INVALID_TYPE");
        assert_eq!(
            code("SELECT Id FROM Lead WHERE Email = 'a' AND Phone = 'b' OR City = 'c'"),
            "MALFORMED_QUERY"
        );
        assert_eq!(
            code("SELECT Id FROM Lead WHERE Email = 'unterminated"),
            "MALFORMED_QUERY"
        );
        assert_eq!(code("SELECT Id FROM Lead ORDER BY Id"), "MALFORMED_QUERY");
        assert_eq!(code("SELECT Id, id FROM Lead"), "MALFORMED_QUERY");
        assert_eq!(code("DELETE FROM Lead"), "MALFORMED_QUERY");
        let e = parse("SELECT Id FROM Lead WHERE Email == 'x'", &schema()).unwrap_err();
        assert_eq!(
            e.message,
            "\nSELECT Id FROM Lead WHERE Email == 'x'\n                                 ^\nERROR at Row:1:Column:34\nunexpected token: ="
        );
    }
}
