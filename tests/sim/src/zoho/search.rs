//! `GET /{Module}/search?criteria=…`: Zoho's criteria language
//! (`((Field:operator:value)and/or(…))`, Search Records page) and what
//! each operator matches.
//!
//! As Zoho documents it, `equals` on text behaves like *contains*:
//! `(Company:equals:ABC)` matches "ABC Inc" too. `in` takes a comma list,
//! `between` two values; `\,` `\(` `\)` `\\` escape those characters in a
//! value. Text operators are `equals`, `not_equal`, `starts_with`, `in`;
//! picklists and the owner `equals`, `not_equal`, `in`; date-times add the
//! comparisons and `between`. Anything else is `INVALID_QUERY`.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::schema::{Field, FieldType, Module, Schema};
use super::wire::ZohoError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Equals,
    NotEqual,
    StartsWith,
    In,
    GreaterThan,
    GreaterEqual,
    LessThan,
    LessEqual,
    Between,
}

impl Op {
    fn parse(name: &str) -> Option<Op> {
        Some(match name {
            "equals" => Op::Equals,
            "not_equal" => Op::NotEqual,
            "starts_with" => Op::StartsWith,
            "in" => Op::In,
            "greater_than" => Op::GreaterThan,
            "greater_equal" => Op::GreaterEqual,
            "less_than" => Op::LessThan,
            "less_equal" => Op::LessEqual,
            "between" => Op::Between,
            _ => return None,
        })
    }

    fn allowed(self, kind: FieldType) -> bool {
        use Op::*;
        match kind {
            FieldType::Text | FieldType::Email | FieldType::Phone | FieldType::Website => {
                matches!(self, Equals | NotEqual | StartsWith | In)
            }
            FieldType::TextArea => matches!(self, Equals | NotEqual | StartsWith),
            FieldType::Picklist | FieldType::OwnerLookup => matches!(self, Equals | NotEqual | In),
            FieldType::DateTime => self != StartsWith,
        }
    }
}

/// A parsed criteria expression.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Criteria {
    Condition {
        field: String,
        kind: FieldType,
        op: Op,
        values: Vec<String>,
    },
    And(Box<Criteria>, Box<Criteria>),
    Or(Box<Criteria>, Box<Criteria>),
}

