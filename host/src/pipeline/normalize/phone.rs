//! Phone: E.164 through the `phonenumber` crate with the source's default
//! region; extensions kept apart; vanity letters; `00` and trunk `0`
//! prefixes; the number type when the metadata knows it.

use std::borrow::Cow;

use phonenumber::country::Id as Region;
use phonenumber::{Mode, Type};

use super::FieldIssue;

/// A normalized phone number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneInfo {
    /// E.164, without the extension.
    pub e164: String,
    /// The extension's digits, if one was written.
    pub extension: Option<String>,
    /// `mobile`, `fixed_line`, `fixed_line_or_mobile`, `toll_free`, …
    pub kind: Option<&'static str>,
}

/// A region setting: an ISO 3166 code, or `none` (or nothing) for
/// international numbers only (a number without a country code is then
/// refused, not guessed).
pub fn region_setting(s: &str) -> Result<Option<Region>, String> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    s.to_ascii_uppercase().parse().map(Some).map_err(|_| {
        format!("{s:?} is not an ISO 3166 region code (or \"none\": international numbers only)")
    })
}

/// Normalizes a phone number to E.164 or says why it is not one; `region`
/// is where a number without a country code is from (none: it is refused).
pub fn normalize_phone(input: &str, region: Option<Region>) -> Result<String, FieldIssue> {
    parse_phone(input, region).map(|p| p.e164)
}

/// Normalizes a phone number: E.164, extension and type.
pub fn parse_phone(input: &str, region: Option<Region>) -> Result<PhoneInfo, FieldIssue> {
    enlarge_regex_cache();
    let bad = |why: &str| FieldIssue::new("phone", "invalid_phone", format!("{input:?}: {why}"));
    let plain = plain_digits_and_spaces(input);
    let plain = number_in_text(&plain);
    let (main, extension) = split_extension(&plain);
    let main = strip_labels(main);
    let main = devanity(&main);
    let digits = main.bytes().filter(u8::is_ascii_digit).count();
    if digits < 5 {
        return Err(bad("too few digits"));
    }
    if digits > 17 {
        return Err(bad("too many digits"));
    }
    let main = drop_bracketed_trunk_zero(&main);
    if let Some(found) = north_american(&main, region, &extension) {
        return Ok(found);
    }
    let trimmed = main.trim_start_matches(|c: char| !c.is_ascii_digit() && c != '+');
    // "00 44 20 …": the international prefix of most of the world, also
    // from regions whose own prefix differs (011 in North America).
    let international = trimmed.strip_prefix("00").map(|rest| format!("+{rest}"));
    let candidates = std::iter::once(&*main).chain(international.as_deref());
    let mut parsed_any = false;
    for candidate in candidates {
        let Ok(number) = phonenumber::parse(region, candidate) else {
            continue;
        };
        parsed_any = true;
        if let Some(found) = valid_info(&number, &extension) {
            return Ok(found);
        }
        // "+44 07911 123456": a trunk 0 written after the country code.
        let national = number.national().value().to_string();
        if candidate.trim_start().starts_with('+')
            && digits_after_code_start_with_zero(candidate, number.code().value())
        {
            let retry = format!("+{}{}", number.code().value(), national);
            if let Ok(n) = phonenumber::parse(None, &retry)
                && let Some(found) = valid_info(&n, &extension)
            {
                return Ok(found);
            }
        }
    }
    if parsed_any {
        Err(bad("not a valid number for its region"))
    } else {
        Err(bad("not a phone number"))
    }
}

