//! Validate + normalize: turns a lead as posted into a [`NormalizedLead`],
//! or into field errors that name the field and the rule.
//!
//! Rules (version [`RULES_VERSION`]), one module each, deterministic:
//! - [`email`]: trimmed, stripped of `mailto:`, display names and stray
//!   punctuation, lowercased, IDN domain to punycode, checked like mail
//!   providers check; typos of consumer domains fixed or suggested by
//!   policy; role and disposable addresses flagged.
//! - [`phone`]: E.164 with the source's default region, extension apart,
//!   vanity letters, `00` and trunk `0`, the number type.
//! - [`name`]: prefix/first/middle/last/suffix, "Last, First", casing that
//!   keeps McDonald, O'Brien and particles.
//! - [`company`]: display form, a matching key without legal suffixes, the
//!   company domain from the website or a non-free email domain.
//! - [`address`]: ISO 3166-1 alpha-2 country, postcode shape per country.
//!
//! A present field that cannot be normalized is flagged ([`FieldIssue`] in
//! `flags`) and kept out of the normalized lead; its text stays in
//! `original`. Whether the lead is still acceptable is decided by the
//! source's acceptance rule. Normalizing a normalized lead again
//! ([`NormalizedLead::to_raw`]) changes nothing.

pub mod address;
pub mod company;
mod edits;
pub mod email;
pub mod name;
pub mod phone;
mod tables;

use std::collections::BTreeMap;

use phonenumber::country::Id as Region;

use crate::pipeline::field::LeadField;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use address::{country_code, postcode};
pub use company::{company_display, company_domain, company_key, website_domain};
pub use edits::within_edits;
pub use email::{EmailInfo, TypoPolicy, normalize_email, normalize_email_with};
pub use name::{ParsedName, name_case, parse_name, split_name};
pub use phone::{PhoneInfo, normalize_phone, parse_phone};

/// Version of the normalization rules; stored with each lead (next to the
/// fingerprint version), so a lead records the rules that produced the
/// values its fingerprints were computed from.
pub const RULES_VERSION: u32 = 2;

/// A field that is wrong, and the rule it breaks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

fn is_false(b: &bool) -> bool {
    !*b
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
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub middle_name: Option<String>,
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
    /// ISO 3166-1 alpha-2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// Honorific(s) before the name: `Dr`, `Mrs`, `Prof Dr`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name_prefix: Option<String>,
    /// Suffix(es) after the name: `Jr`, `III`, `PhD`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name_suffix: Option<String>,
    /// Provenance: the page the lead was collected on.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source_url: Option<String>,
    /// Provenance: when it was collected (RFC 3339, UTC).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub collected_at: Option<String>,
    /// Provenance: who or what collected it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub collector: Option<String>,
    /// Consent: the lawful basis ([`consent_basis`]).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub consent_basis: Option<String>,
    /// Consent: when it was given (RFC 3339, UTC).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub consent_given_at: Option<String>,
    /// Consent: when it was withdrawn (RFC 3339, UTC).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub consent_withdrawn_at: Option<String>,
    /// Consent: the wording agreed to.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub consent_text: Option<String>,
    /// Consent: the version of the wording.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub consent_version: Option<String>,
    /// Consent: who collected it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub consent_collected_by: Option<String>,
    /// The company's matching key ([`company_key`]).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub company_key: Option<String>,
    /// The company's domain, from the website or a non-free email domain.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub company_domain: Option<String>,
    /// The phone's extension digits.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub phone_extension: Option<String>,
    /// `mobile`, `fixed_line`, `fixed_line_or_mobile`, `toll_free`, …
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub phone_type: Option<String>,
    /// The address that was probably meant (`gmial.com` → `gmail.com`),
    /// under the `suggest` typo policy.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub email_suggestion: Option<String>,
    /// A role or shared inbox (`info@`, `sales@`).
    #[serde(skip_serializing_if = "is_false", default)]
    pub email_role: bool,
    /// A throw-away mail domain.
    #[serde(skip_serializing_if = "is_false", default)]
    pub email_disposable: bool,
    /// The text of each known field as posted, where normalization changed it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub original: BTreeMap<String, String>,
    /// Keys leadgate does not know, kept as they came.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub custom: BTreeMap<String, Value>,
    /// Present fields that could not be normalized.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub flags: Vec<FieldIssue>,
}

impl NormalizedLead {
    /// Whether a field is present after normalization (its normalized
    /// name, or `name` for the full name).
    pub fn has(&self, field: &str) -> bool {
        LeadField::parse(field).is_some_and(|f| f.is_present(self))
    }

