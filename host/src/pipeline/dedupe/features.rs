//! The comparable form of a lead: what the fuzzy index keeps per record
//! and scores pairs on, and the blocking keys it files a record under.
//!
//! Compact on purpose: the index holds one per lead in its window (a
//! million leads, a million of these). A record is one allocation: a short
//! header, where each field's text ends, then every field's text. Scoring a
//! candidate reads that one allocation (a cache miss or two), not one per
//! field.

use std::borrow::Cow;
use std::hash::{BuildHasher, Hasher};

use super::config::DedupeConfig;
use super::fuzzy::{FREE_MAIL, key, nickname};
use super::phonetic::{fold, soundex_code};
use crate::pipeline::normalize::NormalizedLead;

/// The fields of [`Features`], in the order their texts are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// Lowercase ASCII-folded letters of the first name.
    First,
    /// The same of the last name.
    Last,
    Email,
    /// Email local part: lowercase letters and digits, `+tag` dropped.
    EmailLocal,
    Phone,
    /// The company's matching key.
    Company,
    /// The company's domain: the website's host, else a non-free email
    /// domain.
    Domain,
    Dob,
    City,
    Postcode,
    Street,
}

const FIELDS: usize = 11;

/// Where `received_at_ms` (i64, little-endian) sits in the header.
const RECEIVED_AT: std::ops::Range<usize> = 0..8;
/// The width in bytes (2 or 4) of each end offset.
const WIDTH: usize = 8;
/// The number of custom values (u16, little-endian).
const CUSTOM: std::ops::Range<usize> = 9..11;
/// Then a 16-bit hash of each field's text (u16, little-endian).
const HASHES: usize = 11;
/// Header bytes before the end offsets.
const HEADER: usize = HASHES + 2 * FIELDS;

/// The comparable form of a lead (what the index keeps per record).
///
/// One allocation: `received_at_ms`, the width of the end offsets (2
/// bytes, or 4 when the texts are longer than 64 KiB together), the
/// number of custom values, a 16-bit hash of each field's text (most
/// "equal?" questions of a comparison are answered by unequal hashes),
/// then where each field's text ends (in [`Field`] order, then the
/// configured custom attributes in configuration order), then the texts.
/// 150 bytes or so for a usual lead, where separate fields with 32-bit
/// hashes took 250.
#[derive(Clone, PartialEq, Eq)]
pub struct Features {
    bytes: Box<[u8]>,
}

impl Default for Features {
    fn default() -> Self {
        Features::new([""; FIELDS], &[] as &[&str], 0)
    }
}

impl Features {
    /// Nothing at all, not even a header: what a buried record of the
    /// dedupe index keeps (no accessor may be called on it).
    pub(super) fn none() -> Self {
        Features {
            bytes: Box::default(),
        }
    }
}

impl std::fmt::Debug for Features {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fields: Vec<&str> = (0..FIELDS).map(|i| self.text(i)).collect();
        f.debug_struct("Features")
            .field("fields", &fields)
            .field("custom", &self.custom().collect::<Vec<_>>())
            .field("received_at_ms", &self.received_at_ms())
            .finish()
    }
}

fn letters(s: &str) -> String {
    s.chars()
        .map(fold)
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

fn squash(s: &str) -> String {
    s.chars()
        .map(fold)
        .filter(|c| c.is_alphanumeric() || *c == ' ')
        .flat_map(char::to_lowercase)
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The company's domain from its website or a non-free email domain.
// Used when the lead has no `company_domain` (e.g. an older stored lead).
fn domain_of(website: &str, email: &str) -> String {
    let host = website
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split(['/', '?', '#', ':'])
        .next()
        .unwrap_or("")
        .to_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host);
    if !host.is_empty() {
        return host.to_string();
    }
    let d = email.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    if d.is_empty() || FREE_MAIL.contains(&d) {
        return String::new();
    }
    d.to_string()
}

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("")
}

