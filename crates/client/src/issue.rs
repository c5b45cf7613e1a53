//! One issuance against one CA: order, answer every authorization with one solver, finalize
//! with a CSR, download the certificate and pick the preferred chain.

use certwright_proto::keyauth::key_authorization;
use certwright_proto::types::{AuthorizationStatus, OrderStatus};

use crate::certinfo::{
    choose_chain, identifier_for, split_pem_chain, verify_issued, CertInfo, CertKey,
};
use crate::client::Account;
use crate::error::{Error, Result};
use crate::solver::{ChallengeData, Solver};

/// Where the certificate's key comes from.
#[derive(Debug)]
pub enum KeySource {
    /// This key (new or reused); its PEM is returned with the certificate.
    Key(CertKey),
    /// The user's own CSR (DER); no key is returned.
    Csr(Vec<u8>),
}

/// What to issue.
#[derive(Debug)]
pub struct IssueRequest {
    /// DNS names or IP addresses.
    pub names: Vec<String>,
    /// Key or CSR.
    pub key: KeySource,
    /// Profile to request (draft-ietf-acme-profiles).
    pub profile: Option<String>,
    /// ARI ID of the certificate this one replaces (RFC 9773).
    pub replaces: Option<String>,
    /// Preferred chain by issuer common name.
    pub preferred_chain: Option<String>,
}

/// An issued certificate.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The chosen chain, leaf first.
    pub fullchain: String,
    /// The private key PEM (absent for a user CSR).
    pub key_pem: Option<String>,
    /// Parsed leaf.
    pub info: CertInfo,
    /// How many chains the CA offered.
    pub chains_offered: usize,
}

impl Issued {
    /// The leaf PEM.
    pub fn cert_pem(&self) -> String {
        split_pem_chain(&self.fullchain)
            .into_iter()
            .next()
            .unwrap_or_default()
    }

    /// The intermediates PEM (everything after the leaf).
    pub fn chain_pem(&self) -> String {
        split_pem_chain(&self.fullchain)
            .into_iter()
            .skip(1)
            .collect()
    }
}

/// Runs the whole flow. Everything presented is cleaned up, also on failure.
pub async fn issue(account: &Account, req: &IssueRequest, solver: &dyn Solver) -> Result<Issued> {
    let identifiers = req.names.iter().map(|n| identifier_for(n)).collect();
    let mut handle = match account
        .new_order(identifiers, req.profile.clone(), req.replaces.clone())
        .await
    {
        Err(e) if req.replaces.is_some() && e.problem().is_some() => {
            // A CA may refuse `replaces` (already replaced, unknown); order afresh.
            tracing::warn!(error = %e, "the CA refused the replacement order; ordering without `replaces`");
            let identifiers = req.names.iter().map(|n| identifier_for(n)).collect();
            account
                .new_order(identifiers, req.profile.clone(), None)
                .await?
        }
        other => other?,
    };
    tracing::info!(order = %handle.url, "order created");

    if handle.order.status == OrderStatus::Pending {
        let thumbprint_key = account.key().jwk();
        let mut pending = Vec::new();
        for url in &handle.order.authorizations {
            let authz = account.authorization(url).await?;
            if authz.status == AuthorizationStatus::Valid {
                continue;
            }
            let challenge = authz
                .challenges
                .iter()
                .find(|c| c.kind == solver.challenge_type())
                .ok_or_else(|| Error::NoSuitableChallenge {
                    kind: solver.challenge_type().to_string(),
                    identifier: authz.identifier.value.clone(),
                })?;
            let token = challenge.token.clone().ok_or_else(|| Error::Protocol {
                url: challenge.url.clone(),
                detail: "challenge without a token".into(),
            })?;
            pending.push((
                url.clone(),
                challenge.url.clone(),
                ChallengeData {
                    identifier: authz.identifier.value.clone(),
                    key_authorization: key_authorization(&token, &thumbprint_key),
                    token,
                },
            ));
        }
        let result = answer_all(account, solver, &pending).await;
        for (_, _, data) in &pending {
            if let Err(e) = solver.cleanup(data).await {
                tracing::warn!(error = %e, identifier = %data.identifier, "cleanup failed");
            }
        }
        result?;
        account
            .poll_order(&mut handle, &[OrderStatus::Ready, OrderStatus::Valid])
            .await?;
    }

    let (csr, key_pem) = match &req.key {
        KeySource::Key(key) => (key.csr(&req.names)?, Some(key.pem.clone())),
        KeySource::Csr(der) => (der.clone(), None),
    };
    if handle.order.status == OrderStatus::Ready {
        account.finalize(&mut handle, &csr).await?;
    } else {
        account
            .poll_order(&mut handle, &[OrderStatus::Valid])
            .await?;
    }
    let cert_url = handle
        .order
        .certificate
        .clone()
        .ok_or_else(|| Error::Protocol {
            url: handle.url.clone(),
            detail: "valid order without a certificate URL".into(),
        })?;
    let chains = account.download_certificate(&cert_url).await?;
    let all: Vec<&str> = chains.all().map(String::as_str).collect();
    let fullchain = choose_chain(&all, req.preferred_chain.as_deref()).to_owned();
    // The real time, not a test-shifted clock: the CA dated the certificate by it.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // Nothing on disk changes unless the certificate fits the key, names and chain.
    let info = verify_issued(&fullchain, &csr, &req.names, now)?;
    Ok(Issued {
        fullchain,
        key_pem,
        info,
        chains_offered: all.len(),
    })
}

async fn answer_all(
    account: &Account,
    solver: &dyn Solver,
    pending: &[(String, String, ChallengeData)],
) -> Result<()> {
    for (_, _, data) in pending {
        solver.present(data).await?;
    }
    let all: Vec<ChallengeData> = pending.iter().map(|p| p.2.clone()).collect();
    solver.wait_ready(&all).await?;
    for (_, challenge_url, _) in pending {
        account.respond_to_challenge(challenge_url).await?;
    }
    for (authz_url, _, _) in pending {
        account.poll_authorization(authz_url).await?;
    }
    Ok(())
}
