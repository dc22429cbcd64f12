//! A configurable source transform: each lead field is read from a JSON
//! path. Config: `items` (optional path of an array; one lead per element,
//! default: the whole body is one lead) and one `field.<name>` per lead
//! field, e.g. `field.email = "$.contact.emails[0]"`. Paths: `$`, `.key`,
//! `['key']`, `[index]`, `[*]` (all elements, for `items`).
//! An item whose mapped fields are all empty is filtered out.

use leadgate_sdk::prelude::*;
use serde_json::{Map, Value};

pub struct JsonPath;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
    All,
}

fn parse(path: &str) -> Result<Vec<Step>, String> {
    let rest = path
        .trim()
        .strip_prefix('$')
        .ok_or_else(|| format!("{path:?} does not start with $"))?;
    let mut steps = Vec::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                let mut key = String::new();
                while let Some(&c) = chars.peek() {
                    if c == '.' || c == '[' {
                        break;
                    }
                    key.push(c);
                    chars.next();
                }
                if key.is_empty() {
                    return Err(format!("{path:?}: empty key"));
                }
                steps.push(Step::Key(key));
            }
            '[' => {
                let mut inner = String::new();
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    inner.push(c);
                }
                let inner = inner.trim();
                if inner == "*" {
                    steps.push(Step::All);
                } else if let Some(q) = inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\''))
                {
                    steps.push(Step::Key(q.to_string()));
                } else {
                    let i = inner
                        .parse()
                        .map_err(|_| format!("{path:?}: bad index {inner:?}"))?;
                    steps.push(Step::Index(i));
                }
            }
            other => return Err(format!("{path:?}: unexpected {other:?}")),
        }
    }
    Ok(steps)
}

fn select<'a>(root: &'a Value, steps: &[Step]) -> Vec<&'a Value> {
    let mut current = vec![root];
    for step in steps {
        let mut next = Vec::new();
        for v in current {
            match step {
                Step::Key(k) => next.extend(v.get(k)),
                Step::Index(i) => next.extend(v.get(*i)),
                Step::All => {
                    if let Some(items) = v.as_array() {
                        next.extend(items.iter());
                    }
                }
            }
        }
        current = next;
    }
    current
}

impl Transform for JsonPath {
    fn describe() -> TransformInfo {
        TransformInfo {
            name: "json-path".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "lead fields read from configured JSON paths".into(),
        }
    }

    fn transform(payload: Vec<u8>, ctx: TransformContext) -> Result<Vec<String>, TransformError> {
        let bad_config = |k: &str, why: String| TransformError::InvalidField((k.to_string(), why));
        let mut fields = Vec::new();
        let mut items = None;
        for (k, v) in &ctx.config {
            if k == "items" {
                items = Some(parse(v).map_err(|e| bad_config(k, e))?);
            } else if let Some(name) = k.strip_prefix("field.") {
                fields.push((name.to_string(), parse(v).map_err(|e| bad_config(k, e))?));
            }
        }
        if fields.is_empty() {
            return Err(bad_config("field.*", "no field paths configured".into()));
        }
        let body: Value = serde_json::from_slice(&payload)
            .map_err(|e| TransformError::Malformed(format!("not JSON: {e}")))?;
        let roots = match &items {
            Some(steps) => select(&body, steps),
            None => vec![&body],
        };
        let mut leads = Vec::new();
        for root in roots {
            let mut lead = Map::new();
            for (name, steps) in &fields {
                if let Some(v) = select(root, steps).into_iter().next()
                    && !v.is_null()
                {
                    lead.insert(name.clone(), v.clone());
                }
            }
            if !lead.is_empty() {
                leads.push(Value::Object(lead).to_string());
            }
        }
        Ok(leads)
    }
}

leadgate_sdk::export_transform!(JsonPath);

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: &str, config: &[(&str, &str)]) -> Result<Vec<Value>, TransformError> {
        JsonPath::transform(
            body.as_bytes().to_vec(),
            TransformContext {
                source: "s".into(),
                config: config
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
        )
        .map(|v| v.iter().map(|l| serde_json::from_str(l).unwrap()).collect())
    }

    #[test]
    fn paths() {
        assert_eq!(
            parse("$.a.b[2]['c d'][*]").unwrap(),
            vec![
                Step::Key("a".into()),
                Step::Key("b".into()),
                Step::Index(2),
                Step::Key("c d".into()),
                Step::All
            ]
        );
        assert!(parse("a.b").is_err());
    }

    #[test]
    fn items_and_fields() {
        let out = run(
            r#"{"records":[{"contact":{"emails":["a@x.com"],"name":"A"}},{"contact":{"emails":[]}},{"contact":{"emails":["b@x.com"]}}]}"#,
            &[("items", "$.records[*]"), ("field.email", "$.contact.emails[0]"), ("field.name", "$.contact.name")],
        )
        .unwrap();
        assert_eq!(out.len(), 2, "the item with nothing mapped is filtered");
        assert_eq!(out[0]["email"], "a@x.com");
        assert_eq!(out[0]["name"], "A");
        assert_eq!(out[1]["email"], "b@x.com");
        assert!(matches!(
            run("{}", &[]),
            Err(TransformError::InvalidField(_))
        ));
    }
}
