//! `certwright-ca serve`: the CA itself, with its admin and PKI listeners and the policy
//! reload on SIGHUP.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use certwright_server::admin;
use certwright_server::app::{serve_pki_http, CaServer, Options, PolicyReloader};
use certwright_server::config::{AdminListen, Config, LogFormat, PkiHttpListen};

use super::ConfigArgs;

// The doc comments are also the `--help` text, where a URL is written plainly.
#[allow(rustdoc::bare_urls)]
#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    ca: ConfigArgs,
    /// Address to listen on, e.g. 127.0.0.1:14000.
    #[arg(long, env = "CERTWRIGHT_LISTEN")]
    listen: Option<SocketAddr>,
    /// External base URL, e.g. https://ca.internal:14000.
    #[arg(long, env = "CERTWRIGHT_BASE_URL")]
    base_url: Option<String>,
    /// Port the VA connects to for http-01 (default 80).
    #[arg(long, env = "CERTWRIGHT_HTTP01_PORT")]
    http01_port: Option<u16>,
    /// Port the VA connects to for tls-alpn-01 (default 443).
    #[arg(long, env = "CERTWRIGHT_TLSALPN01_PORT")]
    tlsalpn01_port: Option<u16>,
    /// DNS resolver the VA asks, ADDR:PORT (default: the system's).
    #[arg(long, env = "CERTWRIGHT_DNS_RESOLVER")]
    dns_resolver: Option<SocketAddr>,
    /// TEST SWITCH: let the VA validate against loopback addresses (challenge servers on
    /// this host). Never on a CA others can reach.
    #[arg(long, env = "CERTWRIGHT_ALLOW_LOOPBACK_VALIDATION")]
    allow_loopback_validation: bool,
    /// Serve plain HTTP (behind a TLS-terminating proxy) instead of HTTPS.
    #[arg(long, env = "CERTWRIGHT_NO_TLS")]
    no_tls: bool,
    /// Log format.
    #[arg(long, env = "CERTWRIGHT_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// Admin listener for /metrics, /healthz and /readyz, ADDR:PORT or "off"
    /// (default 127.0.0.1:14001).
    #[arg(long, env = "CERTWRIGHT_ADMIN_LISTEN")]
    admin_listen: Option<AdminListen>,
    /// Allow an admin listener on an address other than loopback.
    #[arg(long, env = "CERTWRIGHT_ADMIN_ALLOW_NON_LOOPBACK")]
    admin_allow_non_loopback: bool,
    /// File holding the bearer token the admin listener requires (for /metrics, /readyz).
    #[arg(long, env = "CERTWRIGHT_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// The admin listener's TLS certificate chain, PEM (with --admin-tls-key: HTTPS).
    #[arg(long, env = "CERTWRIGHT_ADMIN_TLS_CERT")]
    admin_tls_cert: Option<PathBuf>,
    /// The admin listener's TLS private key, PEM (keep it 0600).
    #[arg(long, env = "CERTWRIGHT_ADMIN_TLS_KEY")]
    admin_tls_key: Option<PathBuf>,
    /// Plain-HTTP listener for the CRL, OCSP and the issuer certificate only, ADDR:PORT
    /// or "off" (default 127.0.0.1:14002).
    #[arg(long, env = "CERTWRIGHT_PKI_HTTP_LISTEN")]
    pki_http_listen: Option<PkiHttpListen>,
    /// Public http:// URL of those resources, named in new certificates (default: the
    /// host of the base URL, the port of --pki-http-listen).
    #[arg(long, env = "CERTWRIGHT_PKI_BASE_URL")]
    pki_base_url: Option<String>,
}

