//! Helpers for building outcomes and reading retry hints.

use crate::types::{DeliveryOutcome, Outcome, Rejection, RetryInfo};

/// One outcome for one delivery.
pub fn outcome(delivery_id: &str, outcome: Outcome) -> DeliveryOutcome {
    DeliveryOutcome {
        delivery_id: delivery_id.to_string(),
        outcome,
    }
}

pub fn rejected(field: Option<&str>, rule: &str, message: impl Into<String>) -> Outcome {
    Outcome::Rejected(Rejection {
        field: field.map(str::to_string),
        rule: rule.to_string(),
        message: message.into(),
    })
}

pub fn retry(after_ms: Option<u64>, reason: impl Into<String>) -> Outcome {
    Outcome::Retry(RetryInfo {
        after_ms,
        reason: reason.into(),
    })
}

/// Parses a `Retry-After` header given in whole or fractional seconds.
pub fn parse_retry_after_secs(value: &str) -> Option<u64> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| (secs * 1000.0).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after_secs("2"), Some(2000));
        assert_eq!(parse_retry_after_secs(" 0.5 "), Some(500));
        assert_eq!(parse_retry_after_secs("-1"), None);
        assert_eq!(
            parse_retry_after_secs("Wed, 21 Oct 2015 07:28:00 GMT"),
            None
        );
    }
}