    /// The lead as input again (posted field names, custom keys): feeding
    /// it to [`normalize`] gives the same normalized fields.
    pub fn to_raw(&self) -> Value {
        let mut obj = Map::new();
        for field in LeadField::posted() {
            let value = match field {
                LeadField::Phone => match (&self.phone, &self.phone_extension) {
                    (Some(p), Some(x)) => Some(format!("{p} ext. {x}")),
                    (p, _) => p.clone(),
                },
                LeadField::FullName => self.posted_name(),
                _ => field.text(self).map(|v| v.into_owned()),
            };
            if let (Some(key), Some(value)) = (field.posted_name(), value) {
                obj.insert(key.to_string(), Value::String(value));
            }
        }
        for (k, v) in &self.custom {
            obj.insert(k.clone(), v.clone());
        }
        Value::Object(obj)
    }

    /// The name as posted again: the full name only when it says more
    /// than the parts.
    fn posted_name(&self) -> Option<String> {
        let parts = [&self.first_name, &self.middle_name, &self.last_name]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        match (&self.name_prefix, &self.full_name) {
            (Some(p), Some(f)) => Some(format!("{p} {f}")),
            (None, Some(f)) if *f == parts => None,
            (_, f) => f.clone(),
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
    /// Where a phone number without a country code is from; none:
    /// international numbers only.
    pub default_region: Option<Region>,
    pub acceptance: Acceptance,
    /// What to do with a likely typo in an email's consumer domain.
    pub email_typos: TypoPolicy,
}

impl NormalizeOptions {
    /// A region's options with the default acceptance rule: a valid email
    /// or phone.
    pub fn with_region(default_region: Region) -> Self {
        NormalizeOptions {
            default_region: Some(default_region),
            acceptance: Acceptance {
                require_any: vec![vec!["email".into(), "phone".into()]],
            },
            email_typos: TypoPolicy::default(),
        }
    }

    /// The same options with no acceptance rule: a lead is normalized on
    /// whatever fields it has (the batch commands, which answer for every
    /// input line).
    pub fn without_acceptance(mut self) -> Self {
        self.acceptance.require_any.clear();
        self
    }
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
    let mut n = Normalizer {
        options,
        lead: NormalizedLead::default(),
        errors: Vec::new(),
        full_name: None,
        postcode_text: None,
    };
    for (key, value) in obj {
        match (key.as_str(), value) {
            ("consent", Value::Object(consent)) => n.read_consent(consent),
            ("consent", Value::Null) => {}
            ("consent", other) => n.errors.push(FieldIssue::new(
                "consent",
                "wrong_type",
                format!(
                    "consent must be an object ({{basis, given_at, text, version, collected_by, withdrawn_at}}), not {}",
                    json_type(other)
                ),
            )),
            _ => n.read(key, value),
        }
    }
    n.finish()
}

/// The lawful bases of GDPR article 6, as `consent_basis` holds them.
pub const CONSENT_BASES: [&str; 6] = [
    "consent",
    "contract",
    "legal_obligation",
    "vital_interests",
    "public_task",
    "legitimate_interests",
];

/// A lawful basis as written (`Legitimate interests`, `legal-obligation`,
/// `CONSENT`) in its canonical form.
pub fn consent_basis(text: &str) -> Option<&'static str> {
    let key: String = text
        .trim()
        .chars()
        .map(|c| match c {
            ' ' | '-' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    let key = key
        .strip_suffix("_interest")
        .map_or(key.clone(), |k| format!("{k}_interests"));
    CONSENT_BASES.iter().copied().find(|b| *b == key)
}

/// An http(s) URL, normalized (scheme and host lower case).
pub fn source_url(text: &str) -> Option<String> {
    let url = leadgate_runtime::Url::parse(text.trim()).ok()?;
    (matches!(url.scheme(), "http" | "https") && url.host_str().is_some()).then(|| url.to_string())
}

/// A point in time as RFC 3339 in UTC: from RFC 3339 with any offset, a
/// date and time without one (taken as UTC, `T` or a space between), or a
/// date (midnight UTC).
pub fn timestamp(text: &str) -> Option<String> {
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    let text = text.trim();
    let utc = if let Ok(t) = time::OffsetDateTime::parse(text, &Rfc3339) {
        t.to_offset(time::UtcOffset::UTC)
    } else if let Ok(t) = time::PrimitiveDateTime::parse(
        &text.replacen(' ', "T", 1),
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    ) {
        t.assume_utc()
    } else {
        time::Date::parse(text, format_description!("[year]-[month]-[day]"))
            .ok()?
            .midnight()
            .assume_utc()
    };
    utc.format(&Rfc3339).ok()
}

/// One lead being normalized: its fields as they are read, the errors
/// found, and what waits for the other fields (the full name's parts, the
/// postcode's country).
struct Normalizer<'a> {
    options: &'a NormalizeOptions,
    lead: NormalizedLead,
    errors: Vec<FieldIssue>,
    full_name: Option<ParsedName>,
    postcode_text: Option<String>,
}

impl Normalizer<'_> {
    /// Reads a nested `consent` object: `{basis, given_at, text, version,
    /// collected_by}`, the same as the flat `consent_*` keys.
    fn read_consent(&mut self, consent: &serde_json::Map<String, Value>) {
        for (key, value) in consent {
            let flat = format!("consent_{key}");
            match LeadField::from_posted(&flat) {
                Some(_) => self.read(&flat, value),
                None => self.errors.push(FieldIssue::new(
                    &format!("consent.{key}"),
                    "unknown_field",
                    format!(
                        "consent.{key} is not a consent field (basis, given_at, text, version, collected_by, withdrawn_at)"
                    ),
                )),
            }
        }
    }

    /// Reads one posted key: a known field is normalized (a wrong type is
    /// an error, a value that normalizes to nothing a flag), any other key
    /// is kept as a custom attribute.
    fn read(&mut self, key: &String, value: &Value) {
        let Some(field) = LeadField::from_posted(key) else {
            self.lead.custom.insert(key.clone(), value.clone());
            return;
        };
        let raw_text = match value {
            Value::Null => return,
            Value::String(s) => s.as_str(),
            other => {
                self.errors.push(FieldIssue::new(
                    key,
                    "wrong_type",
                    format!("{key} must be a string, not {}", json_type(other)),
                ));
                return;
            }
        };
        let text = clean_text_cow(raw_text);
        if text.is_empty() {
            return;
        }
        let text: &str = &text;
        let Some((normalized, changed)) = self.field(field, text, raw_text) else {
            return;
        };

        use LeadField::{City, Company, FirstName, FullName, LastName, MiddleName, Street};
        let empty_rule = match field {
            FirstName | MiddleName | LastName | FullName => Some("invalid_name"),
            Company => Some("invalid_company"),
            Street | City => Some("invalid_address"),
            _ => None,
        };
        if let Some(rule) = empty_rule
            && !normalized
        {
            self.lead.flags.push(FieldIssue::new(
                key,
                rule,
                format!("{text:?}: nothing left after removing stray characters"),
            ));
        }
        if changed {
            self.lead.original.insert(key.clone(), raw_text.to_string());
        }
    }

    /// Normalizes one field's text: whether it has a normalized value, and
    /// whether that value differs from what was posted (then the posted
    /// text is kept in `original`); computed without copying values that
    /// are unchanged. None: the field waits for others.
    fn field(&mut self, field: LeadField, text: &str, raw_text: &str) -> Option<(bool, bool)> {
        let outcome = |v: Option<&str>| (v.is_some(), v != Some(raw_text));
        Some(match field {
            LeadField::Email => self.email(text, raw_text),
            LeadField::Phone => self.phone(text, raw_text),
            LeadField::FirstName => {
                self.lead.first_name = name::first_name(text);
                outcome(self.lead.first_name.as_deref())
            }
            LeadField::MiddleName => {
                self.lead.middle_name = name::first_name(text);
                outcome(self.lead.middle_name.as_deref())
            }
            LeadField::LastName => {
                self.lead.last_name = name::last_name(text);
                outcome(self.lead.last_name.as_deref())
            }
            LeadField::FullName => {
                let parsed = parse_name(text);
                let full = match (&parsed.prefix, parsed.full()) {
                    (Some(p), Some(f)) => Some(format!("{p} {f}")),
                    (_, f) => f,
                };
                self.full_name = Some(parsed);
                outcome(full.as_deref())
            }
            LeadField::Company => {
                let display = company_display(text);
                if !display.is_empty() {
                    self.lead.company_key = Some(company_key(&display));
                    self.lead.company = Some(display);
                }
                outcome(self.lead.company.as_deref())
            }
            LeadField::Title => {
                self.lead.title = Some(text.to_string());
                outcome(self.lead.title.as_deref())
            }
            LeadField::Website => {
                self.lead.website = Some(text.to_lowercase());
                outcome(self.lead.website.as_deref())
            }
            LeadField::Street => {
                let street = text.trim_matches(|c: char| matches!(c, ',' | ';')).trim();
                self.lead.street = (!street.is_empty()).then(|| street.to_string());
                outcome(self.lead.street.as_deref())
            }
            LeadField::City => {
                let city = text
                    .trim_matches(|c: char| matches!(c, ',' | ';' | '.'))
                    .trim();
                self.lead.city = (!city.is_empty()).then(|| name_case(city));
                outcome(self.lead.city.as_deref())
            }
            LeadField::Region => {
                let region = if text.len() <= 3 && text.chars().all(|c| c.is_ascii_alphabetic()) {
                    text.to_ascii_uppercase()
                } else {
                    text.to_string()
                };
                self.lead.region = Some(region);
                outcome(self.lead.region.as_deref())
            }
            LeadField::Postcode => {
                // Shaped once the country is known (`finish`).
                self.postcode_text = Some(text.to_string());
                return None;
            }
            LeadField::Country => match country_code(text) {
                Some(code) => {
                    self.lead.country = Some(code.to_string());
                    outcome(Some(code))
                }
                None => {
                    self.lead.flags.push(FieldIssue::new(
                        "country",
                        "invalid_country",
                        format!("{text:?}: not a country name or ISO 3166 code"),
                    ));
                    (false, true)
                }
            },
            LeadField::DateOfBirth => {
                self.lead.date_of_birth = Some(text.to_string());
                outcome(self.lead.date_of_birth.as_deref())
            }
            LeadField::SourceUrl => match source_url(text) {
                Some(url) => {
                    let changed = url != raw_text;
                    self.lead.source_url = Some(url);
                    (true, changed)
                }
                None => {
                    self.lead.flags.push(FieldIssue::new(
                        "source_url",
                        "invalid_url",
                        format!("{text:?}: not an http(s) URL"),
                    ));
                    (false, true)
                }
            },
            LeadField::CollectedAt | LeadField::ConsentGivenAt | LeadField::ConsentWithdrawnAt => {
                match timestamp(text) {
                    Some(at) => {
                        let changed = at != raw_text;
                        *field.value_mut(&mut self.lead)? = Some(at);
                        (true, changed)
                    }
                    None => {
                        self.lead.flags.push(FieldIssue::new(
                            field.name(),
                            "invalid_timestamp",
                            format!(
                                "{text:?}: not an RFC 3339 time or a date (2026-12-05T10:00:00Z)"
                            ),
                        ));
                        (false, true)
                    }
                }
            }
            LeadField::ConsentBasis => match consent_basis(text) {
                Some(basis) => {
                    self.lead.consent_basis = Some(basis.to_string());
                    outcome(Some(basis))
                }
                None => {
                    self.lead.flags.push(FieldIssue::new(
                        "consent_basis",
                        "invalid_consent_basis",
                        format!(
                            "{text:?}: not a lawful basis ({})",
                            CONSENT_BASES.join(", ")
                        ),
                    ));
                    (false, true)
                }
            },
            LeadField::Collector
            | LeadField::ConsentText
            | LeadField::ConsentVersion
            | LeadField::ConsentCollectedBy => {
                let slot = field.value_mut(&mut self.lead)?;
                *slot = Some(text.to_string());
                outcome(slot.as_deref())
            }
            LeadField::Priority => match text.to_ascii_uppercase().as_str() {
                p @ ("P0" | "P1" | "P2") => {
                    self.lead.priority = Some(p.to_string());
                    outcome(Some(p))
                }
                _ => {
                    self.errors.push(FieldIssue::new(
                        "priority",
                        "invalid_priority",
                        "priority must be P0, P1 or P2",
                    ));
                    (false, true)
                }
            },
            _ => unreachable!("only posted fields are read"),
        })
    }

    fn email(&mut self, text: &str, raw_text: &str) -> (bool, bool) {
        let outcome = |v: Option<&str>| (v.is_some(), v != Some(raw_text));
        let lead = &mut self.lead;
        let options = self.options;
        match normalize_email_with(text, options.email_typos) {
            Ok(e) => {
                lead.email_suggestion = e.suggestion;
                lead.email_role = e.role;
                lead.email_disposable = e.disposable;
                lead.email = Some(e.address);
                outcome(lead.email.as_deref())
            }
            Err(issue) => {
                lead.flags.push(issue);
                (false, true)
            }
        }
    }

    fn phone(&mut self, text: &str, raw_text: &str) -> (bool, bool) {
        let lead = &mut self.lead;
        let options = self.options;
        match parse_phone(text, options.default_region) {
            Ok(p) => {
                // The canonical form: E.164, and " ext. N" if any.
                let changed = match &p.extension {
                    Some(x) => {
                        raw_text.len() != p.e164.len() + 6 + x.len()
                            || !raw_text.starts_with(p.e164.as_str())
                            || !raw_text[p.e164.len()..].starts_with(" ext. ")
                            || &raw_text[p.e164.len() + 6..] != x.as_str()
                    }
                    None => raw_text != p.e164,
                };
                lead.phone_extension = p.extension;
                lead.phone_type = p.kind.map(str::to_string);
                lead.phone = Some(p.e164);
                (true, changed)
            }
            Err(issue) => {
                lead.flags.push(issue);
                (false, true)
            }
        }
    }

    /// The fields that depend on others, then the acceptance rule.
    fn finish(mut self) -> Result<NormalizedLead, Vec<FieldIssue>> {
        self.shape_postcode();
        self.fill_names();
        // A misspelt free-mail domain (gmial.com) is not a company's domain.
        let lead = &mut self.lead;
        let email_for_domain = lead.email_suggestion.as_deref().or(lead.email.as_deref());
        lead.company_domain = company_domain(lead.website.as_deref(), email_for_domain);
        self.check_acceptance();
        if self.errors.is_empty() {
            Ok(self.lead)
        } else {
            Err(self.errors)
        }
    }

    /// The postcode, shaped by the lead's country.
    fn shape_postcode(&mut self) {
        let Some(text) = self.postcode_text.take() else {
            return;
        };
        let lead = &mut self.lead;
        match postcode(&text, lead.country.as_deref()) {
            Ok(p) => {
                if p != text {
                    lead.original.insert("postcode".into(), text);
                }
                lead.postcode = Some(p);
            }
            Err(why) => {
                lead.flags.push(FieldIssue::new(
                    "postcode",
                    "invalid_postcode",
                    format!(
                        "{text:?}: {why} ({})",
                        lead.country.as_deref().unwrap_or("")
                    ),
                ));
                lead.original.insert("postcode".into(), text);
            }
        }
    }

    /// A full name fills the name parts the lead does not have; parts
    /// without a full name make one.
    fn fill_names(&mut self) {
        let lead = &mut self.lead;
        if let Some(parsed) = self.full_name.take() {
            if lead.first_name.is_none() && lead.last_name.is_none() {
                lead.first_name = parsed.first.clone();
                if lead.middle_name.is_none() {
                    lead.middle_name = parsed.middle.clone();
                }
                lead.last_name = parsed.last.clone();
            }
            lead.name_prefix = parsed.prefix.clone();
            lead.name_suffix = parsed.suffix.clone();
            lead.full_name = parsed.full();
        }
        if lead.full_name.is_none() {
            let joined = [
                lead.first_name.as_deref(),
                lead.middle_name.as_deref(),
                lead.last_name.as_deref(),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
            if !joined.is_empty() {
                lead.full_name = Some(joined);
            }
        }
    }

    /// The source's acceptance rule: each group needs one present field;
    /// a group without one names the field that was there but wrong, if
    /// any.
    fn check_acceptance(&mut self) {
        for group in &self.options.acceptance.require_any {
            if group.iter().any(|f| self.lead.has(f)) {
                continue;
            }
            let flagged: Vec<FieldIssue> = self
                .lead
                .flags
                .iter()
                .filter(|i| group.contains(&i.field))
                .cloned()
                .collect();
            if flagged.is_empty() {
                self.errors.push(FieldIssue::new(
                    group.first().map(String::as_str).unwrap_or(""),
                    "required_one_of",
                    format!("at least one of {} is required", group.join(", ")),
                ));
            } else {
                self.errors.extend(flagged);
            }
        }
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

fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}'
        )
}

/// Trims and collapses runs of whitespace (including tabs, newlines and
/// no-break spaces); drops zero-width characters and control characters.
pub fn clean_text(s: &str) -> String {
    clean_text_cow(s).into_owned()
}

/// [`clean_text`], borrowing text that is clean already (the usual case).
pub(crate) fn clean_text_cow(s: &str) -> std::borrow::Cow<'_, str> {
    // Clean already: no whitespace but single spaces between words, no
    // invisible character.
    let mut after_space = true;
    let mut clean = true;
    for c in s.chars() {
        if c == ' ' {
            if after_space {
                clean = false;
                break;
            }
            after_space = true;
        } else if c.is_whitespace() || is_invisible(c) {
            clean = false;
            break;
        } else {
            after_space = false;
        }
    }
    // (A trailing space is not clean; the empty text is.)
    if clean && (!after_space || s.is_empty()) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !word.chars().any(|c| !is_invisible(c)) {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().filter(|c| !is_invisible(*c)));
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(super) fn opts(region: &str) -> NormalizeOptions {
        NormalizeOptions::with_region(region.parse().unwrap())
    }