/// A valid North American number written plainly (digits, spaces, `-`,
/// `.`, brackets): ten digits, the first 2–9, after `+1`, or after `1` or
/// nothing in the United States or Canada. Its details are what
/// `phonenumber::parse` and [`valid_info`] find (calling code 1, the ten
/// digits as the national number, no national prefix to strip), without
/// the crate's parser: the number type comes from the compiled patterns.
/// None for anything else, and for a number whose type the patterns do
/// not know: then the crate parses.
fn north_american(
    main: &str,
    region: Option<Region>,
    extension: &Option<String>,
) -> Option<PhoneInfo> {
    let text = main.trim();
    let (plus, text) = match text.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let mut digits = [0u8; 11];
    let mut n = 0;
    for b in text.bytes() {
        match b {
            b'0'..=b'9' if n < digits.len() => {
                digits[n] = b;
                n += 1;
            }
            b' ' | b'-' | b'.' | b'(' | b')' => {}
            _ => return None,
        }
    }
    let home = matches!(region, Some(Region::US | Region::CA));
    let national = match (plus, n, digits[0]) {
        (true, 11, b'1') => &digits[1..],
        (false, 11, b'1') if home => &digits[1..],
        (false, 10, _) if home => &digits[..10],
        _ => return None,
    };
    if !(b'2'..=b'9').contains(&national[0]) {
        return None;
    }
    let national = std::str::from_utf8(national).ok()?;
    match fast::number_type(1, national)? {
        Type::Unknown => None,
        kind => Some(PhoneInfo {
            e164: format!("+1{national}"),
            extension: extension.clone(),
            kind: kind_name(kind),
        }),
    }
}

/// Loads the phone metadata (about 85 ms, once per process) and compiles
/// the patterns of `region`, so that the first lead does not wait for
/// them: call it early, on a thread that has nothing better to do.
pub fn warm_up(region: Option<Region>) {
    enlarge_regex_cache();
    let region = region.unwrap_or(Region::US);
    let example = phonenumber::metadata::DATABASE
        .by_id(region.as_ref())
        .and_then(|meta| {
            let d = meta.descriptors();
            d.fixed_line().or(d.mobile())?.example().map(str::to_string)
        });
    if let Some(example) = example {
        let _ = parse_phone(&example, Some(region));
    }
}

/// `phonenumber` compiles its metadata regexes into one LRU cache of 100
/// entries; leads from a handful of countries need more than that, and the
/// cache then recompiles regexes on every call (about 20x slower). The
/// cache is shared by every pattern of the database, so it is replaced by a
/// bigger one once; patterns are compiled only for regions that occur.
fn enlarge_regex_cache() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(mut cache) = phonenumber::metadata::DATABASE.cache().lock() {
            *cache = regex_cache::RegexCache::new(4096);
        }
    });
}

/// The number's details if it is valid. Validity is "the metadata knows
/// its type" (what `phonenumber::is_valid` computes), so the type is
/// looked up once; validity is asked again only when the type is unknown.
fn valid_info(number: &phonenumber::PhoneNumber, extension: &Option<String>) -> Option<PhoneInfo> {
    let code = number.code().value();
    let national = number.national();
    // The national number without and with its leading zeros (Italian
    // style); `number_type` looks at the first, `is_valid` at the second.
    let value = national.value().to_string();
    let kind = fast::number_type(code, &value)
        .unwrap_or_else(|| number.number_type(&phonenumber::metadata::DATABASE));
    // With leading zeros kept apart the two can differ: then validity
    // decides. Without them validity is exactly "the type is known".
    let plain = national.zeros() == 0;
    if !plain {
        let with_zeros = national.to_string();
        let valid = fast::number_type(code, &with_zeros)
            .map(|t| t != Type::Unknown)
            .unwrap_or_else(|| phonenumber::is_valid(number));
        if !valid {
            return None;
        }
    } else if kind == Type::Unknown {
        return None;
    }
    Some(info(number, kind, extension.clone()))
}

fn info(number: &phonenumber::PhoneNumber, kind: Type, extension: Option<String>) -> PhoneInfo {
    // What `format().mode(Mode::E164)` writes, without the formatter's
    // search for a national format that E.164 does not use.
    let e164 = if fast::knows_code(number.code().value()) {
        format!("+{}{}", number.code().value(), number.national())
    } else {
        number.format().mode(Mode::E164).to_string()
    };
    PhoneInfo {
        e164,
        extension,
        kind: kind_name(kind),
    }
}

/// A number type's name as leads carry it (none for an unknown type).
fn kind_name(kind: Type) -> Option<&'static str> {
    match kind {
        Type::FixedLine => Some("fixed_line"),
        Type::Mobile => Some("mobile"),
        Type::FixedLineOrMobile => Some("fixed_line_or_mobile"),
        Type::TollFree => Some("toll_free"),
        Type::PremiumRate => Some("premium_rate"),
        Type::SharedCost => Some("shared_cost"),
        Type::PersonalNumber => Some("personal_number"),
        Type::Voip => Some("voip"),
        Type::Pager => Some("pager"),
        Type::Uan => Some("uan"),
        Type::Voicemail => Some("voicemail"),
        _ => None,
    }
}