fn text_hash(s: &str) -> u32 {
    let mut h = foldhash::fast::FixedState::with_seed(0x5ea7_f1e1d).build_hasher();
    h.write(s.as_bytes());
    h.finish() as u32
}

impl Features {
    /// Features from each field's text (in [`Field`] order) and the custom
    /// values.
    pub fn new<S: AsRef<str>>(
        fields: [&str; FIELDS],
        custom: &[S],
        received_at_ms: i64,
    ) -> Features {
        let text_len = fields.iter().map(|f| f.len()).sum::<usize>()
            + custom.iter().map(|c| c.as_ref().len()).sum::<usize>();
        let width = if text_len <= usize::from(u16::MAX) {
            2
        } else {
            4
        };
        let custom_count =
            u16::try_from(custom.len()).expect("fewer than 65,536 custom dedupe fields");
        let ends = FIELDS + custom.len();
        let mut bytes = Vec::with_capacity(HEADER + ends * width + text_len);
        bytes.extend_from_slice(&received_at_ms.to_le_bytes());
        bytes.push(width as u8);
        bytes.extend_from_slice(&custom_count.to_le_bytes());
        for f in fields {
            bytes.extend_from_slice(&(text_hash(f) as u16).to_le_bytes());
        }
        let texts = fields
            .iter()
            .copied()
            .chain(custom.iter().map(AsRef::as_ref));
        let mut end = 0usize;
        for t in texts.clone() {
            end += t.len();
            match width {
                2 => bytes.extend_from_slice(&(end as u16).to_le_bytes()),
                _ => bytes.extend_from_slice(&(end as u32).to_le_bytes()),
            }
        }
        for t in texts {
            bytes.extend_from_slice(t.as_bytes());
        }
        Features {
            bytes: bytes.into_boxed_slice(),
        }
    }

    /// When the lead was received (ms since the epoch).
    pub fn received_at_ms(&self) -> i64 {
        i64::from_le_bytes(self.bytes[RECEIVED_AT].try_into().expect("8 bytes"))
    }

    pub fn set_received_at_ms(&mut self, ms: i64) {
        self.bytes[RECEIVED_AT].copy_from_slice(&ms.to_le_bytes());
    }

    fn width(&self) -> usize {
        usize::from(self.bytes[WIDTH])
    }

    fn custom_count(&self) -> usize {
        usize::from(u16::from_le_bytes(
            self.bytes[CUSTOM].try_into().expect("2 bytes"),
        ))
    }

    /// Where text `i` (a field, then the custom values) starts and ends
    /// in the texts.
    fn span(&self, i: usize) -> (usize, usize) {
        let b = &self.bytes;
        if self.width() == 2 {
            let at = HEADER + 2 * i;
            let end = usize::from(u16::from_le_bytes([b[at], b[at + 1]]));
            let start = if i == 0 {
                0
            } else {
                usize::from(u16::from_le_bytes([b[at - 2], b[at - 1]]))
            };
            (start, end)
        } else {
            let end = |i: usize| {
                let at = HEADER + 4 * i;
                u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
            };
            (if i == 0 { 0 } else { end(i - 1) }, end(i))
        }
    }

