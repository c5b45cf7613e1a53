//! `certwright issue | renew | revoke | list | run`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use certwright_client::agent::{AgentConfig, AgentEvent};
use certwright_client::certinfo::read_csr;
use certwright_client::manager::{parse_reason, CertSpec, Manager, Obtained};
use certwright_client::renewal::parse_rfc3339;
use certwright_client::solver::SolverOptions;
use certwright_proto::KeyType;
use clap::Args;
use serde_json::json;

use super::account::EabArgs;
use super::Ctx;

/// Some of several certificates failed.
#[derive(Debug, thiserror::Error)]
#[error("{0} of {1} certificates failed")]
pub(crate) struct Partial(pub usize, pub usize);

#[derive(Debug, Args)]
pub(crate) struct SolverArgs {
    /// http-01: listen on ADDR:PORT.
    #[arg(long, value_name = "ADDR:PORT")]
    http01_listen: Option<SocketAddr>,
    /// http-01: write token files under this web root.
    #[arg(long, value_name = "DIR")]
    webroot: Option<PathBuf>,
    /// tls-alpn-01: listen on ADDR:PORT.
    #[arg(long, value_name = "ADDR:PORT")]
    tlsalpn01_listen: Option<SocketAddr>,
    /// dns-01: call SCRIPT present|cleanup FQDN VALUE.
    #[arg(long, value_name = "SCRIPT")]
    dns01_exec: Option<PathBuf>,
    /// dns-01: RFC 2136 updates as described in this TOML file.
    #[arg(long, value_name = "FILE")]
    dns01_rfc2136: Option<PathBuf>,
    /// dns-01: check propagation at these servers instead of the zone's authoritative ones.
    #[arg(long, value_name = "ADDR:PORT")]
    dns01_resolver: Vec<SocketAddr>,
    /// dns-01: propagation check timeout in seconds.
    #[arg(long, value_name = "SECS")]
    dns01_timeout: Option<u64>,
}

