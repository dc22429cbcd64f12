//! Consent policies: per destination, where a lead needs a lawful basis
//! before it may be pushed. A person whose country (its `country`, else its
//! phone's country code) is in the policy's jurisdictions and who has no
//! accepted `consent_basis` is held for that destination with reason
//! `consent_missing`; a later lead of the same person that brings consent
//! releases the held jobs (the outbox writer does that on the merge).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::mapping::LeadFields;
use super::normalize::CONSENT_BASES;

/// `[destinations.NAME.consent]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConsentConfig {
    /// Where consent is required: ISO 3166-1 alpha-2 codes, the groups
    /// `EU`, `EEA` and `UK`, or `*` (everywhere).
    pub required_in: Vec<String>,
    /// The lawful bases that count (GDPR art. 6); empty: any of them.
    #[serde(default)]
    pub bases: Vec<String>,
    /// Hold a person whose country is unknown (no country, no phone) too.
    #[serde(default)]
    pub hold_unknown_country: bool,
}

/// Why a job waits instead of going out.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Hold {
    /// The destination's consent policy asks for a lawful basis the person
    /// has not given.
    ConsentMissing,
    /// The person withdrew consent (every destination).
    ConsentWithdrawn,
}

/// Why a person with `fields` must wait for a destination with `policy`
/// (none: no policy), if it must: a withdrawal holds everywhere.
pub fn hold(policy: Option<&ConsentPolicy>, fields: &dyn LeadFields) -> Option<Hold> {
    if withdrawn(fields) {
        return Some(Hold::ConsentWithdrawn);
    }
    policy.and_then(|p| p.check(fields))
}

/// Whether the person withdrew consent and gave none since (RFC 3339 UTC
/// times compare as text).
pub fn withdrawn(fields: &dyn LeadFields) -> bool {
    let field = |name: &str| fields.field(&[name.to_string()]);
    match (field("consent_withdrawn_at"), field("consent_given_at")) {
        (Some(withdrawn), Some(given)) => given <= withdrawn,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

impl crate::store::StoredEnum for Hold {}

/// The European Union's member states.
const EU: [&str; 27] = [
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV",
    "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
];
/// The EEA beyond the EU.
const EEA_ONLY: [&str; 3] = ["IS", "LI", "NO"];

/// A destination's consent policy, ready to check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentPolicy {
    everywhere: bool,
    countries: BTreeSet<String>,
    bases: Vec<String>,
    hold_unknown: bool,
}

impl ConsentPolicy {
    /// The policy `config` describes; the error names the entry at fault.
    pub fn new(config: &ConsentConfig) -> Result<ConsentPolicy, String> {
        let mut policy = ConsentPolicy {
            everywhere: false,
            countries: BTreeSet::new(),
            bases: Vec::new(),
            hold_unknown: config.hold_unknown_country,
        };
        if config.required_in.is_empty() {
            return Err("required_in: name at least one jurisdiction (or \"*\")".into());
        }
        for place in &config.required_in {
            match place.as_str() {
                "*" => policy.everywhere = true,
                "EU" => policy.countries.extend(EU.map(String::from)),
                "EEA" => {
                    policy.countries.extend(EU.map(String::from));
                    policy.countries.extend(EEA_ONLY.map(String::from));
                }
                "UK" | "GB" => {
                    policy.countries.insert("GB".into());
                }
                code if code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()) => {
                    policy.countries.insert(code.into());
                }
                other => {
                    return Err(format!(
                        "required_in: {other:?} is not an ISO 3166-1 alpha-2 code, EU, EEA, UK or *"
                    ));
                }
            }
        }
        for basis in &config.bases {
            if !CONSENT_BASES.contains(&basis.as_str()) {
                return Err(format!(
                    "bases: {basis:?} is not a lawful basis ({})",
                    CONSENT_BASES.join(", ")
                ));
            }
            policy.bases.push(basis.clone());
        }
        Ok(policy)
    }

    /// Why a person with `fields` must wait for this destination, if it
    /// must.
    pub fn check(&self, fields: &dyn LeadFields) -> Option<Hold> {
        let field = |name: &str| fields.field(&[name.to_string()]);
        let covered = match jurisdiction(field("country"), field("phone")) {
            _ if self.everywhere => true,
            Some(country) => self.countries.contains(&country),
            None => self.hold_unknown,
        };
        if !covered {
            return None;
        }
        match field("consent_basis") {
            Some(basis) if self.bases.is_empty() || self.bases.contains(&basis) => None,
            _ => Some(Hold::ConsentMissing),
        }
    }
}

