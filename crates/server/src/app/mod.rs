//! Assembles the CA from its configuration and serves it (HTTPS or plain HTTP). The
//! wiring lives here: `settings` turns the configuration into each component's own
//! settings, `reload` re-reads the policy on SIGHUP.

pub mod admin_tls;
pub mod agents;
pub mod backends;
pub mod eab_kek;
pub mod issuers;
pub mod reload;
pub mod settings;
pub mod webhooks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use certwright_proto::types::DirectoryMeta;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::ca::{CertificateAuthority, Hierarchy};
use crate::clock::Clock;
use crate::config::Config;
use crate::ra::policy::PolicyHandle;
use crate::ra::Ra;
use crate::store::{Actor, Backend, Store};
use crate::va::{NameResolver, Va};
use crate::wfe::{self, AppState, NonceStore, Urls};

pub use reload::PolicyReloader;
pub use settings::Settings;

/// Seconds a client has to send its request headers (slow clients are cut off).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Seconds a TLS handshake may take.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Keeps the CRL fresh: publishes a new one when half of its validity has passed.
fn spawn_crl_refresher(ra: Ra) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Each failure is logged by refresh_crls.
            let _ = ra.refresh_crls().await;
        }
    });
}

/// Seconds between sweeps for work whose lease ran out and for expired nonces.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Takes over in-flight work whose instance died, purges expired shared nonces and
/// prunes rate-limit events past every window.
fn spawn_sweeper(ra: Ra, store: Store, clock: Clock) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = ra.recover(false).await {
                tracing::warn!(error = %e, "sweep for abandoned work failed");
            }
            if store.backend() == Backend::Postgres {
                if let Err(e) = store.purge_nonces(clock.now()).await {
                    tracing::warn!(error = %e, "purging expired nonces failed");
                }
            }
            // Rate-limit events older than the longest window count for nothing.
            let keep = ra.longest_rate_window();
            if let Err(e) = store.prune_rate_events(clock.now() - keep).await {
                tracing::warn!(error = %e, "pruning rate-limit events failed");
            }
        }
    });
}

/// Things tests (and embedders) may substitute.
#[derive(Clone, Default)]
pub struct Options {
    /// The VA's resolver; default: DNS per `validation.dns_resolver`.
    pub resolver: Option<NameResolver>,
    /// The clock; default: the system clock.
    pub clock: Clock,
    /// Open for an admin command: no resumption of in-flight work, no background tasks.
    pub admin: bool,
    /// Who the operator's changes are audited as (an admin command's operator).
    pub operator: Actor,
}

/// A CA ready to serve.
pub struct CaServer {
    /// The configuration it was built from.
    pub config: Config,
    /// The ACME front end's state.
    pub state: Arc<AppState>,
    /// The store.
    pub store: Store,
    /// The root certificate's file.
    pub root_path: std::path::PathBuf,
    /// SHA-256 fingerprint of the root certificate (colon-separated upper-case hex).
    pub root_fingerprint: String,
    /// The root certificate (PEM).
    pub root_pem: String,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// (challenges, orders) resumed from a previous run.
    pub recovered: (usize, usize),
    /// What the admin listener (`/metrics`, `/healthz`, `/readyz`) serves.
    pub admin: Arc<crate::admin::Admin>,
    /// Remote validation agents: the hub and the agent listener (`[agents]`).
    pub agents: Option<agents::Agents>,
}

