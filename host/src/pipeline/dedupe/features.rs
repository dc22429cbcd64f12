//! The comparable form of a lead: what the fuzzy index keeps per record
//! and scores pairs on, and the blocking keys it files a record under.
//!
//! Compact on purpose: the index holds one per lead in its window (a
//! million leads, a million of these). Every field's text lives in one
//! allocation, and each field carries a 32-bit hash beside its end offset,
//! so a comparison of two records decides most "equal?" questions from the
//! records themselves, without reading either text (which is where the
//! scoring of a full block spent its time: one cache miss per field).

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

/// The comparable form of a lead (what the index keeps per record).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Features {
    /// Every field's text in [`Field`] order, then the custom values.
    text: Box<str>,
    /// Where each field's text ends in `text`.
    ends: [u32; FIELDS],
    /// A hash of each field's text: unequal hashes, unequal texts.
    hashes: [u32; FIELDS],
    /// Where each custom value (configured custom attributes, in
    /// configuration order) ends in `text`.
    custom_ends: Box<[u32]>,
    pub received_at_ms: i64,
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
        let len = fields.iter().map(|f| f.len()).sum::<usize>()
            + custom.iter().map(|c| c.as_ref().len()).sum::<usize>();
        let mut text = String::with_capacity(len);
        let mut ends = [0; FIELDS];
        let mut hashes = [0; FIELDS];
        for (i, f) in fields.iter().enumerate() {
            text.push_str(f);
            ends[i] = text.len() as u32;
            hashes[i] = text_hash(f);
        }
        let custom_ends = custom
            .iter()
            .map(|c| {
                text.push_str(c.as_ref());
                text.len() as u32
            })
            .collect();
        Features {
            text: text.into_boxed_str(),
            ends,
            hashes,
            custom_ends,
            received_at_ms,
        }
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

    /// A field's text ("" when the lead has none).
    pub fn get(&self, field: Field) -> &str {
        let i = field as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start as usize..self.ends[i] as usize]
    }

    /// Whether the lead has no text for `field` (without reading the text).
    pub fn lacks(&self, field: Field) -> bool {
        let i = field as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.ends[i] == start
    }

    /// Whether both leads have the same text for `field`. Decided by the
    /// hashes alone when they differ, as they do for most pairs.
    pub fn same(&self, other: &Features, field: Field) -> bool {
        let i = field as usize;
        self.hashes[i] == other.hashes[i] && self.get(field) == other.get(field)
    }

    /// The 32-bit hash of a field's text.
    pub fn hash(&self, field: Field) -> u32 {
        self.hashes[field as usize]
    }

    /// The custom values, in configuration order ("" for a missing one).
    pub fn custom(&self) -> impl Iterator<Item = &str> {
        let mut start = self.ends[FIELDS - 1] as usize;
        self.custom_ends.iter().map(move |&end| {
            let value = &self.text[start..end as usize];
            start = end as usize;
            value
        })
    }

    /// Heap bytes this record holds (its texts and custom offsets).
    pub fn heap_bytes(&self) -> usize {
        self.text.len() + self.custom_ends.len() * 4
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
        assert_eq!(f.received_at_ms, 7);
        assert_eq!(Features::default().custom().count(), 0);
        assert!(Features::default().lacks(Field::First));
    }

    #[test]
    fn same_compares_texts_not_just_hashes() {
        let a = Features::new(["a"; FIELDS], &[] as &[&str], 0);
        let mut b = a.clone();
        assert!(a.same(&b, Field::Email));
        // A forged equal hash over a different text is still "different".
        b.text = "bbbbbbbbbbb".into();
        assert!(!a.same(&b, Field::Email));
    }
}