impl SolverArgs {
    fn options(&self) -> SolverOptions {
        SolverOptions {
            http01_listen: self.http01_listen,
            webroot: self.webroot.clone(),
            tlsalpn01_listen: self.tlsalpn01_listen,
            dns01_exec: self.dns01_exec.clone(),
            dns01_rfc2136: self.dns01_rfc2136.clone(),
            dns01_resolvers: self.dns01_resolver.clone(),
            dns01_timeout: self.dns01_timeout,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct IssueArgs {
    /// A name for the certificate (DNS name, wildcard or IP); repeatable.
    #[arg(short = 'd', long = "domain", value_name = "NAME")]
    domains: Vec<String>,
    /// Certificate name in the state directory (default: the first domain).
    #[arg(long)]
    name: Option<String>,
    /// Certificate key type.
    #[arg(long, default_value = "ec256")]
    key_type: String,
    /// Use this CSR (PEM or DER) instead of generating a key.
    #[arg(long, value_name = "FILE")]
    csr: Option<PathBuf>,
    /// Keep the certificate key on renewal.
    #[arg(long)]
    reuse_key: bool,
    /// Ask the CA for this profile.
    #[arg(long)]
    profile: Option<String>,
    /// Prefer the chain whose top issuer has this common name.
    #[arg(long)]
    preferred_chain: Option<String>,
    /// Contact e-mail for a new account; repeatable.
    #[arg(long)]
    email: Vec<String>,
    /// Command run after issuance (sh -c), paths in CERTWRIGHT_* variables.
    #[arg(long)]
    deploy_hook: Option<String>,
    /// Issue even if a valid certificate that is not due exists.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    eab: EabArgs,
    #[command(flatten)]
    solver: SolverArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RenewArgs {
    /// Certificates to renew (default: all).
    names: Vec<String>,
    /// Renew even when not due.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RevokeArgs {
    /// The certificate name.
    name: String,
    /// CRL reason: a code (0-10) or name (keyCompromise, superseded, …).
    #[arg(long, default_value = "unspecified")]
    reason: String,
    /// Sign with the certificate's own key instead of the account key.
    #[arg(long)]
    by_cert_key: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The agent's TOML file.
    #[arg(long, short = 'c')]
    config: PathBuf,
}

fn obtained_json(o: &Obtained, action: &str) -> serde_json::Value {
    json!({
        "action": action,
        "name": o.name,
        "names": o.meta.names,
        "ca": o.server,
        "issuer": o.meta.issuer,
        "serial": o.meta.serial,
        "not_before": o.meta.not_before,
        "not_after": o.meta.not_after,
        "renew_at": o.meta.renew_at,
        "fallbacks": o.fallbacks.iter().map(|(s, e)| json!({"ca": s, "error": e})).collect::<Vec<_>>(),
    })
}

fn obtained_human(o: &Obtained, action: &str, dir: &std::path::Path) -> String {
    let mut s = String::new();
    for (ca, e) in &o.fallbacks {
        s.push_str(&format!("warning: {ca} failed: {e}\n"));
    }
    s.push_str(&format!(
        "{action} {} ({}) from {}\n  issuer:   {}\n  expires:  {}\n  renew at: {}\n  files:    {}",
        o.name,
        o.meta.names.join(", "),
        o.server,
        o.meta.issuer,
        o.meta.not_after,
        o.meta.renew_at,
        dir.display()
    ));
    s
}

pub(crate) async fn issue(ctx: &Ctx, a: IssueArgs) -> Result<()> {
    if ctx.servers.is_empty() {
        bail!(certwright_client::Error::Config(
            "--server URL is required (the CA's directory URL)".into()
        ));
    }
    let (csr, mut domains) = match &a.csr {
        Some(path) => {
            let data = std::fs::read(path).with_context(|| format!("--csr {}", path.display()))?;
            let (der, names) = read_csr(&data)?;
            (Some(der), names)
        }
        None => (None, Vec::new()),
    };
    if !a.domains.is_empty() {
        domains = a.domains.clone();
    }
    if domains.is_empty() {
        bail!(certwright_client::Error::Config(
            "give at least one -d NAME (or --csr)".into()
        ));
    }
    let key_type = KeyType::parse(&a.key_type).ok_or_else(|| {
        certwright_client::Error::Config(format!("unknown --key-type {}", a.key_type))
    })?;
    let solver = a.solver.options().to_spec()?.ok_or_else(|| {
        certwright_client::Error::Config(
            "choose a solver: --http01-listen, --webroot, --tlsalpn01-listen, --dns01-exec or --dns01-rfc2136".into(),
        )
    })?;
    let name = a.name.clone().unwrap_or_else(|| domains[0].clone());
    let manager = ctx.manager()?;
    let previous = manager.store().load_meta(&name)?;
    if let Some(prev) = &previous {
        let same = {
            let (mut x, mut y) = (prev.names.clone(), domains.clone());
            x.sort();
            y.sort();
            x == y
        };
        if same && !a.force && !prev.revoked && Manager::due_at(prev) > manager.now() {
            let v = json!({"action": "unchanged", "name": name, "renew_at": prev.renew_at, "not_after": prev.not_after});
            ctx.print(&v, || {
                format!(
                    "{name} is valid until {} and not due before {}; nothing to do (--force to issue anyway)",
                    prev.not_after, prev.renew_at
                )
            });
            return Ok(());
        }
    }
    let spec = CertSpec {
        names: domains,
        servers: ctx.servers.clone(),
        key_type,
        reuse_key: a.reuse_key,
        solver,
        csr,
        profile: a.profile.clone(),
        preferred_chain: a.preferred_chain.clone(),
        email: a.email.clone(),
        eab: a.eab.eab()?,
        deploy_hook: a.deploy_hook.clone(),
    };
    let spinner = progress_spinner(ctx, &format!("issuing {name}"));
    let result = manager.obtain(&name, &spec, previous.as_ref()).await;
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    let o = result?;
    let dir = manager.store().cert_paths(&name)?.dir;
    ctx.print(&obtained_json(&o, "issued"), || {
        obtained_human(&o, "issued", &dir)
    });
    Ok(())
}

fn progress_spinner(ctx: &Ctx, msg: &str) -> Option<indicatif::ProgressBar> {
    if ctx.json || !std::io::stderr().is_terminal() {
        return None;
    }
    let s = indicatif::ProgressBar::new_spinner();
    s.set_message(msg.to_owned());
    s.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(s)
}

pub(crate) async fn renew(ctx: &Ctx, a: RenewArgs) -> Result<()> {
    let manager = ctx.manager()?;
    let names: Vec<String> = if a.names.is_empty() {
        manager
            .store()
            .list()?
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    } else {
        a.names.clone()
    };
    let bar = (!ctx.json && names.len() > 1 && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(names.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
                .expect("template"),
        );
        b
    });
    let mut results = Vec::new();
    let mut failed = 0;
    for name in &names {
        if let Some(b) = &bar {
            b.set_message(name.clone());
        }
        let r = manager.renew(name, a.force).await;
        if let Some(b) = &bar {
            b.inc(1);
        }
        match r {
            Ok(Some(o)) => {
                let dir = manager.store().cert_paths(name)?.dir;
                ctx.print(&obtained_json(&o, "renewed"), || {
                    obtained_human(&o, "renewed", &dir)
                });
                results.push(Ok(()));
            }
            Ok(None) => {
                let meta = manager.store().load_meta(name)?;
                let due = meta
                    .as_ref()
                    .map(|m| certwright_client::renewal::rfc3339(Manager::due_at(m)));
                ctx.print(
                    &json!({"action": "not_due", "name": name, "renew_at": due}),
                    || {
                        format!(
                            "{name}: not due (renewal at {})",
                            due.clone().unwrap_or_default()
                        )
                    },
                );
                results.push(Ok(()));
            }
            Err(e) => {
                failed += 1;
                ctx.print(&json!({"action": "failed", "name": name, "error": e.to_string(), "problem": e.problem()}), || {
                    String::new()
                });
                if !ctx.json {
                    eprintln!("certwright: renewing {name} FAILED: {e}");
                }
                results.push(Err(e));
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if failed > 0 {
        if names.len() == 1 {
            if let Some(Err(e)) = results.pop() {
                return Err(e.into());
            }
        }
        return Err(Partial(failed, names.len()).into());
    }
    Ok(())
}

pub(crate) async fn revoke(ctx: &Ctx, a: RevokeArgs) -> Result<()> {
    let reason = parse_reason(&a.reason).ok_or_else(|| {
        certwright_client::Error::Config(format!("unknown revocation reason {}", a.reason))
    })?;
    let manager = ctx.manager()?;
    manager.revoke(&a.name, Some(reason), a.by_cert_key).await?;
    ctx.print(
        &json!({"action": "revoked", "name": a.name, "reason": reason}),
        || format!("revoked {} (reason {reason})", a.name),
    );
    Ok(())
}

pub(crate) fn list(ctx: &Ctx) -> Result<()> {
    let manager = ctx.manager()?;
    let now = manager.now();
    let mut rows = Vec::new();
    for (name, meta) in manager.store().list()? {
        let days_left = parse_rfc3339(&meta.not_after).map(|t| (t - now).whole_days());
        rows.push(json!({
            "name": name,
            "names": meta.names,
            "issuer": meta.issuer,
            "ca": meta.issued_by,
            "not_after": meta.not_after,
            "days_left": days_left,
            "next_renewal": certwright_client::renewal::rfc3339(Manager::due_at(&meta)),
            "revoked": meta.revoked,
            "failures": meta.failures,
            "last_error": meta.last_error,
        }));
    }
    ctx.print(&json!(rows), || {
        if rows.is_empty() {
            return "no certificates".into();
        }
        let mut table: Vec<[String; 6]> = vec![[
            "NAME".into(),
            "ISSUER".into(),
            "EXPIRES".into(),
            "DAYS LEFT".into(),
            "NEXT RENEWAL".into(),
            "NAMES".into(),
        ]];
        for r in &rows {
            let mut names = r["names"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            if r["revoked"].as_bool() == Some(true) {
                names.push_str("  [revoked]");
            }
            if let Some(e) = r["last_error"].as_str() {
                names.push_str(&format!("  [last renewal failed: {e}]"));
            }
            table.push([
                r["name"].as_str().unwrap_or("").to_owned(),
                r["issuer"].as_str().unwrap_or("").to_owned(),
                r["not_after"].as_str().unwrap_or("").to_owned(),
                r["days_left"]
                    .as_i64()
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
                r["next_renewal"].as_str().unwrap_or("").to_owned(),
                names,
            ]);
        }
        let widths: Vec<usize> = (0..6)
            .map(|i| table.iter().map(|row| row[i].len()).max().unwrap_or(0))
            .collect();
        let mut s = String::new();
        for row in &table {
            let line = row
                .iter()
                .enumerate()
                .map(|(i, cell)| {
                    if i == 3 {
                        format!("{cell:>w$}", w = widths[i])
                    } else {
                        format!("{cell:<w$}", w = widths[i])
                    }
                })
                .collect::<Vec<_>>()
                .join("  ");
            s.push_str(line.trim_end());
            s.push('\n');
        }
        s.trim_end().to_owned()
    });
    Ok(())
}

pub(crate) async fn run_agent(ctx: &Ctx, a: RunArgs) -> Result<()> {
    let config = AgentConfig::load(&a.config)?;
    let mut trust = ctx.trust.clone();
    for p in &config.ca_cert {
        trust.push(std::fs::read(p).with_context(|| format!("ca_cert {}", p.display()))?);
    }
    let mut certs = config.specs()?;
    if !ctx.servers.is_empty() {
        for (_, spec) in &mut certs {
            if spec.servers.is_empty() {
                spec.servers = ctx.servers.clone();
            }
        }
    }
    let state_dir = config
        .state_dir
        .clone()
        .filter(|_| std::env::var_os("CERTWRIGHT_STATE_DIR").is_none());
    let ctx = Ctx {
        json: ctx.json,
        servers: ctx.servers.clone(),
        trust,
        state_dir: state_dir.unwrap_or_else(|| ctx.state_dir.clone()),
        clock: ctx.clock,
    };
    let manager = ctx.manager()?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        let _ = tx.send(true);
    });
    let json = ctx.json;
    let report = move |e: &AgentEvent| {
        let (v, text) = match e {
            AgentEvent::Issued { name, ca } => (
                json!({"event": "issued", "name": name, "ca": ca}),
                format!("issued {name} from {ca}"),
            ),
            AgentEvent::Renewed { name, ca } => (
                json!({"event": "renewed", "name": name, "ca": ca}),
                format!("renewed {name} from {ca}"),
            ),
            AgentEvent::Failed { name, error } => (
                json!({"event": "failed", "name": name, "error": error}),
                format!("FAILED {name}: {error}"),
            ),
        };
        if json {
            println!("{v}");
        } else if matches!(e, AgentEvent::Failed { .. }) {
            eprintln!("certwright: {text}");
        } else {
            println!("{text}");
        }
    };
    if !json {
        println!(
            "certwright agent: {} certificate(s), state in {}",
            certs.len(),
            ctx.state_dir.display()
        );
    }
    certwright_client::agent::run(&manager, &certs, rx, &report).await?;
    if !json {
        println!("certwright agent: stopped");
    } else {
        println!("{}", json!({"event": "stopped"}));
    }
    Ok(())
}