impl CaServer {
    /// Opens the data directory (creating the CA on first start), the database, and the
    /// authorities; resumes whatever a previous run left in flight.
    pub async fn open(config: Config, options: Options) -> anyhow::Result<Self> {
        let settings = Settings::from_config(&config)?;
        let metrics = crate::metrics::install();
        crate::fsutil::create_private_dir(&config.data_dir).with_context(|| {
            format!("cannot create data directory {}", config.data_dir.display())
        })?;
        // Only a listener serving TLS needs a certificate (an admin command serves
        // nothing), and only then can name constraints on the intermediate get in the way.
        let serves_tls = config.tls && !options.admin;
        let tls_names = if serves_tls {
            config.tls_names()
        } else {
            Vec::new()
        };
        let hierarchy = Hierarchy::load_or_create(
            &config.data_dir,
            settings::ca_key_type(config.ca.key_type),
            &config.ca.organization,
            &tls_names,
            &settings::pkcs11(&config),
        )?;
        let root_path = hierarchy.paths.root_cert.clone();
        let root_fingerprint = hierarchy.root_fingerprint();
        let root_pem = hierarchy.root_pem.clone();
        let tls = if serves_tls {
            Some(Arc::new(tls_config(&hierarchy)?))
        } else {
            None
        };
        let store = Store::open_with(&config.database_url(), &settings::store_options(&config))
            .await
            .with_context(|| format!("cannot open database {}", config.database_url()))?;
        // EAB keys sealed at rest; the server refuses keys it could not use (docs/hardening.md).
        let private_files = settings::private_files(&config);
        let store = eab_kek::attach_eab_kek(&private_files, store, !options.admin)
            .await
            .context("loading the key-encryption key of EAB keys")?
            .acting_as(options.operator.clone())
            // Events are written wherever their changes are, operator commands included.
            .with_webhooks(webhooks::routes(&config));
        crate::secrets::warn_loose_modes(&private_files);
        // The delivery workers (and their secrets) belong to the serving process only.
        let hook_endpoints = if options.admin {
            Vec::new()
        } else {
            webhooks::endpoints(&config).context("configuring webhooks")?
        };
        // The URLs relying parties fetch revocation data and the issuer from: plain HTTP
        // (see `serve_pki_http`).
        let pki_base = config.pki_base_url();
        if !pki_base.starts_with("http://") {
            tracing::warn!(
                %pki_base,
                "pki_http_listen is off: new certificates name https:// CRL, OCSP and \
                 caIssuers URLs, which the Baseline Requirements do not allow and many \
                 relying parties cannot fetch"
            );
        }
        // A loopback PKI listener behind a name others use: relying parties elsewhere
        // cannot fetch what certificates point them at.
        if let Some(listen) = config.pki_http_listen.0 {
            let named_loopback = url::Url::parse(&pki_base).is_ok_and(|u| match u.host() {
                Some(url::Host::Domain(name)) => name == "localhost",
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            });
            if listen.ip().is_loopback() && !named_loopback {
                tracing::warn!(
                    %listen,
                    %pki_base,
                    "pki_http_listen is a loopback address but certificates name {pki_base}:                      relying parties on other hosts cannot fetch CRLs, OCSP or the issuer                      unless a proxy forwards to it; set pki_http_listen to a reachable address"
                );
            }
        }
        let ca = CertificateAuthority::new(
            hierarchy,
            settings::issuance_policy(&config, &pki_base, config.ocsp.enabled),
        )?
        .with_pkcs11(settings::pkcs11(&config));
        if config.ocsp.enabled {
            ca.start_ocsp(
                i64::from(config.ocsp.validity_hours) * 3600,
                options.clock.now(),
            )?;
        }
        let ca = Arc::new(ca);
        issuers::load_added(&ca, &config.data_dir, options.clock.now(), true)?;
        issuers::sync_states(&ca, &store).await?;
        let resolver = match options.resolver {
            Some(r) => r,
            None => NameResolver::dns_with_timeout(
                config.validation.dns_resolver,
                // Two attempts per query fit in one validation's time.
                Duration::from_secs(config.validation.timeout_secs).mul_f32(0.4),
            )?,
        };
        if config.validation.allow_loopback {
            tracing::warn!(
                "validation.allow_loopback is ON (test switch): the VA connects to loopback addresses, so any account can make this CA read services on its own host; never use it on a CA that others can reach"
            );
        }
        let va = Va::new(settings.va_config(&config), resolver)?;
        let live = PolicyHandle::new(settings.policy.clone());
        // Remote validation agents: the hub, and the agent listener's material.
        let agents = agents::prepare(&config, &store, &options.clock, !options.admin).await?;
        let routes = crate::agents::route::Routes::from_config(&config.validation.routes)
            .with_default_profile(config.default_profile());
        let ra = match &agents {
            Some(a) if !routes.is_empty() => Ra::new(
                store.clone(),
                ca.clone(),
                crate::agents::validator::RoutedValidator::new(va, routes, Arc::new(a.hub.clone())),
                options.clock.clone(),
                settings.ra_policy(&config, live),
            ),
            _ => Ra::new(
                store.clone(),
                ca.clone(),
                va,
                options.clock.clone(),
                settings.ra_policy(&config, live),
            ),
        }
        .with_backends(backends::build(&config, &ca).context("configuring backend CAs")?);
        let recovered = if options.admin {
            (0, 0)
        } else {
            // A single-instance store takes over everything; a shared one only what no
            // live instance holds.
            let everything = store.backend() == Backend::Sqlite;
            let recovered = ra
                .recover(everything)
                .await
                .context("resuming work from the previous run")?;
            spawn_sweeper(ra.clone(), store.clone(), options.clock.clone());
            ra.refresh_crls()
                .await
                .map_err(|p| anyhow::anyhow!("publishing the CRL: {p}"))?;
            issuers::spawn_sync(
                ca.clone(),
                store.clone(),
                config.data_dir.clone(),
                options.clock.clone(),
            );
            spawn_crl_refresher(ra.clone());
            crate::metrics::spawn_database_pinger(store.clone());
            if store
                .webhook_routes()
                .wants(crate::store::webhooks::CERTIFICATE_AT_RISK)
            {
                crate::webhooks::spawn_at_risk_sweep(store.clone(), options.clock.clone());
            }
            crate::webhooks::spawn(hook_endpoints, store.clone(), options.clock.clone());
            recovered
        };
        let meta = DirectoryMeta {
            terms_of_service: config.directory.terms_of_service.clone(),
            website: config.directory.website.clone(),
            caa_identities: config.directory.caa_identities.clone(),
            external_account_required: config.directory.external_account_required,
            profiles: config
                .profiles()
                .into_iter()
                .map(|(name, p)| (name, serde_json::Value::String(p.description)))
                .collect(),
        };
        let state = Arc::new(AppState::new(
            ra,
            match store.backend() {
                Backend::Sqlite => NonceStore::new(options.clock),
                Backend::Postgres => NonceStore::shared(store.reader(), options.clock),
            },
            Urls {
                base: config.base_url(),
            },
            meta,
        ));
        let token = match &config.admin_token_file {
            Some(path) => Some(read_admin_token(path)?),
            None => None,
        };
        // Only a serving process needs the admin listener's TLS pair.
        let admin_tls = match (&config.admin_tls_cert, &config.admin_tls_key) {
            (Some(cert), Some(key)) if !options.admin && config.admin_listen.0.is_some() => {
                Some(admin_tls::AdminTls::load(cert, key)?)
            }
            _ => None,
        };
        if let Some(addr) = config.admin_listen.0 {
            if !addr.ip().to_canonical().is_loopback() && token.is_none() {
                tracing::warn!(%addr, "the admin listener is open to the network without a bearer token (admin_token_file)");
            }
        }
        let admin = Arc::new(crate::admin::Admin {
            metrics,
            store: store.clone(),
            ca,
            acme: state.clone(),
            token,
            tls: admin_tls,
        });
        Ok(Self {
            config,
            state,
            store,
            root_path,
            root_fingerprint,
            root_pem,
            tls,
            recovered,
            admin,
            agents,
        })
    }

