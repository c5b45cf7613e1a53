//! `certwright issue | renew | revoke | list | run`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use certwright_client::agent::{AgentConfig, AgentEvent, AgentState};
use certwright_client::certinfo::read_csr;
use certwright_client::manager::{
    parse_reason, CertSpec, MaintainOptions, Manager, Obtained, Outcome,
};
use certwright_client::monitor::Monitor;
use certwright_client::renewal::{parse_rfc3339, rfc3339};
use certwright_client::solver::SolverOptions;
use certwright_proto::KeyType;
use clap::Args;
use serde_json::json;

use super::account::EabArgs;
use super::{Ctx, Reported};

/// Some of several certificates failed.
#[derive(Debug, thiserror::Error)]
#[error("{0} of {1} certificates failed")]
pub(crate) struct Partial(pub usize, pub usize);

#[derive(Debug, Args)]
pub(crate) struct SolverArgs {
    /// http-01: listen on ADDR:PORT (`:80`: every IPv4 address).
    #[arg(long, value_name = "ADDR:PORT", value_parser = listen_arg)]
    http01_listen: Option<SocketAddr>,
    /// http-01: write token files under this web root.
    #[arg(long, value_name = "DIR")]
    webroot: Option<PathBuf>,
    /// tls-alpn-01: listen on ADDR:PORT (`:443`: every IPv4 address).
    #[arg(long, value_name = "ADDR:PORT", value_parser = listen_arg)]
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

fn listen_arg(text: &str) -> std::result::Result<SocketAddr, String> {
    certwright_client::solver::parse_listen(text).map_err(|e| e.to_string())
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
    /// Command run before the certificate is requested (sh -c), e.g. to free port 80.
    #[arg(long)]
    pre_hook: Option<String>,
    /// Command run after the CA work, whatever its outcome (sh -c).
    #[arg(long)]
    post_hook: Option<String>,
    /// After the deploy hook, check that HOST:PORT serves the new certificate (SNI: the
    /// first name); repeatable.
    #[arg(long, value_name = "HOST:PORT")]
    verify: Vec<String>,
    /// Issue even if a valid certificate that is not due exists.
    #[arg(long)]
    force: bool,
    /// Check the local preconditions and say what would be done; contact no CA.
    #[arg(long)]
    dry_run: bool,
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
    /// Check each certificate's local preconditions and say which are due; contact no
    /// CA and change nothing.
    #[arg(long)]
    dry_run: bool,
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
pub(crate) struct CheckConfigArgs {
    /// The agent's TOML file.
    file: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// The certificate name.
    name: String,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The agent's TOML file.
    #[arg(long, short = 'c')]
    config: PathBuf,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<SocketAddr>,
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
        "deploy": if o.deploy_error.is_some() { "failed" } else { "ok" },
        "deploy_error": o.deploy_error,
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
    if let Some(e) = &o.deploy_error {
        s.push_str(&format!(
            "\n  deploy:   FAILED: {e} (recorded; `certwright renew` retries it)"
        ));
    }
    s
}

/// Prints an issued or renewed certificate; a failed deploy hook makes it a failure
/// (exit 1) once printed.
fn print_obtained(ctx: &Ctx, o: &Obtained, action: &str, dir: &std::path::Path) -> Result<()> {
    ctx.print(&obtained_json(o, action), || obtained_human(o, action, dir));
    if o.deploy_error.is_some() {
        return Err(Reported(super::exit::FAILURE).into());
    }
    Ok(())
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
    // Local mistakes are found before any CA is contacted (and leave no state behind). A
    // pre-hook may free a listener's port: then the port is checked after it ran.
    match &a.pre_hook {
        None => solver.check_local(&domains)?,
        Some(_) => certwright_client::solver::preflight::check_static(&solver, &domains)?,
    }
    let name = a.name.clone().unwrap_or_else(|| domains[0].clone());
    if a.dry_run {
        ctx.print(
            &json!({"action": "dry_run", "name": name, "names": domains, "servers": ctx.servers, "solver": solver.describe(), "preconditions": "ok"}),
            || {
                format!(
                    "dry run: {name} ({}) would be requested from {} with {}; local preconditions OK",
                    domains.join(", "),
                    ctx.servers.join(", then "),
                    solver.describe()
                )
            },
        );
        return Ok(());
    }
    let manager = ctx.manager()?;
    let previous = manager.store().load_meta(&name)?;
    if let Some(prev) = &previous {
        let same = {
            let (mut x, mut y) = (prev.names.clone(), domains.clone());
            x.sort();
            y.sort();
            x == y
        };
        if same && !a.force && prev.is_issued() && Manager::renewal_due_at(prev) > manager.now() {
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
        verify: a.verify.clone(),
        pre_hook: a.pre_hook.clone(),
        post_hook: a.post_hook.clone(),
    };
    let spinner = progress_spinner(ctx, &format!("issuing {name}"));
    let result = manager.obtain(&name, &spec, previous.as_ref()).await;
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    let o = result?;
    let dir = manager.store().cert_paths(&name)?.dir;
    print_obtained(ctx, &o, "issued", &dir)
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
    if a.dry_run {
        return renew_dry_run(ctx, &manager, &names, a.force);
    }
    // `--server` moves the certificates to these CAs (from this renewal on).
    let servers = (!ctx.servers.is_empty()).then_some(ctx.servers.as_slice());
    let opts = MaintainOptions {
        force: a.force,
        servers,
        ..MaintainOptions::default()
    };
    let mut codes = Vec::new();
    for name in &names {
        if let Some(b) = &bar {
            b.set_message(name.clone());
        }
        let r = manager.maintain(name, &opts).await;
        if let Some(b) = &bar {
            b.inc(1);
        }
        let dir = manager.store().cert_paths(name)?.dir;
        let printed = |o: &Obtained, action: &str| {
            print_obtained(ctx, o, action, &dir)
                .err()
                .map(|_| super::exit::FAILURE)
        };
        match r {
            Ok(Outcome::Renewed(o)) => codes.push(printed(&o, "renewed")),
            Ok(Outcome::Issued(o)) => codes.push(printed(&o, "issued")),
            Ok(Outcome::Deployed) => {
                ctx.print(&json!({"action": "deployed", "name": name}), || {
                    format!("{name}: deploy hook succeeded on retry")
                });
                codes.push(None);
            }
            Ok(Outcome::NotDue { at }) => {
                let due = rfc3339(at);
                // A deploy hook that failed stays a failure until a retry succeeds.
                let failed_deploy = manager
                    .store()
                    .load_meta(name)?
                    .and_then(|m| m.deploy_failure);
                if let Some(d) = failed_deploy {
                    ctx.print(
                        &json!({"action": "deploy_failed", "name": name, "error": d.error, "retry_at": d.retry_at}),
                        String::new,
                    );
                    if !ctx.json {
                        eprintln!(
                            "certwright: deploy hook of {name} failed: {} (retried at {})",
                            d.error, d.retry_at
                        );
                    }
                    codes.push(Some(super::exit::FAILURE));
                    continue;
                }
                ctx.print(
                    &json!({"action": "not_due", "name": name, "renew_at": due}),
                    || format!("{name}: not due (next action at {due})"),
                );
                codes.push(None);
            }
            Ok(Outcome::Held) => codes.push(None),
            Err(e) => {
                ctx.print(
                    &json!({"action": "failed", "name": name, "error": e.to_string(), "problem": e.problem()}),
                    String::new,
                );
                if !ctx.json {
                    eprintln!("certwright: renewing {name} failed: {e}");
                }
                codes.push(Some(super::error_exit_code(&e)));
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let failed: Vec<u8> = codes.iter().flatten().copied().collect();
    match (failed.len(), names.len()) {
        (0, _) => Ok(()),
        (_, 1) => Err(Reported(failed[0]).into()),
        (n, total) => {
            if !ctx.json {
                eprintln!("certwright: {}", Partial(n, total));
            }
            Err(Reported(super::exit::PARTIAL).into())
        }
    }
}

/// `renew --dry-run`: per certificate, whether it is due (without asking the CA's ARI
/// endpoint) and whether its solver's local preconditions hold.
fn renew_dry_run(ctx: &Ctx, manager: &Manager, names: &[String], force: bool) -> Result<()> {
    let now = manager.now();
    let mut codes = Vec::new();
    for name in names {
        let meta = manager.store().load_meta(name)?.ok_or_else(|| {
            certwright_client::Error::Config(format!("no certificate named {name}"))
        })?;
        let due = force || Manager::renewal_due_at(&meta) <= now;
        let next = rfc3339(Manager::next_action_at(&meta).max(now));
        let check = meta.solver.check_local(&meta.names);
        let verdict = match &check {
            Ok(()) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        ctx.print(
            &json!({"action": "dry_run", "name": name, "due": due, "next": next, "servers": meta.servers, "preconditions": verdict}),
            || {
                format!(
                    "dry run: {name}: {} ({}); local preconditions: {verdict}",
                    if due { "would be renewed now" } else { "not due" },
                    if due { "now".to_owned() } else { next.clone() },
                )
            },
        );
        codes.push(check.err().map(|e| super::error_exit_code(&e)));
    }
    let failed: Vec<u8> = codes.iter().flatten().copied().collect();
    match (failed.len(), names.len()) {
        (0, _) => Ok(()),
        (_, 1) => Err(Reported(failed[0]).into()),
        _ => Err(Reported(super::exit::PARTIAL).into()),
    }
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
        let status = Manager::status(&meta, now);
        // The error that explains the status: the deploy hook's, or the last issuance's.
        let error = meta
            .deploy_failure
            .as_ref()
            .map(|f| format!("deploy hook: {}", f.error))
            .or_else(|| meta.last_error.clone().filter(|_| meta.failures > 0));
        let next = match status {
            "revoked" | "due" | "expired" => "now".to_owned(),
            _ => rfc3339(Manager::next_action_at(&meta).max(now)),
        };
        rows.push(json!({
            "name": name,
            "status": status,
            "names": meta.names,
            "issuer": meta.issuer,
            "ca": if meta.is_issued() { &meta.issued_by } else { meta.servers.first().unwrap_or(&meta.issued_by) },
            "not_after": meta.not_after,
            "days_left": days_left,
            "next_renewal": next,
            "revoked": meta.revoked,
            "failures": meta.failures,
            "last_error": meta.last_error,
            "deploy_failure": meta.deploy_failure,
            "error": error,
        }));
    }
    ctx.print(&json!(rows), || {
        if rows.is_empty() {
            return "no certificates".into();
        }
        const COLUMNS: usize = 7;
        let mut table: Vec<[String; COLUMNS]> = vec![[
            "NAME".into(),
            "STATUS".into(),
            "ISSUER".into(),
            "EXPIRES".into(),
            "DAYS LEFT".into(),
            "NEXT".into(),
            "NAMES".into(),
        ]];
        let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
        let mut errors = Vec::new();
        for r in &rows {
            let names = r["names"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            if let Some(e) = r["error"].as_str() {
                errors.push(format!("{}: {e}", text(&r["name"])));
            }
            table.push([
                text(&r["name"]),
                text(&r["status"]),
                text(&r["issuer"]),
                text(&r["not_after"]),
                r["days_left"]
                    .as_i64()
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
                text(&r["next_renewal"]),
                names,
            ]);
        }
        let widths: Vec<usize> = (0..COLUMNS)
            .map(|i| table.iter().map(|row| row[i].len()).max().unwrap_or(0))
            .collect();
        let mut s = String::new();
        for row in &table {
            let line = row
                .iter()
                .enumerate()
                .map(|(i, cell)| {
                    if i == 4 {
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
        if !errors.is_empty() {
            s.push('\n');
            for e in errors {
                s.push_str(&format!("error {e}\n"));
            }
        }
        s.trim_end().to_owned()
    });
    Ok(())
}

/// The agent file's certificates, with `--server` as the default CA list.
fn agent_specs(ctx: &Ctx, config: &AgentConfig) -> Result<Vec<(String, CertSpec)>> {
    let mut certs = config.specs()?;
    if !ctx.servers.is_empty() {
        for (_, spec) in &mut certs {
            if spec.servers.is_empty() {
                spec.servers = ctx.servers.clone();
            }
        }
    }
    Ok(certs)
}

pub(crate) async fn run_agent(ctx: &Ctx, a: RunArgs) -> Result<()> {
    let config = AgentConfig::load(&a.config)?;
    let mut trust = ctx.trust.clone();
    for p in &config.ca_cert {
        trust.push(std::fs::read(p).map_err(|e| {
            certwright_client::Error::Config(format!("ca_cert {}: {e}", p.display()))
        })?);
    }
    let certs = agent_specs(ctx, &config)?;
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
    let manager = std::sync::Arc::new(ctx.manager()?);
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
    // SIGHUP: read the file again; a file that does not load keeps the running list.
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    let hup_ctx = Ctx {
        json,
        servers: ctx.servers.clone(),
        trust: Vec::new(),
        state_dir: ctx.state_dir.clone(),
        clock: ctx.clock,
    };
    let file = a.config.clone();
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            let loaded = AgentConfig::load(&file)
                .map_err(anyhow::Error::from)
                .and_then(|c| agent_specs(&hup_ctx, &c));
            match loaded {
                Ok(certs) => {
                    let names: Vec<String> = certs.iter().map(|(n, _)| n.clone()).collect();
                    hup_ctx.print(
                        &json!({"event": "reloaded", "file": file, "certificates": names}),
                        || {
                            format!(
                                "reloaded {}: {} certificate(s)",
                                file.display(),
                                names.len()
                            )
                        },
                    );
                    if reload_tx.send(certs).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let why = super::one_line(&e);
                    if json {
                        println!(
                            "{}",
                            json!({"event": "reload_failed", "file": file, "error": why})
                        );
                    } else {
                        eprintln!(
                            "certwright: reloading {} failed, keeping the running configuration: {why}",
                            file.display()
                        );
                    }
                }
            }
        }
    });
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
            AgentEvent::Deployed { name } => (
                json!({"event": "deployed", "name": name}),
                format!("deploy hook of {name} succeeded on retry"),
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
    let monitor = Monitor::new(ctx.state_dir.join("status.json"));
    if let Some(addr) = a.metrics {
        let bound = monitor.serve(addr).await?;
        tracing::info!(%bound, "metrics at /metrics");
    }
    let state = AgentState::new(config.notifier()?).with_monitor(monitor);
    certwright_client::agent::run(&manager, certs, rx, reload_rx, state, &report).await?;
    if !json {
        println!("certwright agent: stopped");
    } else {
        println!("{}", json!({"event": "stopped"}));
    }
    Ok(())
}

pub(crate) fn check_config(ctx: &Ctx, a: CheckConfigArgs) -> Result<()> {
    let config = AgentConfig::load(&a.file)?;
    for p in &config.ca_cert {
        std::fs::read(p).map_err(|e| {
            certwright_client::Error::Config(format!("ca_cert {}: {e}", p.display()))
        })?;
    }
    let specs = config.specs()?;
    let names: Vec<&str> = specs.iter().map(|(n, _)| n.as_str()).collect();
    ctx.print(
        &json!({"action": "config_ok", "file": a.file, "certificates": names}),
        || {
            format!(
                "{}: OK, {} certificate(s): {}",
                a.file.display(),
                names.len(),
                names.join(", ")
            )
        },
    );
    Ok(())
}

pub(crate) fn delete(ctx: &Ctx, a: DeleteArgs) -> Result<()> {
    let manager = ctx.manager()?;
    if !manager.store().delete(&a.name)? {
        bail!(certwright_client::Error::Config(format!(
            "no certificate named {}",
            a.name
        )));
    }
    ctx.print(&json!({"action": "deleted", "name": a.name}), || {
        format!(
            "{}: deleted (no longer managed; revoke it first if its key is at risk)",
            a.name
        )
    });
    Ok(())
}
