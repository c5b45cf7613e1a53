//! `certwright-ca`: run the CA (`serve`) or print its root certificate (`root`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use certwright_proto::b64;
use certwright_server::app::{CaServer, Options};
use certwright_server::ca::crl::reason_name;
use certwright_server::ca::hierarchy::HierarchyPaths;
use certwright_server::clock::{rfc3339, Clock};
use certwright_server::config::{Config, LogFormat};
use clap::{Parser, Subcommand};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "certwright-ca",
    version,
    about = "An ACME (RFC 8555) certificate authority"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the CA. On first start it creates its data directory with a root CA, an
    /// intermediate, the database and a TLS certificate for its own listener.
    Serve(ServeArgs),
    /// Print the root certificate (PEM), for clients to trust.
    Root {
        /// Data directory of the CA.
        #[arg(
            long,
            env = "CERTWRIGHT_DATA_DIR",
            default_value = "certwright-ca-data"
        )]
        data_dir: PathBuf,
    },
    /// Manage External Account Binding keys.
    Eab {
        #[command(subcommand)]
        action: EabAction,
        #[command(flatten)]
        ca: AdminArgs,
    },
    /// Revoke a certificate as the operator (publishes a new CRL).
    Revoke {
        /// Serial number (hex, colons allowed).
        #[arg(long)]
        serial: String,
        /// RFC 5280 reason: a code or a name (keyCompromise, superseded, …).
        #[arg(long, default_value = "unspecified")]
        reason: String,
        #[command(flatten)]
        ca: AdminArgs,
    },
    /// Ask clients to renew a certificate now: its ARI window moves into the past.
    RenewEarly {
        /// Serial number (hex, colons allowed).
        #[arg(long)]
        serial: String,
        #[command(flatten)]
        ca: AdminArgs,
    },
}

#[derive(Subcommand)]
enum EabAction {
    /// Create a key: prints the key id and the HMAC key (shown only once).
    Create {
        /// A label kept on accounts bound with this key (for audit and policy).
        #[arg(long)]
        label: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List keys and what they are bound to.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: it can no longer bind a new account.
    Revoke {
        /// The key id.
        kid: String,
    },
}

/// Where an admin command finds the CA.
#[derive(clap::Args)]
struct AdminArgs {
    /// TOML configuration file.
    #[arg(long, env = "CERTWRIGHT_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory.
    #[arg(long, env = "CERTWRIGHT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL.
    #[arg(long, env = "CERTWRIGHT_DATABASE_URL")]
    database_url: Option<String>,
}

impl AdminArgs {
    async fn open(self) -> anyhow::Result<CaServer> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = self.data_dir {
            c.data_dir = v;
        }
        if let Some(v) = self.database_url {
            c.database_url = Some(v);
        }
        if !c.data_dir.join("root.key").exists() {
            anyhow::bail!(
                "no CA in {} (start `certwright-ca serve` with this data directory first)",
                c.data_dir.display()
            );
        }
        CaServer::open(
            c,
            Options {
                admin: true,
                ..Options::default()
            },
        )
        .await
    }
}

fn parse_reason(text: &str) -> anyhow::Result<u8> {
    if let Ok(code) = text.parse::<u8>() {
        return Ok(code);
    }
    (0u8..=10)
        .find(|c| reason_name(*c).eq_ignore_ascii_case(text))
        .ok_or_else(|| anyhow::anyhow!("unknown revocation reason {text:?}"))
}

fn random_b64(len: usize) -> String {
    let mut b = vec![0u8; len];
    aws_lc_rs::rand::fill(&mut b).expect("the system RNG works");
    b64::encode(b)
}

async fn eab(action: EabAction, ca: AdminArgs) -> anyhow::Result<()> {
    let server = ca.open().await?;
    let store = &server.store;
    let now = Clock::system().now();
    match action {
        EabAction::Create { label, json } => {
            let kid = random_b64(12);
            let key = random_b64(32);
            store
                .create_eab_key(&kid, &label, &b64::decode(&key)?, now)
                .await?;
            if json {
                println!("{}", json!({"kid": kid, "hmac_key": key, "label": label}));
            } else {
                println!("kid:      {kid}");
                println!("hmac_key: {key}");
                println!("label:    {label}");
                println!();
                println!("The HMAC key is shown only now. Give both to the account holder:");
                println!("  certbot … --eab-kid {kid} --eab-hmac-key {key}");
                println!("  lego --eab --kid {kid} --hmac {key} …");
            }
        }
        EabAction::List { json } => {
            let rows: Vec<serde_json::Value> = store
                .eab_keys()
                .await?
                .iter()
                .map(|k| {
                    let state = match (k.revoked_at, k.account_id) {
                        (Some(_), _) => "revoked".to_owned(),
                        (None, Some(a)) => format!("bound to account {a}"),
                        (None, None) => "unused".to_owned(),
                    };
                    json!({"kid": k.kid, "label": k.label, "created": rfc3339(k.created_at), "state": state})
                })
                .collect();
            if json {
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!("{:<18} {:<24} {:<22} STATE", "KID", "LABEL", "CREATED");
                for r in rows {
                    let col = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
                    println!(
                        "{:<18} {:<24} {:<22} {}",
                        col("kid"),
                        col("label"),
                        col("created"),
                        col("state")
                    );
                }
            }
        }
        EabAction::Revoke { kid } => {
            if !store.revoke_eab_key(&kid, now).await? {
                anyhow::bail!("no unrevoked EAB key with id {kid:?}");
            }
            println!("revoked EAB key {kid}");
        }
    }
    Ok(())
}