impl ServeArgs {
    /// The configuration: [`ConfigArgs::load`], then the listener and VA flags.
    fn into_config(self) -> anyhow::Result<Config> {
        let mut c = self.ca.load()?;
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = self.base_url {
            c.base_url = Some(v);
        }
        if let Some(v) = self.http01_port {
            c.validation.http01_port = v;
        }
        if let Some(v) = self.tlsalpn01_port {
            c.validation.tlsalpn01_port = v;
        }
        if let Some(v) = self.dns_resolver {
            c.validation.dns_resolver = Some(v);
        }
        if self.allow_loopback_validation {
            c.validation.allow_loopback = true;
        }
        if self.no_tls {
            c.tls = false;
        }
        if let Some(v) = self.log_format {
            c.log_format = v;
        }
        if let Some(v) = self.admin_listen {
            c.admin_listen = v;
        }
        if self.admin_allow_non_loopback {
            c.admin_allow_non_loopback = true;
        }
        if let Some(v) = self.admin_token_file {
            c.admin_token_file = Some(v);
        }
        if let Some(v) = self.admin_tls_cert {
            c.admin_tls_cert = Some(v);
        }
        if let Some(v) = self.admin_tls_key {
            c.admin_tls_key = Some(v);
        }
        if let Some(v) = self.pki_http_listen {
            c.pki_http_listen = v;
        }
        if let Some(v) = self.pki_base_url {
            c.pki_base_url = Some(v);
        }
        Ok(c)
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs `serve` on a multi-threaded runtime.
pub(crate) fn main(args: ServeArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Absolute, so a SIGHUP reload reads the same file whatever the working directory.
    let config_path = args
        .ca
        .config
        .clone()
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p));
    let config = args.into_config()?;
    init_logging(config.log_format);
    let listen = config.listen;
    let server = CaServer::open(config, Options::default()).await?;
    let listener = bind(listen, "").await?;
    let admin_listen = server.config.admin_listen.0;
    if let Some(addr) = admin_listen {
        let admin = bind(addr, " (admin_listen)").await?;
        let state = server.admin.clone();
        tokio::spawn(async move {
            if let Err(e) = admin::serve_admin(admin, state, shutdown_signal()).await {
                tracing::error!(error = %e, "the admin listener failed");
            }
        });
    }
    let pki_http_listen = server.config.pki_http_listen.0;
    if let Some(addr) = pki_http_listen {
        let pki = bind(addr, " (pki_http_listen)").await?;
        let state = server.state.clone();
        tokio::spawn(serve_pki_http(state, pki, shutdown_signal()));
    }
    let agents_listen = match server.agents.as_ref().and_then(|a| a.listener.as_ref()) {
        Some(agents) => {
            let socket = bind(agents.listen, " (agents.listen)").await?;
            Some((agents.listen, agents.ca_sha256.clone(), socket))
        }
        None => None,
    };
    PolicyReloader::new(server.state.ra.policy_handle().clone())
        .reload_on_sighup(config_path)
        .context("installing the SIGHUP handler")?;
    let dir = server.directory_url();
    let root = server
        .root_path
        .canonicalize()
        .unwrap_or(server.root_path.clone());
    let root = root.display();
    println!("certwright-ca is serving ACME on {listen}");
    println!("  directory:        {dir}");
    println!("  root certificate: {root}");
    println!("  root SHA-256:     {}", server.root_fingerprint);
    match admin_listen {
        Some(addr) => println!(
            "  admin:            {}://{addr}/metrics, /healthz, /readyz, /console/",
            if server.admin.tls.is_some() {
                "https"
            } else {
                "http"
            }
        ),
        None => println!("  admin:            off"),
    }
    if server.config.validation.allow_loopback {
        println!(
            "  WARNING:          loopback validation is ON (test switch): any account can make this CA connect to services on its own host"
        );
    }
    let pki_base = server.config.pki_base_url();
    match pki_http_listen {
        Some(addr) => println!("  PKI (plain HTTP): {addr}, named in certificates as {pki_base}"),
        None => println!("  PKI (plain HTTP): off; certificates name {pki_base}"),
    }
    let agents_listen = match agents_listen {
        Some((addr, ca_sha256, socket)) => {
            println!("  agents (mTLS):     {addr}, agent CA SHA-256 {ca_sha256}");
            Some(socket)
        }
        None => None,
    };
    if server.recovered != (0, 0) {
        println!(
            "  resumed from the previous run: {} validation(s), {} issuance(s)",
            server.recovered.0, server.recovered.1
        );
    }
    println!();
    println!("Get a certificate with certbot:");
    println!("  REQUESTS_CA_BUNDLE={root} certbot certonly --standalone --server {dir} \\");
    println!("    --agree-tos -m admin@example.internal -d host.example.internal");
    println!("Get a certificate with lego:");
    println!("  LEGO_CA_CERTIFICATES={root} lego --server {dir} --email admin@example.internal \\");
    println!("    --domains host.example.internal --http run");
    println!();
    tracing::info!(%dir, "ready");
    if let Some(socket) = agents_listen {
        if let Some(agents) = server.agents.as_ref().and_then(|a| a.listener.as_ref()) {
            let agents = agents.clone();
            tokio::spawn(async move { agents.serve(socket, shutdown_signal()).await });
        }
    }
    server.serve(listener, shutdown_signal()).await
}

/// A listener on `addr`; the error names it (`what`: which setting, if not the main one).
async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}{what}"))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
