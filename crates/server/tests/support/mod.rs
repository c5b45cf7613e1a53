//! Fixtures for interop tests against real ACME clients: the `certwright-ca` binary started
//! as a process on free loopback ports, one `pebble-challtestsrv` DNS server per test binary,
//! bounded command runs, and certificate checks with openssl and x509-parser.
//!
//! Every peer binary must be installed (`scripts/test` installs them); a missing one fails
//! the test with a message saying so, it is never skipped.

#![allow(dead_code)]

// The same file as `harness::pg`: a test binary that includes both trees compiles it twice.
#[allow(clippy::duplicate_mod)]
#[path = "../harness/pg.rs"]
mod pg;
// The same file as `harness::x509`.
#[allow(clippy::duplicate_mod)]
#[path = "../harness/x509.rs"]
pub mod x509;

use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// How long one run of a real ACME client (a whole issuance or renewal) may take.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the CA may take to come up (first start creates its keys) or to stop.
pub const CA_START_TIMEOUT: Duration = Duration::from_secs(60);
pub const CA_STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A loopback port nobody listens on right now (bind to :0 and let it go).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

/// Fails the test with a clear message if `bin` is not on PATH.
pub fn require_binary(bin: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(bin).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "test peer `{bin}` is not installed (scripts/test installs it with apt-get)"
    );
}