async fn admin(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Eab { action, ca } => eab(action, ca).await,
        Command::Revoke { serial, reason, ca } => {
            let reason = parse_reason(&reason)?;
            let server = ca.open().await?;
            let cert = server
                .state
                .ra
                .revoke_by_operator(&serial, reason)
                .await
                .map_err(|p| anyhow::anyhow!("{}", p.detail))?;
            println!(
                "revoked {} ({}); a new CRL is published",
                cert.serial,
                reason_name(reason)
            );
            Ok(())
        }
        Command::RenewEarly { serial, ca } => {
            let server = ca.open().await?;
            let serial = serial.replace(':', "").to_ascii_lowercase();
            if !server.store.mark_renew_early(&serial).await? {
                anyhow::bail!("no certificate with serial {serial}");
            }
            println!(
                "certificate {serial} is marked: ARI now tells its client to renew immediately"
            );
            Ok(())
        }
        Command::Serve(_) | Command::Root { .. } => unreachable!("handled in main"),
    }
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file (see certwright-ca.example.toml).
    #[arg(long, env = "CERTWRIGHT_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (CA keys, certificates, SQLite database).
    #[arg(long, env = "CERTWRIGHT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:14000.
    #[arg(long, env = "CERTWRIGHT_LISTEN")]
    listen: Option<SocketAddr>,
    /// External base URL, e.g. https://ca.internal:14000.
    #[arg(long, env = "CERTWRIGHT_BASE_URL")]
    base_url: Option<String>,
    /// Database URL (sqlite://PATH).
    #[arg(long, env = "CERTWRIGHT_DATABASE_URL")]
    database_url: Option<String>,
    /// Port the VA connects to for http-01 (default 80).
    #[arg(long, env = "CERTWRIGHT_HTTP01_PORT")]
    http01_port: Option<u16>,
    /// Port the VA connects to for tls-alpn-01 (default 443).
    #[arg(long, env = "CERTWRIGHT_TLSALPN01_PORT")]
    tlsalpn01_port: Option<u16>,
    /// DNS resolver the VA asks, ADDR:PORT (default: the system's).
    #[arg(long, env = "CERTWRIGHT_DNS_RESOLVER")]
    dns_resolver: Option<SocketAddr>,
    /// Serve plain HTTP (behind a TLS-terminating proxy) instead of HTTPS.
    #[arg(long, env = "CERTWRIGHT_NO_TLS")]
    no_tls: bool,
    /// Log format.
    #[arg(long, env = "CERTWRIGHT_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
}

impl ServeArgs {
    fn into_config(self) -> anyhow::Result<Config> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = self.data_dir {
            c.data_dir = v;
        }
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = self.base_url {
            c.base_url = Some(v);
        }
        if let Some(v) = self.database_url {
            c.database_url = Some(v);
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
        if self.no_tls {
            c.tls = false;
        }
        if let Some(v) = self.log_format {
            c.log_format = v;
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

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.into_config()?;
    init_logging(config.log_format);
    let listen = config.listen;
    let server = CaServer::open(config, Options::default()).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
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
    server.serve(listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Root { data_dir } => {
            let path = HierarchyPaths::new(&data_dir).root_cert;
            std::fs::read_to_string(&path)
                .with_context(|| format!("no root certificate at {} (has the CA been started with this data directory?)", path.display()))
                .map(|pem| print!("{pem}"))
        }
        Command::Serve(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")
            .and_then(|rt| rt.block_on(serve(args))),
        other => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")
            .and_then(|rt| rt.block_on(admin(other))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("certwright-ca: {e:#}");
            ExitCode::FAILURE
        }
    }
}
