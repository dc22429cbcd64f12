//! Comparing two records: for each [`Comparison`] (one per field), the
//! level of agreement between the two values, from "the same" down to
//! "different"; level 0 is "null" (either side has no value), which is no
//! evidence either way. The model ([`super::model`]) gives each level its
//! match weight; training ([`super::train`]) counts levels over pairs.
//!
//! Comparisons are kept apart so that one piece of evidence counts once
//! (the model multiplies them as if independent): the email comparison
//! looks at the mailbox, the company comparison at the employer, whether
//! named or the domain of a website or work email.
//!
//! The levels are fixed here, by name, so that a model file names them and
//! an explanation shows them: `first_name: nickname`, `dob: one_edit`.

use strsim::{levenshtein, normalized_levenshtein};

use super::features::{Features, Field};
use super::fuzzy::{FREE_MAIL, jaro_winkler, jaro_winkler_bound, nickname};
use crate::pipeline::normalize::within_edits;

/// What a pair is compared on: one comparison per field, then one per
/// configured custom attribute ([`Comparison::Custom`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Comparison {
    Email,
    Phone,
    FirstName,
    LastName,
    Company,
    Dob,
    City,
    Postcode,
    Street,
    /// The configured custom attribute of this index.
    Custom(u8),
}

/// Levels of every comparison, after the null level 0: level `i + 1` is
/// `levels()[i]`.
const EMAIL: &[&str] = &[
    "exact",
    "same_local_part",
    "similar_local_part",
    "numbered_same_domain",
    "else",
];
const PHONE: &[&str] = &["exact", "one_digit_off", "else"];
const FIRST: &[&str] = &[
    "exact",
    "nickname",
    "jaro_winkler_0.92",
    "transposed",
    "initial",
    "jaro_winkler_0.80",
    "else",
];
const LAST: &[&str] = &["exact", "jaro_winkler_0.92", "jaro_winkler_0.80", "else"];
const COMPANY: &[&str] = &["exact", "similar", "other_domain", "else"];
const DOB: &[&str] = &[
    "exact",
    "one_edit",
    "within_a_month",
    "within_a_year",
    "within_ten_years",
    "else",
];
const CITY: &[&str] = &["exact", "similar", "else"];
const EXACT_ELSE: &[&str] = &["exact", "else"];
const STREET: &[&str] = &["exact", "similar", "else"];

/// The fixed comparisons, in order (custom attributes follow).
pub const FIXED: [Comparison; 9] = [
    Comparison::Email,
    Comparison::Phone,
    Comparison::FirstName,
    Comparison::LastName,
    Comparison::Company,
    Comparison::Dob,
    Comparison::City,
    Comparison::Postcode,
    Comparison::Street,
];

/// The level "exact" of every comparison.
pub const EXACT: u8 = 1;

impl Comparison {
    /// Its name in model files and explanations (`custom` for every
    /// custom attribute: the model file keys those by attribute name).
    pub fn name(self) -> &'static str {
        match self {
            Comparison::Email => "email",
            Comparison::Phone => "phone",
            Comparison::FirstName => "first_name",
            Comparison::LastName => "last_name",
            Comparison::Company => "company",
            Comparison::Dob => "dob",
            Comparison::City => "city",
            Comparison::Postcode => "postcode",
            Comparison::Street => "street",
            Comparison::Custom(_) => "custom",
        }
    }

    /// The levels after null, most alike first.
    pub const fn levels(self) -> &'static [&'static str] {
        match self {
            Comparison::Email => EMAIL,
            Comparison::Phone => PHONE,
            Comparison::FirstName => FIRST,
            Comparison::LastName => LAST,
            Comparison::Company => COMPANY,
            Comparison::Dob => DOB,
            Comparison::City => CITY,
            Comparison::Postcode | Comparison::Custom(_) => EXACT_ELSE,
            Comparison::Street => STREET,
        }
    }

    /// The field whose value's frequency adjusts the weight of an exact
    /// agreement (a shared common value counts less than a rare one).
    pub fn tf_field(self) -> Option<Field> {
        match self {
            Comparison::FirstName => Some(Field::First),
            Comparison::LastName => Some(Field::Last),
            Comparison::Company => Some(Field::Company),
            Comparison::City => Some(Field::City),
            _ => None,
        }
    }

    /// Whether it compares the person's names (the B2B and nickname rules
    /// look at everything else).
    pub fn is_name(self) -> bool {
        matches!(self, Comparison::FirstName | Comparison::LastName)
    }
}

