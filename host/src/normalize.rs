//! Validate + normalize: turns a lead as posted into a [`NormalizedLead`],
//! or into field errors that name the field and the rule.
//!
//! Rules (version [`RULES_VERSION`]): emails are trimmed, stripped of
//! `mailto:`, lowercased, their IDN domain turned to punycode; phones become
//! E.164 with the source's default region; names, companies and other text
//! fields are whitespace-cleaned and names title-cased. A present field that
//! cannot be normalized is flagged with its rule and kept out of the
//! normalized lead; whether the lead is still acceptable is decided by the
//! source's acceptance rule.

use std::collections::BTreeMap;

use phonenumber::country::Id as Region;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the normalization rules; stored with each lead.
pub const RULES_VERSION: u32 = 1;

/// Lead fields leadgate knows; any other key is kept as a custom attribute.
pub const KNOWN_FIELDS: &[&str] = &[
    "email",
    "phone",
    "first_name",
    "last_name",
    "name",
    "company",
    "title",
    "website",
    "street",
    "city",
    "region",
    "postcode",
    "country",
    "date_of_birth",
    "priority",
];

/// A field that is wrong, and the rule it breaks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldIssue {
    pub field: String,
    pub rule: String,
    pub message: String,
}

impl FieldIssue {
    pub fn new(field: &str, rule: &str, message: impl Into<String>) -> Self {
        FieldIssue {
            field: field.to_string(),
            rule: rule.to_string(),
            message: message.into(),
        }
    }
}

/// A lead after normalization.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NormalizedLead {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postcode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// Keys leadgate does not know, kept as they came.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub custom: BTreeMap<String, Value>,
    /// Present fields that could not be normalized.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub flags: Vec<FieldIssue>,
}

impl NormalizedLead {
    /// Whether a known field is present after normalization.
    pub fn has(&self, field: &str) -> bool {
        match field {
            "email" => self.email.is_some(),
            "phone" => self.phone.is_some(),
            "first_name" => self.first_name.is_some(),
            "last_name" => self.last_name.is_some(),
            "name" => self.full_name.is_some(),
            "company" => self.company.is_some(),
            "title" => self.title.is_some(),
            "website" => self.website.is_some(),
            "street" => self.street.is_some(),
            "city" => self.city.is_some(),
            "region" => self.region.is_some(),
            "postcode" => self.postcode.is_some(),
            "country" => self.country.is_some(),
            "date_of_birth" => self.date_of_birth.is_some(),
            "priority" => self.priority.is_some(),
            _ => false,
        }
    }
}

/// What a source's leads must satisfy to be accepted.
#[derive(Clone, Debug)]
pub struct Acceptance {
    /// Each group: at least one of these fields must be present and valid.
    pub require_any: Vec<Vec<String>>,
}

/// The per-source settings normalization needs.
#[derive(Clone, Debug)]
pub struct NormalizeOptions {
    pub default_region: Region,
    pub acceptance: Acceptance,
}

