//! The benches' lead: one of 256 names (16 first × 16 last), its own
//! company (a scrambled six-letter tag), email, website and phone, one
//! street and city. Namesakes by design: every lead's dedupe blocks are
//! full, the matcher's worst case. The ingest bench posts these; the
//! dedupe bench decides them (`#[path]`-included by both).

use std::fmt::Write as _;

/// Area codes the phone numbers cycle through, 8,000,000 numbers each.
pub const AREAS: [u32; 4] = [415, 628, 650, 510];
pub const PER_AREA: u64 = 800 * 10_000;

const FIRST: [&str; 16] = [
    "ada", "grace", "linus", "barbara", "ken", "margaret", "dennis", "frances", "edsger", "radia",
    "donald", "hedy", "alan", "karen", "niklaus", "sophie",
];
const LAST: [&str; 16] = [
    "lovelace",
    "hopper",
    "torvalds",
    "liskov",
    "thompson",
    "hamilton",
    "ritchie",
    "allen",
    "dijkstra",
    "perlman",
    "knuth",
    "lamarr",
    "turing",
    "sparck-jones",
    "wirth",
    "wilson",
];

pub fn phone_of(n: u64) -> String {
    let area = AREAS[(n / PER_AREA) as usize % AREAS.len()];
    let n = n % PER_AREA;
    // Exchanges 200-999: NXX with N in 2..9, valid for US numbers.
    let exchange = 200 + n / 10_000;
    let line = n % 10_000;
    format!("+1 {area} {exchange:03} {line:04}")
}

/// One lead of about 450 bytes, unique by `n`.
pub fn write_lead(out: &mut String, n: u64) {
    assert!(n < PER_AREA * AREAS.len() as u64, "phone numbers exhausted");
    let first = FIRST[(n % 16) as usize];
    let last = LAST[((n / 16) % 16) as usize];
    // A distinct company per lead: 256 names at one company would be the
    // same persons under the name + company dedupe rule.
    let mut tag = String::with_capacity(6);
    // Scrambled (bijective modulo 26^6) so that neighbours look unrelated.
    let mut k = n.wrapping_mul(2_654_435_761) % 308_915_776;
    for _ in 0..6 {
        tag.push((b'a' + (k % 26) as u8) as char);
        k /= 26;
    }
    let _ = write!(
        out,
        r#"{{"priority":"{priority}","first_name":"{first}","last_name":"{last}","email":"{first}.{last}.{n}@northwind-{tag}.example.com","phone":"{phone}","company":"{tag}{tag} Freight LLC","title":"Director of Operations","website":"https://www.northwind-{tag}.example.com/","street":"{street} Market Street, Suite 500","city":"san francisco","region":"CA","postcode":"94103","country":"US","external_ref":"bench/{n:09}","utm_campaign":"spring-trade-show"}}"#,
        phone = phone_of(n),
        street = 100 + n % 9_000,
        // 10% P0, 30% P1, 60% P2.
        priority = match n % 10 {
            0 => "P0",
            1..=3 => "P1",
            _ => "P2",
        },
    );
}
