//! dns-01 through RFC 2136 dynamic updates signed with TSIG (RFC 8945), sent over TCP to
//! the zone's primary server.

use certwright_proto::types::ChallengeType;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use hickory_proto::dnssec::rdata::tsig::TsigAlgorithm;
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::op::{update_message, Message, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, RecordSet, RecordType};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::propagation::Propagation;
use super::{BoxFuture, ChallengeData, Solver};
use crate::error::{Error, Result};

/// The RFC 2136 solver's configuration file (TOML).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rfc2136Config {
    /// The primary server that accepts updates, `ip:port`.
    pub server: SocketAddr,
    /// The zone to update (e.g. `example.org.`); by default the server is asked for the
    /// SOA of the record's parents.
    #[serde(default)]
    pub zone: Option<String>,
    /// TSIG key name.
    pub tsig_key_name: String,
    /// TSIG algorithm: `hmac-sha256` (default), `hmac-sha384` or `hmac-sha512`.
    #[serde(default = "default_alg")]
    pub tsig_algorithm: String,
    /// TSIG secret, base64 (as in BIND's key files).
    pub tsig_secret: String,
    /// TTL of the TXT record (default 60).
    #[serde(default = "default_ttl")]
    pub ttl: u32,
}

fn default_alg() -> String {
    "hmac-sha256".into()
}

fn default_ttl() -> u32 {
    60
}

/// How long one update exchange may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(15);

/// The RFC 2136 dns-01 solver.
#[derive(Clone)]
pub struct Rfc2136 {
    config: Rfc2136Config,
    signer: TSigner,
    propagation: Propagation,
}

impl std::fmt::Debug for Rfc2136 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the TSIG secret.
        write!(
            f,
            "Rfc2136 {{ server: {}, key: {:?} }}",
            self.config.server, self.config.tsig_key_name
        )
    }
}

fn fail(detail: impl Into<String>) -> Error {
    Error::Solver {
        solver: "rfc2136",
        detail: detail.into(),
    }
}

impl Rfc2136 {
    /// A solver for `config`; the propagation check asks the update server unless told
    /// otherwise.
    pub fn new(config: Rfc2136Config, mut propagation: Propagation) -> Result<Self> {
        let algorithm = match config.tsig_algorithm.to_ascii_lowercase().as_str() {
            "hmac-sha256" => TsigAlgorithm::HmacSha256,
            "hmac-sha384" => TsigAlgorithm::HmacSha384,
            "hmac-sha512" => TsigAlgorithm::HmacSha512,
            other => return Err(Error::Config(format!("unsupported TSIG algorithm {other}"))),
        };
        let secret = base64::engine::general_purpose::STANDARD
            .decode(config.tsig_secret.trim())
            .map_err(|_| Error::Config("tsig_secret is not base64".into()))?;
        let name = Name::from_str(&config.tsig_key_name)
            .map_err(|e| Error::Config(format!("tsig_key_name: {e}")))?;
        let signer = TSigner::new(secret, algorithm, name, 300)
            .map_err(|e| Error::Config(format!("TSIG key: {e}")))?;
        if propagation.nameservers.is_empty() {
            propagation.nameservers = vec![config.server];
        }
        Ok(Self {
            config,
            signer,
            propagation,
        })
    }

    async fn zone_for(&self, fqdn: &Name) -> Result<Name> {
        if let Some(z) = &self.config.zone {
            let mut zone = Name::from_str(z).map_err(|e| Error::Config(format!("zone: {e}")))?;
            zone.set_fqdn(true);
            return Ok(zone);
        }
        let resolver = super::propagation::resolver_for(&[self.config.server], false);
        let mut candidate = fqdn.base_name();
        while !candidate.is_root() {
            if let Ok(soa) = resolver.soa_lookup(candidate.clone()).await {
                if soa
                    .as_lookup()
                    .records()
                    .iter()
                    .any(|r| r.name() == &candidate)
                {
                    return Ok(candidate);
                }
            }
            candidate = candidate.base_name();
        }
        Err(fail(format!(
            "{} answers no SOA for a parent of {fqdn}; set `zone`",
            self.config.server
        )))
    }

