//! The match model (Fellegi–Sunter): for every comparison level, `m`, the
//! probability of that level between two records of one person, and `u`,
//! between two records of two people. A level's match weight is
//! `log2(m / u)` (bits): agreement rare among strangers and common among
//! copies counts for a lot. A pair's match weight is the prior
//! `log2(λ / (1 − λ))` (λ: the probability that two random records match)
//! plus its levels' weights; its match probability is `2^w / (1 + 2^w)`.
//!
//! Exact agreements on names, company and city are adjusted by term
//! frequency: two records sharing a value that one record in fifty has
//! ("john") count less than two sharing a value one in a million has.
//!
//! A model is a versioned JSON file ([`ModelFile`]) written by
//! `leadgate dedupe train`; the server reloads it when it changes. A
//! bundled model (trained on the labelled corpus generator's leads) serves
//! until one is trained.

use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::compare::{Comparison, EXACT, FIXED, comparison_at, different_employers};
use super::features::{Features, Field};

/// Format of [`ModelFile`]; a file of another format is refused.
pub const MODEL_FORMAT: u32 = 1;

/// The bundled model: what the server decides with before any training.
const BUNDLED: &str = include_str!("model.default.json");

/// The largest a term-frequency adjustment raises a weight (bits): a rare
/// value is good evidence, but a value seen once may be a typo.
const TF_MAX_UP: f64 = 2.0;
/// The most it lowers one.
const TF_MAX_DOWN: f64 = 8.0;
/// Values counted before frequencies are trusted.
const TF_MIN_VALUES: u32 = 200;

/// m and u of one level.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelParams {
    pub m: f64,
    pub u: f64,
}

/// What training saw, kept in the file for whoever reads it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    /// When the model was trained (RFC 3339).
    pub at: String,
    pub leads: usize,
    /// Candidate pairs (from the blocking keys) the EM ran on.
    pub blocked_pairs: usize,
    /// Random pairs u was counted on.
    pub random_pairs: usize,
    pub iterations: usize,
    pub converged: bool,
    /// λ among the candidate pairs, as EM found it.
    pub blocked_match_share: f64,
}

/// A model file: `{"format": 1, "version": …, "prior": λ, "comparisons":
/// {"email": {"exact": {"m": …, "u": …}, …}, …}}`. Custom attributes are
/// keyed `custom.<name>`; one the file lacks gets
/// [`ModelFile::default_custom`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    pub format: u32,
    /// Shown in every decision's explanation.
    pub version: String,
    /// λ: the probability that two records picked at random are one
    /// person.
    pub prior: f64,
    pub comparisons: BTreeMap<String, BTreeMap<String, LevelParams>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<Training>,
}

/// Why a model file was refused, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a model file: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path}: {key}: {rule}")]
    Invalid {
        path: String,
        key: String,
        rule: String,
    },
}

impl ModelFile {
    /// The bundled model.
    pub fn bundled() -> ModelFile {
        ModelFile::parse(BUNDLED, "bundled model").expect("the bundled model is valid")
    }