/// The level named `name` of `levels()` (1-based), if any.
pub const fn level_named(c: Comparison, name: &str) -> Option<u8> {
    // A loop, not `position`: this runs when compiling too (`lvl!`).
    let (levels, name) = (c.levels(), name.as_bytes());
    let mut i = 0;
    while i < levels.len() {
        let level = levels[i].as_bytes();
        let mut j = 0;
        while j < level.len() && j < name.len() && level[j] == name[j] {
            j += 1;
        }
        if j == level.len() && j == name.len() {
            return Some(i as u8 + 1);
        }
        i += 1;
    }
    None
}

/// The level of comparison `c` named `name`, found when compiling: a
/// name that is not one of `c`'s levels does not build.
macro_rules! lvl {
    ($c:expr, $name:literal) => {
        const {
            match level_named($c, $name) {
                Some(level) => level,
                None => panic!("not a level of the comparison"),
            }
        }
    };
}

/// Whether `a` and `b` hold the same digits in the same order (no
/// allocation: this runs for every candidate pair).
pub(super) fn same_digits(a: &str, b: &str) -> bool {
    a.bytes()
        .filter(u8::is_ascii_digit)
        .eq(b.bytes().filter(u8::is_ascii_digit))
}

pub(super) fn has_digit(s: &str) -> bool {
    s.bytes().any(|c| c.is_ascii_digit())
}

fn domain(email: &str) -> &str {
    email.rsplit_once('@').map_or("", |(_, d)| d)
}

/// Whether an email domain is a company's (not a free-mail provider's).
fn is_work_domain(domain: &str) -> bool {
    !domain.is_empty() && !FREE_MAIL.contains(&domain)
}

/// A company's domain of a work email; None for a free-mail address.
fn work_domain(email: &str) -> Option<&str> {
    let d = domain(email);
    is_work_domain(d).then_some(d)
}

/// Whether two companies' keys (or domains) are one mistyped: an edit
/// or a transposition apart, two in a long name, and the same digits
/// ("Firm 214" and "Firm 2192" are two firms, and so are "Graphic Design
/// Media" and "Graphic Design Foods", however alike).
pub(super) fn similar_companies(a: &str, b: &str) -> bool {
    let allowed = if a.len().min(b.len()) >= 10 { 2 } else { 1 };
    a.len().abs_diff(b.len()) <= allowed && same_digits(a, b) && within_edits(a, b, allowed)
}

/// Whether two email domains, both work domains, are two companies' (not
/// one a typo of the other).
fn different_work_domains(da: &str, db: &str) -> bool {
    da != db && !similar_companies(da, db)
}

/// B2B evidence: two work emails at different company domains, and two
/// company names that are neither the same nor alike. Two people at two
/// employers, whatever their names; such a pair never merges (one person
/// who changed jobs still matches on a shared phone or personal email,
/// which the exact tier decides first).
pub fn different_employers(a: &Features, b: &Features) -> bool {
    if [a, b]
        .iter()
        .any(|f| f.lacks(Field::Email) || f.lacks(Field::Company))
    {
        return false;
    }
    let (Some(da), Some(db)) = (
        work_domain(a.get(Field::Email)),
        work_domain(b.get(Field::Email)),
    ) else {
        return false;
    };
    da != db
        && !a.same(b, Field::Company)
        && !similar_companies(a.get(Field::Company), b.get(Field::Company))
}

/// Jaro-Winkler of two name tokens, 0 when they carry different digits
/// (real names carry none; "Person12" and "Person13" are two records).
fn name_jw(a: &str, b: &str) -> f64 {
    if digits_differ(a, b) {
        return 0.0;
    }
    jaro_winkler(a, b)
}

/// Whether two name tokens carry different digits.
fn digits_differ(a: &str, b: &str) -> bool {
    (has_digit(a) || has_digit(b)) && !same_digits(a, b)
}

