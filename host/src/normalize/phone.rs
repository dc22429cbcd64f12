//! Phone: E.164 through the `phonenumber` crate with the source's default
//! region; extensions kept apart; vanity letters; `00` and trunk `0`
//! prefixes; the number type when the metadata knows it.

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

/// Normalizes a phone number to E.164 or says why it is not one.
pub fn normalize_phone(input: &str, region: Region) -> Result<String, FieldIssue> {
    parse_phone(input, region).map(|p| p.e164)
}

/// Normalizes a phone number: E.164, extension and type.
pub fn parse_phone(input: &str, region: Region) -> Result<PhoneInfo, FieldIssue> {
    enlarge_regex_cache();
    let bad = |why: &str| FieldIssue::new("phone", "invalid_phone", format!("{input:?}: {why}"));
    let (main, extension) = split_extension(input);
    let main = devanity(&strip_labels(main));
    let digits = main.chars().filter(char::is_ascii_digit).count();
    if digits < 5 {
        return Err(bad("too few digits"));
    }
    if digits > 17 {
        return Err(bad("too many digits"));
    }
    let main = drop_bracketed_trunk_zero(&main);
    let mut candidates: Vec<String> = vec![main.clone()];
    let trimmed = main.trim_start_matches(|c: char| !c.is_ascii_digit() && c != '+');
    // "00 44 20 …": the international prefix of most of the world, also
    // from regions whose own prefix differs (011 in North America).
    if let Some(rest) = trimmed.strip_prefix("00") {
        candidates.push(format!("+{rest}"));
    }
    let mut parsed_any = false;
    for candidate in &candidates {
        let Ok(number) = phonenumber::parse(Some(region), candidate) else {
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
/// looked up once; `is_valid` is asked only when the type is unknown.
fn valid_info(number: &phonenumber::PhoneNumber, extension: &Option<String>) -> Option<PhoneInfo> {
    let kind = number.number_type(&phonenumber::metadata::DATABASE);
    // With leading zeros kept apart (Italian style) the two can differ:
    // then `is_valid` decides.
    let plain = number.national().to_string() == number.national().value().to_string();
    if (kind == Type::Unknown || !plain) && !phonenumber::is_valid(number) {
        return None;
    }
    Some(info(number, kind, extension.clone()))
}

fn info(number: &phonenumber::PhoneNumber, kind: Type, extension: Option<String>) -> PhoneInfo {
    let kind = match kind {
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
    };
    PhoneInfo {
        e164: number.format().mode(Mode::E164).to_string(),
        extension,
        kind,
    }
}

fn digits_after_code_start_with_zero(candidate: &str, code: u16) -> bool {
    let digits: String = candidate.chars().filter(char::is_ascii_digit).collect();
    digits
        .strip_prefix(&code.to_string())
        .is_some_and(|rest| rest.starts_with('0'))
}

/// "+44 (0)20 7946 0958" → "+44 20 7946 0958".
fn drop_bracketed_trunk_zero(s: &str) -> String {
    s.replace("(0)", " ").replace("[0]", " ")
}

/// Splits off an extension: "ext. 12", "extension 12", "x12", "#12", ",12".
fn split_extension(input: &str) -> (&str, Option<String>) {
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
fn strip_labels(s: &str) -> String {
    const LABELS: &[&str] = &[
        "tel", "tel.", "phone", "ph", "mob", "mobile", "cell", "work", "home", "office", "fax",
        "direct", "main", "t", "m", "p", "w", "h", "o", "no", "nr", "number",
    ];
    if !s.chars().any(|c| c.is_ascii_alphabetic()) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    for token in s.split_whitespace() {
        // "tel:+1…" / "phone:415…": a label glued to the number.
        let token = match token.split_once(':') {
            Some((label, rest)) if LABELS.contains(&label.to_ascii_lowercase().as_str()) => rest,
            _ => token,
        };
        let word = token
            .trim_matches(|c: char| matches!(c, ':' | '(' | ')' | '[' | ']' | '.' | ','))
            .to_ascii_lowercase();
        if LABELS.contains(&word.as_str()) {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(token);
    }
    out
}

/// Vanity numbers: letters on the keypad become digits ("1-800-FLOWERS").
fn devanity(s: &str) -> String {
    if !s.chars().any(|c| c.is_ascii_alphabetic()) {
        return s.to_string();
    }
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
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Region {
        s.parse().unwrap()
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