    /// Reads and checks a model file.
    pub fn read(path: &Path) -> Result<ModelFile, ModelError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Read {
            path: shown.clone(),
            source,
        })?;
        ModelFile::parse(&text, &shown)
    }

    /// Parses and checks a model file's text (`path` names it in errors).
    pub fn parse(text: &str, path: &str) -> Result<ModelFile, ModelError> {
        let file: ModelFile = serde_json::from_str(text).map_err(|source| ModelError::Parse {
            path: path.to_string(),
            source,
        })?;
        let invalid = |key: String, rule: &str| ModelError::Invalid {
            path: path.to_string(),
            key,
            rule: rule.to_string(),
        };
        if file.format != MODEL_FORMAT {
            return Err(invalid(
                "format".into(),
                &format!("is {}, this host reads format {MODEL_FORMAT}", file.format),
            ));
        }
        if !(file.prior > 0.0 && file.prior < 1.0) {
            return Err(invalid("prior".into(), "must be in (0, 1)"));
        }
        for (name, levels) in &file.comparisons {
            let c = match name.strip_prefix("custom.") {
                Some(_) => Comparison::Custom(0),
                None => FIXED
                    .into_iter()
                    .find(|c| c.name() == name)
                    .ok_or_else(|| invalid(format!("comparisons.{name}"), "no such comparison"))?,
            };
            for (level, p) in levels {
                let key = format!("comparisons.{name}.{level}");
                if !c.levels().contains(&level.as_str()) {
                    return Err(invalid(
                        key,
                        &format!("no such level (levels: {})", c.levels().join(", ")),
                    ));
                }
                if !(p.m > 0.0 && p.m <= 1.0 && p.u > 0.0 && p.u <= 1.0) {
                    return Err(invalid(key, "m and u must be in (0, 1]"));
                }
            }
        }
        for c in FIXED {
            if !file.comparisons.contains_key(c.name()) {
                return Err(invalid(
                    format!("comparisons.{}", c.name()),
                    "missing (every comparison needs its levels)",
                ));
            }
        }
        Ok(file)
    }

    /// m and u of a custom attribute the file has no entry for: equal
    /// values are good evidence, different ones fair evidence against.
    pub fn default_custom() -> BTreeMap<String, LevelParams> {
        BTreeMap::from([
            ("exact".into(), LevelParams { m: 0.9, u: 0.01 }),
            ("else".into(), LevelParams { m: 0.1, u: 0.99 }),
        ])
    }

    /// The levels of comparison `c` (for custom attribute `custom` of the
    /// configuration), defaulted where the file has none.
    pub fn params(&self, c: Comparison, custom: &[String]) -> Vec<LevelParams> {
        let given = self.comparisons.get(&Self::key(c, custom));
        let fallback = Self::default_custom();
        c.levels()
            .iter()
            .map(|l| {
                given
                    .and_then(|g| g.get(*l))
                    .or_else(|| {
                        matches!(c, Comparison::Custom(_))
                            .then(|| fallback.get(*l))
                            .flatten()
                    })
                    .copied()
                    // A level the file leaves out is no evidence.
                    .unwrap_or(LevelParams { m: 0.5, u: 0.5 })
            })
            .collect()
    }

    /// The key of comparison `c` in [`ModelFile::comparisons`].
    pub fn key(c: Comparison, custom: &[String]) -> String {
        match c {
            Comparison::Custom(i) => format!("custom.{}", custom[i as usize]),
            c => c.name().to_string(),
        }
    }

    /// Writes the file atomically (a temporary file renamed over it), so
    /// a server watching it never reads half a model; mode 0600, as every
    /// file leadgate writes.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write as _;
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("json.tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}

/// The model a [`super::Deduper`] decides with, and, when it follows a
/// model file, the updates of that file ([`watch_file`]).
#[derive(Clone, Debug)]
pub struct ModelHandle {
    current: Arc<Model>,
    updates: Option<tokio::sync::watch::Receiver<Arc<Model>>>,
}

impl ModelHandle {
    /// Always this model.
    pub fn fixed(model: Model) -> ModelHandle {
        ModelHandle {
            current: Arc::new(model),
            updates: None,
        }
    }

    /// The bundled model for `custom` attributes.
    pub fn bundled(custom: &[String]) -> ModelHandle {
        Self::fixed(Model::new(&ModelFile::bundled(), custom))
    }

    /// The current model, after taking any update.
    pub fn current(&mut self) -> &Arc<Model> {
        if let Some(rx) = &mut self.updates
            && rx.has_changed().unwrap_or(false)
        {
            self.current = rx.borrow_and_update().clone();
            tracing::info!(version = %self.current.version, "dedupe model reloaded");
        }
        &self.current
    }
}

/// The model in `path` if the file exists (the bundled one otherwise), and
/// from then on every valid version of that file: it is looked at every
/// `every`; a file that does not parse is logged and the previous model
/// kept. The watch ends when the last handle is dropped. Needs a Tokio
/// runtime.
pub fn watch_file(
    path: PathBuf,
    custom: Vec<String>,
    every: Duration,
) -> Result<ModelHandle, ModelError> {
    let stamp = |path: &Path| {
        std::fs::metadata(path)
            .ok()
            .map(|m| (m.modified().ok(), m.len()))
    };
    let mut seen = stamp(&path);
    let first = match seen {
        Some(_) => ModelFile::read(&path)?,
        None => ModelFile::bundled(),
    };
    let model = Arc::new(Model::new(&first, &custom));
    tracing::info!(
        version = %model.version,
        path = %path.display(),
        file = seen.is_some(),
        "dedupe model"
    );
    let (tx, rx) = tokio::sync::watch::channel(model.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if tx.is_closed() {
                return;
            }
            let now = stamp(&path);
            if now == seen || now.is_none() {
                continue;
            }
            seen = now;
            match ModelFile::read(&path) {
                Ok(file) => {
                    tracing::info!(
                        version = %file.version,
                        "dedupe model file changed: the new model decides from the next lead"
                    );
                    let _ = tx.send(Arc::new(Model::new(&file, &custom)));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the dedupe model file changed but is not valid: the previous model keeps deciding")
                }
            }
        }
    });
    Ok(ModelHandle {
        current: model,
        updates: Some(rx),
    })
}

