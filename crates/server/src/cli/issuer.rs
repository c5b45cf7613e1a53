//! `certwright-ca issuer`: the issuing CAs — list them, add one (signed by the root, or
//! from a CSR another root signs), retire one by a date, make one active again.
//! Running instances pick up a new issuer and a state change within a few seconds.

use anyhow::{bail, Context};
use certwright_server::ca::files::{valid_issuer_name, IssuerFiles, FIRST_ISSUER};
use certwright_server::ca::rotation::{self, NewIntermediate};
use certwright_server::ca::{CaKeyType, KeyKind};
use certwright_server::clock::{parse_rfc3339, rfc3339};
use certwright_server::config::LOCAL_BACKEND;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::ConfigArgs;

#[derive(clap::Subcommand)]
pub(crate) enum IssuerAction {
    /// Every issuer: its state, key, expiry and how many of its certificates are valid.
    List,
    /// Bring a new intermediate in, signed by the root (online, or its key named with
    /// --root-key). New certificates of its key type come from it at once.
    Add(AddArgs),
    /// Stop new issuance from an issuer now; its CRL and OCSP go on, and ARI asks the
    /// holders of its certificates to renew before the date.
    Retire {
        /// The issuer (see `issuer list`).
        name: String,
        /// Renew-before date: RFC 3339 (`2027-03-01T00:00:00Z`) or a day (`2027-03-01`).
        #[arg(long)]
        by: String,
        /// Retire it even if no active issuer remains (nothing can be issued then).
        #[arg(long)]
        force: bool,
    },
    /// Make a retired issuer active again.
    Activate {
        /// The issuer.
        name: String,
    },
}

#[derive(clap::Args)]
pub(crate) struct AddArgs {
    /// The new issuer's name: 1-32 of a-z, 0-9 and `-` (e.g. `int-2027-ec`).
    name: String,
    /// Key type of the new intermediate: ec256, ec384, rsa2048, rsa3072 or rsa4096.
    #[arg(long, value_name = "TYPE", default_value = "ec256")]
    key_type: CaKeyType,
    /// Where its key is created: a path (default `issuers/NAME/key.pem`) or a `pkcs11:`
    /// URI (the module and PIN come from the configuration's `[pkcs11]`).
    #[arg(long)]
    key: Option<String>,
    /// The root's key: a path or `pkcs11:` URI (default: the data directory's
    /// `root.key`, or the URI in `root.key-uri`).
    #[arg(long)]
    root_key: Option<String>,
    /// Subject common name (default: "<organization> Intermediate CA <NAME>").
    #[arg(long)]
    common_name: Option<String>,
    /// Lifetime in days (capped at the root's notAfter).
    #[arg(long, default_value_t = 5 * 365)]
    days: u32,
    /// Do not sign here: make the key and write a CSR to FILE for the root to sign
    /// elsewhere (an offline ceremony, a corporate CA); then `--import`.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["import", "root_key"])]
    csr: Option<std::path::PathBuf>,
    /// Install the certificate the root signed for the `--csr` key (with `--chain`: the
    /// certificates up to and including this CA's root).
    #[arg(long, value_name = "CERT", requires = "chain")]
    import: Option<std::path::PathBuf>,
    /// The chain of `--import`.
    #[arg(long, value_name = "CHAIN", requires = "import")]
    chain: Option<std::path::PathBuf>,
}

pub(crate) async fn run(action: IssuerAction, ca: ConfigArgs) -> anyhow::Result<()> {
    match action {
        IssuerAction::List => list(&ca).await,
        IssuerAction::Add(args) => add(args, &ca),
        IssuerAction::Retire { name, by, force } => retire(&ca, &name, &by, force).await,
        IssuerAction::Activate { name } => activate(&ca, &name).await,
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The issuer's certificate: (subject CN, key kind, notAfter).
fn describe(files: &IssuerFiles) -> anyhow::Result<(String, &'static str, i64)> {
    let pem = std::fs::read_to_string(&files.cert)
        .with_context(|| format!("reading {}", files.cert.display()))?;
    let chain = certwright_server::ca::files::pem_chain(&pem)
        .map_err(|e| anyhow::anyhow!("{}: {e}", files.cert.display()))?;
    let der = chain
        .first()
        .with_context(|| format!("{}: no certificate", files.cert.display()))?;
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| anyhow::anyhow!("{}: {e}", files.cert.display()))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or("")
        .to_owned();
    let kind = match cert.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(_)) => KeyKind::Rsa.name(),
        _ => KeyKind::Ecdsa.name(),
    };
    Ok((cn, kind, cert.validity().not_after.timestamp()))
}