fn invalid_query(reason: &str) -> ZohoError {
    ZohoError::new(
        StatusCode::BAD_REQUEST,
        "INVALID_QUERY",
        "invalid query formed",
    )
    .with(&[("reason", reason.into())])
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    schema: &'a Schema,
    module: Module,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn keyword(&mut self) -> Option<&'static str> {
        let rest: String = self.chars[self.pos..].iter().take(3).collect();
        let lower = rest.to_ascii_lowercase();
        if lower.starts_with("and") {
            self.pos += 3;
            Some("and")
        } else if lower.starts_with("or") {
            self.pos += 2;
            Some("or")
        } else {
            None
        }
    }

    /// expr := group (('and'|'or') group)*
    fn expr(&mut self) -> Result<Criteria, ZohoError> {
        let mut left = self.group()?;
        loop {
            self.skip_space();
            if self.peek().is_none() || self.peek() == Some(')') {
                return Ok(left);
            }
            let joiner = self
                .keyword()
                .ok_or_else(|| invalid_query("expected and/or between conditions"))?;
            self.skip_space();
            let right = self.group()?;
            left = match joiner {
                "and" => Criteria::And(Box::new(left), Box::new(right)),
                _ => Criteria::Or(Box::new(left), Box::new(right)),
            };
        }
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// group := '(' (expr | condition) ')'
    fn group(&mut self) -> Result<Criteria, ZohoError> {
        self.skip_space();
        if !self.eat('(') {
            return Err(invalid_query("expected ("));
        }
        self.skip_space();
        let inner = if self.peek() == Some('(') {
            self.expr()?
        } else {
            self.condition()?
        };
        self.skip_space();
        if !self.eat(')') {
            return Err(invalid_query("expected )"));
        }
        Ok(inner)
    }

    fn until_colon(&mut self) -> Result<String, ZohoError> {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if c == ':' {
                self.pos += 1;
                return Ok(out.trim().to_owned());
            }
            if c == '(' || c == ')' {
                break;
            }
            out.push(c);
            self.pos += 1;
        }
        Err(invalid_query("a condition is field:operator:value"))
    }

    /// The value up to the unescaped `)` (or the end), split on unescaped
    /// commas.
    fn values(&mut self) -> Vec<String> {
        let mut values = vec![String::new()];
        while let Some(c) = self.peek() {
            match c {
                '\\' => {
                    self.pos += 1;
                    if let Some(next) = self.peek() {
                        if let Some(last) = values.last_mut() {
                            last.push(next);
                        }
                        self.pos += 1;
                    }
                }
                ')' => break,
                ',' => {
                    values.push(String::new());
                    self.pos += 1;
                }
                _ => {
                    if let Some(last) = values.last_mut() {
                        last.push(c);
                    }
                    self.pos += 1;
                }
            }
        }
        values
    }

    fn condition(&mut self) -> Result<Criteria, ZohoError> {
        let name = self.until_colon()?;
        let op_name = self.until_colon()?;
        let raw = self.values();
        let field: &Field = self.schema.field(self.module, &name).ok_or_else(|| {
            ZohoError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_QUERY",
                "invalid query formed",
            )
            .with(&[
                ("api_name", name.as_str().into()),
                ("reason", "the api name given is invalid".into()),
            ])
        })?;
        let op = Op::parse(&op_name.to_ascii_lowercase())
            .filter(|op| op.allowed(field.kind))
            .ok_or_else(|| {
                ZohoError::new(
                    StatusCode::BAD_REQUEST,
                    "INVALID_QUERY",
                    "invalid query formed",
                )
                .with(&[
                    ("api_name", field.api_name.as_str().into()),
                    ("operator", op_name.as_str().into()),
                    ("reason", "invalid operator found".into()),
                ])
            })?;
        let values: Vec<String> = match op {
            Op::In | Op::Between => raw.into_iter().map(|v| v.trim().to_owned()).collect(),
            // A comma outside `in`/`between` is part of the value.
            _ => vec![raw.join(",").trim().to_owned()],
        };
        if values.iter().any(String::is_empty) || (op == Op::Between && values.len() != 2) {
            return Err(ZohoError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_QUERY",
                "invalid query formed",
            )
            .with(&[
                ("api_name", field.api_name.as_str().into()),
                ("reason", "invalid value given".into()),
            ]));
        }
        Ok(Criteria::Condition {
            field: field.api_name.clone(),
            kind: field.kind,
            op,
            values,
        })
    }
}

/// Parses `criteria` for `module`; a single condition may come without
/// parentheses (`Email:equals:x`).
pub(crate) fn parse(text: &str, schema: &Schema, module: Module) -> Result<Criteria, ZohoError> {
    let text = text.trim();
    let wrapped = if text.starts_with('(') {
        text.to_owned()
    } else {
        format!("({text})")
    };
    let mut parser = Parser {
        chars: wrapped.chars().collect(),
        pos: 0,
        schema,
        module,
    };
    let criteria = parser.expr()?;
    parser.skip_space();
    if parser.pos != parser.chars.len() {
        return Err(invalid_query("unexpected text after the criteria"));
    }
    Ok(criteria)
}

/// The comparable text of a stored value (an owner by its id).
fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Object(map) => map.get("id").and_then(Value::as_str).map(str::to_owned),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn timestamp(text: &str) -> Option<i128> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos())
}

fn compare(kind: FieldType, stored: &str, wanted: &str) -> Option<std::cmp::Ordering> {
    if kind == FieldType::DateTime {
        return Some(timestamp(stored)?.cmp(&timestamp(wanted)?));
    }
    Some(stored.to_lowercase().cmp(&wanted.to_lowercase()))
}

