//! Names: stray punctuation and whitespace removed, a full name split into
//! prefix/first/middle/last/suffix ("Dr. Mary Ann O'Neill Jr.",
//! "Last, First"), Unicode-aware casing that keeps McDonald, O'Brien,
//! DeShawn and lowercase particles (van der, de la).

/// Honorifics recognized before a name (lowercase, dots removed) and the
/// form they are stored in.
const PREFIXES: &[(&str, &str)] = &[
    ("dame", "Dame"),
    ("doctor", "Dr"),
    ("dr", "Dr"),
    ("fr", "Fr"),
    ("frau", "Frau"),
    ("herr", "Herr"),
    ("lady", "Lady"),
    ("lord", "Lord"),
    ("madam", "Madam"),
    ("miss", "Miss"),
    ("mlle", "Mlle"),
    ("mme", "Mme"),
    ("mr", "Mr"),
    ("mrs", "Mrs"),
    ("ms", "Ms"),
    ("mx", "Mx"),
    ("prof", "Prof"),
    ("professor", "Prof"),
    ("rev", "Rev"),
    ("sir", "Sir"),
];

/// Suffixes recognized after a name (lowercase, dots removed).
const SUFFIXES: &[(&str, &str)] = &[
    ("cpa", "CPA"),
    ("dds", "DDS"),
    ("esq", "Esq"),
    ("ii", "II"),
    ("iii", "III"),
    ("iv", "IV"),
    ("jnr", "Jr"),
    ("jr", "Jr"),
    ("mba", "MBA"),
    ("md", "MD"),
    ("phd", "PhD"),
    ("rn", "RN"),
    ("snr", "Sr"),
    ("sr", "Sr"),
];

/// Lowercase particles that belong to the last name (van der Berg).
const PARTICLES: &[&str] = &[
    "da", "das", "de", "del", "della", "den", "der", "di", "dos", "du", "la", "le", "ten", "ter",
    "van", "von",
];

/// A name split into its parts, each cased.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedName {
    pub prefix: Option<String>,
    pub first: Option<String>,
    pub middle: Option<String>,
    pub last: Option<String>,
    pub suffix: Option<String>,
}

impl ParsedName {
    /// "Mary Ann O'Neill Jr": the parts without the honorific.
    pub fn full(&self) -> Option<String> {
        let parts: Vec<&str> = [&self.first, &self.middle, &self.last, &self.suffix]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    }
}