/// Two name tokens being compared, with what has been worked out about
/// them: a pair's names are looked at from several sides (straight,
/// crossed, the levels), each string similarity is computed once, and
/// only where its cheap upper bound leaves the answer open.
struct Tokens<'a> {
    a: &'a str,
    b: &'a str,
    jw: Option<f64>,
    jw_bound: Option<f64>,
    nickname: Option<bool>,
}

impl<'a> Tokens<'a> {
    fn new(a: &'a str, b: &'a str) -> Self {
        Tokens {
            a,
            b,
            jw: None,
            jw_bound: None,
            nickname: None,
        }
    }

    /// [`name_jw`] of the pair.
    fn jw(&mut self) -> f64 {
        let (a, b) = (self.a, self.b);
        *self.jw.get_or_insert_with(|| name_jw(a, b))
    }

    /// An upper bound of [`Tokens::jw`] (it, once computed).
    fn jw_bound(&mut self) -> f64 {
        if let Some(jw) = self.jw {
            return jw;
        }
        let (a, b) = (self.a, self.b);
        *self.jw_bound.get_or_insert_with(|| {
            if digits_differ(a, b) {
                0.0
            } else {
                jaro_winkler_bound(a, b)
            }
        })
    }

    /// Whether [`Tokens::jw`] is at least `t`.
    fn jw_at_least(&mut self, t: f64) -> bool {
        self.jw_bound() >= t && self.jw() >= t
    }

    /// Whether both tokens are one name (a nickname and its name, or two
    /// nicknames of one). Nicknames are short: two long names skip the
    /// table.
    fn same_nickname(&mut self) -> bool {
        let (a, b) = (self.a, self.b);
        *self.nickname.get_or_insert_with(|| {
            !(a.len() > 6 && b.len() > 6) && nickname(a).unwrap_or(a) == nickname(b).unwrap_or(b)
        })
    }

    /// How alike the two tokens are, for choosing the names' order.
    fn sim(&mut self) -> f64 {
        self.similarity(Self::jw)
    }

    /// An upper bound of [`Tokens::sim`].
    fn sim_bound(&mut self) -> f64 {
        self.similarity(Self::jw_bound)
    }

    /// Whether [`Tokens::sim`] is at least `t`.
    fn sim_at_least(&mut self, t: f64) -> bool {
        self.sim_bound() >= t && self.sim() >= t
    }

    fn similarity(&mut self, jw: fn(&mut Self) -> f64) -> f64 {
        if self.a.is_empty() || self.b.is_empty() {
            return 0.0;
        }
        if self.a == self.b {
            return 1.0;
        }
        let direct = jw(self);
        if self.same_nickname() {
            direct.max(0.9)
        } else {
            direct
        }
    }
}

/// Whether a (folded, lowercase) first name is initials: one letter, or
/// two without a vowel ("j", "jr", "tj"; not "ed", "al", "jo").
fn initials(name: &str) -> bool {
    match name.len() {
        1 => true,
        2 => !name.bytes().any(|c| b"aeiouy".contains(&c)),
        _ => false,
    }
}

fn first_level(t: &mut Tokens) -> u8 {
    const C: Comparison = Comparison::FirstName;
    let (a, b) = (t.a, t.b);
    if a.is_empty() || b.is_empty() {
        return 0;
    }
    if a == b {
        return EXACT;
    }
    if t.same_nickname() {
        return lvl!(C, "nickname");
    }
    if t.jw_at_least(0.92) {
        lvl!(C, "jaro_winkler_0.92")
    } else if (initials(a) || initials(b)) && a.as_bytes()[0] == b.as_bytes()[0] {
        lvl!(C, "initial")
    } else if t.jw_at_least(0.80) {
        lvl!(C, "jaro_winkler_0.80")
    } else {
        lvl!(C, "else")
    }
}

fn last_level(t: &mut Tokens) -> u8 {
    const C: Comparison = Comparison::LastName;
    if t.a.is_empty() || t.b.is_empty() {
        return 0;
    }
    if t.a == t.b {
        return EXACT;
    }
    if t.jw_at_least(0.92) {
        lvl!(C, "jaro_winkler_0.92")
    } else if t.jw_at_least(0.80) {
        lvl!(C, "jaro_winkler_0.80")
    } else {
        lvl!(C, "else")
    }
}