/// A person's country: its `country`, else its phone's (E.164) country.
fn jurisdiction(country: Option<String>, phone: Option<String>) -> Option<String> {
    if let Some(c) = country.filter(|c| !c.is_empty()) {
        return Some(c.to_ascii_uppercase());
    }
    let phone = phonenumber::parse(None, phone?).ok()?;
    let id = phone.country().id()?;
    Some(id.as_ref().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lead(pairs: &[(&str, &str)]) -> serde_json::Map<String, serde_json::Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect()
    }

    fn policy(required_in: &[&str], bases: &[&str], hold_unknown: bool) -> ConsentPolicy {
        ConsentPolicy::new(&ConsentConfig {
            required_in: required_in.iter().map(|s| s.to_string()).collect(),
            bases: bases.iter().map(|s| s.to_string()).collect(),
            hold_unknown_country: hold_unknown,
        })
        .unwrap()
    }

    #[test]
    fn a_person_in_a_covered_country_needs_an_accepted_basis() {
        let p = policy(&["EU", "UK", "CA"], &[], false);
        let held = Some(Hold::ConsentMissing);
        assert_eq!(p.check(&lead(&[("country", "DE")])), held);
        assert_eq!(p.check(&lead(&[("country", "GB")])), held);
        assert_eq!(p.check(&lead(&[("country", "CA")])), held);
        assert_eq!(p.check(&lead(&[("country", "US")])), None);
        assert_eq!(
            p.check(&lead(&[("country", "FR"), ("consent_basis", "consent")])),
            None
        );
        // The phone's country when the lead names none.
        assert_eq!(p.check(&lead(&[("phone", "+4930901820")])), held);
        assert_eq!(p.check(&lead(&[("phone", "+14155550123")])), None);
        // The country named wins over the phone's.
        assert_eq!(
            p.check(&lead(&[("country", "US"), ("phone", "+4930901820")])),
            None
        );
        // Unknown: not held, unless the policy says so.
        assert_eq!(p.check(&lead(&[("email", "a@b.com")])), None);
        let strict = policy(&["EU"], &[], true);
        assert_eq!(strict.check(&lead(&[("email", "a@b.com")])), held);
        let everywhere = policy(&["*"], &[], false);
        assert_eq!(everywhere.check(&lead(&[("country", "US")])), held);
    }

    #[test]
    fn a_withdrawal_holds_everywhere_until_a_later_consent() {
        let p = policy(&["EU"], &[], false);
        let withdrawn = lead(&[
            ("country", "US"),
            ("consent_basis", "consent"),
            ("consent_given_at", "2026-01-01T00:00:00Z"),
            ("consent_withdrawn_at", "2026-02-01T00:00:00Z"),
        ]);
        assert_eq!(hold(Some(&p), &withdrawn), Some(Hold::ConsentWithdrawn));
        assert_eq!(hold(None, &withdrawn), Some(Hold::ConsentWithdrawn));
        let again = lead(&[
            ("consent_basis", "consent"),
            ("consent_given_at", "2026-03-01T00:00:00Z"),
            ("consent_withdrawn_at", "2026-02-01T00:00:00Z"),
        ]);
        assert_eq!(hold(None, &again), None);
        assert_eq!(hold(None, &lead(&[("country", "DE")])), None);
        assert_eq!(
            hold(Some(&p), &lead(&[("country", "DE")])),
            Some(Hold::ConsentMissing)
        );
    }

    #[test]
    fn only_the_listed_bases_count() {
        let p = policy(&["EEA"], &["consent"], false);
        let norway = |basis: &str| lead(&[("country", "NO"), ("consent_basis", basis)]);
        assert_eq!(p.check(&norway("consent")), None);
        assert_eq!(
            p.check(&norway("legitimate_interests")),
            Some(Hold::ConsentMissing)
        );
    }

    #[test]
    fn a_bad_policy_names_its_entry() {
        let bad = |required_in: &[&str], bases: &[&str]| {
            ConsentPolicy::new(&ConsentConfig {
                required_in: required_in.iter().map(|s| s.to_string()).collect(),
                bases: bases.iter().map(|s| s.to_string()).collect(),
                hold_unknown_country: false,
            })
            .unwrap_err()
        };
        assert!(bad(&["Europe"], &[]).contains("\"Europe\""));
        assert!(bad(&[], &[]).contains("required_in"));
        assert!(bad(&["EU"], &["opt_in"]).contains("\"opt_in\""));
    }
}
