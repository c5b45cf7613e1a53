//! Orders, authorizations, challenges, finalization and certificate download (§7.4, §7.5).

use certwright_proto::types::{
    Authorization, AuthorizationStatus, Challenge, Finalize, Identifier, NewOrder, Order,
    OrderStatus,
};

use super::poll::Backoff;
use super::Account;
use crate::error::{Error, Result};

/// An order and its URL.
#[derive(Debug, Clone)]
pub struct OrderHandle {
    /// The order URL (from `Location`).
    pub url: String,
    /// The last fetched order object.
    pub order: Order,
}

/// A downloaded certificate: the default chain and the alternates the CA offered.
#[derive(Debug, Clone)]
pub struct CertificateChains {
    /// The default chain (PEM, leaf first).
    pub default: String,
    /// Alternate chains (`Link: rel="alternate"`), PEM, leaf first.
    pub alternates: Vec<String>,
}

impl CertificateChains {
    /// All chains, default first.
    pub fn all(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.default).chain(self.alternates.iter())
    }
}

impl Account {
    /// Creates an order (§7.4) for `identifiers`, with an optional profile and the ARI
    /// certificate ID it replaces.
    pub async fn new_order(
        &self,
        identifiers: Vec<Identifier>,
        profile: Option<String>,
        replaces: Option<String>,
    ) -> Result<OrderHandle> {
        let url = self.client().directory().new_order.clone();
        let payload = NewOrder {
            identifiers,
            profile,
            replaces,
            ..Default::default()
        };
        let resp = self.post_json(&url, &payload).await?;
        let order_url = resp.location().ok_or_else(|| Error::Protocol {
            url: url.clone(),
            detail: "newOrder answered without a Location header".into(),
        })?;
        Ok(OrderHandle {
            url: order_url,
            order: resp.json()?,
        })
    }

    /// Fetches an order.
    pub async fn order(&self, url: &str) -> Result<OrderHandle> {
        let resp = self.post(url, None).await?;
        Ok(OrderHandle {
            url: url.to_owned(),
            order: resp.json()?,
        })
    }

    /// Fetches an authorization.
    pub async fn authorization(&self, url: &str) -> Result<Authorization> {
        self.post(url, None).await?.json()
    }

    /// Tells the CA the challenge is ready to be validated (§7.5.1).
    pub async fn respond_to_challenge(&self, url: &str) -> Result<Challenge> {
        self.post(url, Some(b"{}")).await?.json()
    }

    /// Deactivates an authorization (§7.5.2).
    pub async fn deactivate_authorization(&self, url: &str) -> Result<Authorization> {
        self.post_json(url, &serde_json::json!({"status": "deactivated"}))
            .await?
            .json()
    }

    /// Polls an authorization until it leaves `pending`; `invalid` and the other final
    /// states become [`Error::Authorization`] with the failing challenge's problem.
    pub async fn poll_authorization(&self, url: &str) -> Result<Authorization> {
        let mut backoff = Backoff::new(self.client().poll_policy());
        loop {
            let resp = self.post(url, None).await?;
            let authz: Authorization = resp.json()?;
            match authz.status {
                AuthorizationStatus::Valid => return Ok(authz),
                AuthorizationStatus::Pending => {}
                other => {
                    let problem = authz
                        .challenges
                        .iter()
                        .find_map(|c| c.error.clone())
                        .map(Box::new);
                    return Err(Error::Authorization {
                        identifier: authz.identifier.value.clone(),
                        status: other.to_string(),
                        problem,
                    });
                }
            }
            let Some(wait) = backoff.next_wait(resp.retry_after()) else {
                return Err(Error::Timeout {
                    what: format!("authorization {url}"),
                    seconds: backoff.timeout_secs(),
                });
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Polls an order until its status is one of `done` (or `invalid`, an error).
    pub async fn poll_order(&self, handle: &mut OrderHandle, done: &[OrderStatus]) -> Result<()> {
        let mut backoff = Backoff::new(self.client().poll_policy());
        let mut retry_after = None;
        loop {
            if done.contains(&handle.order.status) {
                return Ok(());
            }
            if handle.order.status == OrderStatus::Invalid {
                return Err(Error::OrderInvalid {
                    url: handle.url.clone(),
                    problem: handle.order.error.clone().map(Box::new),
                });
            }
            let Some(wait) = backoff.next_wait(retry_after) else {
                return Err(Error::Timeout {
                    what: format!("order {} to become {done:?}", handle.url),
                    seconds: backoff.timeout_secs(),
                });
            };
            tokio::time::sleep(wait).await;
            let resp = self.post(&handle.url, None).await?;
            handle.order = resp.json()?;
            retry_after = resp.retry_after();
        }
    }

    /// Sends the CSR (DER) to the order's finalize URL and waits for `valid`.
    pub async fn finalize(&self, handle: &mut OrderHandle, csr_der: &[u8]) -> Result<()> {
        let payload = Finalize {
            csr: certwright_proto::b64::encode(csr_der),
        };
        let resp = self.post_json(&handle.order.finalize, &payload).await?;
        handle.order = resp.json()?;
        self.poll_order(handle, &[OrderStatus::Valid]).await
    }

    /// Downloads the certificate chain at `url` and every alternate chain it links to.
    pub async fn download_certificate(&self, url: &str) -> Result<CertificateChains> {
        let resp = self.post(url, None).await?;
        let alternates_urls = resp.links("alternate");
        let default = pem_text(&resp.url, resp.body)?;
        let mut alternates = Vec::new();
        for alt in alternates_urls.iter().take(8) {
            let resp = self.post(alt, None).await?;
            alternates.push(pem_text(alt, resp.body)?);
        }
        Ok(CertificateChains {
            default,
            alternates,
        })
    }
}

fn pem_text(url: &str, body: Vec<u8>) -> Result<String> {
    let text = String::from_utf8(body).map_err(|_| Error::Protocol {
        url: url.to_owned(),
        detail: "certificate chain is not PEM text".into(),
    })?;
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(Error::Protocol {
            url: url.to_owned(),
            detail: "certificate chain holds no PEM certificate".into(),
        });
    }
    Ok(text)
}