/// Looks a token up in a table (sorted by key: binary search), dots
/// removed and lowercased.
fn lookup(table: &[(&str, &'static str)], token: &str) -> Option<&'static str> {
    let find = |key: &[u8]| {
        table
            .binary_search_by(|(k, _)| k.as_bytes().cmp(key))
            .ok()
            .map(|i| table[i].1)
    };
    if token.is_ascii() {
        // No table key is longer than this; ASCII folds byte by byte.
        let mut buf = [0u8; 16];
        let mut n = 0;
        for &b in token.as_bytes() {
            if b == b'.' {
                continue;
            }
            if n == buf.len() {
                return None;
            }
            buf[n] = b.to_ascii_lowercase();
            n += 1;
        }
        return find(&buf[..n]);
    }
    let key: String = token
        .chars()
        .filter(|c| *c != '.')
        .collect::<String>()
        .to_lowercase();
    find(key.as_bytes())
}

/// Whether a word is a particle of a last name, in any case.
fn is_particle(word: &str) -> bool {
    if word.is_ascii() {
        PARTICLES.iter().any(|p| p.eq_ignore_ascii_case(word))
    } else {
        PARTICLES.contains(&word.to_lowercase().as_str())
    }
}

/// Replaces what cannot be part of a name with spaces; apostrophes and
/// dashes are unified; commas and dots kept for parsing.
fn scrub(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = match c {
            '’' | '‘' | 'ʼ' | '`' | '´' => '\'',
            '‐' | '‑' | '–' | '—' => '-',
            c => c,
        };
        if c.is_alphabetic() || matches!(c, '\'' | '-' | '.' | ',') || is_mark(c) {
            out.push(c);
        } else {
            out.push(' ');
        }
    }
    out
}

fn is_mark(c: char) -> bool {
    matches!(c as u32, 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x20D0..=0x20FF)
}

/// Whether a token is initials as written: single letters each followed
/// by a dot ("J.", "J.R.R.").
fn is_initials(token: &str) -> bool {
    let mut chars = token.chars().peekable();
    let mut letters = 0;
    while let Some(c) = chars.next() {
        if !c.is_alphabetic() || chars.next() != Some('.') {
            return false;
        }
        letters += 1;
    }
    letters > 0
}

/// Whitespace tokens with stray punctuation trimmed. Initials keep their
/// dots, as written and as reference parsers keep them ("J. R. Smith":
/// J., R., Smith; "J.R.R. Tolkien": J.R.R., Tolkien); other dots split
/// ("St.John" → St John).
fn tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    for raw in s.split_whitespace() {
        let trimmed = raw.trim_matches(|c: char| matches!(c, '\'' | '-' | ','));
        if is_initials(trimmed) && lookup(PREFIXES, trimmed).is_none() {
            out.push(trimmed.to_uppercase());
            continue;
        }
        if raw.contains('.') && (lookup(SUFFIXES, raw).is_some() || lookup(PREFIXES, raw).is_some())
        {
            out.push(
                raw.replace('.', "")
                    .trim_matches(|c: char| matches!(c, '\'' | '-' | ','))
                    .to_string(),
            );
            continue;
        }
        for t in raw.split('.') {
            let t = t.trim_matches(|c: char| matches!(c, '\'' | '-' | ','));
            if t.chars().any(char::is_alphabetic) {
                out.push(t.to_string());
            }
        }
    }
    out
}

/// Splits and cases a full name.
pub fn parse_name(full: &str) -> ParsedName {
    let scrubbed = scrub(full);
    let mut parsed = ParsedName::default();
    // Commas: suffixes after the last comma ("Smith, John, Jr.", "Jane Doe,
    // PhD"), then "Last, First Middle".
    let mut parts: Vec<&str> = scrubbed
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let mut suffixes: Vec<&'static str> = Vec::new();
    while parts.len() > 1 {
        let last = parts[parts.len() - 1];
        let found: Option<Vec<&'static str>> = last
            .split_whitespace()
            .map(|t| lookup(SUFFIXES, t))
            .collect();
        match found {
            Some(found) if !found.is_empty() => {
                suffixes.splice(0..0, found);
                parts.pop();
            }
            _ => break,
        }
    }
    let mut words: Vec<String> = match parts.as_slice() {
        [] => Vec::new(),
        [one] => tokens(one),
        [last, first, ..] => {
            let mut w = tokens(first);
            w.extend(tokens(last));
            w
        }
    };
    if let [last_name, _, ..] = parts.as_slice() {
        // Remember where the last name starts in "Last, First" order.
        let n_last = tokens(last_name).len();
        return finish(&mut parsed, words, suffixes, Some(n_last));
    }
    while words.len() > 1 {
        match lookup(SUFFIXES, &words[words.len() - 1]) {
            Some(s) => {
                suffixes.insert(0, s);
                words.pop();
            }
            None => break,
        }
    }
    finish(&mut parsed, words, suffixes, None)
}

fn finish(
    parsed: &mut ParsedName,
    mut words: Vec<String>,
    suffixes: Vec<&'static str>,
    n_last: Option<usize>,
) -> ParsedName {
    let mut prefixes = Vec::new();
    while words.len() > 1
        && let Some(p) = lookup(PREFIXES, &words[0])
    {
        prefixes.push(p);
        words.remove(0);
    }
    if !prefixes.is_empty() {
        parsed.prefix = Some(prefixes.join(" "));
    }
    if !suffixes.is_empty() {
        parsed.suffix = Some(suffixes.join(" "));
    }
    let n = words.len();
    let cased: Vec<String> = words
        .iter()
        .enumerate()
        .map(|(i, w)| case_word(w, i > 0 && i + 1 < n))
        .collect();
    let last_start = match n_last {
        Some(k) if k > 0 && k < n => {
            // "Last, First": the last name is the last k words now.
            n - k
        }
        _ if n <= 1 => n,
        _ => {
            let mut start = n - 1;
            while start > 1 && is_particle(&cased[start - 1]) {
                start -= 1;
            }
            start
        }
    };
    // Particles at the start of a "Last, First" last name.
    let cased: Vec<String> = cased
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            if i >= last_start && i + 1 < n && is_particle(&w) {
                w.to_lowercase()
            } else {
                w
            }
        })
        .collect();
    let join = |ws: &[String]| (!ws.is_empty()).then(|| ws.join(" "));
    match n {
        0 => {}
        1 => parsed.first = Some(cased[0].clone()),
        _ => {
            parsed.first = Some(cased[0].clone());
            parsed.middle = join(&cased[1..last_start.max(1)]);
            parsed.last = join(&cased[last_start.max(1)..]);
        }
    }
    std::mem::take(parsed)
}

/// "Mary Ann Smith" → ("Mary Ann", "Smith"); "Smith, Mary" → ("Mary", "Smith").
/// The first part includes middle names; honorifics and suffixes are dropped.
pub fn split_name(full: &str) -> (Option<String>, Option<String>) {
    let p = parse_name(full);
    let first = match (p.first, p.middle) {
        (Some(f), Some(m)) => Some(format!("{f} {m}")),
        (f, _) => f,
    };
    (first, p.last)
}

