//! certwright-bench: full ACME issuance flows against any ACME directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use certwright_bench::{compare_many, Options, Report, Trust};
use certwright_proto::KeyType;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "certwright-bench",
    version,
    about = "Load generator: full ACME issuance flows (http-01) against any ACME directory"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run flows against a directory and print the figures.
    Run(Box<RunArgs>),
    /// A TCP round-robin balancer in front of several CA instances (loopback benchmarks
    /// of a scale-out deployment; TLS passes through).
    Balance {
        /// Where clients connect.
        #[arg(long)]
        listen: SocketAddr,
        /// An instance's listener; give it once per instance.
        #[arg(long = "backend", required = true)]
        backends: Vec<SocketAddr>,
    },
    /// Print JSON reports side by side, with the ratio of each to the first (and with
    /// three or more, of the last to the second).
    Compare {
        /// The baseline report (e.g. Pebble's).
        base: PathBuf,
        /// The reports compared with it (e.g. certwright-ca's on SQLite, on PostgreSQL).
        #[arg(required = true)]
        others: Vec<PathBuf>,
    },
}

fn key_type(s: &str) -> Result<KeyType, String> {
    KeyType::parse(s).ok_or_else(|| {
        format!("unknown key type {s:?} (ec256, ec384, rsa2048, rsa3072, rsa4096, ed25519)")
    })
}

fn duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[derive(Args)]
struct RunArgs {
    /// The ACME directory URL, e.g. https://127.0.0.1:14000/dir.
    #[arg(long)]
    directory: String,
    /// Trust only this PEM root for the server's TLS certificate.
    #[arg(long, conflicts_with = "insecure")]
    ca_cert: Option<PathBuf>,
    /// Accept any TLS certificate (loopback benchmarking only).
    #[arg(long)]
    insecure: bool,
    /// Offer HTTP/2 (default: HTTP/1.1 over a pool of connections).
    #[arg(long)]
    http2: bool,
    /// Address of the http-01 responder: the port the CA validates against.
    #[arg(long, default_value = "127.0.0.1:5002")]
    http01_listen: SocketAddr,
    /// Flows in flight at once.
    #[arg(long, short = 'c', default_value_t = 8)]
    concurrency: usize,
    /// Measured flows to run (default 100 unless --duration is given).
    #[arg(long, short = 'n', conflicts_with = "duration")]
    count: Option<u64>,
    /// Run for this long instead (e.g. 20s, 2m); flows in flight then still finish.
    #[arg(long, value_parser = duration)]
    duration: Option<Duration>,
    /// Flows run before measuring (not counted).
    #[arg(long, default_value_t = 0)]
    warmup: u64,
    /// Accounts created before the run and shared by the flows; 0: a new account per flow.
    /// Default: one per concurrent flow.
    #[arg(long)]
    accounts: Option<usize>,
    /// Account key type.
    #[arg(long, default_value = "ec256", value_parser = key_type)]
    account_key: KeyType,
    /// Certificate key type.
    #[arg(long, default_value = "ec256", value_parser = key_type)]
    cert_key: KeyType,
    /// Generate a new certificate key per flow (default: one per concurrent flow, reused).
    #[arg(long)]
    fresh_cert_keys: bool,
    /// DNS names per order.
    #[arg(long, default_value_t = 1)]
    names: usize,
    /// Parent domain of the generated names (every name must resolve to the responder).
    #[arg(long, default_value = "bench.example.test")]
    domain: String,
    /// First wait before polling an authorization or order (doubles up to --poll-max).
    #[arg(long, default_value = "5ms", value_parser = duration)]
    poll_initial: Duration,
    /// Longest wait between polls.
    #[arg(long, default_value = "250ms", value_parser = duration)]
    poll_max: Duration,
    /// Label for the report (e.g. pebble, certwright-ca).
    #[arg(long, default_value = "")]
    label: String,
    /// PID of the server: its resident memory is sampled at the end, and its CPU
    /// (user + system, from /proc) over the measured phase is reported per issuance.
    #[arg(long)]
    server_pid: Option<u32>,
    /// PIDs of database processes whose CPU over the measured phase is reported per
    /// issuance (comma-separated or repeated).
    #[arg(long = "db-pids", value_delimiter = ',')]
    db_pids: Vec<u32>,
    /// Count every process of this user as a database process (e.g. `postgres`: the
    /// postmaster and every backend, including those that end during the run).
    #[arg(long)]
    db_user: Option<String>,
    /// With --db-user: only the processes whose command line contains this (repeat it;
    /// e.g. the database's name and `walwriter` for PostgreSQL's process titles).
    #[arg(long, requires = "db_user")]
    db_match: Vec<String>,
    /// Write the report as JSON to this file ("-": standard output, instead of the table).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Worker threads of the bench's runtime (default: the number of CPUs).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Compare { base, others } => {
            let read = |p: &PathBuf| -> anyhow::Result<Report> {
                let text = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                serde_json::from_slice(&text).with_context(|| format!("parsing {}", p.display()))
            };
            let mut reports = vec![read(&base)?];
            for other in &others {
                reports.push(read(other)?);
            }
            print!("{}", compare_many(&reports));
            Ok(())
        }
        Command::Balance { listen, backends } => tokio::runtime::Runtime::new()?.block_on(async {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            println!("balancing {listen} over {backends:?}");
            certwright_bench::balance::serve(listener, backends).await
        }),
        Command::Run(args) => {
            let mut rt = tokio::runtime::Builder::new_multi_thread();
            rt.enable_all();
            if let Some(n) = args.threads {
                rt.worker_threads(n.max(1));
            }
            rt.build()?.block_on(run(*args))
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let trust = match (&args.ca_cert, args.insecure) {
        (Some(path), _) => {
            Trust::Root(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        }
        (None, true) => Trust::Insecure,
        (None, false) => Trust::System,
    };
    let mut options = Options::new(args.directory);
    options.trust = trust;
    options.http2 = args.http2;
    options.http01_listen = args.http01_listen;
    options.concurrency = args.concurrency;
    options.count = match (args.count, args.duration) {
        (None, None) => Some(100),
        (c, _) => c,
    };
    options.duration = args.duration;
    options.warmup = args.warmup;
    options.accounts = args.accounts.unwrap_or(args.concurrency);
    options.account_key = args.account_key;
    options.cert_key = args.cert_key;
    options.fresh_cert_keys = args.fresh_cert_keys;
    options.names = args.names;
    options.domain = args.domain;
    options.poll_initial = args.poll_initial;
    options.poll_max = args.poll_max;
    options.label = args.label;
    options.server_pid = args.server_pid;
    options.db_pids = args.db_pids;
    options.db_user = args.db_user;
    options.db_match = args.db_match;
    let report = certwright_bench::run(options).await?;
    let json = serde_json::to_string_pretty(&report)?;
    match args.json.as_deref() {
        Some(p) if p.as_os_str() == "-" => println!("{json}"),
        Some(p) => {
            std::fs::write(p, &json).with_context(|| format!("writing {}", p.display()))?;
            print!("{}", report.to_text());
        }
        None => print!("{}", report.to_text()),
    }
    if report.flows_ok == 0 {
        anyhow::bail!("no flow succeeded");
    }
    Ok(())
}
