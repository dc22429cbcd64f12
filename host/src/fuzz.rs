//! Entry points of the fuzz targets in `fuzz/` (`cargo fuzz`) and of the
//! test that replays their corpora (`tests/it/fuzz_corpus.rs`): each takes
//! any bytes and must neither panic nor hang on them. What a source posts
//! (the ingest body parser, normalization, dedupe features, mapping
//! render) and what the store reads back (sealed values, fingerprints)
//! are all reached from bytes nobody checked.

use std::sync::LazyLock;

use serde_json::Value;

use crate::pipeline::dedupe::{DedupeConfig, Features, fingerprints};
use crate::pipeline::ingest::parse_payload;
use crate::pipeline::mapping::Mapping;
use crate::pipeline::normalize::{NormalizeOptions, NormalizedLead, normalize};
use crate::store::seal::{Column, Crypt, Keyring};

/// Every mapping this tree ships.
static MAPPINGS: LazyLock<Vec<Mapping>> = LazyLock::new(|| {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../mappings");
    let mut mappings: Vec<Mapping> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
                .filter_map(|p| Mapping::load(&p).ok())
                .collect()
        })
        .unwrap_or_default();
    mappings.sort_by(|a, b| a.version.cmp(&b.version));
    mappings
});

static OPTIONS: LazyLock<[NormalizeOptions; 2]> = LazyLock::new(|| {
    [
        NormalizeOptions::with_region("US".parse().expect("a region")),
        NormalizeOptions::with_region("DE".parse().expect("a region")).without_acceptance(),
    ]
});

static KEYRING: LazyLock<Keyring> = LazyLock::new(Keyring::ephemeral);

/// A body as `POST /v1/leads` takes it: parsed, each lead normalized
/// (for two regions), what normalization made read back, fingerprinted,
/// featured for the fuzzy tier and rendered by every shipped mapping.
pub fn ingest_payload(data: &[u8]) {
    let Ok(leads) = parse_payload(data) else {
        return;
    };
    let dedupe = DedupeConfig::default();
    for lead in leads.iter().take(32) {
        for options in OPTIONS.iter() {
            let Ok(normalized) = normalize(lead, options) else {
                continue;
            };
            let text = serde_json::to_string(&normalized).expect("a normalized lead serializes");
            let back: NormalizedLead =
                serde_json::from_str(&text).expect("a normalized lead reads back");
            assert_eq!(
                serde_json::to_string(&back).expect("serializes"),
                text,
                "a normalized lead survives the store"
            );
            let _ = fingerprints(&normalized);
            let _ = Features::from_lead(&normalized, &dedupe, 0);
            for mapping in MAPPINGS.iter() {
                let _ = mapping.render(&normalized, &[]);
            }
        }
    }
}

/// A JSON object rendered as it is by every shipped mapping (the lead
/// fields a mapping reads can be anything a transform hands over).
pub fn mapping_render(data: &[u8]) {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for mapping in MAPPINGS.iter() {
        let _ = mapping.render(&fields, &[]);
    }
}

/// A value as the store reads it back (a corrupt or hostile database):
/// opening it fails cleanly or gives bytes; blinding it gives a blind
/// index.
pub fn stored_value(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = KEYRING.open(Column::LeadRaw, "L1", text);
    let _ = Crypt::off().open(Column::JobPayload, "J1", text.to_string());
    let _ = Crypt::off().open_bytes(Column::KvValue, "ns/k", data.to_vec());
    // A plain fingerprint's blind index never shows its value.
    let blind = KEYRING.blinder().fingerprint(text);
    if text.contains(':') && !text.contains('#') {
        assert!(!blind.contains(text), "{blind} shows {text}");
    }
    let sealed = KEYRING.seal(Column::LeadRaw, text, data);
    assert_eq!(
        KEYRING
            .open(Column::LeadRaw, text, &sealed)
            .expect("what was sealed opens"),
        data
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_entry_points_take_what_they_are_meant_for() {
        super::ingest_payload(br#"[{"email": "a@b.com", "phone": "+1 415 555 0100"}, {}]"#);
        super::ingest_payload(b"{\"name\": \"J. R. Smith\"}\n{\"country\": \"Germany\"}");
        super::mapping_render(br#"{"email": "a@b.com", "custom": {"x": 1}}"#);
        super::stored_value(b"lg1:k1:AAAA");
        super::stored_value(b"email:a@b.com");
        assert!(!super::MAPPINGS.is_empty());
    }
}