impl Criteria {
    /// Whether a record (its field values by API name) matches.
    pub(crate) fn matches(&self, get: &dyn Fn(&str) -> Option<Value>) -> bool {
        match self {
            Criteria::And(a, b) => a.matches(get) && b.matches(get),
            Criteria::Or(a, b) => a.matches(get) || b.matches(get),
            Criteria::Condition {
                field,
                kind,
                op,
                values,
            } => {
                let stored = get(field).as_ref().and_then(text_of);
                let Some(stored) = stored else {
                    return *op == Op::NotEqual;
                };
                let lower = stored.to_lowercase();
                let first = values.first().map(|v| v.to_lowercase()).unwrap_or_default();
                let exact = |v: &str| match kind {
                    FieldType::DateTime => {
                        compare(*kind, &stored, v) == Some(std::cmp::Ordering::Equal)
                    }
                    _ => lower == v.to_lowercase(),
                };
                match op {
                    Op::Equals => match kind {
                        FieldType::Text
                        | FieldType::TextArea
                        | FieldType::Email
                        | FieldType::Phone
                        | FieldType::Website => lower.contains(&first),
                        _ => exact(&first),
                    },
                    Op::NotEqual => !exact(&first),
                    Op::StartsWith => lower.starts_with(&first),
                    Op::In => values.iter().any(|v| exact(v)),
                    Op::GreaterThan | Op::GreaterEqual | Op::LessThan | Op::LessEqual => {
                        let Some(order) = compare(*kind, &stored, &first) else {
                            return false;
                        };
                        match op {
                            Op::GreaterThan => order.is_gt(),
                            Op::GreaterEqual => order.is_ge(),
                            Op::LessThan => order.is_lt(),
                            _ => order.is_le(),
                        }
                    }
                    Op::Between => {
                        let low = compare(*kind, &stored, &values[0]);
                        let high = compare(*kind, &stored, &values[1]);
                        low.is_some_and(|o| o.is_ge()) && high.is_some_and(|o| o.is_le())
                    }
                }
            }
        }
    }
}

/// `{"data":[…],"info":{…}}` of a search or list page.
pub(crate) fn page_info(per_page: usize, count: usize, page: usize, more: bool) -> Value {
    json!({"per_page": per_page, "count": count, "page": page, "more_records": more})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(criteria: &str, record: &[(&str, &str)]) -> bool {
        let schema = Schema::default();
        let c = parse(criteria, &schema, Module::Leads).unwrap();
        let get = |f: &str| {
            record
                .iter()
                .find(|(k, _)| *k == f)
                .map(|(_, v)| Value::String((*v).to_owned()))
        };
        c.matches(&get)
    }

    #[test]
    fn equals_is_contains_and_combinations_work() {
        let rec = [
            ("Email", "jane@x.io"),
            ("Company", "ABC Inc"),
            ("Last_Name", "Doe"),
        ];
        assert!(matches("(Email:equals:jane@x.io)", &rec));
        assert!(matches("Email:equals:JANE@X.IO", &rec));
        assert!(
            matches("(Company:equals:ABC)", &rec),
            "equals behaves like contains"
        );
        assert!(!matches("(Company:not_equal:abc inc)", &rec));
        assert!(matches(
            "((Company:starts_with:AB)and(Last_Name:in:Roe,Doe))",
            &rec
        ));
        assert!(matches(
            "((Company:equals:zzz)or(Last_Name:equals:Doe))",
            &rec
        ));
        assert!(!matches(
            "((Company:equals:zzz)and(Last_Name:equals:Doe))",
            &rec
        ));
        assert!(matches(
            r"(Company:equals:ABC Inc\, Ltd)",
            &[("Company", "ABC Inc, Ltd")]
        ));
    }

    #[test]
    fn bad_criteria_are_invalid_query() {
        let schema = Schema::default();
        for bad in [
            "(Nope:equals:x)",
            "(Email:greater_than:x)",
            "(Email:equals)",
            "(Email:equals:x",
            "(Email:equals:x)(Last_Name:equals:y)",
            "(Email:bogus:x)",
        ] {
            let err = parse(bad, &schema, Module::Leads).unwrap_err();
            assert_eq!(err.code, "INVALID_QUERY", "{bad}");
        }
        let err = parse("(Email:starts:x)", &schema, Module::Leads).unwrap_err();
        assert_eq!(err.details["reason"], "invalid operator found");
    }

    #[test]
    fn date_times_compare_as_times() {
        let rec = [("Created_Time", "2024-05-01T12:00:00+00:00")];
        assert!(matches(
            "(Created_Time:greater_than:2024-05-01T13:00:00+02:00)",
            &rec
        ));
        assert!(matches(
            "(Created_Time:between:2024-05-01T00:00:00+00:00,2024-05-02T00:00:00+00:00)",
            &rec
        ));
    }
}
