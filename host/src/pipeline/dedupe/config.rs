//! Dedupe settings: thresholds, weights, blocking limits, the exact-tier
//! window, per-source overrides. Every key has a default; the `[dedupe]`
//! section of `leadgate.default.toml` documents them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The `[dedupe]` section.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DedupeConfig {
    /// Turn the fuzzy tier off to keep exact fingerprints only.
    pub fuzzy: bool,
    /// Exact-tier window in days: a fingerprint older than this no longer
    /// makes a duplicate (0: forever).
    pub window_days: u32,
    /// Score at or above which a lead joins the matched person.
    pub match_threshold: f64,
    /// Score at or above which (and below `match_threshold`) a lead is a new
    /// person flagged "possible duplicate".
    pub possible_threshold: f64,
    /// Most records kept per blocking key; a larger block stops growing, so
    /// a decision costs at most `max_block` comparisons per key.
    pub max_block: usize,
    /// Most candidates scored per decision: those sharing the most
    /// blocking keys with the lead.
    pub max_candidates: usize,
    /// Points per field (agreement adds, disagreement subtracts).
    pub weights: Weights,
    /// Custom attributes compared for equality (e.g. `["dob"]`).
    pub custom_fields: Vec<String>,
    /// Per-source overrides of thresholds (by source name).
    pub sources: BTreeMap<String, SourceThresholds>,
    /// `leadgate dedupe`: region of phones written without a country code.
    pub default_region: String,
}

/// Per-source thresholds.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceThresholds {
    pub match_threshold: Option<f64>,
    pub possible_threshold: Option<f64>,
}

/// Points each field contributes to a pair's score.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    /// Same normalized email: near-certain.
    pub email_equal: f64,
    /// Similar email local parts (Jaro-Winkler ≥ 0.92) at the same domain.
    pub email_local_similar: f64,
    /// Two different emails at different domains.
    pub email_differ: f64,
    /// Same E.164 phone.
    pub phone_equal: f64,
    /// Two different phones.
    pub phone_differ: f64,
    /// Names: full points at similarity 1, scaled down to 0 at `name_floor`.
    pub name: f64,
    /// Names below `name_floor` subtract this.
    pub name_differ: f64,
    /// Name similarity (Jaro-Winkler, order-insensitive) that scores 0.
    pub name_floor: f64,
    /// Same company key.
    pub company_equal: f64,
    /// Different companies: same name at another company is not a match.
    pub company_differ: f64,
    /// Same date of birth.
    pub dob_equal: f64,
    /// Dates of birth one edit apart (a typo).
    pub dob_close: f64,
    /// Different dates of birth.
    pub dob_differ: f64,
    /// Same city.
    pub city_equal: f64,
    /// Different cities.
    pub city_differ: f64,
    /// Same postcode.
    pub postcode_equal: f64,
    /// Similar street (Levenshtein-normalized ≥ 0.85, same house numbers).
    pub street_similar: f64,
    /// Each configured custom attribute: equal adds, different subtracts.
    pub custom: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            email_equal: 12.0,
            email_local_similar: 3.0,
            email_differ: 0.5,
            phone_equal: 9.0,
            phone_differ: 1.0,
            name: 5.0,
            name_differ: 6.0,
            name_floor: 0.80,
            company_equal: 3.5,
            company_differ: 4.0,
            dob_equal: 4.0,
            dob_close: 1.0,
            dob_differ: 6.0,
            city_equal: 1.0,
            city_differ: 0.5,
            postcode_equal: 2.0,
            street_similar: 2.0,
            custom: 3.0,
        }
    }
}

impl Default for DedupeConfig {
    fn default() -> Self {
        DedupeConfig {
            fuzzy: true,
            window_days: 365,
            match_threshold: 6.0,
            possible_threshold: 4.0,
            max_block: 16,
            max_candidates: 16,
            weights: Weights::default(),
            custom_fields: Vec::new(),
            sources: BTreeMap::new(),
            default_region: "US".into(),
        }
    }
}

impl DedupeConfig {
    /// (match, possible) thresholds for a source.
    pub fn thresholds(&self, source: &str) -> (f64, f64) {
        match self.sources.get(source) {
            Some(o) => (
                o.match_threshold.unwrap_or(self.match_threshold),
                o.possible_threshold.unwrap_or(self.possible_threshold),
            ),
            None => (self.match_threshold, self.possible_threshold),
        }
    }

    /// Names the first key that is out of range.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.possible_threshold > self.match_threshold {
            return Err((
                "dedupe.possible_threshold".into(),
                "must not exceed match_threshold".into(),
            ));
        }
        if self
            .default_region
            .to_ascii_uppercase()
            .parse::<phonenumber::country::Id>()
            .is_err()
        {
            return Err((
                "dedupe.default_region".into(),
                format!("{:?} is not an ISO 3166 region code", self.default_region),
            ));
        }
        if self.max_block == 0 {
            return Err(("dedupe.max_block".into(), "must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&self.weights.name_floor) {
            return Err((
                "dedupe.weights.name_floor".into(),
                "must be in [0, 1)".into(),
            ));
        }
        Ok(())
    }
}
