//! Email: trim, strip `mailto:` and surrounding junk, lowercase, IDN domain
//! to punycode, a syntax check close to what mail providers accept, a typo
//! corrector for consumer domains, and role/disposable flags.

use serde::{Deserialize, Serialize};

use super::FieldIssue;
use super::tables::{domain_typo, is_disposable_domain, is_role_local_part, tld_typo};

/// What to do with a likely typo in an email's domain (`gmial.com`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TypoPolicy {
    /// Keep the address as written; record the corrected one as a suggestion.
    #[default]
    Suggest,
    /// Replace the domain with the corrected one (the original is kept).
    Fix,
    /// Do nothing.
    Ignore,
}

/// A normalized email and what was noticed about it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmailInfo {
    /// The normalized address (with the typo fixed under [`TypoPolicy::Fix`]).
    pub address: String,
    /// The corrected address, under [`TypoPolicy::Suggest`].
    pub suggestion: Option<String>,
    /// The domain was corrected (under [`TypoPolicy::Fix`]).
    pub corrected: bool,
    /// A role or shared inbox (`info@`, `sales@`).
    pub role: bool,
    /// A throw-away mail domain.
    pub disposable: bool,
}

/// Normalizes an email address or says why it is not one.
pub fn normalize_email(input: &str) -> Result<String, FieldIssue> {
    normalize_email_with(input, TypoPolicy::Ignore).map(|i| i.address)
}

/// Normalizes an email address under a typo policy.
pub fn normalize_email_with(input: &str, policy: TypoPolicy) -> Result<EmailInfo, FieldIssue> {
    let bad = |why: &str| FieldIssue::new("email", "invalid_email", format!("{input:?}: {why}"));
    let s = strip_junk(input);
    if s.chars().any(char::is_whitespace) {
        return Err(bad("contains whitespace"));
    }
    let (local, domain) = s.rsplit_once('@').ok_or_else(|| bad("no @"))?;
    if local.is_empty() {
        return Err(bad("nothing before the @"));
    }
    if local.contains('@') {
        return Err(bad("more than one @"));
    }
    if local.len() > 64 {
        return Err(bad("local part longer than 64 characters"));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(bad("misplaced dot in the local part"));
    }
    // Unquoted local parts only (RFC 5322 atext, plus Unicode letters for
    // internationalized mailboxes): what providers accept at sign-up.
    let atext = |c: char| {
        if c.is_ascii() {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    '.' | '!'
                        | '#'
                        | '$'
                        | '%'
                        | '&'
                        | '\''
                        | '*'
                        | '+'
                        | '-'
                        | '/'
                        | '='
                        | '?'
                        | '^'
                        | '_'
                        | '`'
                        | '{'
                        | '|'
                        | '}'
                        | '~'
                )
        } else {
            c.is_alphanumeric()
        }
    };
    if !local.chars().all(atext) {
        return Err(bad("forbidden character in the local part"));
    }
    let domain = domain.trim_end_matches('.');
    if domain.is_empty() {
        return Err(bad("nothing after the @"));
    }
    if domain.starts_with('[') {
        return Err(bad("address literal instead of a domain"));
    }
    let ascii = domain_to_ascii(domain).map_err(|_| bad("invalid domain"))?;
    check_domain(&ascii).map_err(bad)?;
    let local = local.to_lowercase();
    if local.len() + 1 + ascii.len() > 254 {
        return Err(bad("longer than 254 characters"));
    }
    let fixed = correct_domain(&ascii);
    let mut info = EmailInfo {
        role: is_role(&local),
        ..EmailInfo::default()
    };
    let domain = match (policy, fixed) {
        (TypoPolicy::Fix, Some(fixed)) => {
            info.corrected = true;
            fixed
        }
        (TypoPolicy::Suggest, Some(fixed)) => {
            info.suggestion = Some(format!("{local}@{fixed}"));
            ascii
        }
        _ => ascii,
    };
    info.disposable = is_disposable(&domain);
    info.address = format!("{local}@{domain}");
    Ok(info)
}