/// A model ready to score with: weights per level, for one configuration's
/// custom attributes.
#[derive(Clone, Debug)]
pub struct Model {
    version: String,
    prior_bits: f64,
    /// Per comparison (in [`super::compare::compare`] order): the weight of
    /// each level, index 0 (null) being 0.
    weights: Vec<Vec<f64>>,
    /// Per comparison: u of its exact level (for term frequencies).
    u_exact: Vec<f64>,
    /// The first name's `nickname` level.
    nickname: u8,
}

impl Model {
    pub fn new(file: &ModelFile, custom: &[String]) -> Model {
        let count = FIXED.len() + custom.len();
        let mut weights = Vec::with_capacity(count);
        let mut u_exact = Vec::with_capacity(count);
        for i in 0..count {
            let params = file.params(comparison_at(i), custom);
            let mut w = vec![0.0];
            w.extend(params.iter().map(|p| (p.m / p.u).log2()));
            weights.push(w);
            u_exact.push(params[EXACT as usize - 1].u);
        }
        Model {
            version: file.version.clone(),
            prior_bits: (file.prior / (1.0 - file.prior)).log2(),
            weights,
            u_exact,
            nickname: super::compare::level_named(Comparison::FirstName, "nickname")
                .expect("first names have a nickname level"),
        }
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// The weight of `level` of the comparison at position `i`.
    pub fn weight(&self, i: usize, level: u8) -> f64 {
        self.weights[i][level as usize]
    }

    /// The match weight of a pair whose levels are `levels`, with the term
    /// frequencies `tf` of the values it agrees on. With `explain`, fills
    /// in every non-null comparison's weight.
    pub fn score(
        &self,
        a: &Features,
        b: &Features,
        levels: &[u8],
        tf: &LeadFrequencies,
        mut explain: Option<&mut Explanation>,
    ) -> f64 {
        let mut total = self.prior_bits;
        let mut other_evidence = 0.0;
        let mut nickname_weight = None;
        for (i, &level) in levels.iter().enumerate() {
            if level == 0 {
                continue;
            }
            let c = comparison_at(i);
            let mut w = self.weights[i][level as usize];
            let mut adjustment = None;
            if level == EXACT
                && let Some(field) = c.tf_field()
                && let Some(adj) = tf.adjustment(field, b, self.u_exact[i])
            {
                w += adj;
                adjustment = Some(adj);
            }
            if c == Comparison::FirstName && level == self.nickname {
                nickname_weight = Some(w);
            } else if !c.is_name() && w > 0.0 {
                other_evidence += w;
            }
            total += w;
            if let Some(e) = explain.as_deref_mut() {
                e.terms.push(Term {
                    comparison: comparison_name(c, i),
                    level: c.levels()[level as usize - 1].to_string(),
                    weight: round(w),
                    tf_adjustment: adjustment.map(round),
                });
            }
        }
        // A nickname alone (nothing but the names alike) never carries a
        // merge: it counts only beside other evidence.
        if let Some(w) = nickname_weight
            && other_evidence == 0.0
            && w > 0.0
        {
            total -= w;
            if let Some(e) = explain.as_deref_mut() {
                e.terms.push(Term {
                    comparison: "rule".into(),
                    level: "nickname_alone".into(),
                    weight: round(-w),
                    tf_adjustment: None,
                });
            }
        }
        if let Some(e) = explain {
            e.model = self.version.clone();
            e.prior = round(self.prior_bits);
            e.match_weight = round(total);
            e.probability = probability(total);
            e.employers_differ = different_employers(a, b);
        }
        total
    }

    /// The explanation of a pair's match weight (without term
    /// frequencies).
    pub fn explain(&self, a: &Features, b: &Features) -> Explanation {
        let mut levels = Vec::new();
        super::compare::compare(a, b, &mut levels);
        let mut e = Explanation::default();
        let tf = TermFrequencies::default();
        self.score(a, b, &levels, &tf.of_lead(a), Some(&mut e));
        e
    }

    /// The match weight at which a pair reaches probability `p`.
    pub fn weight_of(p: f64) -> f64 {
        let p = p.clamp(1e-12, 1.0 - 1e-12);
        (p / (1.0 - p)).log2()
    }
}

fn comparison_name(c: Comparison, i: usize) -> String {
    match c {
        Comparison::Custom(_) => format!("custom{}", i - FIXED.len()),
        c => c.name().to_string(),
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The match probability of a match weight.
pub fn probability(weight: f64) -> f64 {
    let odds = weight.exp2();
    if odds.is_infinite() {
        1.0
    } else {
        odds / (1.0 + odds)
    }
}

/// Why a pair scored what it did: Splink's waterfall, one term per
/// comparison with data on both sides.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// The model's version.
    pub model: String,
    /// The prior's weight, log2(λ / (1 − λ)).
    pub prior: f64,
    pub terms: Vec<Term>,
    /// Prior plus every term.
    pub match_weight: f64,
    pub probability: f64,
    /// Two work emails at two company domains with two different
    /// companies: never merged, whatever the weight.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub employers_differ: bool,
}

/// `+3.21 [email:exact:+12.7 last_name:else:-5.5 …]`: the match weight
/// and its terms on one line (debugging output of the metrics tests).
impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:+.2} [", self.match_weight)?;
        for (i, t) in self.terms.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{}:{}:{:+.1}", t.comparison, t.level, t.weight)?;
        }
        f.write_str("]")
    }
}