    #[test]
    fn a_source_chooses_its_email_typo_policy() {
        let raw = json!({"email": "Ann@GMIAL.com"});
        let mut o = opts("US");
        let lead = normalize(&raw, &o).unwrap();
        assert_eq!(lead.email.as_deref(), Some("ann@gmial.com"));
        assert_eq!(lead.email_suggestion.as_deref(), Some("ann@gmail.com"));
        o.email_typos = TypoPolicy::Fix;
        let lead = normalize(&raw, &o).unwrap();
        assert_eq!(lead.email.as_deref(), Some("ann@gmail.com"));
        assert_eq!(lead.email_suggestion, None);
        assert_eq!(
            lead.original["email"], "Ann@GMIAL.com",
            "the original is kept"
        );
        o.email_typos = TypoPolicy::Ignore;
        let lead = normalize(&raw, &o).unwrap();
        assert_eq!(
            (lead.email.as_deref(), lead.email_suggestion),
            (Some("ann@gmial.com"), None)
        );
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

#[cfg(test)]
mod lead_tests {
    use super::*;
    use serde_json::json;

    use super::tests::opts;

    #[test]
    fn messy_scraped_lead() {
        let lead = normalize(
            &json!({
                "name": " Dr. MARY-ANN  o’neill-mcdonald jr. ",
                "email": "\"Mary\" <Mary.ONeill@GMIAL.COM>",
                "phone": "+1 (800) FLOWERS ext. 12",
                "company": "  O'Neill & Sons, L.L.C. ",
                "website": "https://www.ONeill-Sons.com/about",
                "country": "U.S.A.",
                "postcode": "2134",
                "city": "  BOSTON ",
                "region": "ma",
                "street": "12 Main St.,",
                "utm_source": "li"
            }),
            &opts("US"),
        )
        .unwrap();
        assert_eq!(lead.name_prefix.as_deref(), Some("Dr"));
        assert_eq!(lead.first_name.as_deref(), Some("Mary-Ann"));
        assert_eq!(lead.last_name.as_deref(), Some("O'Neill-McDonald"));
        assert_eq!(lead.name_suffix.as_deref(), Some("Jr"));
        assert_eq!(
            lead.full_name.as_deref(),
            Some("Mary-Ann O'Neill-McDonald Jr")
        );
        assert_eq!(lead.email.as_deref(), Some("mary.oneill@gmial.com"));
        assert_eq!(
            lead.email_suggestion.as_deref(),
            Some("mary.oneill@gmail.com")
        );
        assert_eq!(lead.original["email"], "\"Mary\" <Mary.ONeill@GMIAL.COM>");
        assert!(lead.flags.is_empty(), "{:?}", lead.flags);
        assert_eq!(lead.phone.as_deref(), Some("+18003569377"));
        assert_eq!(lead.phone_extension.as_deref(), Some("12"));
        assert_eq!(lead.phone_type.as_deref(), Some("toll_free"));
        assert_eq!(lead.company.as_deref(), Some("O'Neill & Sons, L.L.C."));
        assert_eq!(lead.company_key.as_deref(), Some("oneill and sons"));
        assert_eq!(lead.company_domain.as_deref(), Some("oneill-sons.com"));
        assert_eq!(lead.country.as_deref(), Some("US"));
        assert_eq!(lead.postcode.as_deref(), Some("02134"));
        assert_eq!(lead.city.as_deref(), Some("Boston"));
        assert_eq!(lead.region.as_deref(), Some("MA"));
        assert_eq!(lead.street.as_deref(), Some("12 Main St."));
        assert_eq!(lead.custom["utm_source"], json!("li"));
        assert!(lead.flags.is_empty(), "{:?}", lead.flags);
    }

    #[test]
    fn flags_keep_what_could_not_be_normalized() {
        let lead = normalize(
            &json!({"email": "Info@Acme.com", "phone": "12345", "country": "Narnia",
                    "postcode": "ABC", "first_name": "1234", "last_name": "Lee"}),
            &opts("GB"),
        )
        .unwrap();
        assert!(lead.email_role);
        let rules: Vec<(&str, &str)> = lead
            .flags
            .iter()
            .map(|f| (f.field.as_str(), f.rule.as_str()))
            .collect();
        assert!(rules.contains(&("phone", "invalid_phone")));
        assert!(rules.contains(&("country", "invalid_country")));
        assert!(rules.contains(&("first_name", "invalid_name")));
        assert_eq!(lead.original["phone"], "12345");
        assert_eq!(lead.original["country"], "Narnia");
        assert_eq!(lead.phone, None);
        assert_eq!(lead.country, None);
        // No country: the postcode is kept as written.
        assert_eq!(lead.postcode.as_deref(), Some("ABC"));

        let lead = normalize(
            &json!({"email": "x@mailinator.com", "postcode": "ABC", "country": "uk"}),
            &opts("GB"),
        )
        .unwrap();
        assert!(lead.email_disposable);
        assert_eq!(lead.postcode, None);
        assert_eq!(lead.flags[0].rule, "invalid_postcode");
        assert_eq!(lead.original["postcode"], "ABC");
    }

    #[test]
    fn free_mail_gives_no_company_domain() {
        let lead = normalize(
            &json!({"email": "jo@gmail.com", "company": "Acme Inc"}),
            &opts("US"),
        )
        .unwrap();
        assert_eq!(lead.company_domain, None);
        assert_eq!(lead.company_key.as_deref(), Some("acme"));
        let lead = normalize(&json!({"email": "jo@gmial.com"}), &opts("US")).unwrap();
        assert_eq!(lead.company_domain, None);
        let lead = normalize(&json!({"email": "jo@Acme.com"}), &opts("US")).unwrap();
        assert_eq!(lead.company_domain.as_deref(), Some("acme.com"));
    }

    #[test]
    fn demo_file_validity_is_unchanged() {
        // Rules v2 accept and reject exactly as many demo rows as rules v1
        // (the e2e demo counts on 55 rejected of 1,000).
        let mut rejected = 0;
        for line in include_str!("../../../demo/leads.jsonl").lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            let region = if v["source"] == "webform" { "GB" } else { "US" };
            if normalize(&v["lead"], &opts(region)).is_err() {
                rejected += 1;
            }
        }
        assert_eq!(rejected, 55);
    }
}

#[cfg(test)]
mod provenance_and_consent {
    use super::*;
    use serde_json::json;