async fn list(ca: &ConfigArgs) -> anyhow::Result<()> {
    let config = ca.load()?;
    let store = ca.store(false).await?;
    let states = store.issuer_states().await?;
    let now = now();
    println!(
        "{:<16} {:<38} {:<6} {:<21} {:>7} {:>7} {:<21} {:<36} KEY",
        "NAME", "STATE", "KEY", "NOT AFTER", "VALID", "REVOKED", "LAST EXPIRY", "SUBJECT CN"
    );
    for files in IssuerFiles::all(&config.data_dir)? {
        if !files.cert.exists() {
            println!(
                "{:<16} waiting for its certificate (issuer add --import)",
                files.name
            );
            continue;
        }
        let (cn, kind, not_after) = describe(&files)?;
        let state = match states.iter().find(|s| s.name == files.name) {
            Some(s) if s.retired => format!(
                "retired, renew by {}",
                s.retire_by.map(rfc3339).unwrap_or_default()
            ),
            _ => "active".to_owned(),
        };
        let usage = store.issuer_usage(&files.name, now).await?;
        let key = files
            .key_location()
            .map(|l| l.to_string())
            .unwrap_or_else(|e| e.to_string());
        println!(
            "{:<16} {:<38} {:<6} {:<21} {:>7} {:>7} {:<21} {:<36} {}",
            files.name,
            state,
            kind,
            rfc3339(not_after),
            usage.valid,
            usage.revoked,
            usage.last_expiry.map(rfc3339).unwrap_or_else(|| "-".into()),
            cn,
            key
        );
    }
    Ok(())
}

/// `2027-03-01` or an RFC 3339 time.
fn parse_date(text: &str) -> anyhow::Result<i64> {
    if let Some(t) = parse_rfc3339(text) {
        return Ok(t);
    }
    parse_rfc3339(&format!("{text}T00:00:00Z"))
        .with_context(|| format!("{text:?} is neither a date (2027-03-01) nor an RFC 3339 time"))
}

fn add(args: AddArgs, ca: &ConfigArgs) -> anyhow::Result<()> {
    let config = ca.load()?;
    if !valid_issuer_name(&args.name) || args.name == FIRST_ISSUER {
        bail!(
            "{:?} cannot name a new issuer: use 1-32 of a-z, 0-9 and '-' (and not {FIRST_ISSUER:?})",
            args.name
        );
    }
    if config.backends.contains_key(&args.name) || args.name == LOCAL_BACKEND {
        bail!(
            "{:?} is the name of a backend CA in the configuration: certificates name their issuer or backend in one column; choose another name",
            args.name
        );
    }
    let pkcs11 = certwright_server::app::settings::pkcs11(&config);
    let request = NewIntermediate {
        name: args.name.clone(),
        key_type: args.key_type,
        key: args.key.clone(),
        root_key: args.root_key.clone(),
        common_name: args.common_name.clone(),
        organization: config.ca.organization.clone(),
        days: args.days,
    };
    if let Some(csr) = &args.csr {
        rotation::add_issuer_csr(&config.data_dir, &request, csr, &pkcs11)?;
        println!(
            "issuer {}: key made, CSR written to {}; have the root sign it as a CA \
             (pathLen 0, keyCertSign, cRLSign), then run `certwright-ca issuer add {} \
             --import CERT --chain CHAIN`",
            args.name,
            csr.display(),
            args.name
        );
        return Ok(());
    }
    if let (Some(cert), Some(chain)) = (&args.import, &args.chain) {
        let files = rotation::import_issuer(
            &config.data_dir,
            &args.name,
            cert,
            chain,
            args.key.as_deref(),
            &pkcs11,
        )?;
        println!(
            "issuer {} imported: {}\nrunning instances load it within a few seconds",
            args.name,
            files.cert.display()
        );
        return Ok(());
    }
    let files = rotation::add_issuer(&config.data_dir, &request, &pkcs11)?;
    println!(
        "issuer {} added: {}\nrunning instances load it within a few seconds and issue \
         certificates of its key type from it; retire the old one with \
         `certwright-ca issuer retire OLD --by DATE`",
        args.name,
        files.cert.display()
    );
    Ok(())
}

async fn retire(ca: &ConfigArgs, name: &str, by: &str, force: bool) -> anyhow::Result<()> {
    let config = ca.load()?;
    let by = parse_date(by)?;
    let all = IssuerFiles::all(&config.data_dir)?;
    if !all.iter().any(|f| f.name == name && f.cert.exists()) {
        bail!("no issuer named {name:?} (see `certwright-ca issuer list`)");
    }
    let store = ca.store(false).await?;
    let states = store.issuer_states().await?;
    let active_left = all
        .iter()
        .filter(|f| f.cert.exists())
        .any(|f| f.name != name && !states.iter().any(|s| s.name == f.name && s.retired));
    if !active_left && !force {
        bail!(
            "retiring {name} would leave no active issuer, so nothing could be issued; \
             add one first (`certwright-ca issuer add`), or pass --force"
        );
    }
    let now = now();
    if by < now {
        eprintln!(
            "note: {} is in the past: holders are asked to renew now",
            rfc3339(by)
        );
    }
    if store.retire_issuer(name, by, now).await? {
        println!(
            "issuer {name} retired: no new certificates from it (running instances within \
             a few seconds); its CRL and OCSP go on; ARI asks holders to renew before {}",
            rfc3339(by)
        );
    } else {
        println!("issuer {name} was already retired with that date");
    }
    Ok(())
}

async fn activate(ca: &ConfigArgs, name: &str) -> anyhow::Result<()> {
    let config = ca.load()?;
    if !IssuerFiles::all(&config.data_dir)?
        .iter()
        .any(|f| f.name == name)
    {
        bail!("no issuer named {name:?} (see `certwright-ca issuer list`)");
    }
    let store = ca.store(false).await?;
    if store.activate_issuer(name, now()).await? {
        println!("issuer {name} is active again");
    } else {
        println!("issuer {name} was active");
    }
    Ok(())
}
