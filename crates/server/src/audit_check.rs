//! The periodic verification of the audit chain (`[audit] verify_interval_secs`): walks
//! the whole chain as `certwright-ca audit verify` does, records the verdict in the store
//! (the console's dashboard shows it to every instance), sets the `certwright_audit_*`
//! metrics, and on a broken chain enqueues one `audit.verification_failed` webhook event
//! per break (`Store::record_audit_check`).
//!
//! It runs in its own task, off the request path. The walk only reads, a page at a time,
//! through the store's read pool: it never holds the SQLite writer; the one write (the
//! verdict) is a single short transaction.

use std::time::Duration;

use crate::clock::Clock;
use crate::store::audit::AuditVerdict;
use crate::store::Store;

/// Verifies the chain now and records the verdict at the time the walk finished; the
/// verdict, and whether an `audit.verification_failed` event was enqueued.
pub async fn verify_and_record(
    store: &Store,
    clock: &Clock,
) -> crate::store::Result<(AuditVerdict, bool)> {
    let verdict = store.verify_audit().await?;
    let now = clock.now();
    let reported = store.record_audit_check(&verdict, now).await?;
    crate::metrics::audit_verification(matches!(verdict, AuditVerdict::Intact { .. }), now);
    match &verdict {
        AuditVerdict::Intact { entries, .. } => {
            tracing::debug!(entries, "audit chain verified: intact")
        }
        AuditVerdict::Broken { seq, reason } => {
            tracing::error!(seq, %reason, "the audit chain is broken (certwright-ca audit verify)")
        }
    }
    Ok((verdict, reported))
}

/// One tick: verifies, unless another instance sharing the database did within the last
/// half interval (then its verdict sets this instance's metrics).
async fn tick(store: &Store, clock: &Clock, interval: Duration) -> crate::store::Result<()> {
    let half = i64::try_from(interval.as_secs() / 2).unwrap_or(i64::MAX);
    if let Some(last) = store.last_audit_check().await? {
        if half > 0 && last.checked_at > clock.now().saturating_sub(half) {
            crate::metrics::audit_verification(last.intact, last.checked_at);
            return Ok(());
        }
    }
    verify_and_record(store, clock).await.map(|_| ())
}

/// Verifies now and every `interval`, for as long as the process runs (each run waits for
/// the one before to finish).
pub fn spawn(store: Store, clock: Clock, interval: Duration) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(e) = tick(&store, &clock, interval).await {
                tracing::warn!(error = %e, "verifying the audit chain failed");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_recent_verdict_of_another_instance_is_not_redone() {
        let store = crate::store::console::tests::test_store().await;
        let clock = Clock::system();
        let then = clock.now() - 100;
        // Another instance found the chain broken 100 s ago.
        let broken = AuditVerdict::Broken {
            seq: 7,
            reason: "altered".into(),
        };
        store.record_audit_check(&broken, then).await.unwrap();
        tick(&store, &clock, Duration::from_secs(3600))
            .await
            .unwrap();
        let last = store.last_audit_check().await.unwrap().unwrap();
        assert_eq!((last.checked_at, last.intact), (then, false));
        // Past half the interval, this instance verifies (the empty chain is intact).
        tick(&store, &clock, Duration::from_secs(60)).await.unwrap();
        let last = store.last_audit_check().await.unwrap().unwrap();
        assert!(last.intact && last.checked_at >= then + 100);
    }
}
