//! The CA under test, `certwright-ca serve`, as a process of its own on free loopback
//! ports, with the shared pebble-challtestsrv as its DNS resolver.
//!
//! The binary comes from the caller: `env!("CARGO_BIN_EXE_certwright-ca")` in the
//! server's integration tests, [`ca_binary_from_env`] elsewhere.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::peers::challtestsrv::dns;
use crate::port::free_port;
use crate::process::{spawn, ProcessGuard, Signal};

/// How long the CA may take to come up (first start creates its keys).
pub const CA_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the CA may take to stop.
pub const CA_STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The environment variable naming the `certwright-ca` binary for tests outside the
/// server package (`scripts/test` builds it and sets this).
pub const CA_BIN_ENV: &str = "CERTWRIGHT_CA_BIN";

/// The `certwright-ca` binary named by [`CA_BIN_ENV`]; panics with the command to run when
/// it is unset or names no file. Tests never build it themselves.
pub fn ca_binary_from_env() -> PathBuf {
    let how = "build it with `cargo build -p certwright-server --bin certwright-ca` and set \
               CERTWRIGHT_CA_BIN to the binary (target/debug/certwright-ca); scripts/test does both";
    let path = std::env::var_os(CA_BIN_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{CA_BIN_ENV} is not set: {how}"));
    assert!(
        path.is_file(),
        "{CA_BIN_ENV}={} is not a file: {how}",
        path.display()
    );
    path
}

/// The environment variable naming the `certwright-va-agent` binary (another package's
/// binary: `scripts/test` builds it and sets this).
pub const VA_AGENT_BIN_ENV: &str = "CERTWRIGHT_VA_AGENT_BIN";

/// The `certwright-va-agent` binary named by [`VA_AGENT_BIN_ENV`]; panics with the command
/// to run when it is unset or names no file. Tests never build it themselves.
pub fn va_agent_binary_from_env() -> PathBuf {
    let how = "build it with `cargo build -p certwright-va-agent` and set \
               CERTWRIGHT_VA_AGENT_BIN to the binary (target/debug/certwright-va-agent); scripts/test does both";
    let path = std::env::var_os(VA_AGENT_BIN_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{VA_AGENT_BIN_ENV} is not set: {how}"));
    assert!(
        path.is_file(),
        "{VA_AGENT_BIN_ENV}={} is not a file: {how}",
        path.display()
    );
    path
}

/// A `certwright-ca serve` process on its own loopback ports and data directory.
pub struct CaProcess {
    /// Its data directory (keys, `root.pem`, the SQLite database, its stdout and stderr).
    pub data_dir: PathBuf,
    /// Its ACME listener.
    pub listen: SocketAddr,
    /// The port the CA's VA connects to for http-01; clients listen there.
    pub http01_port: u16,
    /// The directory URL the CA printed (`https://localhost:PORT/directory` unless a
    /// `--base-url` was given).
    pub directory_url: String,
    /// The plain-HTTP PKI listener (CRL, OCSP, issuer certificate), when on; certificates
    /// name `http://localhost:<port>`.
    pub pki_http_listen: Option<SocketAddr>,
    guard_index: usize,
    log_path: PathBuf,
    out_path: PathBuf,
}

impl CaProcess {
    /// Starts a CA on fresh ports with `data_dir` (created on first start).
    pub fn start(bin: &Path, guard: &mut ProcessGuard, data_dir: &Path) -> Self {
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        Self::start_on(bin, guard, data_dir, listen, free_port())
    }

    /// Starts a CA with `data_dir` on the given ports (used to restart on the same ones).
    pub fn start_on(
        bin: &Path,
        guard: &mut ProcessGuard,
        data_dir: &Path,
        listen: SocketAddr,
        http01_port: u16,
    ) -> Self {
        Self::start_with_args(bin, guard, data_dir, listen, http01_port, &[])
    }

    /// Starts a CA on fresh ports with a configuration file.
    pub fn start_with_config(
        bin: &Path,
        guard: &mut ProcessGuard,
        data_dir: &Path,
        config: &Path,
    ) -> Self {
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = config.to_string_lossy().into_owned();
        Self::start_with_args(
            bin,
            guard,
            data_dir,
            listen,
            free_port(),
            &["--config", &config],
        )
    }

    /// Starts a CA with extra `serve` arguments.
    pub fn start_with_args(
        bin: &Path,
        guard: &mut ProcessGuard,
        data_dir: &Path,
        listen: SocketAddr,
        http01_port: u16,
        extra: &[&str],
    ) -> Self {
        Self::start_with_dns(bin, guard, data_dir, listen, http01_port, dns().addr, extra)
    }

    /// Starts a CA whose VA asks the DNS server at `dns` (e.g. a
    /// [`crate::testdns::TestDns`]) instead of the shared challtestsrv. When `listen` is
    /// not a loopback address, pass a `--base-url` naming it: the readiness probe asks
    /// the listen address directly.
    pub fn start_with_dns(
        bin: &Path,
        guard: &mut ProcessGuard,
        data_dir: &Path,
        listen: SocketAddr,
        http01_port: u16,
        dns: SocketAddr,
        extra: &[&str],
    ) -> Self {
        fs::create_dir_all(data_dir).unwrap();
        let run = fs::read_dir(data_dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("ca-stdout"))
            .count();
        let out_path = data_dir.join(format!("ca-stdout.{run}.txt"));
        let log_path = data_dir.join(format!("ca-stderr.{run}.txt"));
        // Several CAs run at once: each its own PKI port, unless the test chose.
        let pki_arg =
            (!extra.contains(&"--pki-http-listen")).then(|| format!("127.0.0.1:{}", free_port()));
        let pki_http_listen = match &pki_arg {
            Some(addr) => addr.parse().ok(),
            None => extra
                .iter()
                .position(|a| *a == "--pki-http-listen")
                .and_then(|i| extra.get(i + 1))
                .and_then(|a| a.parse().ok()),
        };
        let child = spawn(
            Command::new(bin)
                .arg("serve")
                .arg("--data-dir")
                .arg(data_dir)
                .args(["--listen", &listen.to_string()])
                // Several CAs run at once: none takes the default admin port 14001 (a test
                // that wants the admin listener passes its own --admin-listen).
                .args(
                    (!extra.contains(&"--admin-listen"))
                        .then_some(["--admin-listen", "off"])
                        .into_iter()
                        .flatten(),
                )
                .args(["--http01-port", &http01_port.to_string()])
                .args(["--dns-resolver", &dns.to_string()])
                // The challenge servers listen on loopback (the test switch).
                .arg("--allow-loopback-validation")
                .args(
                    pki_arg
                        .iter()
                        .flat_map(|a| ["--pki-http-listen", a.as_str()]),
                )
                .args(extra)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(fs::File::create(&out_path).unwrap())
                .stderr(fs::File::create(&log_path).unwrap()),
        );
        let guard_index = guard.push(child);
        let mut ca = Self {
            data_dir: data_dir.to_owned(),
            listen,
            http01_port,
            directory_url: String::new(),
            pki_http_listen,
            guard_index,
            log_path,
            out_path,
        };
        // With an external base URL (behind a load balancer) the CA prints that one.
        let own_url = !extra.contains(&"--base-url");
        ca.directory_url = ca.wait_ready(guard, own_url);
        ca
    }

    /// Waits for the "directory:" line on stdout, then for the directory to answer over
    /// HTTPS with the CA's own root trusted. Returns the directory URL.
    fn wait_ready(&self, guard: &mut ProcessGuard, own_url: bool) -> String {
        let deadline = Instant::now() + CA_START_TIMEOUT;
        let url = loop {
            let out = fs::read_to_string(&self.out_path).unwrap_or_default();
            if let Some(url) = out
                .lines()
                .find_map(|l| l.trim().strip_prefix("directory:"))
                .map(|u| u.trim().to_owned())
            {
                break url;
            }
            if let Ok(Some(status)) = guard.get(self.guard_index).0.try_wait() {
                panic!(
                    "certwright-ca exited ({status}) before serving\n{}",
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "certwright-ca did not print its directory URL in {CA_START_TIMEOUT:?}\n{}",
                self.logs()
            );
            thread::sleep(Duration::from_millis(100));
        };
        let probe_url = if own_url {
            assert_eq!(
                url,
                format!("https://localhost:{}/directory", self.listen.port()),
                "directory URL printed by the CA"
            );
            url.clone()
        } else {
            // Ask this instance directly, not whatever the base URL points at.
            let scheme = url.split("://").next().unwrap_or("https");
            let ip = self.listen.ip();
            let host = if ip.is_loopback() || ip.is_unspecified() {
                "localhost".to_owned()
            } else {
                SocketAddr::new(ip, self.listen.port()).to_string()
            };
            let host = host
                .strip_suffix(&format!(":{}", self.listen.port()))
                .unwrap_or(&host)
                .to_owned();
            format!("{scheme}://{host}:{}/directory", self.listen.port())
        };
        let root = fs::read(self.root_path()).expect("root.pem exists once the CA serves");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let directory: serde_json::Value = rt.block_on(async {
            let http = reqwest::Client::builder()
                .tls_certs_only([reqwest::Certificate::from_pem(&root).unwrap()])
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            loop {
                match http.get(&probe_url).send().await {
                    Ok(resp) if resp.status().is_success() => break resp.json().await.unwrap(),
                    other => {
                        assert!(
                            Instant::now() < deadline,
                            "directory {probe_url} not answering: {other:?}\n{}",
                            self.logs()
                        );
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        for key in ["newNonce", "newAccount", "newOrder"] {
            assert!(
                directory[key].is_string(),
                "directory lacks {key}: {directory}"
            );
        }
        url
    }

    /// The CA's root certificate (PEM).
    pub fn root_path(&self) -> PathBuf {
        self.data_dir.join("root.pem")
    }

    /// The CA's issuing intermediate (PEM).
    pub fn intermediate_path(&self) -> PathBuf {
        self.data_dir.join("intermediate.pem")
    }

    /// What the CA printed so far (for failure messages).
    pub fn logs(&self) -> String {
        let tail = |p: &Path| {
            let s = fs::read_to_string(p).unwrap_or_default();
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(60)..].join("\n")
        };
        format!(
            "--- certwright-ca stdout ({})\n{}\n--- certwright-ca stderr (last 60 lines, {})\n{}",
            self.out_path.display(),
            tail(&self.out_path),
            self.log_path.display(),
            tail(&self.log_path)
        )
    }

    /// SIGKILL, as a crash or an OOM kill would, and reap the process.
    pub fn kill(self, guard: &mut ProcessGuard) {
        let child = guard.get(self.guard_index);
        child.signal(Signal::KILL);
        assert!(
            child.wait_timeout(CA_STOP_TIMEOUT).is_some(),
            "certwright-ca survived SIGKILL"
        );
    }

    /// The process id (for /proc readings).
    pub fn pid(&self, guard: &mut ProcessGuard) -> u32 {
        guard.get(self.guard_index).id()
    }

    /// SIGTERM, and wait (bounded) for a clean exit.
    pub fn stop(self, guard: &mut ProcessGuard) {
        let child = guard.get(self.guard_index);
        child.signal(Signal::TERM);
        match child.wait_timeout(CA_STOP_TIMEOUT) {
            Some(status) => assert!(
                status.success(),
                "certwright-ca exited with {status} on SIGTERM\n{}",
                self.logs()
            ),
            None => panic!(
                "certwright-ca still running {CA_STOP_TIMEOUT:?} after SIGTERM\n{}",
                self.logs()
            ),
        }
    }
}
