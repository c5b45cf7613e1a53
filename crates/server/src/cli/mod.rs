//! `certwright-ca`'s command line: parsing, the configuration overlay shared by every
//! command (defaults, then the file, then flags and `CERTWRIGHT_*` variables), and
//! dispatch to one module per command area. Operator errors are printed with their
//! `Display` (the whole chain), exit status 1.

mod agent;
mod audit;
mod backends;
mod certs;
mod check;
mod data;
mod eab;
mod init;
mod issuer;
mod operator;
mod revoke;
mod serve;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use certwright_server::app::{CaServer, Options};
use certwright_server::ca::hierarchy::HierarchyPaths;
use certwright_server::config::Config;
use certwright_server::store::{Actor, Store, StoreOptions};
use clap::{Parser, Subcommand};

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
    Serve(serve::ServeArgs),
    /// Create the CA explicitly: key types and locations (file or pkcs11: URI), names,
    /// lifetimes, path length, name constraints, an offline root — or an intermediate
    /// that another CA signs (--intermediate-csr, then --import-intermediate). Refuses to
    /// touch an existing CA.
    Init(Box<init::InitArgs>),
    /// Print the root certificate (PEM), for clients to trust.
    Root {
        #[command(flatten)]
        ca: ConfigArgs,
    },
    /// Manage External Account Binding keys.
    Eab {
        #[command(subcommand)]
        action: eab::EabAction,
        #[command(flatten)]
        ca: ConfigArgs,
    },
    /// The issuing CAs: list, add (rotation), retire by a date, activate.
    Issuer {
        #[command(subcommand)]
        action: issuer::IssuerAction,
        #[command(flatten)]
        ca: ConfigArgs,
    },
    /// The backend CAs orders are forwarded to, the routing rules, and the forwarded
    /// orders still in flight (docs/upstream.md).
    Backends {
        #[command(flatten)]
        ca: ConfigArgs,
    },
    /// Revoke a certificate as the operator (publishes a new CRL).
    Revoke(revoke::RevokeArgs),
    /// Apply pending database migrations (the server refuses a schema newer than it knows).
    Migrate {
        #[command(flatten)]
        ca: ConfigArgs,
    },
    /// Write the whole database as JSON lines (e.g. to move from SQLite to PostgreSQL).
    Export(data::ExportArgs),
    /// Load an export into an empty database (select it with --database-url).
    Import(data::ImportArgs),
    /// The audit trail: check its hash chain, or export it.
    Audit {
        #[command(subcommand)]
        action: audit::AuditAction,
        #[command(flatten)]
        ca: ConfigArgs,
    },
    /// The inventory of every certificate the CA issued.
    Certs {
        #[command(subcommand)]
        action: certs::CertsAction,
        #[command(flatten)]
        ca: ConfigArgs,
    },
    /// Ask clients to renew a certificate now: its ARI window moves into the past.
    RenewEarly(revoke::RenewEarlyArgs),
    /// The operator console's operators: add (viewer or admin), list, remove.
    Operator {
        #[command(subcommand)]
        action: operator::OperatorAction,
        #[command(flatten)]
        ca: ConfigArgs,
    },
    /// Remote validation agents: enroll (a one-time token), list, remove
    /// (docs/remote-validation.md).
    Agent {
        #[command(subcommand)]
        action: agent::AgentAction,
        #[command(flatten)]
        ca: ConfigArgs,
    },
    /// Check the database's invariants (nothing left processing, valid orders with their
    /// certificates); prints each violation and fails if there is any.
    Check {
        #[command(flatten)]
        ca: ConfigArgs,
    },
}

/// Where a command finds the CA: the configuration file and the flags that override it.
#[derive(clap::Args)]
pub(crate) struct ConfigArgs {
    /// TOML configuration file (see certwright-ca.example.toml).
    #[arg(long, env = "CERTWRIGHT_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Data directory (CA keys, certificates, SQLite database).
    #[arg(long, env = "CERTWRIGHT_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Database URL (sqlite://PATH or postgres://…).
    #[arg(long, env = "CERTWRIGHT_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
}

impl ConfigArgs {
    /// The configuration: the defaults, overridden by the file, overridden by the flags.
    pub(crate) fn load(&self) -> anyhow::Result<Config> {
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

    /// The store alone (no CA keys needed); `migrate` applies pending migrations.
    pub(crate) async fn store(&self, migrate: bool) -> anyhow::Result<Store> {
        let c = self.load()?;
        let options = StoreOptions {
            auto_migrate: migrate,
            ..Default::default()
        };
        let store = Store::open_with(&c.database_url(), &options)
            .await
            .with_context(|| format!("opening {}", c.database_url()))?;
        Ok(store.acting_as(Actor::operator_from_env()))
    }

    /// The whole CA, opened for an admin command (nothing resumed, no background work).
    pub(crate) async fn open(&self) -> anyhow::Result<CaServer> {
        let c = self.load()?;
        // root.pem, not root.key: the root key may be offline.
        if !HierarchyPaths::new(&c.data_dir).root_cert.exists() {
            anyhow::bail!(
                "no CA in {} (run `certwright-ca init` or start `certwright-ca serve` with \
                 this data directory first)",
                c.data_dir.display()
            );
        }
        CaServer::open(
            c,
            Options {
                admin: true,
                operator: Actor::operator_from_env(),
                ..Options::default()
            },
        )
        .await
    }
}

/// `certwright-ca root`: the root certificate, PEM, on standard output.
fn root(ca: &ConfigArgs) -> anyhow::Result<()> {
    let path = HierarchyPaths::new(&ca.load()?.data_dir).root_cert;
    let pem = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no root certificate at {} (has the CA been started with this data directory?)",
            path.display()
        )
    })?;
    print!("{pem}");
    Ok(())
}

/// Runs an admin command on a single-threaded runtime.
fn admin(command: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(command)
}

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::main(args),
        Command::Init(args) => init::run(*args),
        Command::Root { ca } => root(&ca),
        Command::Eab { action, ca } => admin(eab::run(action, ca)),
        Command::Issuer { action, ca } => admin(issuer::run(action, ca)),
        Command::Backends { ca } => admin(backends::list(&ca)),
        Command::Revoke(args) => admin(revoke::revoke(args)),
        Command::RenewEarly(args) => admin(revoke::renew_early(args)),
        Command::Migrate { ca } => admin(data::migrate(ca)),
        Command::Export(args) => admin(data::export(args)),
        Command::Import(args) => admin(data::import(args)),
        Command::Audit { action, ca } => admin(audit::run(action, ca)),
        Command::Certs { action, ca } => admin(certs::run(action, ca)),
        Command::Check { ca } => admin(check::run(ca)),
        Command::Operator { action, ca } => admin(operator::run(action, ca)),
        Command::Agent { action, ca } => admin(agent::run(action, ca)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("certwright-ca: {e:#}");
            ExitCode::FAILURE
        }
    }
}
