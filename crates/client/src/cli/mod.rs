//! Command-line parsing, output (human or JSON) and exit codes.

mod account;
mod certs;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use certwright_client::clock::SystemClock;
use certwright_client::manager::Manager;
use certwright_client::store::Store;
use certwright_client::Error;
use clap::{Parser, Subcommand};

/// Exit codes.
pub(crate) mod exit {
    /// Everything worked (also: nothing was due).
    pub(crate) const OK: u8 = 0;
    /// A failure that is not the CA's refusal.
    pub(crate) const FAILURE: u8 = 1;
    /// Bad arguments (clap also uses 2).
    pub(crate) const USAGE: u8 = 2;
    /// The CA refused with a problem document.
    pub(crate) const CA_REFUSED: u8 = 3;
    /// Some of several certificates failed.
    pub(crate) const PARTIAL: u8 = 4;
    /// Another certwright run holds the lock.
    pub(crate) const LOCKED: u8 = 5;
}

/// certwright: an ACME (RFC 8555) client and renewal agent.
#[derive(Debug, Parser)]
#[command(name = "certwright", version, about)]
pub(crate) struct Cli {
    /// ACME directory URL; repeat to fall back to the next CA on failure.
    #[arg(long, global = true, env = "CERTWRIGHT_SERVER", value_delimiter = ',')]
    server: Vec<String>,
    /// Trust this PEM root (a private CA's, or a test server's); repeatable.
    #[arg(long, global = true, env = "CERTWRIGHT_CA_CERT", value_delimiter = ',')]
    ca_cert: Vec<PathBuf>,
    /// State directory (accounts, certificates).
    #[arg(long, global = true, env = "CERTWRIGHT_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Machine-readable JSON output on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Test only: shift the clock by this many seconds.
    #[arg(
        long,
        global = true,
        hide = true,
        env = "CERTWRIGHT_TEST_TIME_OFFSET",
        allow_hyphen_values = true
    )]
    test_time_offset: Option<i64>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage the account at the CA (--server).
    #[command(subcommand)]
    Account(account::AccountCommand),
    /// Get a certificate.
    Issue(Box<certs::IssueArgs>),
    /// Renew certificates that are due (or all given with --force).
    Renew(certs::RenewArgs),
    /// Revoke a certificate.
    Revoke(certs::RevokeArgs),
    /// List every managed certificate: state, issuer, expiry, next renewal, last error.
    List,
    /// Run the renewal agent from a TOML file until SIGTERM.
    Run(certs::RunArgs),
    /// Check an agent configuration file without contacting any CA.
    CheckConfig(certs::CheckConfigArgs),
    /// Stop managing a certificate: remove its directory (files, key, metadata).
    Delete(certs::DeleteArgs),
}

/// Global context for the commands.
pub(crate) struct Ctx {
    pub json: bool,
    pub servers: Vec<String>,
    pub trust: Vec<Vec<u8>>,
    pub state_dir: PathBuf,
    pub clock: SystemClock,
}

impl Ctx {
    pub(crate) fn manager(&self) -> Result<Manager> {
        let store = Store::open(&self.state_dir)
            .with_context(|| format!("state directory {}", self.state_dir.display()))?;
        Ok(Manager::new(
            store,
            Arc::new(self.clock),
            self.trust.clone(),
        ))
    }

    pub(crate) fn server(&self) -> Result<&str> {
        self.servers
            .first()
            .map(String::as_str)
            .context("--server URL is required (the CA's directory URL)")
    }

    /// Prints a JSON value (with --json) or the human text.
    pub(crate) fn print(&self, value: &serde_json::Value, human: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            let text = human();
            if !text.is_empty() {
                println!("{text}");
            }
        }
    }
}

fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(d).join("certwright");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".local/state/certwright");
    }
    PathBuf::from("certwright-state")
}

fn init_logging(verbose: u8, json: bool) {
    // Without -v only certwright's own warnings: what fails is reported once, as the
    // command's result, not again by the HTTP and TLS libraries.
    let default = match verbose {
        0 => "off,certwright=warn,certwright_client=warn",
        1 => "info,certwright_client=info",
        _ => "debug,hyper=info,h2=info,rustls=info,reqwest=info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CERTWRIGHT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The exit code of a library error (the table in docs/client.md).
pub(crate) fn error_exit_code(err: &Error) -> u8 {
    match err {
        Error::Locked(_) => exit::LOCKED,
        Error::Config(_) => exit::USAGE,
        e if e.problem().is_some() => exit::CA_REFUSED,
        Error::AllCasFailed(v) if v.iter().all(|(_, e)| e.problem().is_some()) => exit::CA_REFUSED,
        _ => exit::FAILURE,
    }
}

/// The exit code for an error.
fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(err) = cause.downcast_ref::<Error>() {
            return error_exit_code(err);
        }
        if cause.downcast_ref::<certs::Partial>().is_some() {
            return exit::PARTIAL;
        }
        if let Some(r) = cause.downcast_ref::<Reported>() {
            return r.0;
        }
    }
    exit::FAILURE
}

/// A failure already printed (per certificate, or with its result): only its exit code
/// is left to give.
#[derive(Debug, thiserror::Error)]
#[error("reported")]
pub(crate) struct Reported(pub(crate) u8);

/// An error as one line: each context and cause once (a cause whose text the line
/// already holds is not repeated).
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.json);
    let json = cli.json;
    let result = (|| -> Result<()> {
        let mut trust = Vec::new();
        for path in &cli.ca_cert {
            trust.push(
                std::fs::read(path)
                    .map_err(|e| Error::Config(format!("--ca-cert {}: {e}", path.display())))?,
            );
        }
        let ctx = Ctx {
            json: cli.json,
            servers: cli.server.clone(),
            trust,
            state_dir: cli.state_dir.clone().unwrap_or_else(default_state_dir),
            clock: SystemClock::with_offset(time::Duration::seconds(
                cli.test_time_offset.unwrap_or(0),
            )),
        };
        let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
        rt.block_on(async {
            match cli.command {
                Command::Account(c) => account::run(&ctx, c).await,
                Command::Issue(a) => certs::issue(&ctx, *a).await,
                Command::Renew(a) => certs::renew(&ctx, a).await,
                Command::Revoke(a) => certs::revoke(&ctx, a).await,
                Command::List => certs::list(&ctx),
                Command::Run(a) => certs::run_agent(&ctx, a).await,
                Command::CheckConfig(a) => certs::check_config(&ctx, a),
                Command::Delete(a) => certs::delete(&ctx, a),
            }
        })
    })();
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) if e.downcast_ref::<Reported>().is_some() => ExitCode::from(exit_code(&e)),
        Err(e) => {
            let code = exit_code(&e);
            if json {
                let problem = e
                    .chain()
                    .find_map(|c| c.downcast_ref::<Error>())
                    .and_then(|e| e.problem())
                    .map(|p| serde_json::to_value(p).unwrap_or_default());
                println!(
                    "{}",
                    serde_json::json!({"error": one_line(&e), "problem": problem, "exit_code": code})
                );
            } else {
                eprintln!("certwright: {}", one_line(&e));
            }
            ExitCode::from(code)
        }
    }
}
