//! Map: turns a normalized lead into a CRM payload with a YAML mapping
//! (`mappings/<crm>.yaml`). The template language is deliberately small and
//! safe: field paths, constants, `{path}` templates, name splitting, case,
//! truncation and defaults; no code runs. A mapping is checked when loaded
//! (unknown keys, one source per property) and every render checks that
//! the required properties are present.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::pipeline::field::LeadField;
use crate::pipeline::normalize::{NormalizedLead, split_name};
use crate::pipeline::route::Route;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("mapping {file}: {reason}")]
    Invalid { file: String, reason: String },
    #[error("required CRM property {property} is empty (mapped from {source_desc})")]
    MissingRequired {
        property: String,
        source_desc: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    version: u32,
    crm: String,
    #[serde(default)]
    required: Vec<String>,
    properties: BTreeMap<String, PropertyRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PropertyRule {
    from: Option<OneOrMany>,
    value: Option<String>,
    template: Option<String>,
    split_name: Option<NamePart>,
    case: Option<Case>,
    max_length: Option<usize>,
    default: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum NamePart {
    First,
    Last,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Case {
    Lower,
    Upper,
}

#[derive(Debug, Clone)]
enum Source {
    Paths(Vec<Vec<String>>),
    Value(String),
    Template(Vec<Piece>),
}

#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Path(Vec<String>),
}

#[derive(Debug, Clone)]
struct CompiledRule {
    property: String,
    source: Source,
    split_name: Option<NamePart>,
    case: Option<Case>,
    max_length: Option<usize>,
    default: Option<String>,
}

/// A loaded, checked mapping.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub name: String,
    pub crm: String,
    /// Content hash: which mapping a job was made with.
    pub version: String,
    required: Vec<String>,
    rules: Vec<CompiledRule>,
}

impl Mapping {
    pub fn load(path: &Path) -> Result<Mapping, MappingError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(path).map_err(|e| MappingError::Invalid {
            file: name.clone(),
            reason: e.to_string(),
        })?;
        Self::parse(&name, &text)
    }

    pub fn parse(name: &str, text: &str) -> Result<Mapping, MappingError> {
        let invalid = |reason: String| MappingError::Invalid {
            file: name.to_string(),
            reason,
        };
        let file: MappingFile = serde_norway::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if file.version != 1 {
            return Err(invalid(format!(
                "version {} is not supported (this host reads version 1)",
                file.version
            )));
        }
        let mut rules = Vec::with_capacity(file.properties.len());
        for (property, rule) in file.properties {
            let sources = [
                rule.from.is_some(),
                rule.value.is_some(),
                rule.template.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            if sources != 1 {
                return Err(invalid(format!(
                    "property {property}: give exactly one of from, value, template"
                )));
            }
            let source = if let Some(from) = rule.from {
                let paths = match from {
                    OneOrMany::One(p) => vec![p],
                    OneOrMany::Many(ps) => ps,
                };
                if paths.is_empty() {
                    return Err(invalid(format!("property {property}: from is empty")));
                }
                Source::Paths(paths.iter().map(|p| parse_path(p)).collect())
            } else if let Some(v) = rule.value {
                Source::Value(v)
            } else {
                let t = rule.template.unwrap_or_default();
                Source::Template(
                    parse_template(&t).map_err(|r| invalid(format!("property {property}: {r}")))?,
                )
            };
            rules.push(CompiledRule {
                property,
                source,
                split_name: rule.split_name,
                case: rule.case,
                max_length: rule.max_length,
                default: rule.default,
            });
        }
        for r in &file.required {
            if !rules.iter().any(|rule| &rule.property == r) {
                return Err(invalid(format!("required property {r} has no rule")));
            }
        }
        let version = crate::sha256_hex(text.as_bytes(), 6);
        Ok(Mapping {
            name: name.to_string(),
            crm: file.crm,
            version,
            required: file.required,
            rules,
        })
    }

    /// Renders the CRM properties for one lead. Empty results are left out.
    /// `extra_required` adds the adapter's own required properties.
    pub fn render(
        &self,
        lead: &(impl LeadFields + ?Sized),
        extra_required: &[String],
    ) -> Result<Vec<(String, String)>, MappingError> {
        let mut out = Vec::with_capacity(self.rules.len());
        for rule in &self.rules {
            let mut value = match &rule.source {
                Source::Paths(paths) => paths
                    .iter()
                    .find_map(|p| lead.field(p).filter(|v| !v.is_empty()))
                    .unwrap_or_default(),
                Source::Value(v) => v.clone(),
                Source::Template(pieces) => {
                    let mut s = String::new();
                    for piece in pieces {
                        match piece {
                            Piece::Text(t) => s.push_str(t),
                            Piece::Path(p) => s.push_str(&lead.field(p).unwrap_or_default()),
                        }
                    }
                    crate::pipeline::normalize::clean_text(&s)
                }
            };
            if let Some(part) = rule.split_name {
                let (first, last) = split_name(&value);
                value = match part {
                    NamePart::First => first,
                    NamePart::Last => last,
                }
                .unwrap_or_default();
            }
            match rule.case {
                Some(Case::Lower) => value = value.to_lowercase(),
                Some(Case::Upper) => value = value.to_uppercase(),
                None => {}
            }
            if let Some(max) = rule.max_length
                && value.chars().count() > max
            {
                value = value.chars().take(max).collect();
            }
            if value.is_empty()
                && let Some(d) = &rule.default
            {
                value = d.clone();
            }
            if !value.is_empty() {
                out.push((rule.property.clone(), value));
            }
        }
        for required in self.required.iter().chain(extra_required) {
            if !out.iter().any(|(p, _)| p == required) {
                return Err(MappingError::MissingRequired {
                    property: required.clone(),
                    source_desc: self.describe_source(required),
                });
            }
        }
        Ok(out)
    }

    fn describe_source(&self, property: &str) -> String {
        match self.rules.iter().find(|r| r.property == property) {
            Some(CompiledRule {
                source: Source::Paths(paths),
                ..
            }) => paths
                .iter()
                .map(|p| p.join("."))
                .collect::<Vec<_>>()
                .join(" or "),
            Some(_) => "a constant or template".into(),
            None => "nothing: the mapping has no rule for it".into(),
        }
    }
}

fn parse_path(p: &str) -> Vec<String> {
    p.trim().split('.').map(str::to_string).collect()
}

fn parse_template(t: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = t;
    while let Some(start) = rest.find('{') {
        if start > 0 {
            pieces.push(Piece::Text(rest[..start].to_string()));
        }
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| format!("unclosed {{ in template {t:?}"))?;
        let path = rest[start + 1..start + end].trim();
        if path.is_empty() {
            return Err(format!("empty {{}} in template {t:?}"));
        }
        pieces.push(Piece::Path(parse_path(path)));
        rest = &rest[start + end + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_string()));
    }
    Ok(pieces)
}