    fn norm(raw: Value) -> Result<NormalizedLead, Vec<FieldIssue>> {
        normalize(&raw, &NormalizeOptions::with_region("US".parse().unwrap()))
    }

    #[test]
    fn provenance_and_consent_are_first_class_fields() {
        let lead = norm(json!({
            "email": "ann@example.com",
            "source_url": "HTTPS://Example.COM/contact?utm=x",
            "collected_at": "2026-12-01T10:30:00+01:00",
            "collector": "  webform-eu  ",
            "consent": {
                "basis": "Legitimate Interest",
                "given_at": "2026-12-01",
                "text": "You may contact me about offers.",
                "version": "v3",
                "collected_by": "Acme GmbH"
            }
        }))
        .unwrap();
        assert_eq!(
            lead.source_url.as_deref(),
            Some("https://example.com/contact?utm=x")
        );
        assert_eq!(lead.collected_at.as_deref(), Some("2026-12-01T09:30:00Z"));
        assert_eq!(lead.collector.as_deref(), Some("webform-eu"));
        assert_eq!(lead.consent_basis.as_deref(), Some("legitimate_interests"));
        assert_eq!(
            lead.consent_given_at.as_deref(),
            Some("2026-12-01T00:00:00Z")
        );
        assert_eq!(lead.consent_version.as_deref(), Some("v3"));
        assert_eq!(lead.consent_collected_by.as_deref(), Some("Acme GmbH"));
        // The flat keys are the same fields.
        let flat = norm(
            json!({"email": "ann@example.com", "consent_basis": "CONSENT",
                               "consent_given_at": "2026-12-01 10:00:00"}),
        )
        .unwrap();
        assert_eq!(flat.consent_basis.as_deref(), Some("consent"));
        assert_eq!(
            flat.consent_given_at.as_deref(),
            Some("2026-12-01T10:00:00Z")
        );
        // Every field reads and writes through LeadField.
        for field in [
            LeadField::SourceUrl,
            LeadField::CollectedAt,
            LeadField::ConsentBasis,
            LeadField::ConsentText,
        ] {
            assert!(field.is_present(&lead), "{field:?}");
            assert_eq!(LeadField::from_posted(field.name()), Some(field));
        }
    }

