//! Test peers on loopback: Pebble, pebble-challtestsrv, certwright-ca; each is killed when
//! its guard drops or, for shared fixtures, when the test process exits (PDEATHSIG).
#![allow(dead_code)]

pub mod tamper;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills its child on drop.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `cmd` so that it dies with the test process.
pub fn spawn(cmd: &mut Command) -> ChildGuard {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
    ChildGuard(cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}")))
}

/// Runs `f` on a thread that lives as long as the process, so PDEATHSIG children spawned
/// there live exactly as long as the test binary.
pub fn on_immortal_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let value = f();
        tx.send(value).ok();
        loop {
            std::thread::park();
        }
    });
    rx.recv().expect("fixture thread")
}

/// Waits until `addr` accepts TCP connections (bounded).
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A CA certificate and a localhost leaf for a test server's HTTPS listener.
pub fn tls_identity(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "certwright test listener CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let (root, cert, keyp) = (
        dir.join("listener-root.pem"),
        dir.join("listener.pem"),
        dir.join("listener.key"),
    );
    std::fs::write(&root, ca_cert.pem()).unwrap();
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&keyp, key.serialize_pem()).unwrap();
    (root, cert, keyp)
}

/// pebble-challtestsrv: DNS answering A=127.0.0.1 for every name and TXT records set
/// through its management API.
pub struct ChallTestSrv {
    pub dns_port: u16,
    pub mgmt_port: u16,
    _child: ChildGuard,
}

impl ChallTestSrv {
    pub fn start() -> Self {
        let dns_port = free_port();
        let mgmt_port = free_port();
        let child = spawn(
            Command::new("pebble-challtestsrv")
                .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-management", &format!("127.0.0.1:{mgmt_port}")])
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        wait_for_port(mgmt_port, "pebble-challtestsrv");
        Self {
            dns_port,
            mgmt_port,
            _child: child,
        }
    }

    /// A dns-01 exec hook (bash, /dev/tcp; no curl needed) that sets and clears TXT
    /// records through the management API.
    pub fn write_hook(&self, dir: &Path) -> PathBuf {
        let path = dir.join("dns01-hook.sh");
        let script = format!(
            r#"#!/bin/bash
set -e
case "$1" in
  present) endpoint=/set-txt; body="{{\"host\":\"$2\",\"value\":\"$3\"}}" ;;
  cleanup) endpoint=/clear-txt; body="{{\"host\":\"$2\"}}" ;;
  *) echo "unknown action $1" >&2; exit 2 ;;
esac
exec 3<>/dev/tcp/127.0.0.1/{port}
printf 'POST %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' "$endpoint" "${{#body}}" "$body" >&3
read -r status <&3
case "$status" in *" 200"*) ;; *) echo "challtestsrv answered: $status" >&2; exit 1 ;; esac
echo "$1 $2" >> "{log}"
"#,
            port = self.mgmt_port,
            log = dir.join("dns01-hook.log").display()
        );
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }
}

/// A Pebble instance with its own challtestsrv.
pub struct Pebble {
    pub dir: PathBuf,
    pub directory_url: String,
    pub mgmt_port: u16,
    pub http_port: u16,
    pub tls_port: u16,
    /// Trust this to talk to Pebble's listener.
    pub listener_root: PathBuf,
    pub dns: ChallTestSrv,
    _child: ChildGuard,
    _tmp: tempfile::TempDir,
}

impl Pebble {
    /// Starts Pebble; `eab` uses the EAB example config's MAC keys and requires EAB.
    pub fn start(eab: bool) -> Self {
        Self::start_with(eab, None)
    }