/// A first (given) name: stray punctuation removed, a leading honorific
/// dropped, cased.
pub fn first_name(s: &str) -> Option<String> {
    let mut words = tokens(&scrub(s).replace(',', " "));
    if words.len() > 1 && lookup(PREFIXES, &words[0]).is_some() {
        words.remove(0);
    }
    cased_words(&words, false)
}

/// A last (family) name: stray punctuation removed, trailing suffixes
/// dropped, cased with lowercase leading particles ("van der Berg").
pub fn last_name(s: &str) -> Option<String> {
    let mut words = tokens(&scrub(s).replace(',', " "));
    while words.len() > 1 && lookup(SUFFIXES, &words[words.len() - 1]).is_some() {
        words.pop();
    }
    cased_words(&words, true)
}

fn cased_words(words: &[String], leading_particles: bool) -> Option<String> {
    let n = words.len();
    let out: Vec<String> = words
        .iter()
        .enumerate()
        .map(|(i, w)| case_word(w, (i > 0 || leading_particles) && i + 1 < n))
        .collect();
    (!out.is_empty()).then(|| out.join(" "))
}

/// Title-cases a name word by word, keeping particles and Mc/O' forms.
pub fn name_case(s: &str) -> String {
    let words: Vec<&str> = s.split(' ').collect();
    let n = words.len();
    words
        .iter()
        .enumerate()
        .map(|(i, w)| case_word(w, i > 0 && i + 1 < n))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Cases one word. A word already written in deliberate mixed case
/// (McDonald, DeShawn, MacKenzie) is kept; ALL CAPS, all lowercase and
/// iNVERTED words are recased: first letter of each hyphen/apostrophe
/// segment upper, Mc + capital, particles lowercase where allowed.
fn case_word(word: &str, particle_allowed: bool) -> String {
    if is_initials(word) {
        return word.to_uppercase();
    }
    if particle_allowed && is_particle(word) {
        return word.to_lowercase();
    }
    if deliberate_mixed_case(word) {
        return word.to_string();
    }
    let lower = word.to_lowercase();
    let mut out = String::with_capacity(word.len());
    let mut cap = true;
    let mut seg_start = 0;
    for c in lower.chars() {
        if cap && c.is_alphabetic() {
            out.extend(c.to_uppercase());
            cap = false;
        } else {
            out.push(c);
        }
        if c == '-' || c == '\'' || c == '’' {
            cap = true;
            seg_start = out.len();
        } else if out.len() - seg_start == 3 && out[seg_start..].starts_with("Mc") {
            // "Mcd" → "McD": capitalize the letter after a leading Mc.
            let last = out.pop().unwrap_or_default();
            out.extend(last.to_uppercase());
        }
    }
    out
}

fn deliberate_mixed_case(word: &str) -> bool {
    let mut chars = word.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    if !first.is_uppercase() {
        return false;
    }
    let (mut upper, mut lower, mut inner_upper) = (1, 0, false);
    let mut prev = first;
    for c in chars {
        if c.is_uppercase() {
            upper += 1;
            if prev != '-' && prev != '\'' && prev != '’' {
                inner_upper = true;
            }
        } else if c.is_lowercase() {
            lower += 1;
        }
        prev = c;
    }
    inner_upper && upper < lower
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(
        prefix: Option<&str>,
        first: &str,
        middle: Option<&str>,
        last: Option<&str>,
        suffix: Option<&str>,
    ) -> ParsedName {
        ParsedName {
            prefix: prefix.map(Into::into),
            first: Some(first.into()),
            middle: middle.map(Into::into),
            last: last.map(Into::into),
            suffix: suffix.map(Into::into),
        }
    }

    #[test]
    fn casing() {
        for (raw, want) in [
            ("jOHN", "John"),
            ("o'brien", "O'Brien"),
            ("O’BRIEN", "O’Brien"),
            ("mcdonald", "McDonald"),
            ("MCDONALD", "McDonald"),
            ("McDonald", "McDonald"),
            ("MacKenzie", "MacKenzie"),
            ("DeShawn", "DeShawn"),
            ("ludwig van beethoven", "Ludwig van Beethoven"),
            ("anne-marie ZOË", "Anne-Marie Zoë"),
            ("JOSÉ ÁLVAREZ", "José Álvarez"),
            ("ŁUKASZ ŻÓŁW", "Łukasz Żółw"),
            ("mary o'neill-mcdonald", "Mary O'Neill-McDonald"),
            ("JOHn", "John"),
        ] {
            let got = last_or_full(raw);
            assert_eq!(got, want, "{raw}");
            assert_eq!(last_or_full(&got), got, "idempotent: {raw}");
        }
    }

    fn last_or_full(s: &str) -> String {
        name_case(s)
    }

    #[test]
    fn full_names() {
        for (raw, want) in [
            (
                "Mary Ann Smith",
                p(None, "Mary", Some("Ann"), Some("Smith"), None),
            ),
            ("Smith, Mary", p(None, "Mary", None, Some("Smith"), None)),
            (
                "SMITH, MARY ANN",
                p(None, "Mary", Some("Ann"), Some("Smith"), None),
            ),
            (
                "Dr. jane doe",
                p(Some("Dr"), "Jane", None, Some("Doe"), None),
            ),
            (
                "Mrs. Jane  Doe-Smith",
                p(Some("Mrs"), "Jane", None, Some("Doe-Smith"), None),
            ),
            (
                "martin luther king jr.",
                p(None, "Martin", Some("Luther"), Some("King"), Some("Jr")),
            ),
            (
                "Henry Ford III",
                p(None, "Henry", None, Some("Ford"), Some("III")),
            ),
            (
                "Jane Doe, PhD",
                p(None, "Jane", None, Some("Doe"), Some("PhD")),
            ),
            (
                "Prof. Dr. Anna Schmidt Ph.D.",
                p(Some("Prof Dr"), "Anna", None, Some("Schmidt"), Some("PhD")),
            ),
            (
                "Smith, John, Jr.",
                p(None, "John", None, Some("Smith"), Some("Jr")),
            ),
            (
                "ludwig van beethoven",
                p(None, "Ludwig", None, Some("van Beethoven"), None),
            ),
            (
                "Juan de la Cruz",
                p(None, "Juan", None, Some("de la Cruz"), None),
            ),
            (
                "de la Cruz, Juan",
                p(None, "Juan", None, Some("de la Cruz"), None),
            ),
            (
                "Vincent van der Berg",
                p(None, "Vincent", None, Some("van der Berg"), None),
            ),
            (
                "J.R.R. Tolkien",
                p(None, "J.R.R.", None, Some("Tolkien"), None),
            ),
            (
                "J. R. Smith",
                p(None, "J.", Some("R."), Some("Smith"), None),
            ),
            ("j. smith", p(None, "J.", None, Some("Smith"), None)),
            ("JR Smith", p(None, "Jr", None, Some("Smith"), None)),
            (
                "Smith, J. R.",
                p(None, "J.", Some("R."), Some("Smith"), None),
            ),
            (
                "Johnson, Mrs. Łukasz",
                p(Some("Mrs"), "Łukasz", None, Some("Johnson"), None),
            ),
            (
                "JOHNSON, DR MARY ANN",
                p(Some("Dr"), "Mary", Some("Ann"), Some("Johnson"), None),
            ),
            (
                "van der Berg, Ms. Anna",
                p(Some("Ms"), "Anna", None, Some("van der Berg"), None),
            ),
            ("  *Jane*  (Doe) ", p(None, "Jane", None, Some("Doe"), None)),
            ("madonna", p(None, "Madonna", None, None, None)),
            (
                "\"Bob\" O'Connor!!",
                p(None, "Bob", None, Some("O'Connor"), None),
            ),
        ] {
            let got = parse_name(raw);
            assert_eq!(got, want, "{raw}");
            // Idempotent through the joined form.
            let again = parse_name(&got.full().unwrap());
            assert_eq!(
                (again.first, again.middle, again.last, again.suffix),
                (want.first, want.middle, want.last, want.suffix),
                "{raw}"
            );
        }
        assert_eq!(parse_name("1234 ###"), ParsedName::default());
    }

    #[test]
    fn lookup_tables_are_sorted() {
        for t in [PREFIXES, SUFFIXES] {
            assert!(t.windows(2).all(|w| w[0].0 < w[1].0), "{t:?}");
            assert!(t.iter().all(|(k, _)| k.len() <= 16 && k.is_ascii()));
        }
        assert_eq!(lookup(SUFFIXES, "Ph.D."), Some("PhD"));
        assert_eq!(lookup(PREFIXES, "PROFESSOR"), Some("Prof"));
        assert_eq!(lookup(PREFIXES, "Professorship"), None);
        assert_eq!(lookup(PREFIXES, "Ḋr"), None);
    }

    #[test]
    fn split_fields() {
        assert_eq!(
            split_name("Smith, Mary"),
            (Some("Mary".into()), Some("Smith".into()))
        );
        assert_eq!(
            split_name("Mary Ann Smith"),
            (Some("Mary Ann".into()), Some("Smith".into()))
        );
        assert_eq!(first_name("Dr. JANE").as_deref(), Some("Jane"));
        assert_eq!(first_name(" lori. ").as_deref(), Some("Lori"));
        assert_eq!(last_name(" \tFriedman \n").as_deref(), Some("Friedman"));
        assert_eq!(last_name("Van Der Berg").as_deref(), Some("van der Berg"));
        assert_eq!(last_name("King Jr.").as_deref(), Some("King"));
        assert_eq!(last_name("123"), None);
    }
}
