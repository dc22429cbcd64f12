//! Dedupe: exact fingerprints on normalized fields, versioned.
//!
//! Version [`FINGERPRINT_VERSION`]: one fingerprint per normalized email,
//! one per E.164 phone and one per first + last name + company key (v1 had
//! the first two only; stored v1 fingerprints stay valid). A lead whose fingerprints match an earlier person's
//! is a duplicate of that person and is never pushed again; a duplicate's
//! new fingerprints (say, a phone the first copy lacked) join the person.
//! The decision is made by the single writer that also commits the lead, so
//! two copies arriving at once cannot both be "new".
//!
//! On top of the exact tier sits the fuzzy tier ([`fuzzy`]): blocking keys
//! pick a handful of candidate records, each is compared field by field
//! ([`compare`]) and scored by a Fellegi–Sunter model ([`model`], trained
//! by [`train`]), and the lead joins the most probable person at or above
//! the match probability, is flagged as a possible duplicate between the
//! thresholds, or starts a new person. [`Deduper`] combines both tiers; the
//! server's outbox writer and the `leadgate dedupe` batch command use it.

mod chunked;
pub mod compare;
pub mod config;
#[cfg(any(test, feature = "test-support"))]
pub mod corpus;
pub mod features;
pub mod fuzzy;
pub mod model;
pub mod phonetic;
pub mod train;

pub use config::DedupeConfig;
pub use fuzzy::{Deduper, Features, Verdict};
pub use model::{Explanation, Model, ModelFile, ModelHandle};

use serde::{Deserialize, Serialize};

use crate::pipeline::normalize::NormalizedLead;

/// Version of the fingerprint rules; stored with each lead.
pub const FINGERPRINT_VERSION: u32 = 2;

/// The fingerprints of a lead, most decisive first.
pub fn fingerprints(lead: &NormalizedLead) -> Vec<String> {
    let mut fps = Vec::with_capacity(3);
    if let Some(email) = &lead.email {
        fps.push(format!("email:{email}"));
    }
    if let Some(phone) = &lead.phone {
        fps.push(format!("phone:{phone}"));
    }
    if let (Some(first), Some(last), Some(company)) =
        (&lead.first_name, &lead.last_name, &lead.company)
    {
        let key = fuzzy::company_key(company);
        if !key.is_empty() {
            // No spaces: the store keeps fingerprints space-separated.
            let fp = format!(
                "name:{} {}|{key}",
                first.to_lowercase(),
                last.to_lowercase()
            );
            fps.push(fp.replace(' ', "_"));
        }
    }
    fps
}

/// A fingerprint's kind: `email` of `email:jane@example.com` and of its
/// blind index `email#…`; None for what is no fingerprint (the lead id a
/// fuzzy decision matched).
pub fn fingerprint_kind(fp: &str) -> Option<&str> {
    fp.split_once([':', '#']).map(|(kind, _)| kind)
}

/// The outcome of dedupe for one lead.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// A person not seen before; the lead is the person's first.
    New,
    /// The same person as an earlier lead.
    Duplicate {
        /// The person's first lead.
        person_id: String,
        /// The fingerprint that matched, e.g. `email:jane@example.com`,
        /// or the matched lead of a fuzzy decision.
        matched: String,
        rule: String,
        /// The fuzzy score that decided, if the fuzzy tier decided.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        score: Option<f64>,
        /// Why: each comparison's level and match weight.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        explain: Option<Explain>,
    },
    /// A new person, flagged as a possible duplicate of an earlier one for
    /// review. It is stored and delivered like [`Decision::New`].
    Possible {
        /// The person it may be.
        person_id: String,
        /// The earlier lead it resembles most.
        matched: String,
        rule: String,
        score: f64,
        explain: Explain,
    },
}

/// The explanation of a fuzzy decision as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Explain {
    /// Each comparison's match weight (the model's waterfall).
    Weights(Explanation),
    /// `field:points` terms, as decisions before the trained model were
    /// explained (still read from older stores).
    Points(String),
}

impl From<Explanation> for Explain {
    fn from(e: Explanation) -> Self {
        Explain::Weights(e)
    }
}

impl Decision {
    /// Whether the lead joined an earlier person (and is not delivered).
    pub fn is_duplicate(&self) -> bool {
        matches!(self, Decision::Duplicate { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lead(email: Option<&str>, phone: Option<&str>) -> NormalizedLead {
        NormalizedLead {
            email: email.map(String::from),
            phone: phone.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn second_copy_is_a_duplicate_and_new_fingerprints_join_the_person() {
        let config = DedupeConfig::default();
        let mut idx = Deduper::new(config.clone());
        let mut decide = |id: &str, lead: NormalizedLead| {
            let v = idx.decide(
                id,
                "test",
                &fingerprints(&lead),
                Features::from_lead(&lead, &config, 0),
            );
            (v.decision, v.added)
        };
        let (d, _) = decide("L1", lead(Some("a@x.com"), None));
        assert_eq!(d, Decision::New);
        let (d, added) = decide("L2", lead(Some("a@x.com"), Some("+14152312671")));
        assert_eq!(
            d,
            Decision::Duplicate {
                person_id: "L1".into(),
                matched: "email:a@x.com".into(),
                rule: "exact-email-v2".into(),
                score: None,
                explain: None,
            }
        );
        assert_eq!(added, vec!["phone:+14152312671".to_string()]);
        // A phone-only third copy now matches the same person.
        let (d, _) = decide("L3", lead(None, Some("+14152312671")));
        assert!(matches!(d, Decision::Duplicate { person_id, .. } if person_id == "L1"));
    }

    #[test]
    fn fingerprints_are_stable() {
        assert_eq!(
            fingerprints(&lead(Some("a@x.com"), Some("+1"))),
            vec!["email:a@x.com", "phone:+1"]
        );
        assert!(fingerprints(&lead(None, None)).is_empty());
    }
}