/// Removes what surrounds an address in pasted or scraped text:
/// whitespace, `mailto:` (and a `?subject=` query), a display name with the
/// address in angle brackets, quotes, brackets and trailing punctuation.
fn strip_junk(input: &str) -> &str {
    let mut s = input.trim();
    // "Jane Doe <jane@x.com>" → the part in angle brackets.
    if let (Some(open), Some(close)) = (s.rfind('<'), s.rfind('>'))
        && open < close
        && s[open..close].contains('@')
    {
        s = &s[open + 1..close];
    }
    s = s.trim_matches(|c: char| {
        c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\'' | '(' | ')' | '[' | ']' | '`')
    });
    if s.get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("mailto:"))
    {
        s = s[7..].trim_start();
    }
    if let Some(q) = s.find('?') {
        // mailto:a@b.com?subject=Hi — a query is not part of an address.
        if s[..q].contains('@') {
            s = &s[..q];
        }
    }
    s.trim_matches(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '<' | '>' | '"' | '\'' | '(' | ')' | '[' | ']' | '`' | ',' | ';' | ':'
            )
    })
    .trim_end_matches(['.', '!', '?'])
}

/// `idna::domain_to_ascii`, without its Unicode machinery for a plain
/// ASCII name (letters, digits, hyphens and dots, no `xn--` label), which
/// it maps to lowercase and otherwise leaves as it is.
pub(crate) fn domain_to_ascii(domain: &str) -> Result<String, idna::Errors> {
    let plain = domain
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
        && !domain
            .split('.')
            .any(|l| l.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("xn--")));
    if plain {
        Ok(domain.to_ascii_lowercase())
    } else {
        idna::domain_to_ascii(domain)
    }
}

fn check_domain(ascii: &str) -> Result<(), &'static str> {
    if ascii.len() > 253 {
        return Err("domain longer than 253 characters");
    }
    if !ascii.contains('.') {
        return Err("domain has no dot");
    }
    if ascii.split('.').any(|l| {
        l.is_empty()
            || l.len() > 63
            || l.starts_with('-')
            || l.ends_with('-')
            || !l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
    }) {
        return Err("invalid domain");
    }
    let tld = ascii.rsplit('.').next().unwrap_or_default();
    let tld_ok = tld.starts_with("xn--") || tld.bytes().all(|c| c.is_ascii_alphabetic());
    if tld.len() < 2 || !tld_ok {
        return Err("invalid top-level domain");
    }
    Ok(())
}

/// The domain that was most likely meant, if `domain` is a known typo, a
/// misspelt top-level domain, or one slip from a big provider's name.
pub fn correct_domain(domain: &str) -> Option<String> {
    if let Some(fixed) = domain_typo(domain) {
        return Some(fixed.to_string());
    }
    if let Some(provider) = provider_typo(domain) {
        return Some(provider.to_string());
    }
    let (head, tld) = domain.rsplit_once('.')?;
    let fixed_tld = tld_typo(tld)?;
    let fixed = format!("{head}.{fixed_tld}");
    // A fixed TLD may reveal a known typo too ("gmial.con").
    Some(
        domain_typo(&fixed)
            .or_else(|| provider_typo(&fixed))
            .map_or(fixed, str::to_string),
    )
}

/// Mail providers most addresses are at, as mailcheck.js knows them: a
/// domain one slip from one of these (and none of them itself) is a typo.
const PROVIDERS: &[&str] = &[
    "aol.com",
    "att.net",
    "btinternet.com",
    "comcast.net",
    "email.com",
    "gmail.com",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "googlemail.com",
    "hotmail.co.uk",
    "hotmail.com",
    "hotmail.fr",
    "icloud.com",
    "live.com",
    "mac.com",
    "mail.com",
    "me.com",
    "msn.com",
    "outlook.com",
    "protonmail.com",
    "sbcglobal.net",
    "verizon.net",
    "web.de",
    "yahoo.co.uk",
    "yahoo.com",
    "yahoo.fr",
    "ymail.com",
];

