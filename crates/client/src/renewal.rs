//! When to renew, as pure functions of a certificate's validity.
//!
//! - The **safety floor**: a certificate is never scheduled later than the moment one
//!   third of its lifetime is left (half, for certificates under 10 days), whatever a CA
//!   suggests ([`latest_renewal`]).
//! - Without ARI: at that moment minus a random jitter of up to 1/20 of the lifetime
//!   ([`default_renew_at`]).
//! - With ARI (RFC 9773 §4.2): a random time inside the CA's suggested window, cut at the
//!   floor ([`ari_renew_at`]); the time is drawn once per window and kept.
//! - Failures back off from 1 minute, doubling, up to 6 hours or 1/100 of the lifetime,
//!   whichever is shorter ([`retry_delay`]); the agent looks again at least that often
//!   ([`wake_interval`]).

use std::time::Duration;

use time::OffsetDateTime;

use crate::certinfo::CertInfo;

/// Certificates with a shorter lifetime are renewed at half their lifetime.
pub const SHORT_LIVED: time::Duration = time::Duration::days(10);

/// The longest wait between two looks (ARI windows may move) or two retries.
pub const MAX_INTERVAL: Duration = Duration::from_secs(6 * 3600);

/// The shortest wait between two retries.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);

/// A uniformly random number in [0, 1).
pub fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).expect("the system RNG works");
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// The fraction of the lifetime after which a certificate is renewed at the latest: 2/3,
/// or 1/2 for a certificate that lives less than [`SHORT_LIVED`].
pub fn renewal_fraction(lifetime: time::Duration) -> f64 {
    if lifetime < SHORT_LIVED {
        0.5
    } else {
        2.0 / 3.0
    }
}

/// The safety floor: the latest renewal time of a certificate valid from `not_before` to
/// `not_after` (one third of the lifetime left; half for short-lived ones).
pub fn latest_renewal(not_before: OffsetDateTime, not_after: OffsetDateTime) -> OffsetDateTime {
    let lifetime = not_after - not_before;
    not_before + lifetime * renewal_fraction(lifetime)
}

/// The default renewal time of a certificate given a random `r` in [0, 1): the safety
/// floor minus up to 1/20 of the lifetime.
pub fn default_renew_at(info: &CertInfo, r: f64) -> OffsetDateTime {
    let lifetime = info.lifetime();
    latest_renewal(info.not_before, info.not_after) - lifetime * (r / 20.0)
}

/// A time inside an ARI window `[start, end)` given a random `r` in [0, 1), never after
/// `floor`: the window is cut at the floor; a window wholly after it gives the floor.
pub fn ari_renew_at(
    start: OffsetDateTime,
    end: OffsetDateTime,
    floor: OffsetDateTime,
    r: f64,
) -> OffsetDateTime {
    let end = end.min(floor);
    if end <= start {
        return start.min(floor);
    }
    start + (end - start) * r
}

/// The longest sensible wait for a certificate of this lifetime: 1/100 of it, between
/// [`MIN_INTERVAL`] and [`MAX_INTERVAL`] (a 6-day certificate: 86 minutes).
pub fn wake_interval(lifetime: Option<time::Duration>) -> Duration {
    let Some(lifetime) = lifetime else {
        return MAX_INTERVAL;
    };
    let hundredth = Duration::try_from(lifetime / 100).unwrap_or(MIN_INTERVAL);
    hundredth.clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// Wait before retrying after `failures` consecutive failures: 1 min, doubling, at most
/// [`wake_interval`] of the certificate's lifetime (6 h when unknown).
pub fn retry_delay(failures: u32, lifetime: Option<time::Duration>) -> Duration {
    let secs = 60u64.saturating_mul(1u64 << failures.saturating_sub(1).min(20));
    Duration::from_secs(secs).min(wake_interval(lifetime))
}

/// `now + d`, for a std duration.
pub fn after(now: OffsetDateTime, d: Duration) -> OffsetDateTime {
    now + time::Duration::try_from(d).unwrap_or(time::Duration::ZERO)
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
    fn short_lived_certificates_renew_at_half_their_lifetime() {
        let i = info(6);
        assert_eq!(
            latest_renewal(i.not_before, i.not_after),
            datetime!(2030-01-04 0:00 UTC)
        );
        assert_eq!(default_renew_at(&i, 0.0), datetime!(2030-01-04 0:00 UTC));
        assert!(default_renew_at(&i, 0.999) > datetime!(2030-01-03 16:00 UTC));
        // 10 days and more: two thirds.
        let i = info(30);
        assert_eq!(
            latest_renewal(i.not_before, i.not_after),
            datetime!(2030-01-21 0:00 UTC)
        );
    }

    #[test]
    fn ari_window_is_cut_at_the_safety_floor() {
        let s = datetime!(2030-01-10 0:00 UTC);
        let e = datetime!(2030-01-12 0:00 UTC);
        let far = datetime!(2031-01-01 0:00 UTC);
        assert_eq!(ari_renew_at(s, e, far, 0.5), datetime!(2030-01-11 0:00 UTC));
        assert_eq!(
            ari_renew_at(e, s, far, 0.5),
            e,
            "an empty window: its start"
        );
        // A window running up to expiry (a 90-day certificate, window [day 50, day 90)):
        // every draw lands in [day 50, day 60], never after the floor.
        let i = info(90);
        let floor = latest_renewal(i.not_before, i.not_after);
        for r in [0.0, 0.3, 0.7, 0.999] {
            let at = ari_renew_at(
                i.not_before + time::Duration::days(50),
                i.not_after,
                floor,
                r,
            );
            assert!(at <= floor, "{at} after {floor}");
            assert!(at >= i.not_before + time::Duration::days(50));
        }
        // A window wholly after the floor: the floor.
        let late = ari_renew_at(
            i.not_after - time::Duration::days(2),
            i.not_after,
            floor,
            0.5,
        );
        assert_eq!(late, floor);
        assert_eq!(parse_rfc3339(&rfc3339(s)).unwrap(), s);
    }

    #[test]
    fn backoff_and_wake_up_scale_with_the_lifetime() {
        let days = |d| Some(time::Duration::days(d));
        assert_eq!(retry_delay(1, days(90)), Duration::from_secs(60));
        assert_eq!(retry_delay(3, days(90)), Duration::from_secs(240));
        assert_eq!(retry_delay(40, days(90)), MAX_INTERVAL);
        assert_eq!(retry_delay(40, None), MAX_INTERVAL);
        // A 6-day certificate: never more than 1/100 of 6 days (86.4 min) between tries.
        assert_eq!(retry_delay(40, days(6)), Duration::from_secs(5184));
        assert_eq!(wake_interval(days(6)), Duration::from_secs(5184));
        assert_eq!(wake_interval(days(90)), MAX_INTERVAL);
        assert_eq!(
            wake_interval(Some(time::Duration::minutes(10))),
            MIN_INTERVAL
        );
    }
}
