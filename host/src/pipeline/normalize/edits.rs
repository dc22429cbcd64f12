//! Whether two strings are a slip apart: at most a few edits (insert,
//! delete, substitute) or swaps of adjacent letters, strsim's optimal
//! string alignment distance. Email normalization asks it of a domain and
//! each provider's, dedupe of every candidate pair's company names and
//! domains, so the common case (unalike strings) is told without filling
//! a table.

/// Whether `a` and `b` are at most `allowed` edits or adjacent swaps apart.
pub fn within_edits(a: &str, b: &str, allowed: usize) -> bool {
    // The common prefix and suffix change no distance ("Acme Freight" and
    // "Acne Freight" compare as "m" and "n").
    let (a, b) = without_common_affix(a, b);
    if a.is_empty() || b.is_empty() {
        return a.chars().count().max(b.chars().count()) <= allowed;
    }
    // An edit changes each side's multiset of letters by at most one, a
    // swap not at all: more letters apart than `allowed`, too far.
    if a.is_ascii() && b.is_ascii() && bag_distance(a.as_bytes(), b.as_bytes()) > allowed {
        return false;
    }
    strsim::osa_distance(a, b) <= allowed
}

/// `a` and `b` without their longest common prefix and suffix of whole
/// characters (compared as bytes: equal bytes up to a character boundary
/// of both are equal characters).
fn without_common_affix<'a>(a: &'a str, b: &'a str) -> (&'a str, &'a str) {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let mut prefix = x.iter().zip(y).take_while(|(p, q)| p == q).count();
    while !(a.is_char_boundary(prefix) && b.is_char_boundary(prefix)) {
        prefix -= 1;
    }
    let (a, b) = (&a[prefix..], &b[prefix..]);
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let mut suffix = x
        .iter()
        .rev()
        .zip(y.iter().rev())
        .take_while(|(p, q)| p == q)
        .count();
    while !(a.is_char_boundary(a.len() - suffix) && b.is_char_boundary(b.len() - suffix)) {
        suffix -= 1;
    }
    (&a[..a.len() - suffix], &b[..b.len() - suffix])
}

/// The larger of the letters `a` has that `b` lacks and the reverse
/// (ASCII), a lower bound of the edit distance.
fn bag_distance(a: &[u8], b: &[u8]) -> usize {
    let mut counts = [0u32; 128];
    for &c in a {
        counts[usize::from(c)] += 1;
    }
    let shared = b
        .iter()
        .filter(|&&c| {
            let n = &mut counts[usize::from(c)];
            let had = *n > 0;
            *n -= u32::from(had);
            had
        })
        .count();
    (a.len() - shared).max(b.len() - shared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn slips_are_within_and_other_words_are_not() {
        assert!(within_edits("gmail", "gmial", 1)); // a swap
        assert!(within_edits("acme freight", "acne freight", 1));
        assert!(within_edits("hotmail", "hotmaill", 1));
        assert!(within_edits("müller", "muller", 1));
        assert!(within_edits("same", "same", 0));
        assert!(!within_edits("abcd freight", "wxyz freight", 2));
        assert!(!within_edits(
            "graphic design media",
            "graphic design foods",
            2
        ));
        assert!(within_edits("", "ab", 2));
        assert!(!within_edits("", "abc", 2));
    }

    proptest! {
        /// The same answer as the distance itself, for any strings.
        #[test]
        fn agrees_with_the_distance(a in "[a-dü ]{0,12}|[a-z]{0,16}", b in "[a-dü ]{0,12}|[a-z]{0,16}", allowed in 0usize..4) {
            prop_assert_eq!(within_edits(&a, &b, allowed), strsim::osa_distance(&a, &b) <= allowed);
        }
    }
}