/// The number type lookups of `phonenumber` (`PhoneNumber::number_type`,
/// `is_valid`), with the metadata's patterns compiled once into anchored
/// regexes. The crate itself keeps its patterns in one LRU cache keyed by
/// the pattern text: every match hashes a pattern of up to a few hundred
/// bytes under a mutex, and a number's type takes a dozen matches (twice:
/// once to find the region of a shared calling code, once for the type).
/// The decisions are the crate's, step for step (`validator::source_for`
/// and `validator::number_type` of phonenumber 0.3); a test compares them
/// on every example number of the metadata.
mod fast {
    use std::collections::HashMap;
    use std::sync::{LazyLock, OnceLock};

    use phonenumber::metadata::{DATABASE, Descriptor};
    use phonenumber::{Metadata, Type};
    use regex_cache::{Regex, RegexBuilder};

    /// A descriptor's pattern, matched at the start of the number as the
    /// crate's `Descriptor::is_match` does (`find` starting at 0).
    struct Desc {
        lengths: &'static [u16],
        re: Option<Regex>,
        orig: &'static Descriptor,
    }

    impl Desc {
        fn new(orig: &'static Descriptor) -> Desc {
            Desc {
                lengths: orig.possible_length(),
                re: anchored(orig.national_number().as_str()),
                orig,
            }
        }

        fn is_match(&self, value: &str) -> bool {
            if !self.lengths.is_empty() && !self.lengths.contains(&(value.len() as u16)) {
                return false;
            }
            match &self.re {
                Some(re) => re.is_match(value),
                None => self.orig.is_match(value),
            }
        }
    }

    /// `pattern` anchored at the start, with the options the crate compiles
    /// it with (whitespace ignored). A match of the anchored pattern exists
    /// exactly when the leftmost match of the pattern starts at 0. The line
    /// break ends a `#` comment, should a pattern have one.
    fn anchored(pattern: &str) -> Option<Regex> {
        RegexBuilder::new(&format!("^(?:{pattern}\n)"))
            .ignore_whitespace(true)
            .build()
            .ok()
    }

    struct Compiled {
        leading_digits: Option<(Option<Regex>, &'static regex_cache::CachedRegex)>,
        general: Desc,
        premium_rate: Option<Desc>,
        toll_free: Option<Desc>,
        shared_cost: Option<Desc>,
        voip: Option<Desc>,
        personal_number: Option<Desc>,
        pager: Option<Desc>,
        uan: Option<Desc>,
        voicemail: Option<Desc>,
        fixed_line: Option<Desc>,
        mobile: Option<Desc>,
        /// The fixed-line and mobile patterns are the same text.
        fixed_is_mobile: bool,
    }

    impl Compiled {
        fn new(meta: &'static Metadata) -> Compiled {
            let d = meta.descriptors();
            let desc = |x: Option<&'static Descriptor>| x.map(Desc::new);
            Compiled {
                leading_digits: meta.leading_digits().map(|ld| (anchored(ld.as_str()), ld)),
                general: Desc::new(d.general()),
                premium_rate: desc(d.premium_rate()),
                toll_free: desc(d.toll_free()),
                shared_cost: desc(d.shared_cost()),
                voip: desc(d.voip()),
                personal_number: desc(d.personal_number()),
                pager: desc(d.pager()),
                uan: desc(d.uan()),
                voicemail: desc(d.voicemail()),
                fixed_line: desc(d.fixed_line()),
                mobile: desc(d.mobile()),
                fixed_is_mobile: d.fixed_line().map(|x| x.national_number().as_str())
                    == d.mobile().map(|x| x.national_number().as_str()),
            }
        }

        fn leading_digits_match(&self, national: &str) -> Option<bool> {
            let (re, orig) = self.leading_digits.as_ref()?;
            Some(match re {
                Some(re) => re.is_match(national),
                None => orig.find(national).is_some_and(|m| m.start() == 0),
            })
        }