/// First and last name levels. When both records have both names and
/// they match better crossed over ("Smith Anna" / "Anna Smith"), the first
/// name's level is `transposed` and the last names are compared crossed.
fn name_levels(a: &Features, b: &Features) -> (u8, u8) {
    let (af, al) = (a.get(Field::First), a.get(Field::Last));
    let (bf, bl) = (b.get(Field::First), b.get(Field::Last));
    let (mut first, mut last) = (Tokens::new(af, bf), Tokens::new(al, bl));
    if !af.is_empty() && !al.is_empty() && !bf.is_empty() && !bl.is_empty() {
        // Most candidates share both names (they were blocked by them):
        // they skip the crossed comparisons, and so do those whose first
        // name is not like the other's last.
        let straight_alike =
            first.sim_bound() + last.sim_bound() >= 1.98 && first.sim() + last.sim() >= 1.98;
        let mut first_last = Tokens::new(af, bl);
        if !straight_alike && first_last.sim_at_least(0.80) {
            let straight = first.sim() + last.sim();
            let mut last_first = Tokens::new(al, bf);
            if first_last.sim() + last_first.sim() > straight + 0.02 {
                return (
                    lvl!(Comparison::FirstName, "transposed"),
                    last_level(&mut last_first),
                );
            }
        }
    }
    (first_level(&mut first), last_level(&mut last))
}

fn email_level(a: &Features, b: &Features) -> u8 {
    const C: Comparison = Comparison::Email;
    if a.lacks(Field::Email) || b.lacks(Field::Email) {
        return 0;
    }
    if a.same(b, Field::Email) {
        return EXACT;
    }
    let (la, lb) = (a.get(Field::EmailLocal), b.get(Field::EmailLocal));
    let (da, db) = (domain(a.get(Field::Email)), domain(b.get(Field::Email)));
    let (work_a, work_b) = (is_work_domain(da), is_work_domain(db));
    let same_work = work_a && da == db;
    let non_digits = |s| str::bytes(s).filter(|c: &u8| !c.is_ascii_digit());
    if same_work
        && has_digit(la)
        && has_digit(lb)
        && !same_digits(la, lb)
        && non_digits(la).eq(non_digits(lb))
    {
        // Numbered accounts at one domain (sales1@, sales2@): two
        // different people or test records.
        return lvl!(C, "numbered_same_domain");
    }
    let local = if la.len() >= 3 && a.same(b, Field::EmailLocal) {
        lvl!(C, "same_local_part")
    } else if la.len() >= 3 && lb.len() >= 3 && same_digits(la, lb) && jaro_winkler(la, lb) >= 0.92
    {
        lvl!(C, "similar_local_part")
    } else {
        // A different mailbox at the same company is no more evidence
        // than the company itself, which the company comparison counts
        // (from the work email's domain too): one piece of evidence,
        // counted once.
        lvl!(C, "else")
    };
    // The same mailbox name at two companies is two namesakes' (the
    // names count it already); at a mistyped domain or a personal
    // provider, it is the person's handle.
    if local != lvl!(C, "else") && work_a && work_b && different_work_domains(da, db) {
        return lvl!(C, "else");
    }
    local
}

fn phone_level(a: &Features, b: &Features) -> u8 {
    const C: Comparison = Comparison::Phone;
    if a.lacks(Field::Phone) || b.lacks(Field::Phone) {
        return 0;
    }
    if a.same(b, Field::Phone) {
        return EXACT;
    }
    let (pa, pb) = (a.get(Field::Phone), b.get(Field::Phone));
    if pa.len() == pb.len() && pa.bytes().zip(pb.bytes()).filter(|(x, y)| x != y).count() == 1 {
        lvl!(C, "one_digit_off")
    } else {
        lvl!(C, "else")
    }
}