/// Validates and normalizes one posted lead.
pub fn normalize(
    raw: &Value,
    options: &NormalizeOptions,
) -> Result<NormalizedLead, Vec<FieldIssue>> {
    let Value::Object(obj) = raw else {
        return Err(vec![FieldIssue::new(
            "",
            "not_an_object",
            format!("a lead is a JSON object, not {}", json_type(raw)),
        )]);
    };
    let mut errors = Vec::new();
    let mut lead = NormalizedLead::default();
    for (key, value) in obj {
        if !KNOWN_FIELDS.contains(&key.as_str()) {
            lead.custom.insert(key.clone(), value.clone());
            continue;
        }
        let text = match value {
            Value::Null => continue,
            Value::String(s) => s.as_str(),
            other => {
                errors.push(FieldIssue::new(
                    key,
                    "wrong_type",
                    format!("{key} must be a string, not {}", json_type(other)),
                ));
                continue;
            }
        };
        let text = clean_text(text);
        if text.is_empty() {
            continue;
        }
        match key.as_str() {
            "email" => match normalize_email(&text) {
                Ok(e) => lead.email = Some(e),
                Err(issue) => lead.flags.push(issue),
            },
            "phone" => match normalize_phone(&text, options.default_region) {
                Ok(p) => lead.phone = Some(p),
                Err(issue) => lead.flags.push(issue),
            },
            "first_name" => lead.first_name = Some(name_case(&text)),
            "last_name" => lead.last_name = Some(name_case(&text)),
            "name" => lead.full_name = Some(name_case(&text)),
            "company" => lead.company = Some(text),
            "title" => lead.title = Some(text),
            "website" => lead.website = Some(text.to_lowercase()),
            "street" => lead.street = Some(text),
            "city" => lead.city = Some(name_case(&text)),
            "region" => lead.region = Some(text),
            "postcode" => lead.postcode = Some(text.to_uppercase()),
            "country" => lead.country = Some(text),
            "date_of_birth" => lead.date_of_birth = Some(text),
            "priority" => match text.to_ascii_uppercase().as_str() {
                p @ ("P0" | "P1" | "P2") => lead.priority = Some(p.to_string()),
                _ => errors.push(FieldIssue::new(
                    "priority",
                    "invalid_priority",
                    "priority must be P0, P1 or P2",
                )),
            },
            _ => unreachable!("every known field is handled"),
        }
    }
    // A full name alone is split into first and last names.
    if lead.first_name.is_none()
        && lead.last_name.is_none()
        && let Some(full) = &lead.full_name
    {
        let (first, last) = split_name(full);
        lead.first_name = first;
        lead.last_name = last;
    }
    if lead.full_name.is_none() {
        let joined = [lead.first_name.as_deref(), lead.last_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        if !joined.is_empty() {
            lead.full_name = Some(joined);
        }
    }

    for group in &options.acceptance.require_any {
        if group.iter().any(|f| lead.has(f)) {
            continue;
        }
        // Name the field that was there but wrong, if any.
        let flagged: Vec<FieldIssue> = lead
            .flags
            .iter()
            .filter(|i| group.contains(&i.field))
            .cloned()
            .collect();
        if flagged.is_empty() {
            errors.push(FieldIssue::new(
                group.first().map(String::as_str).unwrap_or(""),
                "required_one_of",
                format!("at least one of {} is required", group.join(", ")),
            ));
        } else {
            errors.extend(flagged);
        }
    }
    if errors.is_empty() {
        Ok(lead)
    } else {
        Err(errors)
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Trims and collapses runs of whitespace (including tabs and newlines).
pub fn clean_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Normalizes an email address or says why it is not one.
pub fn normalize_email(input: &str) -> Result<String, FieldIssue> {
    let bad = |why: &str| FieldIssue::new("email", "invalid_email", format!("{input:?}: {why}"));
    let mut s = input.trim();
    if s.get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("mailto:"))
    {
        s = &s[7..];
    }
    let s = s.trim_matches(|c: char| c == '<' || c == '>' || c.is_whitespace());
    if s.chars().any(char::is_whitespace) {
        return Err(bad("contains whitespace"));
    }
    let (local, domain) = s.rsplit_once('@').ok_or_else(|| bad("no @"))?;
    if local.is_empty() {
        return Err(bad("nothing before the @"));
    }
    if local.contains('@') {
        return Err(bad("more than one @"));
    }
    if local.len() > 64 {
        return Err(bad("local part longer than 64 characters"));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(bad("misplaced dot in the local part"));
    }
    if local
        .chars()
        .any(|c| c.is_ascii_control() || "(),:;<>[]\\\"".contains(c))
    {
        return Err(bad("forbidden character in the local part"));
    }
    let domain = domain.trim_end_matches('.');
    if domain.is_empty() {
        return Err(bad("nothing after the @"));
    }
    let ascii = idna::domain_to_ascii(domain).map_err(|_| bad("invalid domain"))?;
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 {
        return Err(bad("domain has no dot"));
    }
    if labels.iter().any(|l| {
        l.is_empty()
            || l.len() > 63
            || l.starts_with('-')
            || l.ends_with('-')
            || !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    }) {
        return Err(bad("invalid domain"));
    }
    let tld = labels.last().unwrap();
    if tld.len() < 2 || tld.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad("invalid top-level domain"));
    }
    Ok(format!("{}@{}", local.to_lowercase(), ascii))
}