/// The provider `domain` is a slip from: its name (before the top-level
/// domain) an edit or a transposition from a provider's of five letters or
/// more ("gmaik", "yahpo", "hotmaill"), two for nine or more, with the same
/// top-level domain.
fn provider_typo(domain: &str) -> Option<&'static str> {
    if PROVIDERS.contains(&domain) {
        return None;
    }
    let (name, tld) = domain.split_once('.')?;
    PROVIDERS.iter().copied().find(|provider| {
        let Some((p_name, p_tld)) = provider.split_once('.') else {
            return false;
        };
        let allowed = match p_name.len() {
            0..=4 => return false,
            5..=8 => 1,
            _ => 2,
        };
        p_tld == tld
            && name != p_name
            && name.len().abs_diff(p_name.len()) <= allowed
            && super::within_edits(name, p_name, allowed)
    })
}

/// Whether a (lowercase) local part names a role inbox: `info`, `sales`,
/// also with a separator suffix (`sales-uk`, `info.de`).
pub fn is_role(local: &str) -> bool {
    let base = local.split(['+']).next().unwrap_or(local);
    let head = base.split(['.', '-', '_']).next().unwrap_or(base);
    is_role_local_part(base) || is_role_local_part(head)
}

/// Whether a (punycode, lowercase) domain is a throw-away mail domain.
pub fn is_disposable(domain: &str) -> bool {
    is_disposable_domain(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junk_around_addresses() {
        for (raw, want) in [
            ("  John.Smith@Gmail.COM ", "john.smith@gmail.com"),
            ("mailto:a@b.co", "a@b.co"),
            ("MAILTO: a@b.co", "a@b.co"),
            (
                "mailto:sales@acme.com?subject=Quote%20request",
                "sales@acme.com",
            ),
            ("<a@b.co>", "a@b.co"),
            (
                "\"Jane Doe\" <Jane.Doe@Example.com>",
                "jane.doe@example.com",
            ),
            ("Jane Doe <jane@example.com>,", "jane@example.com"),
            ("(jane@example.com)", "jane@example.com"),
            ("jane@example.com.", "jane@example.com"),
            ("jane@example.com;", "jane@example.com"),
            ("'jane@example.com'", "jane@example.com"),
            ("jane+news@example.com", "jane+news@example.com"),
            ("o'brien@example.ie", "o'brien@example.ie"),
            ("THEO@BÄCKEREI-SCHÖN.DE", "theo@xn--bckerei-schn-gcb6x.de"),
            ("fang@XN--SNDERGAARD-0CB.COM", "fang@xn--sndergaard-0cb.com"),
            ("ÄÄÄÄ@x.de", "ääää@x.de"),
            ("jürgen@Müller.de", "jürgen@xn--mller-kva.de"),
            ("user@example.xn--p1ai", "user@example.xn--p1ai"),
        ] {
            assert_eq!(normalize_email(raw).unwrap(), want, "{raw}");
        }
    }

    #[test]
    fn rejects_what_providers_reject() {
        for bad in [
            "jane@",
            "jane.example.com",
            "jane@@x.com",
            "@x.com",
            "a b@x.com",
            "a@localhost",
            "a@x.123",
            "a..b@x.com",
            ".a@x.com",
            "a.@x.com",
            "\"a b\"@x.com",
            "a(b)@x.com",
            "a@[127.0.0.1]",
            "a@-x.com",
            "a@x-.com",
            "a@x..com",
            "a@x.c",
            "a@x.c0m",
            "a@x_y.com",
            "n/a",
            "none",
        ] {
            let e = normalize_email(bad).unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.rule.as_str()),
                ("email", "invalid_email"),
                "{bad}"
            );
        }
        let long = format!("{}@x.com", "a".repeat(65));
        assert!(normalize_email(&long).is_err());
    }

    #[test]
    fn typos_by_policy() {
        for (raw, want) in [
            ("jo@gmial.com", "jo@gmail.com"),
            ("jo@gmail.con", "jo@gmail.com"),
            ("jo@gmial.con", "jo@gmail.com"),
            ("jo@hotmial.com", "jo@hotmail.com"),
            ("jo@yaho.com", "jo@yahoo.com"),
            ("jo@outlok.com", "jo@outlook.com"),
            ("jo@acme.cmo", "jo@acme.com"),
            ("jo@gmaik.com", "jo@gmail.com"),
            ("jo@gmaul.com", "jo@gmail.com"),
            ("jo@yahpo.com", "jo@yahoo.com"),
            ("jo@hotmaill.com", "jo@hotmail.com"),
            ("jo@outlookk.com", "jo@outlook.com"),
            ("jo@iclouf.com", "jo@icloud.com"),
            ("jo@hotmial.co.uk", "jo@hotmail.co.uk"),
            ("jo@comcats.net", "jo@comcast.net"),
            ("jo@gmaik.con", "jo@gmail.com"),
            ("jo@googlemial.com", "jo@googlemail.com"),
        ] {
            let fixed = normalize_email_with(raw, TypoPolicy::Fix).unwrap();
            assert_eq!(
                (fixed.address.as_str(), fixed.corrected),
                (want, true),
                "{raw}"
            );
            let suggested = normalize_email_with(raw, TypoPolicy::Suggest).unwrap();
            assert_eq!(suggested.address, raw, "{raw}");
            assert_eq!(suggested.suggestion.as_deref(), Some(want), "{raw}");
            let ignored = normalize_email_with(raw, TypoPolicy::Ignore).unwrap();
            assert_eq!((ignored.address.as_str(), ignored.suggestion), (raw, None));
        }
        // Real domains are never "corrected".
        for ok in [
            "jo@gmail.com",
            "jo@gmx.de",
            "jo@acme.co",
            "jo@mail.com",
            "jo@yahoo.co.uk",
            "jo@email.com",
            "jo@ymail.com",
            "jo@gmx.net",
            "jo@live.co.uk",
            "jo@acme.com",
            "jo@gamma.com",
            "jo@yahoo.de",
        ] {
            let i = normalize_email_with(ok, TypoPolicy::Fix).unwrap();
            assert_eq!(
                (i.address.as_str(), i.corrected, i.suggestion),
                (ok, false, None)
            );
        }
    }

    #[test]
    fn role_and_disposable() {
        let i = normalize_email_with("Info@Acme.com", TypoPolicy::Suggest).unwrap();
        assert!(i.role && !i.disposable);
        assert!(
            normalize_email_with("sales-uk@acme.com", TypoPolicy::Suggest)
                .unwrap()
                .role
        );
        assert!(
            !normalize_email_with("sally@acme.com", TypoPolicy::Suggest)
                .unwrap()
                .role
        );
        assert!(
            !normalize_email_with("information.desk.jo@acme.com", TypoPolicy::Suggest)
                .unwrap()
                .role
        );
        let d = normalize_email_with("x1@Mailinator.com", TypoPolicy::Suggest).unwrap();
        assert!(d.disposable && !d.role);
    }

    #[test]
    fn ascii_domains_convert_as_idna_converts_them() {
        for d in [
            "gmail.com",
            "GMail.COM",
            "a..com",
            ".com",
            "com.",
            "-x.com",
            "x-.com",
            "ab--cd.com",
            "xn--mller-kva.de",
            "XN--MLLER-KVA.DE",
            "xn--invalid-.com",
            "x.xn--p1ai",
            "1.2.3.4",
            "x_y.com",
            "a b.com",
            "müller.de",
            "123",
            "",
        ] {
            assert_eq!(
                domain_to_ascii(d).ok(),
                idna::domain_to_ascii(d).ok(),
                "{d:?}"
            );
        }
    }

    #[test]
    fn tables_are_sorted() {
        use super::super::tables::{DISPOSABLE_DOMAINS, FREE_MAIL_DOMAINS, ROLE_LOCAL_PARTS};
        for t in [FREE_MAIL_DOMAINS, DISPOSABLE_DOMAINS, ROLE_LOCAL_PARTS] {
            assert!(
                t.windows(2).all(|w| w[0] < w[1]),
                "{:?}",
                t.windows(2).find(|w| w[0] >= w[1])
            );
        }
    }
}