    /// The directory URL.
    pub fn directory_url(&self) -> String {
        self.state.urls.endpoint("/directory")
    }

    /// Serves on `listener` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let router = wfe::router(self.state.clone());
        let acceptor = self.tls.map(tokio_rustls::TlsAcceptor::from);
        serve_router("acme", listener, router, acceptor, shutdown).await;
        Ok(())
    }
}

/// Reads the admin listener's bearer token (its file's mode is checked with the other
/// private files, `secrets::private_paths`).
fn read_admin_token(path: &std::path::Path) -> anyhow::Result<crate::admin::AdminToken> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read admin_token_file {}", path.display()))?;
    crate::admin::AdminToken::parse(&text)
        .map_err(|e| anyhow::anyhow!("admin_token_file {}: {e}", path.display()))
}

/// Serves the read-only PKI resources (CRL, OCSP, the issuer certificate; see
/// `wfe::pki_router`) over plain HTTP on `listener` until `shutdown` resolves — never the
/// ACME API. Same connection handling as the ACME listener: header read timeout, request
/// timeout, bounded request bodies.
pub async fn serve_pki_http(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    serve_router("pki", listener, wfe::pki_router(state), None, shutdown).await;
}

/// The accept loop shared by the listeners (`name` in logs): each connection served by
/// `router`, over TLS when there is an `acceptor`; on `shutdown`, no new connections and
/// up to 5 s for the open ones.
pub(crate) async fn serve_router(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // Closed with a lingering read, so a refused oversized request gets its answer.
        let stream = crate::linger::Lingering::new(stream);
        let router = router.clone();
        let acceptor = acceptor.clone();
        connections.spawn(async move {
            match acceptor {
                None => serve_connection(stream, router, peer).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls)) => serve_connection(tls, router, peer).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
    tracing::info!(
        listener = name,
        "shutting down: no new connections; waiting up to 5 s for open ones"
    );
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

async fn serve_connection<S>(io: S, router: Router, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64);
    // Every request learns which address it came from (per-address rate limits).
    let service = TowerToHyperService::new(tower::util::MapRequest::new(
        router,
        move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(crate::wfe::ClientAddr(peer));
            // As axum's `into_make_service_with_connect_info` records it (the admin
            // listener's loopback rule and the console's sign-in throttle read it).
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            req
        },
    ));
    if let Err(e) = builder.serve_connection(TokioIo::new(io), service).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

fn tls_config(h: &Hierarchy) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    // tls.pem: the leaf, then its chain up to (not including) the root.
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(h.tls_cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .context("parsing the TLS certificate")?;
    let key =
        PrivateKeyDer::from_pem_slice(h.tls_key_pem.as_bytes()).context("parsing the TLS key")?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