/// One destination's payload for a lead, or why there is none.
#[derive(Clone, Debug)]
pub struct MappedRoute {
    pub route: Route,
    /// The content hash of the mapping that rendered it.
    pub mapping_version: String,
    /// The CRM properties, or why the lead cannot be mapped for this CRM.
    pub payload: Result<Vec<(String, String)>, MappingError>,
    /// Why the job must wait (the destination's consent policy), if it
    /// must.
    pub hold: Option<super::consent::Hold>,
}

/// Maps fields for a route's destination with that destination's current
/// mapping (the plugin registry holds the mappings).
pub trait Renderer: Send + Sync {
    /// The destinations every lead is routed to.
    fn destinations(&self) -> Vec<String>;

    /// None when the destination is no longer configured.
    fn render(&self, fields: &dyn LeadFields, route: Route) -> Option<MappedRoute>;

    /// Maps a lead for each of its routes (new leads and merged persons
    /// alike).
    fn render_all(&self, fields: &dyn LeadFields, routes: Vec<Route>) -> Vec<MappedRoute> {
        routes
            .into_iter()
            .filter_map(|r| self.render(fields, r))
            .collect()
    }
}

/// What a mapping reads: a field path's value as text.
pub trait LeadFields {
    fn field(&self, path: &[String]) -> Option<String>;
}