    /// Text `i`: field `i`, or custom value `i - FIELDS`.
    fn text(&self, i: usize) -> &str {
        let base = HEADER + (FIELDS + self.custom_count()) * self.width();
        let (start, end) = self.span(i);
        let bytes = &self.bytes[base + start..base + end];
        // SAFETY: `new` copied each text in whole from a `&str`, and
        // nothing else writes the texts.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    /// A field's text ("" when the lead has none).
    pub fn get(&self, field: Field) -> &str {
        self.text(field as usize)
    }

    /// Whether the lead has no text for `field` (without reading the text).
    pub fn lacks(&self, field: Field) -> bool {
        let (start, end) = self.span(field as usize);
        start == end
    }

    fn short_hash(&self, field: Field) -> [u8; 2] {
        let at = HASHES + 2 * field as usize;
        [self.bytes[at], self.bytes[at + 1]]
    }

    /// Whether both leads have the same text for `field`. Decided by the
    /// short hashes alone when they differ, as they do for most pairs.
    pub fn same(&self, other: &Features, field: Field) -> bool {
        self.short_hash(field) == other.short_hash(field) && self.get(field) == other.get(field)
    }

    /// A 32-bit hash of a field's text (the term frequencies' key).
    pub fn hash(&self, field: Field) -> u32 {
        text_hash(self.get(field))
    }

    /// The custom values, in configuration order ("" for a missing one).
    pub fn custom(&self) -> impl Iterator<Item = &str> {
        (FIELDS..FIELDS + self.custom_count()).map(|i| self.text(i))
    }

    /// Heap bytes this record holds.
    pub fn heap_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// The comparable form of a normalized lead.
    pub fn from_lead(lead: &NormalizedLead, config: &DedupeConfig, received_at_ms: i64) -> Self {
        let (mut first, mut last) = (
            letters(opt(&lead.first_name)),
            letters(opt(&lead.last_name)),
        );
        if first.is_empty() && last.is_empty() {
            let full = opt(&lead.full_name);
            let mut words = full.split_whitespace();
            first = letters(words.next().unwrap_or(""));
            last = letters(words.next_back().unwrap_or(""));
        }
        let email = opt(&lead.email);
        let local = email.split('@').next().unwrap_or("");
        let local = local.split('+').next().unwrap_or("");
        let custom: Vec<String> = config
            .custom_fields
            .iter()
            .map(|k| match lead.custom.get(k) {
                Some(serde_json::Value::String(s)) => squash(s),
                Some(serde_json::Value::Null) | None => String::new(),
                Some(v) => v.to_string(),
            })
            .collect();
        let company = match &lead.company_key {
            Some(k) => Cow::Borrowed(k.as_str()),
            None => Cow::Owned(crate::pipeline::normalize::company_key(opt(&lead.company))),
        };
        let domain = match &lead.company_domain {
            Some(d) => Cow::Borrowed(d.as_str()),
            None => Cow::Owned(domain_of(opt(&lead.website), email)),
        };
        Features::new(
            [
                &first,
                &last,
                email,
                &letters(local),
                opt(&lead.phone),
                &company,
                &domain,
                opt(&lead.date_of_birth).trim(),
                &squash(opt(&lead.city)),
                &letters(opt(&lead.postcode)),
                &squash(opt(&lead.street)),
            ],
            &custom,
            received_at_ms,
        )
    }

    /// The blocking keys of this lead.
    pub fn blocking_keys(&self, out: &mut Vec<u64>) {
        out.clear();
        let (f, l) = (self.get(Field::First), self.get(Field::Last));
        fn initial(s: &str) -> &str {
            s.get(..1).unwrap_or("")
        }
        let sx = soundex_code;
        if !f.is_empty() && !l.is_empty() {
            let ((ca, na), (cb, nb)) = (sx(f), sx(l));
            let (mut a, mut b) = (&ca[..na], &cb[..nb]);
            if a > b {
                std::mem::swap(&mut a, &mut b);
            }
            out.push(key(&[b"n", a, b]));
            for (t, other) in [(f, l), (l, f)] {
                out.push(key(&[b"t", t.as_bytes(), initial(other).as_bytes()]));
            }
            if let Some(canon) = nickname(f) {
                out.push(key(&[b"t", canon.as_bytes(), initial(l).as_bytes()]));
                out.push(key(&[b"t", l.as_bytes(), initial(canon).as_bytes()]));
            }
        }
        // Each name alone: a lead with one name finds those with two.
        for t in [f, l] {
            if t.len() >= 2 {
                out.push(key(&[b"t1", t.as_bytes()]));
            }
        }
        let email_local = self.get(Field::EmailLocal);
        if email_local.len() >= 4 {
            out.push(key(&[b"el", email_local.as_bytes()]));
        }
        let phone = self.get(Field::Phone);
        if phone.len() >= 8 {
            out.push(key(&[b"p", &phone.as_bytes()[phone.len() - 8..]]));
        }
        let (csl, nsl) = sx(if l.is_empty() { f } else { l });
        let sl = &csl[..nsl];
        let postcode = self.get(Field::Postcode);
        if !postcode.is_empty() {
            out.push(key(&[b"pc", postcode.as_bytes(), sl]));
        }
        let (company, domain) = (self.get(Field::Company), self.get(Field::Domain));
        for t in [f, l] {
            if t.is_empty() {
                continue;
            }
            let (cst, nst) = sx(t);
            let st = &cst[..nst];
            if !company.is_empty() {
                out.push(key(&[b"c", company.as_bytes(), st]));
            }
            if !domain.is_empty() {
                out.push(key(&[b"w", domain.as_bytes(), st]));
            }
        }
        let dob = self.get(Field::Dob);
        if !dob.is_empty() {
            out.push(key(&[b"d", dob.as_bytes()]));
            // A mistyped day or month: the year and the surname.
            if let Some(year) = dob.get(..4)
                && !sl.is_empty()
            {
                out.push(key(&[b"dy", year.as_bytes(), sl]));
            }
        }
        let city = self.get(Field::City);
        if !city.is_empty() && !sl.is_empty() {
            out.push(key(&[b"cs", city.as_bytes(), sl]));
        }
        for (i, v) in self.custom().enumerate() {
            if !v.is_empty() {
                out.push(key(&[b"x", &[i as u8], v.as_bytes()]));
            }
        }
        out.sort_unstable();
        out.dedup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_custom_values_read_back_as_given() {
        let values = [
            "ada",
            "",
            "ada@x.io",
            "ada",
            "+1415",
            "",
            "x.io",
            "",
            "london",
            "",
            "1 main st",
        ];
        let f = Features::new(values, &["1815-12-10", "", "blue"], 7);
        let all = [
            Field::First,
            Field::Last,
            Field::Email,
            Field::EmailLocal,
            Field::Phone,
            Field::Company,
            Field::Domain,
            Field::Dob,
            Field::City,
            Field::Postcode,
            Field::Street,
        ];
        for (field, want) in all.into_iter().zip(values) {
            assert_eq!(f.get(field), want, "{field:?}");
            assert_eq!(f.lacks(field), want.is_empty(), "{field:?}");
        }
        assert_eq!(f.custom().collect::<Vec<_>>(), ["1815-12-10", "", "blue"]);
        assert_eq!(f.received_at_ms(), 7);
        assert_eq!(Features::default().custom().count(), 0);
        assert!(Features::default().lacks(Field::First));
    }

    #[test]
    fn texts_longer_than_64_kib_together_read_back() {
        let long = "x".repeat(40_000);
        let mut values = [""; FIELDS];
        values[0] = &long;
        values[10] = &long;
        values[4] = "+14155550100";
        let mut f = Features::new(values, &["é", "ü"], -3);
        assert_eq!(f.get(Field::First), long);
        assert_eq!(f.get(Field::Street), long);
        assert_eq!(f.get(Field::Phone), "+14155550100");
        assert!(f.lacks(Field::Email));
        assert_eq!(f.custom().collect::<Vec<_>>(), ["é", "ü"]);
        assert_eq!(f.received_at_ms(), -3);
        f.set_received_at_ms(9);
        assert_eq!((f.received_at_ms(), f.get(Field::Street)), (9, &*long));
    }

    #[test]
    fn same_compares_each_fields_text() {
        let a = Features::new(["a"; FIELDS], &[] as &[&str], 0);
        let mut values = ["a"; FIELDS];
        values[2] = "b";
        let b = Features::new(values, &[] as &[&str], 0);
        assert!(a.same(&b, Field::First));
        assert!(!a.same(&b, Field::Email));
        assert_eq!(a.hash(Field::Email), a.hash(Field::First));
        assert_ne!(a.hash(Field::Email), b.hash(Field::Email));
    }
}
