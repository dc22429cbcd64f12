//! Company: a trimmed display form, a matching key without legal suffixes
//! and punctuation, and the company's domain from its website or a
//! non-free email domain.

use super::tables::{LEGAL_SUFFIXES_BY_LAST_WORD, is_free_mail_domain};

/// The display form of a company name: whitespace cleaned, stray
/// surrounding punctuation removed, case kept as written.
pub fn company_display(s: &str) -> String {
    let s = super::clean_text(s);
    s.trim_matches(|c: char| matches!(c, ',' | ';' | ':' | '-' | '_' | '*' | '"' | '\'' | '|'))
        .trim()
        .to_string()
}

/// The matching key of a company name: lowercase, punctuation removed,
/// `&` read as `and`, legal suffixes (Inc, LLC, Ltd, GmbH, S.A., …) and a
/// leading "the" dropped. "The ACME, Inc." and "Acme" share the key "acme".
/// A name that is nothing but a suffix keeps it ("GmbH" → "gmbh").
pub fn company_key(name: &str) -> String {
    // Fold to lowercase words of letters and digits; dots inside a word are
    // dropped ("S.A." → "sa"), any other punctuation separates words.
    let lower = name.to_lowercase();
    let mut words: Vec<String> = Vec::new();
    let mut cur = String::new();
    for c in lower.chars() {
        if c.is_alphanumeric() {
            cur.push(c);
        } else if c == '.' || c == '\'' || c == '’' {
            // "S.A." → "sa", "O'Reilly" → "oreilly"
        } else {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            if c == '&' || c == '+' {
                words.push("and".to_string());
            }
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    // Strip legal suffixes from the end, repeatedly ("Foo GmbH & Co. KG").
    // (The first suffix of the table that ends the name; a suffix is only
    // stripped from a longer name, so a name of nothing but a suffix keeps
    // it and no step below empties the list.)
    loop {
        let before = words.len();
        let candidates = words
            .last()
            .and_then(|w| LEGAL_SUFFIXES_BY_LAST_WORD.get(w.as_str()));
        for suffix in candidates.into_iter().flatten() {
            let n = suffix.len();
            if words.len() > n
                && words[words.len() - n..]
                    .iter()
                    .map(String::as_str)
                    .eq(suffix.iter().copied())
            {
                words.truncate(words.len() - n);
                break;
            }
        }
        while words.len() > 1 && words.last().is_some_and(|w| w == "and") {
            words.pop();
        }
        if words.len() == before {
            break;
        }
    }
    if words.len() > 1 && words[0] == "the" {
        words.remove(0);
    }
    words.join(" ")
}

/// The registrable-ish host of a website: scheme, `www.`, path, port,
/// query and userinfo removed, lowercased, IDN to punycode.
pub fn website_domain(website: &str) -> Option<String> {
    let mut s = website.trim();
    if let Some(i) = s.find("://") {
        s = &s[i + 3..];
    }
    let end = s.find(['/', '?', '#']).unwrap_or(s.len());
    s = &s[..end];
    if let Some((_, host)) = s.rsplit_once('@') {
        s = host;
    }
    if let Some((host, port)) = s.rsplit_once(':')
        && port.chars().all(|c| c.is_ascii_digit())
    {
        s = host;
    }
    let s = s.trim_end_matches('.');
    let ascii = super::email::domain_to_ascii(s).ok()?;
    let ascii = ascii.strip_prefix("www.").unwrap_or(&ascii).to_string();
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2
        || labels
            .iter()
            .any(|l| l.is_empty() || !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        || labels
            .last()
            .is_some_and(|t| t.len() < 2 || t.chars().all(|c| c.is_ascii_digit()))
    {
        return None;
    }
    Some(ascii)
}

/// Whether an email domain belongs to a free mail provider.
pub fn is_free_mail(domain: &str) -> bool {
    is_free_mail_domain(domain)
}

/// The company domain: the website's host, else a non-free, non-disposable
/// email domain.
pub fn company_domain(website: Option<&str>, email: Option<&str>) -> Option<String> {
    if let Some(d) = website.and_then(website_domain) {
        return Some(d);
    }
    let domain = email?.rsplit_once('@')?.1;
    if is_free_mail(domain) || super::email::is_disposable(domain) {
        return None;
    }
    Some(domain.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_drop_legal_suffixes_and_punctuation() {
        for (raw, key) in [
            ("Acme, Inc.", "acme"),
            ("ACME INC", "acme"),
            ("The Acme Company LLC", "acme"),
            ("Acme Corp.", "acme"),
            ("Müller GmbH & Co. KG", "müller"),
            ("Société Générale S.A.", "société générale"),
            ("Smith & Sons Ltd", "smith and sons"),
            ("Smith and Sons Limited", "smith and sons"),
            ("  Initech   Pty. Ltd. ", "initech"),
            ("O'Reilly Media, Inc.", "oreilly media"),
            ("Globex B.V.", "globex"),
            ("Inc", "inc"),
            ("GmbH", "gmbh"),
            (
                "Tata Consultancy Services Pvt. Ltd.",
                "tata consultancy services",
            ),
            ("AT&T Inc.", "at and t"),
        ] {
            assert_eq!(company_key(raw), key, "{raw}");
        }
    }

    #[test]
    fn display_is_trimmed() {
        assert_eq!(company_display("  Acme,\tInc. "), "Acme, Inc.");
        assert_eq!(company_display("- Acme -"), "Acme");
    }

    #[test]
    fn domains() {
        assert_eq!(
            website_domain("https://www.Acme.com/about?x=1").as_deref(),
            Some("acme.com")
        );
        assert_eq!(website_domain("acme.co.uk").as_deref(), Some("acme.co.uk"));
        assert_eq!(
            website_domain("http://müller.de:8080").as_deref(),
            Some("xn--mller-kva.de")
        );
        assert_eq!(website_domain("not a site"), None);
        assert_eq!(company_domain(None, Some("jo@gmail.com")), None);
        assert_eq!(
            company_domain(None, Some("jo@acme.com")).as_deref(),
            Some("acme.com")
        );
        assert_eq!(
            company_domain(Some("www.initech.io"), Some("jo@acme.com")).as_deref(),
            Some("initech.io")
        );
    }
}