        /// `validator::number_type`.
        fn number_type(&self, value: &str) -> Type {
            let m = |d: &Option<Desc>| d.as_ref().is_some_and(|d| d.is_match(value));
            if !self.general.is_match(value) {
                return Type::Unknown;
            }
            if m(&self.premium_rate) {
                return Type::PremiumRate;
            }
            if m(&self.toll_free) {
                return Type::TollFree;
            }
            if m(&self.shared_cost) {
                return Type::SharedCost;
            }
            if m(&self.voip) {
                return Type::Voip;
            }
            if m(&self.personal_number) {
                return Type::PersonalNumber;
            }
            if m(&self.pager) {
                return Type::Pager;
            }
            if m(&self.uan) {
                return Type::Uan;
            }
            if m(&self.voicemail) {
                return Type::Voicemail;
            }
            if m(&self.fixed_line) {
                if self.fixed_is_mobile || m(&self.mobile) {
                    return Type::FixedLineOrMobile;
                }
                return Type::FixedLine;
            }
            if m(&self.mobile) {
                return Type::Mobile;
            }
            Type::Unknown
        }
    }

    /// Where the metadata of a calling code comes from (`source_for`).
    enum Source {
        /// One region (or a non-geographic code): its metadata, if any.
        One(Option<&'static Metadata>),
        /// Several regions, tried in order: the metadata to test and the
        /// metadata it stands for.
        Many(Vec<(&'static Metadata, Option<&'static Metadata>)>),
    }

    struct Tables {
        codes: HashMap<u16, Source, foldhash::fast::RandomState>,
        /// By the address of the metadata (the database is a static that
        /// never moves); compiled on first use.
        compiled: HashMap<usize, OnceLock<Compiled>, foldhash::fast::RandomState>,
        /// Calling codes (below 1000) the database has metadata for.
        with_metadata: Vec<bool>,
    }

    fn addr(meta: &Metadata) -> usize {
        meta as *const Metadata as usize
    }

    static TABLES: LazyLock<Tables> = LazyLock::new(|| {
        let db: &'static phonenumber::metadata::Database = &DATABASE;
        let by_id = |id: &str| -> Option<&'static Metadata> {
            id.parse::<phonenumber::country::Id>()
                .ok()
                .and_then(|id| db.by_id(id.as_ref()))
        };
        let mut codes = HashMap::default();
        let mut compiled = HashMap::default();
        let mut with_metadata = vec![false; 1000];
        for code in 0..=999u16 {
            for meta in db.by_code(&code).unwrap_or_default() {
                compiled.insert(addr(meta), OnceLock::new());
                with_metadata[code as usize] = true;
            }
            let Some(regions) = db.region(&code) else {
                continue;
            };
            let source = if regions.len() == 1 {
                if regions[0] == "001" {
                    Source::One(db.by_code(&code).and_then(|m| m.into_iter().next()))
                } else {
                    Source::One(by_id(regions[0]))
                }
            } else {
                Source::Many(
                    regions
                        .iter()
                        .filter_map(|r| Some((db.by_id(*r)?, by_id(r))))
                        .collect(),
                )
            };
            codes.insert(code, source);
        }
        Tables {
            codes,
            compiled,
            with_metadata,
        }
    });