    #[test]
    fn bad_provenance_or_consent_is_named_and_never_kept() {
        let lead = norm(json!({
            "email": "ann@example.com",
            "source_url": "javascript:alert(1)",
            "collected_at": "yesterday",
            "consent": {"basis": "because"}
        }))
        .unwrap();
        let rules: Vec<(&str, &str)> = lead
            .flags
            .iter()
            .map(|f| (f.field.as_str(), f.rule.as_str()))
            .collect();
        assert!(rules.contains(&("source_url", "invalid_url")), "{rules:?}");
        assert!(
            rules.contains(&("collected_at", "invalid_timestamp")),
            "{rules:?}"
        );
        assert!(
            rules.contains(&("consent_basis", "invalid_consent_basis")),
            "{rules:?}"
        );
        assert_eq!(lead.source_url, None);
        assert_eq!(lead.consent_basis, None);
        // What was posted is kept beside the flags.
        assert_eq!(lead.original["collected_at"], "yesterday");

        let errors = norm(
            json!({"email": "ann@example.com", "consent": {"basis": "consent", "proof": "x"}}),
        )
        .unwrap_err();
        assert_eq!(errors[0].field, "consent.proof");
        assert_eq!(errors[0].rule, "unknown_field");
        let errors = norm(json!({"email": "ann@example.com", "consent": "yes"})).unwrap_err();
        assert_eq!(
            (errors[0].field.as_str(), errors[0].rule.as_str()),
            ("consent", "wrong_type")
        );
        let errors =
            norm(json!({"email": "ann@example.com", "consent": {"basis": 1}})).unwrap_err();
        assert_eq!(
            (errors[0].field.as_str(), errors[0].rule.as_str()),
            ("consent_basis", "wrong_type")
        );
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn opts() -> NormalizeOptions {
        NormalizeOptions::with_region("US".parse().unwrap())
    }

    fn noisy(values: &'static [&'static str]) -> impl Strategy<Value = String> {
        (
            proptest::sample::select(values),
            proptest::sample::select(&["", " ", "\t", "  ", "\n", "\u{a0}"][..]),
            proptest::sample::select(&["", " ", "\t ", "\n"][..]),
            0u8..3,
        )
            .prop_map(|(v, pre, post, case)| {
                let v = match case {
                    0 => v.to_string(),
                    1 => v.to_uppercase(),
                    _ => v.to_lowercase(),
                };
                format!("{pre}{v}{post}")
            })
    }