impl LeadFields for Map<String, Value> {
    /// Strings as they are, numbers and booleans printed, anything else
    /// absent.
    fn field(&self, path: &[String]) -> Option<String> {
        let (first, rest) = path.split_first()?;
        let mut v = self.get(first)?;
        for key in rest {
            v = v.as_object()?.get(key)?;
        }
        value_text(v)
    }
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl LeadFields for NormalizedLead {
    /// The lead's fields by name, custom attributes under `custom.`; read
    /// straight from the struct (no JSON tree is built per lead).
    fn field(&self, path: &[String]) -> Option<String> {
        let (first, rest) = path.split_first()?;
        if first == "custom" {
            let (key, rest) = rest.split_first()?;
            let mut v = self.custom.get(key)?;
            for key in rest {
                v = v.as_object()?.get(key)?;
            }
            return value_text(v);
        }
        if !rest.is_empty() {
            return None;
        }
        LeadField::parse(first)?.text(self).map(|v| v.into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lead(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn bundled_hubspot_mapping_renders() {
        let m = Mapping::parse(
            "hubspot.yaml",
            include_str!("../../../mappings/hubspot.yaml"),
        )
        .unwrap();
        let props = m
            .render(
                &lead(json!({"email":"a@b.com","first_name":"Jane","last_name":"Doe","phone":"+14152312671"})),
                &[],
            )
            .unwrap();
        let get = |k: &str| props.iter().find(|(p, _)| p == k).map(|(_, v)| v.as_str());
        assert_eq!(get("email"), Some("a@b.com"));
        assert_eq!(get("firstname"), Some("Jane"));
        assert_eq!(get("lifecyclestage"), Some("lead"));
        assert_eq!(get("company"), None, "empty values are left out");
    }

    #[test]
    fn features() {
        let m = Mapping::parse(
            "t.yaml",
            r#"
version: 1
crm: test
required: [key]
properties:
  key: { from: [email, phone] }
  first: { from: full_name, split_name: first }
  last: { from: full_name, split_name: last }
  label: { template: "{first_name} at {company}", case: upper }
  src: { from: custom.utm.source, default: direct }
  short: { from: company, max_length: 3 }
"#,
        )
        .unwrap();
        let out = m
            .render(
                &lead(json!({"phone":"+1","full_name":"Mary Ann Smith","first_name":"Mary","company":"Acme","custom":{"utm":{"source":"ads"}}})),
                &[],
            )
            .unwrap();
        let map: BTreeMap<_, _> = out.into_iter().collect();
        assert_eq!(map["key"], "+1");
        assert_eq!(map["first"], "Mary Ann");
        assert_eq!(map["last"], "Smith");
        assert_eq!(map["label"], "MARY AT ACME");
        assert_eq!(map["src"], "ads");
        assert_eq!(map["short"], "Acm");
    }

    #[test]
    fn provenance_and_consent_map_like_any_field() {
        let m = Mapping::parse(
            "t.yaml",
            r#"
version: 1
crm: test
properties:
  email: { from: email }
  gdpr_basis: { from: consent_basis }
  consent_date: { from: consent_given_at }
  lead_source_page: { from: source_url }
"#,
        )
        .unwrap();
        let normalized = crate::pipeline::normalize::normalize(
            &json!({"email": "a@b.com", "source_url": "https://example.com/form",
                    "consent": {"basis": "consent", "given_at": "2026-12-01"}}),
            &crate::pipeline::normalize::NormalizeOptions::with_region("US".parse().unwrap()),
        )
        .unwrap();
        let props: std::collections::HashMap<String, String> = m
            .render(&lead(serde_json::to_value(&normalized).unwrap()), &[])
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(props["gdpr_basis"], "consent");
        assert_eq!(props["consent_date"], "2026-12-01T00:00:00Z");
        assert_eq!(props["lead_source_page"], "https://example.com/form");
    }

    #[test]
    fn missing_required_is_named() {
        let m = Mapping::parse(
            "hubspot.yaml",
            include_str!("../../../mappings/hubspot.yaml"),
        )
        .unwrap();
        let err = m
            .render(&lead(json!({"phone":"+14152312671"})), &[])
            .unwrap_err();
        assert_eq!(
            err,
            MappingError::MissingRequired {
                property: "email".into(),
                source_desc: "email".into()
            }
        );
    }

    #[test]
    fn struct_and_json_views_of_a_lead_agree() {
        let lead = NormalizedLead {
            email: Some("a@b.com".into()),
            full_name: Some("Mary Ann Smith".into()),
            custom: [("utm".to_string(), json!({"source": "ads"}))]
                .into_iter()
                .collect(),
            ..Default::default()
        };
        let as_json = serde_json::to_value(&lead)
            .unwrap()
            .as_object()
            .unwrap()
            .clone();
        for path in [
            "email",
            "full_name",
            "custom.utm.source",
            "phone",
            "custom.nope",
            "email.x",
        ] {
            let p: Vec<String> = path.split('.').map(String::from).collect();
            assert_eq!(lead.field(&p), as_json.field(&p), "{path}");
        }
    }

    #[test]
    fn bad_mappings_are_refused() {
        for (text, needle) in [
            ("version: 2\ncrm: x\nproperties: {}", "version 2"),
            (
                "version: 1\ncrm: x\nproperties:\n  a: { from: x, value: y }",
                "exactly one",
            ),
            (
                "version: 1\ncrm: x\nproperties:\n  a: { form: x }",
                "unknown field",
            ),
            (
                "version: 1\ncrm: x\nrequired: [b]\nproperties:\n  a: { from: x }",
                "required property b",
            ),
            (
                "version: 1\ncrm: x\nproperties:\n  a: { template: \"{x\" }",
                "unclosed",
            ),
        ] {
            let err = Mapping::parse("m.yaml", text).unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }
}