    fn compiled(meta: &'static Metadata) -> Option<&'static Compiled> {
        let cell = TABLES.compiled.get(&addr(meta))?;
        Some(cell.get_or_init(|| Compiled::new(meta)))
    }

    /// Whether the database has metadata for a calling code.
    pub(super) fn knows_code(code: u16) -> bool {
        TABLES
            .with_metadata
            .get(code as usize)
            .copied()
            .unwrap_or(false)
    }

    /// The type of the national number `value` (digits, with or without
    /// leading zeros) under calling code `code`, as
    /// `PhoneNumber::number_type` finds it; `None` if the tables cannot
    /// say (then ask the crate).
    pub(super) fn number_type(code: u16, value: &str) -> Option<Type> {
        let Some(source) = TABLES.codes.get(&code) else {
            return Some(Type::Unknown);
        };
        match source {
            Source::One(None) => Some(Type::Unknown),
            Source::One(Some(meta)) => Some(compiled(meta)?.number_type(value)),
            Source::Many(regions) => {
                for (test, stands_for) in regions {
                    let c = compiled(test)?;
                    let found = match c.leading_digits_match(value) {
                        Some(starts) => starts,
                        None => {
                            let kind = c.number_type(value);
                            if kind != Type::Unknown {
                                // The region's own type, if it stands for
                                // itself (the usual case).
                                if let Some(meta) = stands_for
                                    && std::ptr::eq(*meta, *test)
                                {
                                    return Some(kind);
                                }
                                true
                            } else {
                                false
                            }
                        }
                    };
                    if found {
                        return match stands_for {
                            Some(meta) => Some(compiled(meta)?.number_type(value)),
                            None => Some(Type::Unknown),
                        };
                    }
                }
                Some(Type::Unknown)
            }
        }
    }
}

fn digits_after_code_start_with_zero(candidate: &str, code: u16) -> bool {
    let digits: String = candidate.chars().filter(char::is_ascii_digit).collect();
    digits
        .strip_prefix(&code.to_string())
        .is_some_and(|rest| rest.starts_with('0'))
}

/// "+44 (0)20 7946 0958" → "+44 20 7946 0958".
fn drop_bracketed_trunk_zero(s: &str) -> Cow<'_, str> {
    if s.contains("(0)") || s.contains("[0]") {
        Cow::Owned(s.replace("(0)", " ").replace("[0]", " "))
    } else {
        Cow::Borrowed(s)
    }
}

/// Splits off an extension: "ext. 12", "extension 12", "x12", "#12", ",12".
/// The number as libphonenumber reads it: digits of any script as ASCII
/// digits (Arabic-Indic "٠٢٠", Devanagari, fullwidth "０２０": every Unicode
/// decimal digit), any whitespace (no-break and thin spaces, tabs, line
/// breaks) as a space, fullwidth plus and brackets and Unicode dashes as
/// their ASCII forms, and invisible marks (zero-width spaces, direction
/// marks around right-to-left digits) dropped.
fn plain_digits_and_spaces(input: &str) -> Cow<'_, str> {
    use dec_from_char::DecimalExtended as _;
    if input.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Cow::Borrowed(input);
    }
    Cow::Owned(
        input
            .chars()
            .filter_map(|c| match c {
                '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{FEFF}' => None,
                '\u{FF0B}' => Some('+'),
                '\u{FF08}' => Some('('),
                '\u{FF09}' => Some(')'),
                '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FF0D}' => Some('-'),
                c if c.is_whitespace() => Some(' '),
                c => Some(c.normalize_decimal().unwrap_or(c)),
            })
            .collect(),
    )
}

fn split_extension(input: &str) -> (&str, Option<String>) {
    // Every marker has an "x", "#" or ",".
    if !input
        .bytes()
        .any(|b| matches!(b, b'x' | b'X' | b'#' | b','))
    {
        return (input, None);
    }
    let lower = input.to_ascii_lowercase();
    let markers = ["extension", "ext.", "ext", "x.", "x", "#", ";ext=", ","];
    let mut best: Option<(usize, usize)> = None;
    for m in markers {
        // The last marker that is followed (after spaces, dots, colons) only
        // by digits.
        if let Some(pos) = lower.rfind(m) {
            let after = &lower[pos + m.len()..];
            let tail = after.trim_start_matches([' ', '.', ':', '=']);
            let head_digits = lower[..pos]
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .count();
            if !tail.is_empty()
                && tail.len() <= 7
                && tail.trim_end().chars().all(|c| c.is_ascii_digit())
                && head_digits >= 5
                && best.is_none_or(|(p, _)| pos < p)
            {
                best = Some((pos, input.len() - tail.len()));
            }
        }
    }
    match best {
        Some((pos, tail_start)) => (&input[..pos], Some(input[tail_start..].trim().to_string())),
        None => (input, None),
    }
}

/// Drops words that label a number ("tel:", "Mobile", "(work)").
fn strip_labels(s: &str) -> Cow<'_, str> {
    const LABELS: &[&str] = &[
        "tel", "tel.", "phone", "ph", "mob", "mobile", "cell", "work", "home", "office", "fax",
        "direct", "main", "t", "m", "p", "w", "h", "o", "no", "nr", "number",
    ];
    let is_label = |w: &str| LABELS.iter().any(|l| l.eq_ignore_ascii_case(w));
    if !s.bytes().any(|c| c.is_ascii_alphabetic()) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    for token in s.split_whitespace() {
        // "tel:+1…" / "phone:415…": a label glued to the number.
        let token = match token.split_once(':') {
            Some((label, rest)) if is_label(label) => rest,
            _ => token,
        };
        let word =
            token.trim_matches(|c: char| matches!(c, ':' | '(' | ')' | '[' | ']' | '.' | ','));
        if is_label(word) {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(token);
    }
    Cow::Owned(out)
}