    const EMAILS: &[&str] = &[
        "Jane.Doe@Example.com",
        "mailto:jo@gmial.com",
        "\"Jo\" <jo@Müller.de>",
        "info@acme.co.uk",
        "x@mailinator.com",
        "bad@",
        "n/a",
        "o'brien@example.ie",
        "jo@acme.cmo",
    ];
    const PHONES: &[&str] = &[
        "(415) 231-2671",
        "+44 20 3595 3876",
        "00 44 20 3595 3876",
        "1-800-FLOWERS",
        "415-231-2671 x204",
        "12345",
        "+49 (0)30 12345678",
        "tel: 415.231.2671",
    ];
    const NAMES: &[&str] = &[
        "Dr. Mary Ann O'Neill Jr.",
        "smith, john",
        "ludwig van beethoven",
        "Juan de la Cruz",
        "McDonald, Ronald, III",
        "José Álvarez",
        "*Jane* (Doe)",
        "madonna",
        "Prof. Dr. Anna Schmidt Ph.D.",
    ];
    const COMPANIES: &[&str] = &[
        "Acme, Inc.",
        "Müller GmbH & Co. KG",
        "The Smith & Sons Ltd",
        "ACME",
    ];
    const COUNTRIES: &[&str] = &[
        "United States",
        "U.K.",
        "Deutschland",
        "fr",
        "Narnia",
        "GBR",
    ];
    const POSTCODES: &[&str] = &["sw1a1aa", "2134", "10115", "94105-1234", "k1a0b1", "ABC"];
    const FIRSTS: &[&str] = &["mary", "JOHN", "Dr. Jane", "anne-marie", "DeShawn"];
    const LASTS: &[&str] = &["o'neill", "VAN DER BERG", "King Jr.", "mcdonald", "Smith"];

