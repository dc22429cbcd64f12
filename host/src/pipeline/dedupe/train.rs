//! Training the match model on unlabelled leads (`leadgate dedupe train`),
//! as Splink and recordlinkage do:
//!
//! - **u** from random pairs: nearly every pair of records picked at random
//!   is two people, so how often each level occurs among them is u (all
//!   pairs are counted when there are fewer than the sample size);
//! - **m** by expectation–maximisation over the candidate pairs the
//!   blocking keys make (the pairs the server scores): a two-class mixture,
//!   matches and non-matches, each level's share per class re-estimated
//!   from the pairs' match probabilities until it settles;
//! - **λ** (the prior) from the share of matches EM finds among the
//!   candidate pairs, spread over all pairs.
//!
//! Pairs are folded into their distinct level patterns first, so an EM
//! round costs the number of patterns, not of pairs.

use std::collections::HashMap;

use rand::{Rng, SeedableRng};

use super::compare::{FIXED, compare, comparison_at};
use super::features::Features;
use super::model::{LevelParams, ModelFile, Training};

/// How much training does.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Most EM rounds.
    pub max_iterations: usize,
    /// Random pairs to count u on.
    pub random_pairs: usize,
    /// Most records paired per blocking key (the newest).
    pub block_cap: usize,
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            max_iterations: 100,
            random_pairs: 2_000_000,
            block_cap: 32,
            seed: 0x1ead,
        }
    }
}

/// Why no model came out.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0} leads: training needs at least 2")]
    TooFewLeads(usize),
    #[error("no two of the {0} leads share a blocking key: nothing to learn m from")]
    NoCandidatePairs(usize),
}

/// The smallest m or u written: a level never seen is rare, not
/// impossible.
const FLOOR: f64 = 1e-6;

/// EM has settled when no m moved more than this in a round (Splink's
/// default).
const CONVERGED: f64 = 1e-4;

/// Matching pairs' worth (summed match probabilities) of a level below
/// which EM is taken to have seen none.
const MIN_SEEN: f64 = 5.0;

/// The smallest m learnt: a level matches never showed in training (a
/// different company, say) is strong evidence against, but people do
/// change jobs and mistype: at most about 9 bits against.
const M_FLOOR: f64 = 0.002;

/// Level counts per comparison: `counts[k][level]`, level 0 (null) kept.
type Counts = Vec<Vec<f64>>;

fn zeroed(k: usize) -> Counts {
    (0..k)
        .map(|i| vec![0.0; comparison_at(i).levels().len() + 1])
        .collect()
}

/// Shares of each non-null level, or None without a non-null one.
fn shares(counts: &[f64], pseudo: f64) -> Option<Vec<f64>> {
    let levels = counts.len() - 1;
    let total: f64 = counts[1..].iter().sum();
    if total <= 0.0 {
        return None;
    }
    Some(
        counts[1..]
            .iter()
            .map(|c| ((c + pseudo) / (total + pseudo * levels as f64)).max(FLOOR))
            .collect(),
    )
}

/// The level patterns of `pairs` and how many pairs have each.
fn patterns(
    records: &[Features],
    pairs: impl Iterator<Item = (usize, usize)>,
) -> (Vec<(Vec<u8>, f64)>, usize) {
    let mut seen: HashMap<Vec<u8>, f64> = HashMap::new();
    let mut levels = Vec::new();
    let mut n = 0;
    for (i, j) in pairs {
        compare(&records[i], &records[j], &mut levels);
        // Most pairs repeat a pattern already seen: no allocation for them.
        match seen.get_mut(levels.as_slice()) {
            Some(count) => *count += 1.0,
            None => {
                seen.insert(levels.clone(), 1.0);
            }
        }
        n += 1;
    }
    (seen.into_iter().collect(), n)
}

/// Random pairs (all of them when there are few enough).
fn random_pairs(n: usize, want: usize, seed: u64) -> Box<dyn Iterator<Item = (usize, usize)>> {
    let all = n * n.saturating_sub(1) / 2;
    if all <= want {
        return Box::new((0..n).flat_map(move |i| (i + 1..n).map(move |j| (i, j))));
    }
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    Box::new(
        std::iter::repeat_with(move || (rng.random_range(0..n), rng.random_range(0..n)))
            .filter(|(i, j)| i != j)
            .take(want),
    )
}

/// The candidate pairs: records sharing a blocking key, at most
/// `cap` (the newest) per key.
fn blocked_pairs(records: &[Features], cap: usize) -> Vec<(usize, usize)> {
    let mut blocks: HashMap<u64, Vec<u32>> = HashMap::new();
    let mut keys = Vec::new();
    for (i, r) in records.iter().enumerate() {
        r.blocking_keys(&mut keys);
        for k in &keys {
            blocks.entry(*k).or_default().push(i as u32);
        }
    }
    let mut pairs: Vec<u64> = Vec::new();
    for members in blocks.values() {
        let members = &members[members.len().saturating_sub(cap)..];
        for (x, &i) in members.iter().enumerate() {
            for &j in &members[x + 1..] {
                pairs.push((u64::from(i) << 32) | u64::from(j));
            }
        }
    }
    pairs.sort_unstable();
    pairs.dedup();
    pairs
        .into_iter()
        .map(|p| ((p >> 32) as usize, (p & 0xffff_ffff) as usize))
        .collect()
}