/// A number inside running text ("call me on 415 555 0123 after 5"): the
/// run of words holding the most digits between words of letters. Text is
/// told from a vanity number ("1 800 FLOWERS") by its lowercase words.
fn number_in_text(s: &str) -> Cow<'_, str> {
    // An extension's marker belongs to the number.
    const MARKERS: &[&str] = &["x", "ext", "extn", "extension"];
    let is_text = |w: &str| {
        let w = w.trim_matches(|c: char| !c.is_alphanumeric());
        !w.is_empty()
            && w.chars().all(char::is_alphabetic)
            && !MARKERS.iter().any(|m| m.eq_ignore_ascii_case(w))
    };
    let lowercase_word = |w: &str| is_text(w) && w.chars().any(char::is_lowercase);
    if !s.split_whitespace().any(lowercase_word) {
        return Cow::Borrowed(s);
    }
    let digits = |w: &str| w.bytes().filter(u8::is_ascii_digit).count();
    let mut best: (usize, Vec<&str>) = (0, Vec::new());
    let mut run: (usize, Vec<&str>) = (0, Vec::new());
    for word in s.split_whitespace().chain(["end"]) {
        if is_text(word) {
            if run.0 > best.0 {
                best = std::mem::take(&mut run);
            }
            run = (0, Vec::new());
        } else {
            run.0 += digits(word);
            run.1.push(word);
        }
    }
    Cow::Owned(best.1.join(" "))
}

