//! The `certwright-va-agent` binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use certwright_va_agent::files::{AgentDir, CERT_FILE};
use certwright_va_agent::{enroll, run, tls};

/// Where the agent keeps its key, certificates and state unless `--dir` says otherwise.
const DEFAULT_DIR: &str = "/var/lib/certwright-va-agent";

/// A remote validation agent for certwright-ca: validates ACME challenges from inside a
/// network segment, connecting out to the CA (no inbound port).
#[derive(Parser)]
#[command(name = "certwright-va-agent", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Exchange a one-time token from `certwright-ca agent enroll` for a client certificate.
    Enroll {
        /// The CA's agent listener, https://HOST:PORT.
        #[arg(long)]
        server: String,
        /// The token `certwright-ca agent enroll NAME --segment SEG` printed.
        #[arg(long, env = "CERTWRIGHT_VA_AGENT_TOKEN", hide_env_values = true)]
        token: String,
        /// The agent's directory (key, certificate, CA, state).
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// Replace an existing enrolment in DIR.
        #[arg(long)]
        force: bool,
    },
    /// Poll the CA for validation jobs and run them.
    Run {
        /// The agent's directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// A CA instance's agent listener (once per instance); default: the one enrolled with.
        #[arg(long = "server")]
        servers: Vec<String>,
        /// The DNS server to ask (ADDR:PORT); default: the system's resolvers.
        #[arg(long)]
        dns: Option<SocketAddr>,
        /// An address range (CIDR) never contacted, on top of the reserved ones; repeatable.
        #[arg(long)]
        deny: Vec<String>,
        /// Long polls kept open per server, and so jobs run at once per server.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
        max_concurrent: u16,
        /// Serve Prometheus metrics on this address (GET /metrics).
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
    },
    /// Show the enrolment: name, segment, servers, certificate expiry.
    Status {
        /// The agent's directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One crypto provider for every TLS connection the agent makes (to the CA and to the
    // hosts it validates).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<run::Removed>().is_some()
                || e.downcast_ref::<run::Refused>().is_some()
            {
                ExitCode::from(run::EXIT_REMOVED)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Enroll {
            server,
            token,
            dir,
            force,
        } => {
            let dir = AgentDir::new(dir);
            let done = enroll::enroll(&server, &token, &dir, force).await?;
            println!(
                "enrolled as {} for segment {} at {}; certificate expires {}",
                done.state.name,
                done.state.segment,
                done.state.servers.join(", "),
                tls::rfc3339(done.not_after)
            );
            println!("next: certwright-va-agent run --dir {}", dir.dir.display());
            Ok(())
        }
        Command::Run {
            dir,
            servers,
            dns,
            deny,
            max_concurrent,
            metrics_listen,
        } => {
            use tokio::signal::unix::{signal, SignalKind};
            // Registered before anything runs: a signal from now on stops the agent cleanly.
            let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
            let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
            let (tx, rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                let _ = tx.send(true);
            });
            run::run(
                run::RunOptions {
                    dir: AgentDir::new(dir),
                    servers,
                    dns,
                    deny,
                    max_concurrent: usize::from(max_concurrent),
                    metrics_listen,
                },
                rx,
            )
            .await
        }
        Command::Status { dir } => {
            let dir = AgentDir::new(dir);
            let state = dir.read_state()?;
            let id = run::load_identity(&dir)
                .with_context(|| format!("reading {}", dir.path(CERT_FILE).display()))?;
            let now = tls::unix_now();
            let expiry = if id.info.not_after <= now {
                "EXPIRED: enrol again".to_owned()
            } else {
                format!("in {} days", (id.info.not_after - now) / 86_400)
            };
            println!("name:        {}", state.name);
            println!("segment:     {}", state.segment);
            for s in &state.servers {
                println!("server:      {s}");
            }
            println!("subject:     {}", id.info.subject);
            println!(
                "expires:     {} ({expiry})",
                tls::rfc3339(id.info.not_after)
            );
            println!("renews at:   {}", tls::rfc3339(id.info.renew_at()));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The flags docs/remote-validation.md documents (and other tests drive) stay as they are.
    #[test]
    fn the_documented_command_lines_parse() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "certwright-va-agent",
            "enroll",
            "--server",
            "https://ca.test:14003",
            "--token",
            "cwva1.a.b.c",
            "--dir",
            "/tmp/a",
            "--force",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::Enroll { force: true, .. }));
        let cli = Cli::try_parse_from([
            "certwright-va-agent",
            "run",
            "--dir",
            "/tmp/a",
            "--server",
            "https://ca1.test:14003",
            "--server",
            "https://ca2.test:14003",
            "--dns",
            "10.0.0.53:53",
            "--deny",
            "10.9.0.0/16",
            "--deny",
            "192.0.2.1",
            "--max-concurrent",
            "8",
            "--metrics-listen",
            "127.0.0.1:9464",
        ])
        .unwrap();
        let Command::Run {
            servers,
            deny,
            max_concurrent,
            dns,
            metrics_listen,
            ..
        } = cli.command
        else {
            panic!("not run");
        };
        assert_eq!(servers.len(), 2);
        assert_eq!(deny.len(), 2);
        assert_eq!(max_concurrent, 8);
        assert!(dns.is_some() && metrics_listen.is_some());
        let cli = Cli::try_parse_from(["certwright-va-agent", "run"]).unwrap();
        let Command::Run {
            dir,
            max_concurrent,
            ..
        } = cli.command
        else {
            panic!("not run");
        };
        assert_eq!(dir, PathBuf::from(DEFAULT_DIR));
        assert_eq!(max_concurrent, 4);
        assert!(Cli::try_parse_from(["certwright-va-agent", "status", "--dir", "/tmp/a"]).is_ok());
        assert!(
            Cli::try_parse_from(["certwright-va-agent", "run", "--max-concurrent", "0"]).is_err()
        );
    }
}