    async fn update(&self, add: bool, c: &ChallengeData) -> Result<()> {
        let fqdn =
            Name::from_str(&c.dns01_fqdn()).map_err(|e| fail(format!("record name: {e}")))?;
        let zone = self.zone_for(&fqdn).await?;
        let mut rrset = RecordSet::with_ttl(fqdn.clone(), RecordType::TXT, self.config.ttl);
        rrset.add_rdata(RData::TXT(TXT::new(vec![c.dns01_value()])));
        let mut message = if add {
            update_message::append(rrset, zone.clone(), false, false)
        } else {
            update_message::delete_by_rdata(rrset, zone.clone(), false)
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or_default();
        let mut verify_answer = message
            .finalize(&self.signer, now)
            .map_err(|e| fail(format!("TSIG signing: {e}")))?
            .ok_or_else(|| fail("TSIG signing gave no verifier for the answer"))?;
        let bytes = message
            .to_vec()
            .map_err(|e| fail(format!("encoding the update: {e}")))?;
        let answer =
            tokio::time::timeout(EXCHANGE_TIMEOUT, exchange_tcp(self.config.server, &bytes))
                .await
                .map_err(|_| fail(format!("{} did not answer in time", self.config.server)))??;
        let response =
            Message::from_vec(&answer).map_err(|e| fail(format!("bad DNS answer: {e}")))?;
        if response.id() != message.id() {
            return Err(fail("the answer's ID does not match the update"));
        }
        if response.response_code() != ResponseCode::NoError {
            return Err(fail(format!(
                "{} refused the update of {fqdn} in zone {zone}: {}",
                self.config.server,
                response.response_code()
            )));
        }
        // A success only counts when the server signed it with our key (RFC 8945 §5.3):
        // an unsigned or forged NOERROR must not make us tell the CA to look.
        verify_answer(&answer).map_err(|e| {
            fail(format!(
                "{}'s answer to the update of {fqdn} failed TSIG verification: {e}",
                self.config.server
            ))
        })?;
        tracing::debug!(%fqdn, add, "RFC 2136 update accepted");
        Ok(())
    }
}

async fn exchange_tcp(server: SocketAddr, query: &[u8]) -> Result<Vec<u8>> {
    let io = |e: std::io::Error| fail(format!("{server}: {e}"));
    let mut stream = tokio::net::TcpStream::connect(server).await.map_err(io)?;
    let len = u16::try_from(query.len()).map_err(|_| fail("update too large"))?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed).await.map_err(io)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.map_err(io)?;
    let mut answer = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut answer).await.map_err(io)?;
    Ok(answer)
}

impl Solver for Rfc2136 {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::Dns01
    }

    fn present<'a>(&'a self, c: &'a ChallengeData) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.update(true, c))
    }

    fn cleanup<'a>(&'a self, c: &'a ChallengeData) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.update(false, c))
    }

    fn wait_ready<'a>(&'a self, all: &'a [ChallengeData]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for c in all {
                self.propagation
                    .wait_for_txt(&c.dns01_fqdn(), &c.dns01_value())
                    .await?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that answers every update NOERROR without signing it.
    async fn unsigned_noerror_server() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await.unwrap();
            let mut query = vec![0u8; u16::from_be_bytes(len) as usize];
            stream.read_exact(&mut query).await.unwrap();
            let query = Message::from_vec(&query).unwrap();
            let mut answer = Message::new();
            answer
                .set_id(query.id())
                .set_message_type(hickory_proto::op::MessageType::Response)
                .set_op_code(query.op_code())
                .set_response_code(ResponseCode::NoError);
            let bytes = answer.to_vec().unwrap();
            let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            stream.write_all(&framed).await.unwrap();
        });
        addr
    }

    #[tokio::test]
    async fn an_unsigned_success_is_refused() {
        let server = unsigned_noerror_server().await;
        let cfg = Rfc2136Config {
            server,
            zone: Some("example.test.".into()),
            tsig_key_name: "k.".into(),
            tsig_algorithm: default_alg(),
            tsig_secret: "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0".into(),
            ttl: default_ttl(),
        };
        let p = Propagation {
            nameservers: vec![],
            timeout: Duration::from_secs(1),
        };
        let solver = Rfc2136::new(cfg, p).unwrap();
        let c = ChallengeData {
            identifier: "a.example.test".into(),
            token: "tok".into(),
            key_authorization: "tok.thumb".into(),
        };
        let err = solver.update(true, &c).await.unwrap_err().to_string();
        assert!(err.contains("TSIG verification"), "{err}");
    }

    #[test]
    fn config_is_checked() {
        let cfg: Rfc2136Config = toml::from_str(
            "server = \"127.0.0.1:53\"\ntsig_key_name = \"k.\"\ntsig_secret = \"c2VjcmV0c2VjcmV0\"\n",
        )
        .unwrap();
        let p = Propagation {
            nameservers: vec![],
            timeout: Duration::from_secs(1),
        };
        let s = Rfc2136::new(cfg.clone(), p.clone()).unwrap();
        assert_eq!(s.propagation.nameservers, [cfg.server]);
        assert!(!format!("{s:?}").contains("c2Vj"));
        let bad = Rfc2136Config {
            tsig_algorithm: "hmac-md5".into(),
            ..cfg.clone()
        };
        assert!(Rfc2136::new(bad, p.clone()).is_err());
        let bad = Rfc2136Config {
            tsig_secret: "!!".into(),
            ..cfg
        };
        assert!(Rfc2136::new(bad, p).is_err());
    }
}
