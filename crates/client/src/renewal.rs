//! When to renew: at 2/3 of the lifetime minus a random jitter (up to 1/20 of the lifetime),
//! or at a random time inside the CA's ARI window (RFC 9773 §4.2); failures back off.

use std::time::Duration;

use time::OffsetDateTime;

use crate::certinfo::CertInfo;

/// A uniformly random number in [0, 1).
pub fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).expect("the system RNG works");
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// The default renewal time of a certificate given a random `r` in [0, 1).
pub fn default_renew_at(info: &CertInfo, r: f64) -> OffsetDateTime {
    let lifetime = info.lifetime();
    let jitter = lifetime * (r / 20.0);
    info.not_before + lifetime * (2.0 / 3.0) - jitter
}

/// A time inside an ARI window `[start, end)` given a random `r` in [0, 1).
pub fn ari_renew_at(start: OffsetDateTime, end: OffsetDateTime, r: f64) -> OffsetDateTime {
    if end <= start {
        return start;
    }
    start + (end - start) * r
}

/// Wait before retrying after `failures` consecutive failures: 1 min, doubling, at most 6 h.
pub fn retry_delay(failures: u32) -> Duration {
    let secs = 60u64.saturating_mul(1u64 << failures.saturating_sub(1).min(20));
    Duration::from_secs(secs.min(6 * 3600))
}

/// RFC 3339 text of a time, in whole seconds.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("formats")
}

/// Parses RFC 3339.
pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    crate::client::parse_rfc3339(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn info(days: i64) -> CertInfo {
        let nb = datetime!(2030-01-01 0:00 UTC);
        CertInfo {
            names: vec![],
            issuer: String::new(),
            not_before: nb,
            not_after: nb + time::Duration::days(days),
            serial_hex: String::new(),
            ari_id: None,
            der: vec![],
        }
    }

    #[test]
    fn two_thirds_with_bounded_jitter() {
        let i = info(90);
        assert_eq!(default_renew_at(&i, 0.0), datetime!(2030-03-02 0:00 UTC));
        let late = default_renew_at(&i, 0.999);
        assert!(late < datetime!(2030-03-02 0:00 UTC));
        assert!(late > datetime!(2030-02-25 0:00 UTC));
        let r = random_unit();
        assert!((0.0..1.0).contains(&r));
    }

    #[test]
    fn ari_window_and_backoff() {
        let s = datetime!(2030-01-10 0:00 UTC);
        let e = datetime!(2030-01-12 0:00 UTC);
        assert_eq!(ari_renew_at(s, e, 0.5), datetime!(2030-01-11 0:00 UTC));
        assert_eq!(ari_renew_at(e, s, 0.5), e);
        assert_eq!(retry_delay(1), Duration::from_secs(60));
        assert_eq!(retry_delay(3), Duration::from_secs(240));
        assert_eq!(retry_delay(40), Duration::from_secs(6 * 3600));
        assert_eq!(parse_rfc3339(&rfc3339(s)).unwrap(), s);
    }
}
