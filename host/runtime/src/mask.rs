//! Personal data masked out of log lines: what a plugin logs (a CRM's
//! error often quotes the email or phone it refused) reaches the host's
//! log only masked. Emails keep their first character and their domain
//! (`j***@example.com`: enough to tell which CRM account or sender is at
//! fault); phone numbers (seven digits or more, with the separators people
//! write) keep their last two digits (`+** *** *** **18`).

/// `text` with every email address and phone number in it masked.
pub fn mask_pii(text: &str) -> String {
    mask_phones(&mask_emails(text))
}

fn is_local(c: char) -> bool {
    c.is_alphanumeric() || "._%+-'!#$&*/=?^`{|}~".contains(c)
}

fn is_domain(c: char) -> bool {
    c.is_alphanumeric() || c == '.' || c == '-'
}

fn mask_emails(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '@' {
            // The local part already copied: take it back.
            let mut start = out.chars().count();
            let copied: Vec<char> = out.chars().collect();
            while start > 0 && is_local(copied[start - 1]) {
                start -= 1;
            }
            let mut end = i + 1;
            while end < chars.len() && is_domain(chars[end]) {
                end += 1;
            }
            let domain: String = chars[i + 1..end].iter().collect();
            let domain = domain.trim_end_matches(['.', '-']);
            if start < copied.len() && domain.contains('.') {
                let mut kept: String = copied[..start].iter().collect();
                kept.push(copied[start]);
                kept.push_str("***@");
                kept.push_str(domain);
                out = kept;
                i += 1 + domain.chars().count();
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

fn mask_phones(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let starts = chars[i].is_ascii_digit()
            || (chars[i] == '+' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
            || (chars[i] == '(' && chars.get(i + 1).is_some_and(char::is_ascii_digit));
        // Not inside a word or a longer token (ids such as `00Q5e0000`).
        let after_word = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if starts && !after_word {
            let mut end = i;
            let mut digits = 0;
            while end < chars.len()
                && (chars[end].is_ascii_digit() || " -.()/+\u{a0}".contains(chars[end]))
            {
                if chars[end].is_ascii_digit() {
                    digits += 1;
                }
                end += 1;
            }
            // Separators at the end belong to the text around it.
            while end > i && !chars[end - 1].is_ascii_digit() {
                end -= 1;
            }
            let before_word = chars.get(end).is_some_and(|c| c.is_alphanumeric());
            let phone = (7..=15).contains(&digits) && !before_word;
            // The run is one token either way: a longer one (a UUID's
            // tail, a 19-digit id) is not re-read from its middle.
            let mut seen = 0;
            for &c in &chars[i..end.max(i + 1)] {
                if phone && c.is_ascii_digit() {
                    seen += 1;
                    out.push(if seen > digits - 2 { c } else { '*' });
                } else {
                    out.push(c);
                }
            }
            i = end.max(i + 1);
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_keep_their_first_character_and_domain() {
        assert_eq!(
            mask_pii("Email address jane.doe+leads@example.co.uk is invalid."),
            "Email address j***@example.co.uk is invalid."
        );
        assert_eq!(
            mask_pii("contact 12 holds <A@x.io>, not b@y.org"),
            "contact 12 holds <A***@x.io>, not b***@y.org"
        );
        // Not an address: an @ with no dotted domain, a lone @.
        assert_eq!(mask_pii("user@localhost @ noon"), "user@localhost @ noon");
    }

    #[test]
    fn phones_keep_their_last_two_digits() {
        assert_eq!(
            mask_pii("phones[0].value +44 (0)20 7946 0018 is invalid"),
            "phones[0].value +** (*)** **** **18 is invalid"
        );
        assert_eq!(mask_pii("call 415-555-0132."), "call ***-***-**32.");
    }

    #[test]
    fn ids_counts_and_times_stay() {
        for text in [
            "Lead 00Q5e000001ABCDEA2 does not hold what was sent",
            "rate limited for 10000 ms",
            "HTTP 503 at 2026-12-05T01:02:03Z",
            "row 6f3e1c2a-0000-4000-8000-000000000001",
            "Zoho record 5725767000000524157",
        ] {
            assert_eq!(mask_pii(text), text);
        }
        // A lone run of 7 to 15 digits may be a phone: a numeric CRM id of
        // that length is masked too (the price of never logging a phone).
        assert_eq!(
            mask_pii("contact 51000000001 updated"),
            "contact *********01 updated"
        );
    }
}