/// Sends `sig` (e.g. "TERM") to a process, with the shell's builtin `kill` (always
/// there, unlike procps' kill(1); and no libc dependency for one call).
fn send_signal(pid: u32, sig: &str) {
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -{sig} \"$0\""))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Waits up to `timeout` for `child` to exit.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, then SIGKILL if the process has not exited within `grace`.
fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    send_signal(child.id(), "TERM");
    if let Some(status) = wait_timeout(child, grace) {
        return Some(status);
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Owns started processes; terminates (SIGTERM, then SIGKILL) every one still running on
/// drop, so a failing test leaves nothing behind.
#[derive(Default)]
pub struct ProcessGuard {
    children: Vec<Child>,
}

impl ProcessGuard {
    pub fn push(&mut self, child: Child) -> usize {
        self.children.push(child);
        self.children.len() - 1
    }

    pub fn get(&mut self, index: usize) -> &mut Child {
        &mut self.children[index]
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        for child in &mut self.children {
            terminate(child, Duration::from_secs(5));
        }
    }
}

/// Reads a pipe to the end on a thread of its own (so a chatty child never blocks).
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

/// Runs `cmd` to completion, killing it after `timeout`. Panics if it cannot start or times
/// out (with everything it printed).
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Output {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = terminate_after(&mut child, timeout);
    let stdout = out.join().unwrap();
    let stderr = err.join().unwrap();
    match status {
        Some(status) => Output {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "timed out after {timeout:?}: {shown}\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    }
}

fn terminate_after(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    match wait_timeout(child, timeout) {
        Some(status) => Some(status),
        None => {
            terminate(child, Duration::from_secs(5));
            None
        }
    }
}

/// Runs `cmd` bounded and panics unless it exits 0; returns its output.
pub fn run_ok(what: &str, cmd: &mut Command, timeout: Duration, context: &str) -> Output {
    let shown = format!("{cmd:?}");
    let out = run_bounded(cmd, timeout);
    if !out.status.success() {
        panic!(
            "{what} failed ({}): {shown}\n--- stdout\n{}\n--- stderr\n{}\n{context}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

// ------------------------------------------------------------------------------------------
// DNS: one pebble-challtestsrv per test binary, answering A 127.0.0.1 for every name.

pub struct Dns {
    pub addr: SocketAddr,
    /// challtestsrv's management API (`POST /set-txt`, `/clear-txt`, …).
    pub management: SocketAddr,
    /// Holding the write end of the wrapper's stdin keeps the server alive; when this test
    /// process exits (however it exits) the pipe closes and the wrapper stops the server.
    _lifeline: std::sync::Mutex<Child>,
}

/// The shared DNS server, started on first use.
pub fn dns() -> &'static Dns {
    static DNS: OnceLock<Dns> = OnceLock::new();
    DNS.get_or_init(start_dns)
}

fn start_dns() -> Dns {
    require_binary("pebble-challtestsrv");
    let dns_port = free_port();
    let mgmt_port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{dns_port}").parse().unwrap();
    // The wrapper shell starts challtestsrv, then blocks reading its stdin (our pipe); EOF
    // means this test binary is gone, and the shell stops the server. Statics are never
    // dropped, so this is what keeps the server from outliving the tests.
    let script = r#"
        "$0" "$@" </dev/null &
        server=$!
        cat >/dev/null
        kill -TERM "$server" 2>/dev/null
        wait "$server"
    "#;
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("pebble-challtestsrv")
        .args(["-dns01", &addr.to_string()])
        .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
        .args(["-management", &format!("127.0.0.1:{mgmt_port}")])
        .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pebble-challtestsrv");
    // The DNS side is UDP (and TCP); its management port is TCP and opens alongside it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect(("127.0.0.1", mgmt_port)).is_ok() && TcpStream::connect(addr).is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pebble-challtestsrv did not open 127.0.0.1:{dns_port} / :{mgmt_port}"
        );
        thread::sleep(Duration::from_millis(100));
    }
    Dns {
        addr,
        management: format!("127.0.0.1:{mgmt_port}").parse().unwrap(),
        _lifeline: std::sync::Mutex::new(child),
    }
}

// ------------------------------------------------------------------------------------------
// The CA under test, as a process.

/// A `certwright-ca serve` process on its own loopback ports and data directory.
pub struct CaProcess {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// The port the CA's VA connects to for http-01; clients listen there.
    pub http01_port: u16,
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
    pub fn start(guard: &mut ProcessGuard, data_dir: &Path) -> Self {
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        Self::start_on(guard, data_dir, listen, free_port())
    }

    /// Starts a CA with `data_dir` on the given ports (used to restart on the same ones).
    pub fn start_on(
        guard: &mut ProcessGuard,
        data_dir: &Path,
        listen: SocketAddr,
        http01_port: u16,
    ) -> Self {
        Self::start_with_args(guard, data_dir, listen, http01_port, &[])
    }

    /// Starts a CA on fresh ports with a configuration file.
    pub fn start_with_config(guard: &mut ProcessGuard, data_dir: &Path, config: &Path) -> Self {
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = config.to_string_lossy().into_owned();
        Self::start_with_args(guard, data_dir, listen, free_port(), &["--config", &config])
    }

    /// Starts a CA with extra `serve` arguments.
    pub fn start_with_args(
        guard: &mut ProcessGuard,
        data_dir: &Path,
        listen: SocketAddr,
        http01_port: u16,
        extra: &[&str],
    ) -> Self {
        let dns = dns();
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
        let child = Command::new(env!("CARGO_BIN_EXE_certwright-ca"))
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", &listen.to_string()])
            // Several CAs run at once: none takes the default admin port 14001.
            .args(["--admin-listen", "off"])
            .args(["--http01-port", &http01_port.to_string()])
            .args(["--dns-resolver", &dns.addr.to_string()])
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
            .stderr(fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("start certwright-ca");
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
            if let Ok(Some(status)) = guard.get(self.guard_index).try_wait() {
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
            format!("{scheme}://localhost:{}/directory", self.listen.port())
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

    pub fn root_path(&self) -> PathBuf {
        self.data_dir.join("root.pem")
    }

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
        send_signal(child.id(), "KILL");
        assert!(
            wait_timeout(child, CA_STOP_TIMEOUT).is_some(),
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
        send_signal(child.id(), "TERM");
        match wait_timeout(child, CA_STOP_TIMEOUT) {
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

// ------------------------------------------------------------------------------------------
// Certificates.

/// The DER certificates in a PEM file, in order.
pub fn pem_certs(path: &Path) -> Vec<Vec<u8>> {
    let data = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let certs: Vec<Vec<u8>> = x509_parser::pem::Pem::iter_from_buffer(&data)
        .map(|p| p.unwrap_or_else(|e| panic!("bad PEM in {}: {e}", path.display())))
        .filter(|p| p.label == "CERTIFICATE")
        .map(|p| p.contents)
        .collect();
    assert!(!certs.is_empty(), "no certificate in {}", path.display());
    certs
}

/// What a test checks about a leaf certificate.
#[derive(Debug)]
pub struct Leaf {
    pub serial_hex: String,
    pub dns_names: Vec<String>,
    pub server_auth: bool,
}

/// Serial, DNS SANs and serverAuth EKU of the first certificate in `path`.
pub fn leaf(path: &Path) -> Leaf {
    let der = pem_certs(path).remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()));
    let mut dns_names: Vec<String> = cert
        .subject_alternative_name()
        .expect("well-formed SAN extension")
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    dns_names.sort();
    let server_auth = cert
        .extended_key_usage()
        .ok()
        .flatten()
        .map(|eku| eku.value.server_auth)
        .unwrap_or(false);
    let serial_hex = cert.raw_serial().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    Leaf {
        serial_hex,
        dns_names,
        server_auth,
    }
}

/// Writes the first certificate of `bundle` to `out` (openssl verify reads one per file).
pub fn write_first_cert(bundle: &Path, out: &Path) {
    let der = pem_certs(bundle).remove(0);
    fs::write(out, pem_encode(&der)).unwrap();
}

fn pem_encode(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// `openssl verify -purpose sslserver -CAfile root -untrusted untrusted leaf` must say OK.
pub fn openssl_verify(root: &Path, untrusted: &Path, leaf: &Path) {
    require_binary("openssl");
    let out = run_ok(
        "openssl verify",
        Command::new("openssl")
            .arg("verify")
            .args(["-purpose", "sslserver"])
            .arg("-CAfile")
            .arg(root)
            .arg("-untrusted")
            .arg(untrusted)
            .arg(leaf),
        Duration::from_secs(30),
        "",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        format!("{}: OK", leaf.display()),
        "openssl verify output"
    );
}

/// The subjectAltName extension as openssl prints it (a second parser's view of the SANs).
pub fn openssl_san(cert: &Path) -> String {
    let out = run_ok(
        "openssl x509",
        Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(cert),
        Duration::from_secs(30),
        "",
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ------------------------------------------------------------------------------------------
// Real ACME clients.

/// The contact address the interop tests register with.
pub const CLIENT_EMAIL: &str = "admin@example.com";

/// certbot `sub` with its config/work/logs directories under `dir`, trusting the CA's root
/// and pointed at its directory (no solver chosen yet).
pub fn certbot_command(dir: &Path, ca: &CaProcess, sub: &str) -> Command {
    require_binary("certbot");
    let mut cmd = Command::new("certbot");
    cmd.env("REQUESTS_CA_BUNDLE", ca.root_path())
        .arg(sub)
        .arg("--non-interactive")
        .arg("--config-dir")
        .arg(dir.join("config"))
        .arg("--work-dir")
        .arg(dir.join("work"))
        .arg("--logs-dir")
        .arg(dir.join("logs"))
        .args(["--server", &ca.directory_url]);
    cmd
}

/// lego with its `--path`, trusting the CA's root, for `names`: the global flags, to which
/// a test adds a solver and the subcommand (lego 4.9 wants global flags first).
pub fn lego_command(path: &Path, ca: &CaProcess, names: &[&str]) -> Command {
    require_binary("lego");
    let mut cmd = Command::new("lego");
    cmd.env("LEGO_CA_CERTIFICATES", ca.root_path())
        .arg("--path")
        .arg(path)
        .args(["--server", &ca.directory_url])
        .args(["--email", CLIENT_EMAIL])
        .arg("--accept-tos");
    for name in names {
        cmd.args(["--domains", name]);
    }
    cmd
}

// ------------------------------------------------------------------------------------------
// PostgreSQL.

/// A fresh, empty PostgreSQL database of this test's own; returns its URL (see
/// `pg::admin_url` for the server).
pub fn create_postgres_database() -> String {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(pg::create_database())
}

/// Silences the panics of test-client requests cut by a deliberate kill (a flow spawned
/// as its own task fails, and the test counts it); every other panic still prints.
pub fn quiet_cut_requests() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.to_string().contains("reqwest::Error") {
            default(info);
        }
    }));
}
