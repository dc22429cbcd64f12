//! Dedupe settings: match probabilities, the model file, blocking limits, the exact-tier
//! window, per-source overrides. Every key has a default; the `[dedupe]`
//! section of `leadgate.default.toml` documents them.

use std::collections::BTreeMap;
use std::path::PathBuf;

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
    /// Match probability at or above which a lead joins the matched
    /// person.
    pub match_probability: f64,
    /// Match probability at or above which (and below
    /// `match_probability`) a lead is a new person flagged "possible
    /// duplicate".
    pub possible_probability: f64,
    /// The model file (`leadgate dedupe train` writes it; the server
    /// reloads it when it changes). Empty: `dedupe-model.json` beside an
    /// SQLite store. While the file does not exist, the bundled model
    /// decides.
    pub model: PathBuf,
    /// Most records kept per blocking key; a larger block stops growing, so
    /// a decision costs at most `max_block` comparisons per key.
    pub max_block: usize,
    /// Most candidates scored per decision: those sharing the most
    /// blocking keys with the lead.
    pub max_candidates: usize,
    /// Custom attributes compared for equality (e.g. `["customer_no"]`).
    pub custom_fields: Vec<String>,
    /// Per-source overrides of the probabilities (by source name).
    pub sources: BTreeMap<String, SourceThresholds>,
    /// `leadgate dedupe`: region of phones written without a country code.
    pub default_region: String,
    /// Replaced by the model (kept to name the replacement).
    #[serde(skip_serializing)]
    pub weights: Option<serde_json::Value>,
    /// Replaced by `match_probability`.
    #[serde(skip_serializing)]
    pub match_threshold: Option<f64>,
    /// Replaced by `possible_probability`.
    #[serde(skip_serializing)]
    pub possible_threshold: Option<f64>,
}

/// Per-source probabilities.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceThresholds {
    pub match_probability: Option<f64>,
    pub possible_probability: Option<f64>,
}

impl Default for DedupeConfig {
    fn default() -> Self {
        DedupeConfig {
            fuzzy: true,
            window_days: 365,
            match_probability: 0.95,
            possible_probability: 0.5,
            model: PathBuf::new(),
            max_block: 16,
            max_candidates: 16,
            custom_fields: Vec::new(),
            sources: BTreeMap::new(),
            default_region: "US".into(),
            weights: None,
            match_threshold: None,
            possible_threshold: None,
        }
    }
}

impl DedupeConfig {
    /// The earliest receipt time the window still lets decide, at `now_ms`
    /// (`i64::MIN` without a window).
    pub fn window_start_ms(&self, now_ms: i64) -> i64 {
        match self.window_days {
            0 => i64::MIN,
            days => now_ms - i64::from(days) * 86_400_000,
        }
    }

    /// (match, possible) probabilities for a source.
    pub fn thresholds(&self, source: &str) -> (f64, f64) {
        match self.sources.get(source) {
            Some(o) => (
                o.match_probability.unwrap_or(self.match_probability),
                o.possible_probability.unwrap_or(self.possible_probability),
            ),
            None => (self.match_probability, self.possible_probability),
        }
    }

    /// Names the first key that is out of range.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let replaced = [
            (
                self.weights.is_some(),
                "weights",
                "the match model (`leadgate dedupe train`, `dedupe.model`)",
            ),
            (
                self.match_threshold.is_some(),
                "match_threshold",
                "match_probability (a probability, e.g. 0.99)",
            ),
            (
                self.possible_threshold.is_some(),
                "possible_threshold",
                "possible_probability (a probability, e.g. 0.5)",
            ),
        ];
        for (set, key, by) in replaced {
            if set {
                return Err((format!("dedupe.{key}"), format!("is replaced by {by}")));
            }
        }
        let in_range = |key: String, p: f64| {
            if p > 0.0 && p < 1.0 {
                Ok(())
            } else {
                Err((key, "must be a probability in (0, 1)".to_string()))
            }
        };
        in_range("dedupe.match_probability".into(), self.match_probability)?;
        in_range(
            "dedupe.possible_probability".into(),
            self.possible_probability,
        )?;
        for (name, o) in &self.sources {
            if let Some(p) = o.match_probability {
                in_range(format!("dedupe.sources.{name}.match_probability"), p)?;
            }
            if let Some(p) = o.possible_probability {
                in_range(format!("dedupe.sources.{name}.possible_probability"), p)?;
            }
        }
        if self.possible_probability > self.match_probability {
            return Err((
                "dedupe.possible_probability".into(),
                "must not exceed match_probability".into(),
            ));
        }
        if let Err(rule) = crate::pipeline::normalize::phone::region_setting(&self.default_region) {
            return Err(("dedupe.default_region".into(), rule));
        }
        if self.max_block == 0 {
            return Err(("dedupe.max_block".into(), "must be at least 1".into()));
        }
        Ok(())
    }
}