/// Normalizes a phone number to E.164 or says why it is not one.
pub fn normalize_phone(input: &str, region: Region) -> Result<String, FieldIssue> {
    let bad = |why: &str| FieldIssue::new("phone", "invalid_phone", format!("{input:?}: {why}"));
    let digits = input.chars().filter(char::is_ascii_digit).count();
    if digits < 5 {
        return Err(bad("too few digits"));
    }
    let number = phonenumber::parse(Some(region), input).map_err(|_| bad("not a phone number"))?;
    if !phonenumber::is_valid(&number) {
        return Err(bad("not a valid number for its region"));
    }
    Ok(number.format().mode(phonenumber::Mode::E164).to_string())
}

/// Title-cases a name word by word, keeping particles and Mc/O' forms.
pub fn name_case(s: &str) -> String {
    const PARTICLES: &[&str] = &[
        "van", "von", "der", "den", "de", "la", "le", "du", "da", "di", "del",
    ];
    let lower = s.to_lowercase();
    let mut out = String::with_capacity(s.len());
    for (i, word) in lower.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if i > 0 && PARTICLES.contains(&word) {
            out.push_str(word);
            continue;
        }
        // Capitalize after start, hyphen and apostrophe.
        let mut cap = true;
        for c in word.chars() {
            if cap && c.is_alphabetic() {
                out.extend(c.to_uppercase());
                cap = false;
            } else {
                out.push(c);
            }
            if c == '-' || c == '\'' || c == '’' {
                cap = true;
            }
        }
        // McDonald: capitalize the letter after a leading "Mc".
        if word.len() > 3 && word.starts_with("mc") {
            let start = out.len() - word.len();
            let (head, tail) = out.split_at(start + 2);
            let mut tail_chars = tail.chars();
            if let Some(first) = tail_chars.next() {
                let fixed: String = format!(
                    "{head}{}{}",
                    first.to_uppercase(),
                    tail_chars.collect::<String>()
                );
                out = fixed;
            }
        }
    }
    out
}