/// Company: its key, else its domain (website or work email). Two
/// domains alone that differ are their own level: a mistyped or personal
/// domain says less than two different company names.
fn company_level(a: &Features, b: &Features) -> u8 {
    const C: Comparison = Comparison::Company;
    let has_domains = !a.lacks(Field::Domain) && !b.lacks(Field::Domain);
    let same_domain = has_domains && a.same(b, Field::Domain);
    let similar_domain = || similar_companies(a.get(Field::Domain), b.get(Field::Domain));
    if !a.lacks(Field::Company) && !b.lacks(Field::Company) {
        if same_domain || a.same(b, Field::Company) {
            EXACT
        } else if similar_companies(a.get(Field::Company), b.get(Field::Company)) {
            lvl!(C, "similar")
        } else {
            lvl!(C, "else")
        }
    } else if has_domains {
        if same_domain {
            EXACT
        } else if similar_domain() {
            lvl!(C, "similar")
        } else {
            lvl!(C, "other_domain")
        }
    } else {
        0
    }
}

/// Days since 1970-01-01 of an ISO date (`YYYY-MM-DD…`), if it is one.
fn iso_days(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// Date of birth: a typo is one edit away; otherwise how far apart the
/// two dates are (a day and month swapped, a year mistyped).
fn dob_level(a: &Features, b: &Features) -> u8 {
    const C: Comparison = Comparison::Dob;
    if a.lacks(Field::Dob) || b.lacks(Field::Dob) {
        return 0;
    }
    if a.same(b, Field::Dob) {
        return EXACT;
    }
    let (da, db) = (a.get(Field::Dob), b.get(Field::Dob));
    if levenshtein(da, db) == 1 {
        return lvl!(C, "one_edit");
    }
    match (iso_days(da), iso_days(db)) {
        (Some(x), Some(y)) => match (x - y).abs() {
            0..=31 => lvl!(C, "within_a_month"),
            32..=366 => lvl!(C, "within_a_year"),
            367..=3653 => lvl!(C, "within_ten_years"),
            _ => lvl!(C, "else"),
        },
        _ => lvl!(C, "else"),
    }
}

/// City: the same, alike (a typo), or another.
fn city_level(a: &Features, b: &Features) -> u8 {
    const C: Comparison = Comparison::City;
    if a.lacks(Field::City) || b.lacks(Field::City) {
        0
    } else if a.same(b, Field::City) {
        EXACT
    } else if jaro_winkler(a.get(Field::City), b.get(Field::City)) >= 0.88 {
        lvl!(C, "similar")
    } else {
        lvl!(C, "else")
    }
}

fn exact_else(a: &Features, b: &Features, field: Field) -> u8 {
    if a.lacks(field) || b.lacks(field) {
        0
    } else if a.same(b, field) {
        EXACT
    } else {
        2
    }
}

/// Street: alike (normalized Levenshtein ≥ 0.85) with the same house
/// numbers.
fn street_level(a: &Features, b: &Features) -> u8 {
    const C: Comparison = Comparison::Street;
    if a.lacks(Field::Street) || b.lacks(Field::Street) {
        return 0;
    }
    if a.same(b, Field::Street) {
        return EXACT;
    }
    let (sa, sb) = (a.get(Field::Street), b.get(Field::Street));
    if same_digits(sa, sb) && normalized_levenshtein(sa, sb) >= 0.85 {
        lvl!(C, "similar")
    } else {
        lvl!(C, "else")
    }
}

/// The level of every comparison of a pair: the [`FIXED`] ones, then one
/// per custom attribute, into `out` (cleared first).
pub fn compare(a: &Features, b: &Features, out: &mut Vec<u8>) {
    out.clear();
    let (first, last) = name_levels(a, b);
    out.extend_from_slice(&[
        email_level(a, b),
        phone_level(a, b),
        first,
        last,
        company_level(a, b),
        dob_level(a, b),
        city_level(a, b),
        exact_else(a, b, Field::Postcode),
        street_level(a, b),
    ]);
    for (x, y) in a.custom().zip(b.custom()) {
        out.push(if x.is_empty() || y.is_empty() {
            0
        } else if x == y {
            EXACT
        } else {
            2
        });
    }
}

/// The comparison at position `i` of [`compare`]'s output.
pub fn comparison_at(i: usize) -> Comparison {
    FIXED
        .get(i)
        .copied()
        .unwrap_or_else(|| Comparison::Custom((i - FIXED.len()) as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(first: &str, last: &str, email: &str) -> Features {
        let local = email.split('@').next().unwrap_or("");
        Features::new(
            [first, last, email, local, "", "", "", "", "", "", ""],
            &[] as &[&str],
            0,
        )
    }

    fn named(levels: &[u8]) -> Vec<String> {
        levels
            .iter()
            .enumerate()
            .filter(|(_, l)| **l != 0)
            .map(|(i, &l)| {
                let c = comparison_at(i);
                format!("{}:{}", c.name(), c.levels()[l as usize - 1])
            })
            .collect()
    }

    #[test]
    fn levels_name_the_kind_of_agreement() {
        let mut out = Vec::new();
        let cases = [
            (
                f("robert", "johnson", "rj@acme.com"),
                f("bob", "jonson", "rj@acme.com"),
                vec![
                    "email:exact",
                    "first_name:nickname",
                    "last_name:jaro_winkler_0.92",
                ],
            ),
            (
                f("anna", "smith", ""),
                f("smith", "anna", ""),
                vec!["first_name:transposed", "last_name:exact"],
            ),
            (
                f("j", "smith", "sales1@acme.com"),
                f("john", "smith", "sales2@acme.com"),
                vec![
                    "email:numbered_same_domain",
                    "first_name:initial",
                    "last_name:exact",
                ],
            ),
            (
                f("isaac", "jones", "isaac.jones54@bradford.net"),
                f("isaac", "jnoes", "isaac.jones54@bradfrd.net"),
                vec![
                    "email:same_local_part",
                    "first_name:exact",
                    "last_name:jaro_winkler_0.92",
                ],
            ),
            (
                f("jr", "smith", ""),
                f("john", "smith", ""),
                vec!["first_name:initial", "last_name:exact"],
            ),
            (
                f("al", "smith", ""),
                f("anna", "smith", ""),
                vec!["first_name:else", "last_name:exact"],
            ),
            (
                f("person12", "reload", ""),
                f("person13", "reload", ""),
                vec!["first_name:else", "last_name:exact"],
            ),
        ];
        for (a, b, want) in cases {
            compare(&a, &b, &mut out);
            assert_eq!(named(&out), want);
        }
    }

    #[test]
    fn dates_count_days_between_them() {
        assert_eq!(iso_days("1970-01-01"), Some(0));
        assert_eq!(
            iso_days("2000-03-01")
                .zip(iso_days("2000-02-28"))
                .map(|(a, b)| a - b),
            Some(2)
        );
        assert_eq!(iso_days("1984-13-01"), None);
        assert_eq!(iso_days("12/03/1984"), None);
        let dob = |d: &str| {
            Features::new(
                ["", "", "", "", "", "", "", d, "", "", ""],
                &[] as &[&str],
                0,
            )
        };
        let level = |x: &str, y: &str| {
            let l = dob_level(&dob(x), &dob(y));
            Comparison::Dob.levels()[l as usize - 1]
        };
        assert_eq!(level("1984-11-20", "1984-11-21"), "one_edit");
        assert_eq!(level("1984-11-20", "1984-12-02"), "within_a_month");
        assert_eq!(level("2009-03-15", "2010-02-12"), "within_a_year");
        assert_eq!(level("1984-11-20", "1990-01-01"), "within_ten_years");
        assert_eq!(level("1984-11-20", "2020-01-01"), "else");
        assert_eq!(level("20 Nov 1984", "1 Jan 2020"), "else");
    }

    #[test]
    fn level_names_are_unique_and_found() {
        for c in FIXED {
            for (i, l) in c.levels().iter().enumerate() {
                assert_eq!(level_named(c, l), Some(i as u8 + 1), "{c:?} {l}");
            }
            assert_eq!(c.levels()[EXACT as usize - 1], "exact");
            assert_eq!(*c.levels().last().unwrap(), "else");
        }
        for other in ["exac", "exactly", "Exact", ""] {
            assert_eq!(level_named(Comparison::Email, other), None);
        }
    }
}
