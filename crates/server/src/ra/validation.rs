//! The RA's side of validation: which identifiers the VA can validate (IP addresses per
//! `[validation]`), which challenges each identifier is offered, and the CAA re-check at
//! finalize for validations older than `validation.caa_recheck_after_hours`.

use std::net::IpAddr;

use certwright_proto::{Problem, ProblemType};
use futures_util::stream::{FuturesUnordered, StreamExt};

use certwright_proto::identifier::NormalizedIdentifier;
use certwright_proto::types::{ChallengeStatus, ChallengeType, IdentifierType};

use super::{Error, Ra};
use crate::store::{AccountRecord, OrderRecord};
use crate::va::Applicant;

/// Seconds a client is asked to wait before finalizing again after a re-check ran out
/// of time.
const RECHECK_RETRY_AFTER_SECS: u64 = 5;

/// The challenge types offered for an identifier: dns-01 only for a wildcard (RFC 8555
/// §7.1.3), http-01 and tls-alpn-01 for an IP address (RFC 8738 §7), all three otherwise.
pub(super) fn offered_challenges(identifier: &NormalizedIdentifier) -> Vec<ChallengeType> {
    ChallengeType::KNOWN
        .into_iter()
        .filter(|t| t.proves(identifier.identifier.kind, identifier.wildcard))
        .collect()
}

impl Ra {
    /// Why an IP identifier cannot be ordered (None for DNS names and acceptable addresses).
    pub(super) fn ip_refusal(
        &self,
        n: &NormalizedIdentifier,
        applicant: &Applicant,
    ) -> Option<String> {
        if n.identifier.kind != IdentifierType::Ip {
            return None;
        }
        let va = &self.inner.va;
        if !va.config().allow_ip_identifiers {
            return Some(
                "this CA does not issue for IP addresses (validation.allow_ip_identifiers = false)"
                    .into(),
            );
        }
        let ip: IpAddr = n.identifier.value.parse().ok()?;
        let unusable = ip.is_unspecified()
            || ip.is_multicast()
            || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
        if unusable {
            return Some(format!(
                "{ip} is not a unicast address; it cannot be validated or certified"
            ));
        }
        if let Some(denied) = va.refuses(ip, applicant) {
            return Some(denied.client_detail());
        }
        None
    }

    /// At finalize: CAA again for every name whose validation is older than the re-check
    /// age (RFC 8659 §3 asks for a check shortly before issuance). A refusal is the
    /// finalize request's answer; the order stays ready.
    ///
    /// The names are checked at once, within `RaPolicy::recheck_budget`: a check routed
    /// to a segment's agents may take the agent's job time-out and its retries, so one
    /// after another they could outlast the finalize request. A check that does not
    /// finish in time is a `dns` problem (503, Retry-After) naming the identifier.
    pub(super) async fn recheck_caa(
        &self,
        account: &AccountRecord,
        order: &OrderRecord,
    ) -> Result<(), Error> {
        let va = &self.inner.va;
        let max_age = va.config().caa_recheck_after.as_secs() as i64;
        let now = self.now();
        let applicant = Applicant {
            account_id: account.id.0,
            eab_label: account.eab_label.clone(),
            profile: order.profile.clone(),
        };
        let mut due = Vec::new();
        for id in &order.authorization_ids {
            let authz = self.inner.store.authorization(*id).await?;
            let Some(kind) = authz
                .challenges
                .iter()
                .find(|c| c.status == ChallengeStatus::Valid)
                .filter(|c| now - c.validated.unwrap_or(0) > max_age)
                .map(|c| c.kind.clone())
            else {
                continue;
            };
            due.push((authz, kind));
        }
        let applicant = &applicant;
        let mut checks: FuturesUnordered<_> = due
            .iter()
            .enumerate()
            .map(|(i, (authz, kind))| async move {
                let outcome = va
                    .check_caa(&authz.identifier, authz.wildcard, applicant, kind)
                    .await;
                (i, outcome)
            })
            .collect();
        let mut finished = vec![false; due.len()];
        let budget = self.inner.policy.recheck_budget;
        let deadline = tokio::time::Instant::now() + budget;
        loop {
            let next = match tokio::time::timeout_at(deadline, checks.next()).await {
                Ok(Some(next)) => next,
                Ok(None) => return Ok(()),
                Err(_) => {
                    let late = finished.iter().position(|f| !f).unwrap_or(0);
                    let identifier = due[late].0.identifier.clone();
                    tracing::warn!(order = %order.id, %identifier, "CAA re-check at finalize did not finish in time");
                    return Err(Error::Recheck {
                        identifier,
                        problem: Box::new(
                            Problem::new(
                                ProblemType::Dns,
                                format!(
                                    "the CAA re-check did not finish within {} s; the order is still ready: finalize it again",
                                    budget.as_secs()
                                ),
                            )
                            .with_status(503)
                            .with_retry_after(RECHECK_RETRY_AFTER_SECS),
                        ),
                    });
                }
            };
            let (i, outcome) = next;
            finished[i] = true;
            let authz = &due[i].0;
            tracing::info!(
                order = %order.id,
                identifier = %authz.identifier,
                record = %outcome.record,
                refused = outcome.error.is_some(),
                "CAA re-checked at finalize"
            );
            // The resolver's own error text: debug level only.
            tracing::debug!(order = %order.id, diagnostic = %outcome.diagnostic, "CAA re-check: what the VA saw");
            if let Some(problem) = outcome.error {
                return Err(Error::Recheck {
                    identifier: authz.identifier.clone(),
                    problem: Box::new(problem),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certwright_proto::identifier::normalize;
    use certwright_proto::types::Identifier;

    #[test]
    fn challenges_follow_the_identifier() {
        let offered = |id: Identifier| offered_challenges(&normalize(&id).unwrap());
        assert_eq!(
            offered(Identifier::dns("*.example.test")),
            vec![ChallengeType::Dns01]
        );
        assert_eq!(
            offered(Identifier::ip("2001:db8::1")),
            vec![ChallengeType::Http01, ChallengeType::TlsAlpn01]
        );
        assert_eq!(offered(Identifier::dns("www.example.test")).len(), 3);
    }
}