/// One comparison's part of a match weight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Term {
    pub comparison: String,
    pub level: String,
    /// Bits, term-frequency adjustment included.
    pub weight: f64,
    /// The part of `weight` the value's frequency made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tf_adjustment: Option<f64>,
}

/// How often each value of the term-frequency fields occurs among the
/// indexed records (by a 32-bit hash of the value, [`Features::hash`]).
#[derive(Clone, Debug, Default)]
pub struct TermFrequencies {
    counts: HashMap<u64, u32, foldhash::fast::RandomState>,
    /// Records with a value, per field.
    totals: [u32; TF_FIELDS.len()],
}

const TF_FIELDS: [Field; 4] = [Field::First, Field::Last, Field::Company, Field::City];

fn slot(field: Field) -> Option<usize> {
    TF_FIELDS.iter().position(|f| *f == field)
}

impl TermFrequencies {
    fn key(slot: usize, f: &Features, field: Field) -> u64 {
        ((slot as u64) << 32) | u64::from(f.hash(field))
    }

    /// Counts a record's values.
    pub fn add(&mut self, f: &Features) {
        for (s, field) in TF_FIELDS.into_iter().enumerate() {
            if !f.lacks(field) {
                *self.counts.entry(Self::key(s, f, field)).or_default() += 1;
                self.totals[s] += 1;
            }
        }
    }

    /// Takes back what [`TermFrequencies::add`] counted of a record.
    pub fn remove(&mut self, f: &Features) {
        for (s, field) in TF_FIELDS.into_iter().enumerate() {
            if f.lacks(field) {
                continue;
            }
            let key = Self::key(s, f, field);
            if let Some(n) = self.counts.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    self.counts.remove(&key);
                }
                self.totals[s] -= 1;
            }
        }
    }

    /// The frequencies as the decision about lead `a` reads them.
    pub fn of_lead<'a>(&'a self, a: &'a Features) -> LeadFrequencies<'a> {
        LeadFrequencies {
            tf: self,
            a,
            own: Default::default(),
            adjustments: Default::default(),
        }
    }

    /// Rough heap bytes.
    pub fn approx_bytes(&self) -> usize {
        self.counts.capacity() * 13
    }
}

/// The term frequencies as the decision about one lead reads them: the
/// count of each of its own values is looked up once, and the adjustment
/// an exact agreement on it makes computed once, for all its candidates
/// (scored by one model: the adjustment kept is the first `u` a field was
/// asked with).
pub struct LeadFrequencies<'a> {
    tf: &'a TermFrequencies,
    a: &'a Features,
    own: [OnceCell<Option<u32>>; TF_FIELDS.len()],
    adjustments: [OnceCell<f64>; TF_FIELDS.len()],
}