    fn lead() -> impl Strategy<Value = Vec<(String, String)>> {
        (
            proptest::option::of(noisy(EMAILS)),
            proptest::option::of(noisy(PHONES)),
            proptest::option::of(noisy(NAMES)),
            proptest::option::of(noisy(FIRSTS)),
            proptest::option::of(noisy(LASTS)),
            proptest::option::of(noisy(COMPANIES)),
            proptest::option::of(noisy(COUNTRIES)),
            proptest::option::of(noisy(POSTCODES)),
        )
            .prop_map(|(e, p, n, f, l, c, co, pc)| {
                [
                    ("email", e),
                    ("phone", p),
                    ("name", n),
                    ("first_name", f),
                    ("last_name", l),
                    ("company", c),
                    ("country", co),
                    ("postcode", pc),
                ]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
                .collect()
            })
    }

    fn to_value(fields: &[(String, String)]) -> Value {
        Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    }

    /// The normalized values, without what records the input.
    fn values(mut lead: NormalizedLead) -> NormalizedLead {
        lead.original.clear();
        lead.flags.clear();
        lead
    }

    proptest! {
        #[test]
        fn normalizing_twice_changes_nothing(fields in lead()) {
            if let Ok(first) = normalize(&to_value(&fields), &opts()) {
                let again = normalize(&first.to_raw(), &opts()).expect("a normalized lead stays valid");
                prop_assert!(again.original.is_empty(), "changed again: {:?}", again.original);
                prop_assert!(again.flags.is_empty(), "flagged again: {:?}", again.flags);
                prop_assert_eq!(values(again), values(first));
            }
        }

        #[test]
        fn fingerprints_ignore_field_order_and_whitespace(
            fields in lead(),
            seed in any::<u64>(),
            pad in proptest::sample::select(&[" ", "\t", "\n ", "\u{a0}"][..]),
        ) {
            let base = normalize(&to_value(&fields), &opts());
            // Another order and more whitespace around and inside values.
            let mut shuffled = fields.clone();
            let n = shuffled.len().max(1);
            shuffled.rotate_left((seed as usize) % n);
            if seed % 2 == 0 {
                shuffled.reverse();
            }
            let shuffled: Vec<(String, String)> = shuffled
                .into_iter()
                .map(|(k, v)| (k, format!("{pad}{}{pad}", v.replace(' ', &format!(" {pad}")))))
                .collect();
            let other = normalize(&to_value(&shuffled), &opts());
            match (base, other) {
                (Ok(a), Ok(b)) => {
                    prop_assert_eq!(crate::pipeline::dedupe::fingerprints(&a), crate::pipeline::dedupe::fingerprints(&b));
                    prop_assert_eq!(values(a), values(b));
                }
                (Err(a), Err(b)) => prop_assert_eq!(a.len(), b.len()),
                (a, b) => prop_assert!(false, "{a:?} vs {b:?}"),
            }
        }
    }
}