/// The probability that a pair with `levels` is a match, for prior
/// `lambda` and level shares `m` (matches) and `u` (non-matches).
fn posterior(levels: &[u8], lambda: f64, m: &[Vec<f64>], u: &[Vec<f64>]) -> f64 {
    let (mut lm, mut lu) = (lambda.ln(), (1.0 - lambda).ln());
    for (i, &l) in levels.iter().enumerate() {
        if l != 0 {
            lm += m[i][l as usize - 1].ln();
            lu += u[i][l as usize - 1].ln();
        }
    }
    1.0 / (1.0 + (lu - lm).exp())
}

/// Trains a model on `records` (their custom values in the order of
/// `custom`), starting from `start`'s m.
pub fn train(
    records: &[Features],
    custom: &[String],
    start: &ModelFile,
    opts: &TrainOptions,
) -> Result<ModelFile, TrainError> {
    let n = records.len();
    if n < 2 {
        return Err(TrainError::TooFewLeads(n));
    }
    let k = FIXED.len() + custom.len();

    // u: level shares among random pairs.
    let (random, random_n) = patterns(records, random_pairs(n, opts.random_pairs, opts.seed));
    let mut u_counts = zeroed(k);
    for (levels, c) in &random {
        for (i, &l) in levels.iter().enumerate() {
            u_counts[i][l as usize] += c;
        }
    }
    let start_params: Vec<Vec<LevelParams>> = (0..k)
        .map(|i| start.params(comparison_at(i), custom))
        .collect();
    let u: Vec<Vec<f64>> = (0..k)
        .map(|i| {
            shares(&u_counts[i], 0.5)
                .unwrap_or_else(|| start_params[i].iter().map(|p| p.u).collect())
        })
        .collect();

    // m: EM over the candidate pairs.
    let blocked = blocked_pairs(records, opts.block_cap);
    if blocked.is_empty() {
        return Err(TrainError::NoCandidatePairs(n));
    }
    let (pats, blocked_n) = patterns(records, blocked.iter().copied());
    let mut m: Vec<Vec<f64>> = start_params
        .iter()
        .map(|ps| ps.iter().map(|p| p.m).collect())
        .collect();
    // Non-matches among candidates agree more than random pairs do: their
    // own shares, started from u.
    let mut ub = u.clone();
    let mut lambda: f64 = 0.1;
    let (mut iterations, mut converged) = (0, false);
    while iterations < opts.max_iterations && !converged {
        iterations += 1;
        let (mut mc, mut uc) = (zeroed(k), zeroed(k));
        let (mut matched, mut total) = (0.0, 0.0);
        for (levels, c) in &pats {
            let p = posterior(levels, lambda, &m, &ub);
            for (i, &l) in levels.iter().enumerate() {
                mc[i][l as usize] += c * p;
                uc[i][l as usize] += c * (1.0 - p);
            }
            matched += c * p;
            total += c;
        }
        let mut delta: f64 = 0.0;
        for i in 0..k {
            if let Some(new) = shares(&mc[i], 0.01) {
                for (old, new) in m[i].iter_mut().zip(new) {
                    delta = delta.max((*old - new).abs());
                    *old = new;
                }
            }
            if let Some(new) = shares(&uc[i], 0.01) {
                ub[i] = new;
            }
        }
        lambda = (matched / total).clamp(1e-9, 1.0 - 1e-9);
        converged = delta < CONVERGED;
    }

    // What the pairs said: m where EM saw a few matching pairs' worth of
    // a level, u where random pairs saw one; a level neither saw keeps the start
    // model's m and u (both would be guesses).
    let (mut m_seen, mut u_seen) = (zeroed(k), u_counts);
    for (levels, c) in &pats {
        let p = posterior(levels, lambda, &m, &ub);
        for (i, &l) in levels.iter().enumerate() {
            m_seen[i][l as usize] += c * p;
        }
    }
    for i in 0..k {
        for l in 0..m[i].len() {
            if m_seen[i][l + 1] < MIN_SEEN && u_seen[i][l + 1] < 1.0 {
                m[i][l] = start_params[i][l].m;
                u_seen[i][l + 1] = -1.0;
            } else if m_seen[i][l + 1] < MIN_SEEN {
                // Matches never showed it: evidence against when strangers
                // often do, and never evidence for (a level rare among
                // matches and strangers alike says nothing).
                m[i][l] = m[i][l].max(M_FLOOR).min(u[i][l]);
            } else {
                m[i][l] = m[i][l].max(M_FLOOR);
            }
        }
    }
    let u: Vec<Vec<f64>> = u
        .into_iter()
        .enumerate()
        .map(|(i, us)| {
            us.into_iter()
                .enumerate()
                .map(|(l, u)| match u_seen[i][l + 1] < 0.0 {
                    true => start_params[i][l].u,
                    false => u,
                })
                .collect()
        })
        .collect();

    let all_pairs = n as f64 * (n as f64 - 1.0) / 2.0;
    let prior = (lambda * blocked_n as f64 / all_pairs).clamp(1e-12, 0.5);
    let mut comparisons = start.comparisons.clone();
    for i in 0..k {
        let c = comparison_at(i);
        let levels = c
            .levels()
            .iter()
            .zip(m[i].iter().zip(&u[i]))
            .map(|(name, (&m, &u))| {
                (
                    name.to_string(),
                    LevelParams {
                        m: m.clamp(FLOOR, 1.0),
                        u: u.clamp(FLOOR, 1.0),
                    },
                )
            })
            .collect();
        comparisons.insert(ModelFile::key(c, custom), levels);
    }
    let at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Ok(ModelFile {
        format: super::model::MODEL_FORMAT,
        version: format!("trained-{at}"),
        prior,
        comparisons,
        training: Some(Training {
            at,
            leads: n,
            blocked_pairs: blocked_n,
            random_pairs: random_n,
            iterations,
            converged,
            blocked_match_share: lambda,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::dedupe::corpus::{generate, pairwise};
    use crate::pipeline::dedupe::{DedupeConfig, Model, ModelHandle};

    fn features(leads: &[serde_json::Value], cfg: &DedupeConfig) -> Vec<Features> {
        let opts =
            crate::pipeline::normalize::NormalizeOptions::with_region(phonenumber::country::Id::US)
                .without_acceptance();
        leads
            .iter()
            .map(|l| {
                let n = crate::pipeline::normalize::normalize(l, &opts).unwrap_or_default();
                Features::from_lead(&n, cfg, 0)
            })
            .collect()
    }

    /// Training on unlabelled leads finds the model the labels would:
    /// as precise, as complete. The bundled model is this training's
    /// output: `WRITE_MODEL=host/src/pipeline/dedupe/model.default.json`
    /// writes it (then set its `version` and drop `training`).
    #[test]
    fn training_on_unlabelled_leads_matches_as_well_as_the_bundled_model() {
        let cfg = DedupeConfig::default();
        let corpus = generate(20_241_125, 6000);
        let leads: Vec<serde_json::Value> = corpus.iter().map(|(v, _)| v.clone()).collect();
        let truth: Vec<String> = corpus.iter().map(|(_, t)| t.clone()).collect();
        let feats = features(&leads, &cfg);
        let model = train(&feats, &[], &ModelFile::bundled(), &TrainOptions::default()).unwrap();
        let t = model.training.as_ref().unwrap();
        assert!(t.converged, "{t:?}");
        assert_eq!((t.leads, t.random_pairs), (leads.len(), 2_000_000));
        let mut f1s = Vec::new();
        for (name, file) in [
            ("bundled", ModelFile::bundled()),
            ("trained", model.clone()),
        ] {
            let out = crate::cli::dedupe::dedupe_values_with(
                &leads,
                &cfg,
                ModelHandle::fixed(Model::new(&file, &[])),
            );
            let predicted: Vec<String> = out.iter().map(|o| o.cluster_id.clone()).collect();
            let (p, r, f1) = pairwise(&predicted, &truth);
            eprintln!("{name}: precision {p:.4} recall {r:.4} F1 {f1:.4}");
            assert!(p >= 0.99, "{name}: precision {p}");
            f1s.push(f1);
        }
        assert!(f1s[1] >= f1s[0] - 0.01 && f1s[1] >= 0.9, "{f1s:?}");
        // The weights read as evidence: agreement for, disagreement against.
        let m = Model::new(&model, &[]);
        for i in 0..FIXED.len() {
            let levels = comparison_at(i).levels().len() as u8;
            assert!(m.weight(i, 1) > 1.0, "{:?} exact", comparison_at(i));
            assert!(m.weight(i, levels) < 0.0, "{:?} else", comparison_at(i));
        }
        if let Some(path) = std::env::var_os("WRITE_MODEL") {
            model.write(std::path::Path::new(&path)).unwrap();
        }
    }

    #[test]
    fn too_little_to_train_on_is_an_error_not_a_model() {
        let none = train(&[], &[], &ModelFile::bundled(), &TrainOptions::default());
        assert!(matches!(none, Err(TrainError::TooFewLeads(0))));
        let strangers = [
            Features::new(
                ["ann", "lee", "", "", "", "", "", "", "", "", ""],
                &[] as &[&str],
                0,
            ),
            Features::new(
                ["bob", "kay", "", "", "", "", "", "", "", "", ""],
                &[] as &[&str],
                0,
            ),
        ];
        let e = train(
            &strangers,
            &[],
            &ModelFile::bundled(),
            &TrainOptions::default(),
        );
        assert!(matches!(e, Err(TrainError::NoCandidatePairs(2))), "{e:?}");
    }
}
