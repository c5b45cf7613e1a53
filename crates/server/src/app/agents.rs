//! Remote validation agents at start (docs/remote-validation.md): the hub (the
//! [`Dispatch`](crate::agents::Dispatch) of this instance), and, when `[agents] listen`
//! is set, the agent CA (loaded or created) and the listener's TLS configuration with a
//! fresh server certificate.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::agents::hub::{Hub, HubSettings};
use crate::agents::listener::{self, ListenerState};
use crate::agents::pki::AgentCa;
use crate::clock::Clock;
use crate::config::Config;
use crate::store::Store;

/// The agents' side of a running CA.
pub struct Agents {
    /// The jobs of this instance.
    pub hub: Hub,
    /// The listener, when `[agents] listen` is set (not for admin commands).
    pub listener: Option<AgentListener>,
}

/// What the agent listener serves with.
#[derive(Clone)]
pub struct AgentListener {
    /// Where it listens.
    pub listen: SocketAddr,
    /// SHA-256 of the agent CA certificate (colon-free hex), the pin in tokens.
    pub ca_sha256: String,
    state: Arc<ListenerState>,
    tls: Arc<rustls::ServerConfig>,
}

impl AgentListener {
    /// Serves the agent protocol on `listener` until `shutdown` resolves.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        listener::serve(self.state.clone(), listener, self.tls.clone(), shutdown).await;
    }
}

/// The hub, and the listener's material when `[agents] listen` is set and `serves`.
/// `None` when neither routes nor a listener need agents.
pub async fn prepare(
    config: &Config,
    store: &Store,
    clock: &Clock,
    serves: bool,
) -> anyhow::Result<Option<Agents>> {
    if config.agents.listen.is_none() && config.validation.routes.is_empty() {
        return Ok(None);
    }
    let hub = Hub::new(
        HubSettings::from_config(config),
        Some(store.clone()),
        clock.clone(),
    );
    let listener = match config.agents.listen {
        Some(listen) if serves => {
            let ca = AgentCa::load_or_create(store, clock.now())
                .await
                .context("loading the agent CA")?;
            let tls = ca
                .server_tls_config(&config.agents.server_names, listen, clock.now())
                .context("making the agent listener's certificate")?;
            let ca_sha256 = crate::encoding::hex(&ca.sha256());
            Some(AgentListener {
                listen,
                ca_sha256,
                state: Arc::new(ListenerState {
                    store: store.clone(),
                    hub: hub.clone(),
                    ca: Arc::new(ca),
                    clock: clock.clone(),
                    certificate_days: config.agents.certificate_days,
                }),
                tls: Arc::new(tls),
            })
        }
        _ => None,
    };
    Ok(Some(Agents { hub, listener }))
}
