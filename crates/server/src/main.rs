//! `certwright-ca`: run the CA (`serve`) or print its root certificate (`root`).

/// mimalloc instead of glibc's allocator: a request allocates and frees many small
/// buffers on whichever tokio worker runs it (docs/performance.md has the measurement).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use certwright_proto::b64;
use certwright_server::app::{CaServer, Options};
use certwright_server::ca::crl::reason_name;
use certwright_server::ca::hierarchy::HierarchyPaths;
use certwright_server::clock::{rfc3339, Clock};
use certwright_server::config::{AdminListen, Config, LogFormat, PkiHttpListen};
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
    /// Apply pending database migrations (the server refuses a schema newer than it knows).
    Migrate {
        #[command(flatten)]
        ca: AdminArgs,
    },
    /// Write the whole database as JSON lines (e.g. to move from SQLite to PostgreSQL).
    Export {
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        ca: AdminArgs,
    },
    /// Load an export into an empty database (select it with --database-url).
    Import {
        /// File written by `certwright-ca export`.
        #[arg(long = "in")]
        input: PathBuf,
        #[command(flatten)]
        ca: AdminArgs,
    },
    /// The audit trail: check its hash chain, or export it.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
        #[command(flatten)]
        ca: AdminArgs,
    },
    /// The inventory of every certificate the CA issued.
    Certs {
        #[command(subcommand)]
        action: CertsAction,
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
enum AuditAction {
    /// Walk the whole chain; fail, naming the first bad entry, if any entry was altered,
    /// inserted or deleted.
    Verify,
    /// Write entries as JSON lines, oldest first.
    Export {
        /// Only entries from this time (RFC 3339) or after this sequence number.
        #[arg(long)]
        since: Option<String>,
        /// Output format (one JSON object per line).
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// Write to this file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    Jsonl,
}

#[derive(Subcommand)]
enum CertsAction {
    /// List certificates, newest first.
    List {
        /// A name the certificate covers, exactly (`www.example.com`, `*.example.com`), or
        /// every name under a domain when it starts with a dot (`.example.com`).
        #[arg(long)]
        name: Option<String>,
        /// The requesting account's id.
        #[arg(long)]
        account: Option<i64>,
        /// The EAB label of the requesting account.
        #[arg(long)]
        eab_label: Option<String>,
        /// Unexpired certificates that expire within this many days.
        #[arg(long)]
        expiring_within: Option<u32>,
        /// Only revoked certificates.
        #[arg(long, conflicts_with = "not_revoked")]
        revoked: bool,
        /// Only certificates that are not revoked.
        #[arg(long)]
        not_revoked: bool,
        /// At most this many certificates (the newest).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
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
    #[arg(long, env = "CERTWRIGHT_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Data directory.
    #[arg(long, env = "CERTWRIGHT_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Database URL.
    #[arg(long, env = "CERTWRIGHT_DATABASE_URL", global = true)]
    database_url: Option<String>,
}

impl AdminArgs {
    fn config(&self) -> anyhow::Result<Config> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = &self.data_dir {
            c.data_dir = v.clone();
        }
        if let Some(v) = &self.database_url {
            c.database_url = Some(v.clone());
        }
        Ok(c)
    }

    /// The store alone (no CA keys needed).
    async fn store(&self, migrate: bool) -> anyhow::Result<certwright_server::store::Store> {
        let c = self.config()?;
        let options = certwright_server::store::StoreOptions {
            auto_migrate: migrate,
            ..Default::default()
        };
        certwright_server::store::Store::open_with(&c.database_url(), &options)
            .await
            .with_context(|| format!("opening {}", c.database_url()))
    }

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

/// `len` random bytes in base64url, never starting with `-`: the value is pasted into
/// client command lines (`certbot --eab-kid …`), where a leading dash reads as an option.
fn random_b64(len: usize) -> String {
    let mut b = vec![0u8; len];
    loop {
        aws_lc_rs::rand::fill(&mut b).expect("the system RNG works");
        let text = b64::encode(&b);
        if !text.starts_with('-') {
            return text;
        }
    }
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

/// `--since`: an RFC 3339 time, or a sequence number. Returns (after seq, from time).
fn parse_since(since: Option<&str>) -> anyhow::Result<(i64, i64)> {
    let Some(since) = since else {
        return Ok((0, i64::MIN));
    };
    if let Ok(seq) = since.parse::<i64>() {
        return Ok((seq.saturating_sub(1).max(0), i64::MIN));
    }
    let t = time::OffsetDateTime::parse(since, &time::format_description::well_known::Rfc3339)
        .with_context(|| {
            format!("--since {since:?} is neither a sequence number nor an RFC 3339 time")
        })?;
    Ok((0, t.unix_timestamp()))
}

async fn audit(action: AuditAction, ca: AdminArgs) -> anyhow::Result<()> {
    use certwright_server::store::AuditVerdict;
    use std::io::Write as _;
    let store = ca.store(false).await?;
    match action {
        AuditAction::Verify => match store.verify_audit().await? {
            AuditVerdict::Intact { entries, head } => {
                println!("audit trail intact: {entries} entries, head {head}");
                Ok(())
            }
            AuditVerdict::Broken { seq, reason } => {
                anyhow::bail!("audit trail broken at entry {seq}: {reason}")
            }
        },
        AuditAction::Export {
            since,
            format: ExportFormat::Jsonl,
            output,
        } => {
            let (mut after, from) = parse_since(since.as_deref())?;
            let mut out: Box<dyn std::io::Write> = match &output {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let mut count = 0u64;
            loop {
                let page = store
                    .audit_entries(after, from, certwright_server::store::audit::PAGE)
                    .await?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                for e in &page {
                    let mut line = serde_json::to_value(e)?;
                    line["time"] = json!(rfc3339(e.at));
                    line["details"] = serde_json::from_str(&e.details).unwrap_or(json!(e.details));
                    writeln!(out, "{line}")?;
                    count += 1;
                }
            }
            out.flush()?;
            if let Some(path) = output {
                eprintln!("exported {count} audit entries to {}", path.display());
            }
            Ok(())
        }
    }
}

/// Standard output for a long listing: buffered, and the first write error kept (the
/// rest of the listing is then skipped).
struct Output<W: std::io::Write> {
    out: std::io::BufWriter<W>,
    failed: Option<std::io::Error>,
}

impl<W: std::io::Write> Output<W> {
    fn write(&mut self, text: std::fmt::Arguments) {
        if self.failed.is_none() {
            if let Err(e) = std::io::Write::write_fmt(&mut self.out, text) {
                self.failed = Some(e);
            }
        }
    }

    /// Flushes; the first error met, if any.
    fn finish(mut self) -> std::io::Result<()> {
        match self.failed.take() {
            Some(e) => Err(e),
            None => std::io::Write::flush(&mut self.out),
        }
    }
}

async fn certs(action: CertsAction, ca: AdminArgs) -> anyhow::Result<()> {
    use certwright_server::store::inventory::{CertificateFilter, CertificateSummary};
    let CertsAction::List {
        name,
        account,
        eab_label,
        expiring_within,
        revoked,
        not_revoked,
        limit,
        json,
    } = action;
    let store = ca.store(false).await?;
    let now = Clock::system().now();
    let filter = CertificateFilter {
        name,
        account,
        eab_label,
        expiring_within: expiring_within.map(|d| i64::from(d) * 86_400),
        revoked: match (revoked, not_revoked) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        now,
    };
    let status = |c: &CertificateSummary| match (c.revoked_at, c.revocation_reason) {
        (Some(_), reason) => format!("revoked ({})", reason_name(reason.unwrap_or(0))),
        (None, _) if c.not_after <= now => "expired".to_owned(),
        (None, _) => "valid".to_owned(),
    };
    // Rows are printed as they are read. A reader that goes away (`| head`) ends the
    // listing quietly; any other write error is reported.
    let mut out = Output {
        out: std::io::BufWriter::new(std::io::stdout().lock()),
        failed: None,
    };
    if json {
        out.write(format_args!("["));
    } else {
        out.write(format_args!(
            "{:<34} {:<21} {:<26} {:>7} {:<11} NAMES\n",
            "SERIAL", "NOT AFTER", "STATUS", "ACCOUNT", "PROFILE"
        ));
    }
    let mut count: u64 = 0;
    store
        .each_certificate(&filter, |c| {
            if json {
                let mut v = serde_json::to_value(&c).expect("summaries serialize");
                v["status"] = json!(status(&c));
                v["not_after_time"] = json!(rfc3339(c.not_after));
                let comma = if count == 0 { "" } else { "," };
                out.write(format_args!("{comma}\n{v}"));
            } else {
                out.write(format_args!(
                    "{:<34} {:<21} {:<26} {:>7} {:<11} {}\n",
                    c.serial,
                    rfc3339(c.not_after),
                    status(&c),
                    c.account_id,
                    c.profile.as_deref().unwrap_or("-"),
                    c.names.join(",")
                ));
            }
            count += 1;
            if out.failed.is_some() || limit == Some(count) {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        })
        .await?;
    if json {
        out.write(format_args!("\n]\n"));
    }
    match out.finish() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => return Err(anyhow::Error::new(e).context("writing the listing")),
        Ok(()) => {}
    }
    if limit == Some(count) {
        eprintln!("{count} certificate(s): the newest {count} (--limit); more may match");
    } else {
        eprintln!("{count} certificate(s)");
    }
    Ok(())
}

async fn admin(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Audit { action, ca } => audit(action, ca).await,
        Command::Certs { action, ca } => certs(action, ca).await,
        Command::Eab { action, ca } => eab(action, ca).await,
        Command::Revoke { serial, reason, ca } => {
            let reason = parse_reason(&reason)?;
            let server = ca.open().await?;
            let cert = server.state.ra.revoke_by_operator(&serial, reason).await?;
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
        Command::Migrate { ca } => {
            let store = ca.store(true).await?;
            // A schema migration has no key: plaintext EAB keys are sealed here.
            let files = certwright_server::app::settings::private_files(&ca.config()?);
            certwright_server::secrets::attach_eab_kek(&files, store, false).await?;
            println!("the database schema is up to date; EAB keys are encrypted at rest");
            Ok(())
        }
        Command::Export { out, ca } => {
            let rows = ca.store(false).await?.export().await?;
            let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
            certwright_server::fsutil::write_atomic(&out, text.as_bytes(), 0o600)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "exported {} rows to {} (EAB keys in it are encrypted with the data directory's \
                 key-encryption key; importing needs that KEK)",
                rows.len(),
                out.display()
            );
            Ok(())
        }
        Command::Import { input, ca } => {
            let text = std::fs::read_to_string(&input)
                .with_context(|| format!("reading {}", input.display()))?;
            let rows = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(serde_json::from_str)
                .collect::<Result<Vec<serde_json::Value>, _>>()
                .context("the export is not JSON lines")?;
            // Sealed EAB keys need the KEK they were sealed with; without any, a data
            // directory's KEK may be created here.
            let sealed = rows
                .iter()
                .any(|r| r["table"] == "eab_keys" && r["row"]["kek_id"].is_string());
            let files = certwright_server::app::settings::private_files(&ca.config()?);
            let source = certwright_server::secrets::KekSource::from_environment(&files);
            let kek = source.load(!sealed).with_context(|| {
                format!(
                    "the export holds encrypted EAB keys: this CA needs the source CA's \
                     key-encryption key at {} (or in {})",
                    source.describe(),
                    certwright_server::secrets::KEK_ENV
                )
            })?;
            let store = ca.store(true).await?.with_eab_kek(std::sync::Arc::new(kek));
            let n = store.import(&rows).await?;
            // An export of an older version carries plaintext keys: sealed now.
            let sealed = store.seal_legacy_eab_keys().await?;
            println!("imported {n} rows ({sealed} plaintext EAB keys encrypted)");
            Ok(())
        }
        Command::Serve(_) | Command::Root { .. } => unreachable!("handled in main"),
    }
}

// The doc comments are also the `--help` text, where a URL is written plainly.
#[allow(rustdoc::bare_urls)]
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

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Absolute, so a SIGHUP reload reads the same file whatever the working directory.
    let config_path = args
        .config
        .clone()
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p));
    let config = args.into_config()?;
    init_logging(config.log_format);
    let listen = config.listen;
    let server = CaServer::open(config, Options::default()).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let admin_listen = server.config.admin_listen.0;
    if let Some(addr) = admin_listen {
        let admin = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (admin_listen)"))?;
        let state = server.admin.clone();
        tokio::spawn(async move {
            if let Err(e) =
                certwright_server::admin::serve_admin(admin, state, shutdown_signal()).await
            {
                tracing::error!(error = %e, "the admin listener failed");
            }
        });
    }
    let pki_http_listen = server.config.pki_http_listen.0;
    if let Some(addr) = pki_http_listen {
        let pki = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (pki_http_listen)"))?;
        let state = server.state.clone();
        tokio::spawn(certwright_server::app::serve_pki_http(
            state,
            pki,
            shutdown_signal(),
        ));
    }
    certwright_server::app::PolicyReloader::new(server.state.ra.policy_handle().clone())
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
        Some(addr) => println!("  admin:            http://{addr}/metrics, /healthz, /readyz"),
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