/// "Mary Ann Smith" → ("Mary Ann", "Smith"); "Smith, Mary" → ("Mary", "Smith").
pub fn split_name(full: &str) -> (Option<String>, Option<String>) {
    if let Some((last, first)) = full.split_once(',') {
        let (first, last) = (first.trim(), last.trim());
        return (
            (!first.is_empty()).then(|| first.to_string()),
            (!last.is_empty()).then(|| last.to_string()),
        );
    }
    match full.rsplit_once(' ') {
        Some((first, last)) => (Some(first.to_string()), Some(last.to_string())),
        None => (Some(full.to_string()), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(region: &str) -> NormalizeOptions {
        NormalizeOptions {
            default_region: region.parse().unwrap(),
            acceptance: Acceptance {
                require_any: vec![vec!["email".into(), "phone".into()]],
            },
        }
    }

    #[test]
    fn emails() {
        assert_eq!(
            normalize_email("  John.Smith@Gmail.COM ").unwrap(),
            "john.smith@gmail.com"
        );
        assert_eq!(normalize_email("mailto:a@b.co").unwrap(), "a@b.co");
        assert_eq!(
            normalize_email("THEO@BÄCKEREI-SCHÖN.DE").unwrap(),
            "theo@xn--bckerei-schn-gcb6x.de"
        );
        assert_eq!(normalize_email("ÄÄÄÄ@x.de").unwrap(), "ääää@x.de");
        assert_eq!(normalize_email("<a@b.co>").unwrap(), "a@b.co");
        assert_eq!(
            normalize_email("jürgen@Müller.de").unwrap(),
            "jürgen@xn--mller-kva.de"
        );
        assert_eq!(
            normalize_email("x@xn--mller-kva.de").unwrap(),
            normalize_email("x@müller.de").unwrap()
        );
        for bad in [
            "jane@",
            "jane.example.com",
            "jane@@x.com",
            "@x.com",
            "a b@x.com",
            "a@localhost",
            "a@x.123",
            "a..b@x.com",
        ] {
            let e = normalize_email(bad).unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.rule.as_str()),
                ("email", "invalid_email"),
                "{bad}"
            );
        }
    }

    #[test]
    fn phones() {
        let us: Region = "US".parse().unwrap();
        let gb: Region = "GB".parse().unwrap();
        for p in [
            "(415) 231-2671",
            "415.231.2671",
            "4152312671",
            "+1 415 231 2671",
            "1-415-231-2671",
        ] {
            assert_eq!(normalize_phone(p, us).unwrap(), "+14152312671", "{p}");
        }
        assert_eq!(
            normalize_phone("07911 123456", gb).unwrap(),
            "+447911123456"
        );
        assert_eq!(
            normalize_phone("+44 7911 123456", us).unwrap(),
            "+447911123456"
        );
        for bad in ["12345", "tel", "+1 555 0100", "07700 900123"] {
            assert_eq!(
                normalize_phone(bad, gb).unwrap_err().rule,
                "invalid_phone",
                "{bad}"
            );
        }
    }

    #[test]
    fn names() {
        assert_eq!(name_case("  jOHN".trim()), "John");
        assert_eq!(name_case("o'brien"), "O'Brien");
        assert_eq!(name_case("mcdonald"), "McDonald");
        assert_eq!(name_case("ludwig van beethoven"), "Ludwig van Beethoven");
        assert_eq!(name_case("anne-marie ZOË"), "Anne-Marie Zoë");
        assert_eq!(
            split_name("Smith, Mary"),
            (Some("Mary".into()), Some("Smith".into()))
        );
        assert_eq!(
            split_name("Mary Ann Smith"),
            (Some("Mary Ann".into()), Some("Smith".into()))
        );
    }

    #[test]
    fn lead_is_normalized_and_flags_kept() {
        let lead = normalize(
            &json!({"email": " A@B.com ", "phone": "12345", "name": "\tjane  DOE\n", "utm": "x"}),
            &opts("US"),
        )
        .unwrap();
        assert_eq!(lead.email.as_deref(), Some("a@b.com"));
        assert_eq!(lead.phone, None);
        assert_eq!(lead.flags[0].rule, "invalid_phone");
        assert_eq!(lead.first_name.as_deref(), Some("Jane"));
        assert_eq!(lead.last_name.as_deref(), Some("Doe"));
        assert_eq!(lead.custom["utm"], json!("x"));
    }

    #[test]
    fn acceptance_names_field_and_rule() {
        let err = normalize(&json!({"name": "Ann Lee"}), &opts("US")).unwrap_err();
        assert_eq!(err[0].rule, "required_one_of");
        let err = normalize(&json!({"phone": "12345"}), &opts("US")).unwrap_err();
        assert_eq!(
            (err[0].field.as_str(), err[0].rule.as_str()),
            ("phone", "invalid_phone")
        );
        let err = normalize(&json!({"email": ["a@b.com"]}), &opts("US")).unwrap_err();
        assert_eq!(
            (err[0].field.as_str(), err[0].rule.as_str()),
            ("email", "wrong_type")
        );
        let err = normalize(&json!([1]), &opts("US")).unwrap_err();
        assert_eq!(err[0].rule, "not_an_object");
    }

    #[test]
    fn normalizing_twice_changes_nothing() {
        let first = normalize(
            &json!({"email": "MAILTO:X@Y.org", "phone": "(415) 231-2671", "first_name": "mARY", "last_name": "o'neill"}),
            &opts("US"),
        )
        .unwrap();
        let again =
            normalize(&serde_json::to_value(&first).unwrap(), &opts("US")).unwrap_or_default();
        assert_eq!(again.email, first.email);
        assert_eq!(again.phone, first.phone);
        assert_eq!(again.first_name, first.first_name);
        assert_eq!(again.last_name, first.last_name);
    }
}