    /// Like [`Pebble::start`], with Pebble's DNS queries going to `dns_port` instead of
    /// its challtestsrv.
    pub fn start_with(eab: bool, dns_port: Option<u16>) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let (listener_root, cert, key) = tls_identity(&dir);
        let dns = ChallTestSrv::start();
        let (port, mgmt_port, http_port, tls_port) =
            (free_port(), free_port(), free_port(), free_port());
        let example = if eab {
            "/usr/share/doc/pebble/examples/pebble-config-external-account-bindings.json"
        } else {
            "/usr/share/doc/pebble/examples/pebble-config.json"
        };
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(example).expect(example)).unwrap();
        let p = &mut config["pebble"];
        p["listenAddress"] = format!("127.0.0.1:{port}").into();
        p["managementListenAddress"] = format!("127.0.0.1:{mgmt_port}").into();
        p["certificate"] = cert.display().to_string().into();
        p["privateKey"] = key.display().to_string().into();
        p["httpPort"] = http_port.into();
        p["tlsPort"] = tls_port.into();
        let config_path = dir.join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = std::fs::File::create(dir.join("pebble.log")).unwrap();
        let child = spawn(
            Command::new("pebble")
                .arg("-config")
                .arg(&config_path)
                .args([
                    "-dnsserver",
                    &format!("127.0.0.1:{}", dns_port.unwrap_or(dns.dns_port)),
                ])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_ALTERNATE_ROOTS", "1")
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        );
        wait_for_port(port, "pebble");
        wait_for_port(mgmt_port, "pebble management");
        Self {
            dir,
            directory_url: format!("https://localhost:{port}/dir"),
            mgmt_port,
            http_port,
            tls_port,
            listener_root,
            dns,
            _child: child,
            _tmp: tmp,
        }
    }

    /// Pebble's issuing root number `n` (PEM), from the management interface.
    pub fn root_pem(&self, n: u32) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let root = reqwest::Certificate::from_pem(&std::fs::read(&self.listener_root).unwrap())
                .unwrap();
            let http = reqwest::Client::builder()
                .tls_certs_only([root])
                .build()
                .unwrap();
            http.get(format!("https://localhost:{}/roots/{n}", self.mgmt_port))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    }
}

/// A `certwright` command with the server, trust and state dir set.
pub struct Cli {
    pub server: String,
    pub ca_cert: PathBuf,
    pub state: PathBuf,
}

impl Cli {
    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_certwright"));
        c.arg("--server")
            .arg(&self.server)
            .arg("--ca-cert")
            .arg(&self.ca_cert)
            .arg("--state-dir")
            .arg(&self.state)
            .env_remove("CERTWRIGHT_TEST_TIME_OFFSET");
        c
    }

    /// Runs with a bounded time; returns the output.
    pub fn run(&self, args: &[&str]) -> Output {
        run_bounded(self.command().args(args), Duration::from_secs(180))
    }

    /// Runs, asserts success, parses stdout's last line as JSON (`--json` is added).
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "certwright {args:?} failed: {:?}\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(stdout.lines().last().unwrap_or("null")).unwrap()
    }

    pub fn cert_dir(&self, name: &str) -> PathBuf {
        self.state
            .join("certs")
            .join(name.replace('*', "_wildcard"))
    }
}

/// Runs a command, killing it after `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    use std::io::Read;
    let mut child = spawn(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()));
    let mut so = child.0.stdout.take().unwrap();
    let mut se = child.0.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut v = Vec::new();
        so.read_to_end(&mut v).ok();
        v
    });
    let t2 = std::thread::spawn(move || {
        let mut v = Vec::new();
        se.read_to_end(&mut v).ok();
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "{cmd:?} did not finish within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t1.join().unwrap(),
        stderr: t2.join().unwrap(),
    }
}

/// `openssl verify` of a stored certificate against `root_pem`.
pub fn openssl_verify(cert_dir: &Path, root_pem: &str) {
    let root = cert_dir.join("test-root.pem");
    std::fs::write(&root, root_pem).unwrap();
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&root)
        .arg("-untrusted")
        .arg(cert_dir.join("chain.pem"))
        .arg(cert_dir.join("cert.pem"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The mode bits of a file.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}
