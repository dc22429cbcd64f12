//! Address: trimmed parts, an ISO 3166-1 alpha-2 country code from names,
//! aliases and codes (the `celes` tables plus local aliases), and the
//! postcode's shape per country where known.

use std::collections::HashMap;
use std::sync::LazyLock;

use super::tables::COUNTRY_ALIASES;

/// [`COUNTRY_ALIASES`] by [`key`] (the first alias of a key wins).
static ALIASES_BY_KEY: LazyLock<HashMap<String, &'static str, foldhash::fast::RandomState>> =
    LazyLock::new(|| {
        let mut m = HashMap::default();
        for (alias, code) in COUNTRY_ALIASES {
            m.entry(key(alias)).or_insert(*code);
        }
        m
    });

/// Lowercase letters and digits only: "U.S.A." → "usa", "Great Britain" →
/// "greatbritain".
fn key(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The ISO 3166-1 alpha-2 code of a country written as a code (GB, GBR,
/// 826), an English name or a common alias (UK, Deutschland, Holland).
pub fn country_code(input: &str) -> Option<&'static str> {
    let k = key(input);
    if k.is_empty() {
        return None;
    }
    if let Some(code) = ALIASES_BY_KEY.get(&k) {
        return Some(code);
    }
    let found = match k.len() {
        2 => celes::Country::from_alpha2(&k),
        3 if k.chars().all(|c| c.is_ascii_digit()) => celes::Country::from_code(&k),
        3 => celes::Country::from_alpha3(&k),
        _ => Err("no code"),
    };
    found
        .or_else(|_| celes::Country::from_name(&k))
        .or_else(|_| celes::Country::from_alias(&k))
        .ok()
        .map(|c| c.alpha2)
}

/// A postcode in its country's written form ("sw1a1aa" → "SW1A 1AA" for
/// GB), or why it does not fit. Countries without a known shape get the
/// trimmed uppercase value.
pub fn postcode(input: &str, country: Option<&str>) -> Result<String, &'static str> {
    let upper = super::clean_text(input).to_uppercase();
    let compact: String = upper
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let digits = |n: usize| compact.len() == n && compact.chars().all(|c| c.is_ascii_digit());
    let Some(country) = country else {
        return Ok(upper);
    };
    let d = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    let a = |s: &str| s.chars().all(|c| c.is_ascii_alphabetic());
    let shaped = match country {
        "US" | "PR" => match compact.len() {
            // A leading zero lost in a spreadsheet: 2134 → 02134 (Boston).
            4 if digits(4) => Some(format!("0{compact}")),
            5 if digits(5) => Some(compact.clone()),
            9 if digits(9) => Some(format!("{}-{}", &compact[..5], &compact[5..])),
            _ => None,
        },
        "CA" => (compact.len() == 6
            && compact.chars().enumerate().all(|(i, c)| {
                if i % 2 == 0 {
                    c.is_ascii_alphabetic()
                } else {
                    c.is_ascii_digit()
                }
            }))
        .then(|| format!("{} {}", &compact[..3], &compact[3..])),
        "GB" | "IM" | "JE" | "GG" => {
            let ok = (5..=7).contains(&compact.len()) && {
                let (out, inward) = compact.split_at(compact.len() - 3);
                let ib = inward.as_bytes();
                ib[0].is_ascii_digit()
                    && ib[1].is_ascii_alphabetic()
                    && ib[2].is_ascii_alphabetic()
                    && out.as_bytes()[0].is_ascii_alphabetic()
                    && out.chars().any(|c| c.is_ascii_digit())
            };
            ok.then(|| {
                format!(
                    "{} {}",
                    &compact[..compact.len() - 3],
                    &compact[compact.len() - 3..]
                )
            })
        }
        "IE" => (compact.len() == 7).then(|| format!("{} {}", &compact[..3], &compact[3..])),
        "NL" => (compact.len() == 6 && d(&compact[..4]) && a(&compact[4..]))
            .then(|| format!("{} {}", &compact[..4], &compact[4..])),
        "DE" | "FR" | "IT" | "ES" | "FI" | "EE" | "HR" | "MX" | "MY" | "TH" | "TR" | "UA"
        | "MA" | "DZ" | "ID" | "KR" | "SA" => digits(5).then(|| compact.clone()),
        "AU" | "AT" | "BE" | "CH" | "DK" | "NO" | "NZ" | "HU" | "BG" | "CY" | "LU" | "SI"
        | "ZA" | "PH" | "GE" | "AM" => digits(4).then(|| compact.clone()),
        "SE" | "CZ" | "SK" | "GR" => {
            digits(5).then(|| format!("{} {}", &compact[..3], &compact[3..]))
        }
        "PL" => digits(5).then(|| format!("{}-{}", &compact[..2], &compact[2..])),
        "PT" => digits(7).then(|| format!("{}-{}", &compact[..4], &compact[4..])),
        "JP" => digits(7).then(|| format!("{}-{}", &compact[..3], &compact[3..])),
        "BR" => digits(8).then(|| format!("{}-{}", &compact[..5], &compact[5..])),
        "IN" | "SG" | "CN" | "RU" | "KZ" | "VN" | "RO" | "CO" => digits(6).then(|| compact.clone()),
        _ => return Ok(upper),
    };
    shaped.ok_or("does not have the shape of a postcode of this country")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countries() {
        for (raw, want) in [
            ("United States", "US"),
            ("united states of america", "US"),
            ("USA", "US"),
            ("U.S.A.", "US"),
            ("us", "US"),
            ("America", "US"),
            ("U.K.", "GB"),
            ("UK", "GB"),
            ("Great Britain", "GB"),
            ("England", "GB"),
            ("GBR", "GB"),
            ("826", "GB"),
            ("Deutschland", "DE"),
            ("Germany", "DE"),
            ("de", "DE"),
            ("The Netherlands", "NL"),
            ("Holland", "NL"),
            ("España", "ES"),
            ("Österreich", "AT"),
            ("Côte d'Ivoire", "CI"),
            ("Ivory Coast", "CI"),
            (" france ", "FR"),
        ] {
            assert_eq!(country_code(raw), Some(want), "{raw}");
        }
        for bad in ["Narnia", "XX", "", "-", "Earth"] {
            assert_eq!(country_code(bad), None, "{bad}");
        }
    }

    #[test]
    fn postcodes() {
        for (raw, country, want) in [
            ("sw1a1aa", "GB", "SW1A 1AA"),
            (" SW1A  1AA ", "GB", "SW1A 1AA"),
            ("m1 1ae", "GB", "M1 1AE"),
            ("2134", "US", "02134"),
            ("94105", "US", "94105"),
            ("941051234", "US", "94105-1234"),
            ("94105-1234", "US", "94105-1234"),
            ("k1a0b1", "CA", "K1A 0B1"),
            ("1012ab", "NL", "1012 AB"),
            ("10115", "DE", "10115"),
            ("11455", "SE", "114 55"),
            ("00950", "PL", "00-950"),
            ("d02x285", "IE", "D02 X285"),
            ("1000-001", "PT", "1000-001"),
        ] {
            assert_eq!(
                postcode(raw, Some(country)).unwrap(),
                want,
                "{raw} {country}"
            );
            assert_eq!(
                postcode(want, Some(country)).unwrap(),
                want,
                "idempotent {want}"
            );
        }
        for (raw, country) in [
            ("ABC", "US"),
            ("123456", "DE"),
            ("12345", "GB"),
            ("1234", "NL"),
        ] {
            assert!(postcode(raw, Some(country)).is_err(), "{raw} {country}");
        }
        assert_eq!(postcode(" 75001 ", None).unwrap(), "75001");
        assert_eq!(postcode("a-1234", Some("ZZ")).unwrap(), "A-1234");
    }
}