/// Vanity numbers: letters on the keypad become digits ("1-800-FLOWERS").
fn devanity(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|c| c.is_ascii_alphabetic()) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| match c.to_ascii_uppercase() {
                'A'..='C' => '2',
                'D'..='F' => '3',
                'G'..='I' => '4',
                'J'..='L' => '5',
                'M'..='O' => '6',
                'P'..='S' => '7',
                'T'..='V' => '8',
                'W'..='Z' => '9',
                _ => c,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Option<Region> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn without_a_region_only_international_numbers_are_read() {
        assert_eq!(region_setting("none"), Ok(None));
        assert_eq!(region_setting(""), Ok(None));
        assert_eq!(region_setting("gb"), Ok(Some(Region::GB)));
        assert!(region_setting("Narnia").unwrap_err().contains("none"));
        for (p, want) in [
            ("+44 20 7946 0018", "+442079460018"),
            ("0044 20 7946 0018", "+442079460018"),
            ("+1 (415) 231-2671", "+14152312671"),
            ("tel: +49 30 12345678", "+493012345678"),
        ] {
            assert_eq!(normalize_phone(p, None).as_deref(), Ok(want), "{p}");
        }
        for p in ["(415) 231-2671", "020 7946 0018", "07911 123456"] {
            let e = normalize_phone(p, None).unwrap_err();
            assert_eq!(e.rule, "invalid_phone", "{p}");
        }
    }

    #[test]
    fn digits_of_other_scripts_and_unusual_spaces_read_as_libphonenumber_reads_them() {
        for p in [
            "+٤٤ ٢٠ ٧٩٤٦ ٠٠١٨",
            "+۴۴ ۲۰ ۷۹۴۶ ۰۰۱۸",
            "＋４４ ２０ ７９４６ ００１８",
            "+४४ २० ७९४६ ००१८",
            "\u{200E}+44 20 7946 0018\u{200E}",
            "+44\u{A0}20\u{A0}7946\u{A0}0018",
            "+44\u{2009}20\u{2009}7946\u{2009}0018",
            "+44\u{202F}20\u{202F}7946\u{202F}0018",
            "+44\t20\t7946\t0018",
            "+44\n20 7946\r\n0018",
            "+44\u{2013}20\u{2013}7946\u{2013}0018",
            "＋44（0）20 7946 0018",
        ] {
            let got = normalize_phone(p, r("US")).map_err(|e| format!("{e:?}"));
            assert_eq!(got.as_deref(), Ok("+442079460018"), "{p:?}");
        }
        let got = normalize_phone("٠٧٩١١ ١٢٣٤٥٦", r("GB")).map_err(|e| format!("{e:?}"));
        assert_eq!(got.as_deref(), Ok("+447911123456"));
    }

    #[test]
    fn numbers_inside_running_text() {
        for (p, region, want) in [
            ("call me on 415 231 2671 after 5", "US", "+14152312671"),
            (
                "please call +44 20 7946 0018 before noon",
                "US",
                "+442079460018",
            ),
            ("my number is (415) 231-2671, thanks!", "US", "+14152312671"),
            ("Ring 020 7946 0018 (evenings)", "GB", "+442079460018"),
            ("mobile 07911 123456 or email me", "GB", "+447911123456"),
        ] {
            let got = normalize_phone(p, r(region)).map_err(|e| format!("{e:?}"));
            assert_eq!(got.as_deref(), Ok(want), "{p:?}");
        }
        let i = parse_phone("reach me at 415-231-2671 ext. 9 any time", r("US")).unwrap();
        assert_eq!(
            (i.e164.as_str(), i.extension.as_deref()),
            ("+14152312671", Some("9"))
        );
        // Without digits enough, text is no number.
        assert!(normalize_phone("call me maybe at 5", r("US")).is_err());
    }

    #[test]
    fn formats_to_e164() {
        for p in [
            "(415) 231-2671",
            "415.231.2671",
            "4152312671",
            "+1 415 231 2671",
            "1-415-231-2671",
            "+1 (415) 231-2671",
            "011 1 415 231 2671",
            " tel: 415 231 2671 ",
            "tel:+1-415-231-2671",
            "Mobile: (415) 231-2671",
            "415 231 2671 (work)",
        ] {
            assert_eq!(normalize_phone(p, r("US")).unwrap(), "+14152312671", "{p}");
        }
        for (p, region, want) in [
            ("07911 123456", "GB", "+447911123456"),
            ("+44 7911 123456", "US", "+447911123456"),
            ("00 44 20 3595 3876", "GB", "+442035953876"),
            ("00 44 20 3595 3876", "US", "+442035953876"),
            ("0044 (0)20 3595 3876", "DE", "+442035953876"),
            ("+44 (0) 20 3595 3876", "US", "+442035953876"),
            ("+44 020 3595 3876", "US", "+442035953876"),
            ("030 12345678", "DE", "+493012345678"),
            ("+49 (0)30 12345678", "GB", "+493012345678"),
            ("06 12 34 56 78", "FR", "+33612345678"),
        ] {
            assert_eq!(
                normalize_phone(p, r(region)).unwrap(),
                want,
                "{p} in {region}"
            );
        }
    }

    #[test]
    fn extensions_vanity_and_types() {
        for p in [
            "(415) 231-2671 ext. 204",
            "415-231-2671 x204",
            "415.231.2671 EXT 204",
            "+1 415 231 2671 #204",
            "415 231 2671 extension 204",
        ] {
            let i = parse_phone(p, r("US")).unwrap();
            assert_eq!(
                (i.e164.as_str(), i.extension.as_deref()),
                ("+14152312671", Some("204")),
                "{p}"
            );
        }
        assert_eq!(
            normalize_phone("1-800-FLOWERS", r("US")).unwrap(),
            "+18003569377"
        );
        assert_eq!(
            normalize_phone("+1 (800) FLOWERS", r("US")).unwrap(),
            "+18003569377"
        );
        let i = parse_phone("+1 (800) FLOWERS ext. 12", r("US")).unwrap();
        assert_eq!(
            (i.e164.as_str(), i.extension.as_deref()),
            ("+18003569377", Some("12"))
        );
        assert_eq!(
            normalize_phone("1 (800) GOT-JUNK", r("US")).unwrap(),
            "+18004685865"
        );
        assert_eq!(
            parse_phone("07911 123456", r("GB")).unwrap().kind,
            Some("mobile")
        );
        assert_eq!(
            parse_phone("020 3595 3876", r("GB")).unwrap().kind,
            Some("fixed_line")
        );
        assert_eq!(
            parse_phone("0800 028 0800", r("GB")).unwrap().kind,
            Some("toll_free")
        );
    }

    /// The crate's own answer, as `valid_info` computed it before the
    /// patterns were compiled apart.
    fn crate_valid_info(number: &phonenumber::PhoneNumber) -> Option<PhoneInfo> {
        let kind = number.number_type(&phonenumber::metadata::DATABASE);
        let plain = number.national().to_string() == number.national().value().to_string();
        if (kind == Type::Unknown || !plain) && !phonenumber::is_valid(number) {
            return None;
        }
        let mut i = info(number, kind, None);
        i.e164 = number.format().mode(Mode::E164).to_string();
        Some(i)
    }

    /// The North American shortcut answers exactly what the crate's parse
    /// and `valid_info` answer, for every area code, in the ways numbers
    /// are written, from home and abroad; and it answers most of them.
    #[test]
    fn north_american_numbers_read_without_the_parser_as_the_parser_reads_them() {
        let regions = [r("US"), r("CA"), r("GB"), None];
        let (mut shortcut, mut valid) = (0, 0);
        for area in 200..1000u32 {
            let exchange = 200 + (area * 7) % 800;
            let line = (area * 37) % 10_000;
            let ten = format!("{area}{exchange}{line:04}");
            let written = [
                format!("+1 {area} {exchange} {line:04}"),
                format!("+1{ten}"),
                format!("+ 1 ({area}) {exchange}.{line:04}"),
                format!("1-{area}-{exchange}-{line:04}"),
                format!("({area}) {exchange}-{line:04}"),
                ten.clone(),
                format!("1{ten}"),
            ];
            for text in &written {
                for region in regions {
                    let crate_says = phonenumber::parse(region, text)
                        .ok()
                        .and_then(|n| valid_info(&n, &None));
                    valid += usize::from(crate_says.is_some());
                    if let Some(found) = north_american(text, region, &None) {
                        shortcut += 1;
                        assert_eq!(Some(found), crate_says, "{text} in {region:?}");
                    }
                }
            }
        }
        eprintln!("shortcut {shortcut} of {valid} valid");
        // Every valid number the shortcut may read: the crate's answer for
        // the others (other regions, too few digits) is the parser's.
        assert!(shortcut * 10 >= valid * 7, "{shortcut} of {valid}");
    }

    #[test]
    fn compiled_patterns_decide_as_the_crate_does() {
        use phonenumber::metadata::DATABASE;
        let mut checked = 0;
        for code in 1..=999u16 {
            for meta in DATABASE.by_code(&code).unwrap_or_default() {
                let d = meta.descriptors();
                let descs = [
                    Some(d.general()),
                    d.fixed_line(),
                    d.mobile(),
                    d.toll_free(),
                    d.premium_rate(),
                    d.shared_cost(),
                    d.personal_number(),
                    d.voip(),
                    d.pager(),
                    d.uan(),
                    d.voicemail(),
                ];
                for ex in descs.into_iter().flatten().filter_map(|x| x.example()) {
                    let variants = [
                        ex.to_string(),
                        format!("0{ex}"),
                        format!("{ex}7"),
                        ex[..ex.len().saturating_sub(1)].to_string(),
                        ex.chars().rev().collect(),
                    ];
                    for v in variants {
                        let Ok(number) = phonenumber::parse(None, format!("+{code}{v}")) else {
                            continue;
                        };
                        assert_eq!(
                            valid_info(&number, &None),
                            crate_valid_info(&number),
                            "+{code} {v}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 2000, "{checked}");
    }

    #[test]
    fn invalid_numbers_say_why() {
        for (bad, why) in [
            ("12345", "not a valid number"),
            ("tel", "too few digits"),
            ("+1 555 0100", "not a valid number"),
            ("07700 900123", "not a valid number"),
            ("123", "too few digits"),
            ("n/a", "too few digits"),
            ("1234567890123456789", "too many digits"),
        ] {
            let e = parse_phone(bad, r("GB")).unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.rule.as_str()),
                ("phone", "invalid_phone"),
                "{bad}"
            );
            assert!(e.message.contains(why), "{bad}: {}", e.message);
        }
    }
}
