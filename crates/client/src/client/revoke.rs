//! Revocation (§7.6) by the account key or by the certificate's own key, and ARI
//! renewal information (RFC 9773).

use std::sync::Arc;
use std::time::Duration;

use certwright_proto::ari::RenewalInfo;
use certwright_proto::jws::Signer;
use certwright_proto::types::Revocation;
use certwright_proto::AccountKey;

use super::{Account, AcmeClient};
use crate::error::{Error, Result};

fn revoke_url(client: &AcmeClient) -> String {
    client.directory().revoke_cert.clone()
}

fn payload(cert_der: &[u8], reason: Option<u8>) -> Revocation {
    Revocation {
        certificate: certwright_proto::b64::encode(cert_der),
        reason,
    }
}

impl Account {
    /// Revokes a certificate this account may revoke, with an optional CRL reason code.
    pub async fn revoke(&self, cert_der: &[u8], reason: Option<u8>) -> Result<()> {
        let url = revoke_url(self.client());
        self.post_json(&url, &payload(cert_der, reason)).await?;
        Ok(())
    }
}

impl AcmeClient {
    /// Revokes a certificate by signing with its own private key (`jwk` in the header).
    pub async fn revoke_with_certificate_key(
        self: &Arc<Self>,
        cert_key: &AccountKey,
        cert_der: &[u8],
        reason: Option<u8>,
    ) -> Result<()> {
        let url = revoke_url(self);
        self.post_json(
            cert_key,
            &Signer::Jwk(cert_key.jwk()),
            &url,
            &payload(cert_der, reason),
        )
        .await?;
        Ok(())
    }

    /// The CA's renewal window for a certificate (RFC 9773), when it offers ARI; the
    /// second value is the `Retry-After` the CA asked for before asking again.
    pub async fn renewal_info(
        &self,
        ari_cert_id: &str,
    ) -> Result<Option<(RenewalInfo, Option<Duration>)>> {
        let Some(base) = self.directory().renewal_info.clone() else {
            return Ok(None);
        };
        let url = format!("{}/{ari_cert_id}", base.trim_end_matches('/'));
        let resp = self.get(&url).await?;
        let info: RenewalInfo = resp.json()?;
        if parse_rfc3339(&info.suggested_window.start).is_none()
            || parse_rfc3339(&info.suggested_window.end).is_none()
        {
            return Err(Error::Protocol {
                url,
                detail: "renewalInfo window is not RFC 3339".into(),
            });
        }
        Ok(Some((info, resp.retry_after())))
    }
}

/// Parses an RFC 3339 timestamp.
pub fn parse_rfc3339(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}