impl LeadFrequencies<'_> {
    /// The weight adjustment of `a` and `b` agreeing exactly on `field`
    /// for a comparison whose exact level's u is `u`: the rarer the value
    /// (the share of records holding it), the more the agreement counts.
    /// None when too few values have been counted to tell.
    fn adjustment(&self, field: Field, b: &Features, u: f64) -> Option<f64> {
        let s = slot(field)?;
        let total = self.tf.totals[s];
        if total < TF_MIN_VALUES {
            return None;
        }
        let counts = &self.tf.counts;
        let adjust = |n: u32| {
            let freq = f64::from(n.max(1)) / f64::from(total);
            (u / freq).log2().clamp(-TF_MAX_DOWN, TF_MAX_UP)
        };
        // Both records' values are the same; the newer may not be counted.
        let own = *self.own[s]
            .get_or_init(|| counts.get(&TermFrequencies::key(s, self.a, field)).copied());
        Some(match own {
            Some(n) => *self.adjustments[s].get_or_init(|| adjust(n)),
            None => adjust(
                counts
                    .get(&TermFrequencies::key(s, b, field))
                    .copied()
                    .unwrap_or(1),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_model_reads_and_names_every_level() {
        let file = ModelFile::bundled();
        for c in FIXED {
            let levels = &file.comparisons[c.name()];
            for l in c.levels() {
                assert!(
                    levels.contains_key(*l),
                    "bundled model lacks {}.{l}",
                    c.name()
                );
            }
        }
        let model = Model::new(&file, &["dob".into()]);
        // Agreement is evidence for, disagreement against.
        for i in 0..FIXED.len() + 1 {
            assert!(model.weight(i, EXACT) > 0.0, "{i}");
            let last = comparison_at(i).levels().len() as u8;
            assert!(model.weight(i, last) < 0.0, "{i}");
        }
    }

    #[test]
    fn a_bad_file_is_refused_naming_the_key() {
        let mut file = ModelFile::bundled();
        file.comparisons
            .get_mut("email")
            .unwrap()
            .insert("kinda".into(), LevelParams { m: 0.5, u: 0.5 });
        let text = serde_json::to_string(&file).unwrap();
        let e = ModelFile::parse(&text, "m.json").unwrap_err().to_string();
        assert!(e.contains("comparisons.email.kinda"), "{e}");
        let mut file = ModelFile::bundled();
        file.prior = 0.0;
        let e = ModelFile::parse(&serde_json::to_string(&file).unwrap(), "m.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("prior"), "{e}");
        let mut file = ModelFile::bundled();
        file.format = 9;
        let e = ModelFile::parse(&serde_json::to_string(&file).unwrap(), "m.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("format"), "{e}");
    }

    #[tokio::test]
    async fn a_model_file_is_followed_and_a_broken_version_keeps_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dedupe-model.json");
        let mut handle = watch_file(path.clone(), Vec::new(), Duration::from_millis(10)).unwrap();
        assert_eq!(handle.current().version(), ModelFile::bundled().version);
        let until = |mut handle: ModelHandle, want: &'static str| async move {
            for _ in 0..500 {
                if handle.current().version() == want {
                    return handle;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("never saw model {want}");
        };
        let mut file = ModelFile::bundled();
        file.version = "v2".into();
        file.write(&path).unwrap();
        let mut handle = until(handle, "v2").await;
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(&path, "{ not a model").unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(handle.current().version(), "v2", "the last good model");
        file.version = "v3".into();
        file.write(&path).unwrap();
        until(handle, "v3").await;
        // A file that is there from the start must be valid.
        std::fs::write(&path, "{}").unwrap();
        let e = watch_file(path, Vec::new(), Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("not a model file"), "{e}");
    }

    #[test]
    fn probabilities_and_weights_agree() {
        for p in [0.01, 0.5, 0.9, 0.99, 0.999] {
            assert!((probability(Model::weight_of(p)) - p).abs() < 1e-9);
        }
        assert_eq!(probability(2000.0), 1.0);
        assert_eq!(probability(-2000.0), 0.0);
    }
}
