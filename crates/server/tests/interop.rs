//! Interop with real ACME clients: certbot and lego get and renew certificates from a
//! `certwright-ca` process, and openssl checks every chain against the CA's root.
//!
//! Each test starts its own CA (fresh data directory, free loopback ports); the CA resolves
//! names through one `pebble-challtestsrv` DNS server shared by the tests of this binary,
//! which answers 127.0.0.1 for every name, so http-01 reaches the client's standalone
//! responder on the CA's configured http-01 port. The peers must be installed
//! (`scripts/test` does it); a missing one fails the test.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{
    ca_bin, certbot_command, leaf, lego_command, openssl_san, openssl_verify, require_binary,
    run_ok, write_first_cert, CaProcess, ProcessGuard, CLIENT_TIMEOUT,
};

const EMAIL: &str = support::CLIENT_EMAIL;

// ------------------------------------------------------------------------------------------
// certbot

/// certbot with its own config/work/logs directories, trusting the CA's root.
struct Certbot {
    dir: PathBuf,
}

impl Certbot {
    fn new(dir: &Path) -> Self {
        require_binary("certbot");
        Self {
            dir: dir.to_owned(),
        }
    }

    fn command(&self, ca: &CaProcess, subcommand: &str) -> Command {
        let mut cmd = certbot_command(&self.dir, ca, subcommand);
        cmd.args(["--http-01-port", &ca.http01_port.to_string()])
            .args(["--http-01-address", "127.0.0.1"]);
        cmd
    }

    fn certonly(&self, ca: &CaProcess, names: &[&str]) {
        let mut cmd = self.command(ca, "certonly");
        cmd.args(["--standalone", "--agree-tos", "-m", EMAIL]);
        for name in names {
            cmd.args(["-d", name]);
        }
        run_ok(
            "certbot certonly",
            &mut cmd,
            CLIENT_TIMEOUT,
            &self.context(ca),
        );
    }

    fn renew_forced(&self, ca: &CaProcess) {
        let mut cmd = self.command(ca, "renew");
        // Without --no-random-sleep-on-renew certbot sleeps up to 8 minutes when it has no
        // terminal, as under CI.
        cmd.args(["--force-renewal", "--no-random-sleep-on-renew"]);
        run_ok("certbot renew", &mut cmd, CLIENT_TIMEOUT, &self.context(ca));
    }

    fn live(&self, name: &str) -> PathBuf {
        self.dir.join("config/live").join(name)
    }

    fn context(&self, ca: &CaProcess) -> String {
        let log = fs::read_to_string(self.dir.join("logs/letsencrypt.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "--- certbot log (last 80 lines)\n{}\n{}",
            lines[lines.len().saturating_sub(80)..].join("\n"),
            ca.logs()
        )
    }
}

#[test]
fn certbot_certonly_then_forced_renewal() {
    let tmp = tempfile::tempdir().unwrap();
    let mut guard = ProcessGuard::default();
    let ca = CaProcess::start(ca_bin(), &mut guard, &tmp.path().join("ca"));
    let root = ca.root_path();
    let certbot = Certbot::new(&tmp.path().join("certbot"));
    let names = [
        "certbot-renew.certwright.test",
        "www.certbot-renew.certwright.test",
    ];

    certbot.certonly(&ca, &names);
    let live = certbot.live(names[0]);
    let first = leaf(&live.join("cert.pem"));
    assert_eq!(
        first.dns_names,
        sorted(&names),
        "SANs of the issued certificate"
    );
    assert!(first.server_auth, "leaf has the serverAuth EKU");
    let san = openssl_san(&live.join("cert.pem"));
    for name in names {
        assert!(
            san.contains(&format!("DNS:{name}")),
            "openssl sees {name} in: {san}"
        );
    }
    // The chain certbot saved, and the CA's own intermediate, both lead to the root.
    openssl_verify(&root, &live.join("chain.pem"), &live.join("cert.pem"));
    openssl_verify(&root, &ca.intermediate_path(), &live.join("cert.pem"));
    let first_copy = tmp.path().join("first.pem");
    fs::copy(live.join("cert.pem"), &first_copy).unwrap();

    certbot.renew_forced(&ca);
    let renewed = leaf(&live.join("cert.pem"));
    assert_ne!(
        renewed.serial_hex, first.serial_hex,
        "renewal produced a new certificate"
    );
    assert_ne!(
        fs::read(live.join("cert.pem")).unwrap(),
        fs::read(&first_copy).unwrap(),
        "cert.pem changed"
    );
    assert_eq!(renewed.dns_names, sorted(&names), "SANs after renewal");
    openssl_verify(&root, &live.join("chain.pem"), &live.join("cert.pem"));
    openssl_verify(&root, &ca.intermediate_path(), &live.join("cert.pem"));
    // The first certificate still verifies too (nothing about the chain moved).
    openssl_verify(&root, &live.join("chain.pem"), &first_copy);
}

// ------------------------------------------------------------------------------------------
// lego

/// lego with its own --path, trusting the CA's root.
struct Lego {
    path: PathBuf,
}

impl Lego {
    fn new(path: &Path) -> Self {
        require_binary("lego");
        Self {
            path: path.to_owned(),
        }
    }

    /// lego 4.9: global flags (server, account, solver) before the subcommand.
    fn command(&self, ca: &CaProcess, names: &[&str]) -> Command {
        let mut cmd = lego_command(&self.path, ca, names);
        cmd.arg("--http")
            .args(["--http.port", &format!("127.0.0.1:{}", ca.http01_port)]);
        cmd
    }

    fn run(&self, ca: &CaProcess, names: &[&str]) {
        let mut cmd = self.command(ca, names);
        cmd.arg("run");
        run_ok("lego run", &mut cmd, CLIENT_TIMEOUT, &ca.logs());
    }

    /// Renews a 90-day certificate now: it has fewer than 100 days left.
    fn renew(&self, ca: &CaProcess, names: &[&str]) {
        let mut cmd = self.command(ca, names);
        cmd.args(["renew", "--days", "100", "--no-random-sleep"]);
        let out = run_ok("lego renew", &mut cmd, CLIENT_TIMEOUT, &ca.logs());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("Server responded with a certificate"),
            "lego renew obtained a certificate:\n{stderr}"
        );
    }

    fn cert(&self, name: &str) -> PathBuf {
        self.path.join("certificates").join(format!("{name}.crt"))
    }

    fn issuer(&self, name: &str) -> PathBuf {
        self.path
            .join("certificates")
            .join(format!("{name}.issuer.crt"))
    }

    /// The account files lego keeps (one per registration).
    fn accounts(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut stack = vec![self.path.join("accounts")];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.file_name().is_some_and(|n| n == "account.json") {
                    found.push(p);
                }
            }
        }
        found
    }

    /// Checks lego's files for `name`: SANs, and the chain to `root` (lego's own issuer file
    /// and the CA's intermediate). Returns the leaf's serial.
    fn check_issued(&self, ca: &CaProcess, root: &Path, names: &[&str], scratch: &Path) -> String {
        let leaf_file = scratch.join(format!("{}.leaf.pem", names[0]));
        write_first_cert(&self.cert(names[0]), &leaf_file);
        let issued = leaf(&leaf_file);
        assert_eq!(
            issued.dns_names,
            sorted(names),
            "SANs of lego's certificate"
        );
        assert!(issued.server_auth, "leaf has the serverAuth EKU");
        openssl_verify(root, &self.issuer(names[0]), &leaf_file);
        openssl_verify(root, &ca.intermediate_path(), &leaf_file);
        // lego's .crt is the bundle leaf + issuer.
        assert_eq!(
            support::pem_certs(&self.cert(names[0])).len(),
            2,
            "lego bundle has leaf and intermediate"
        );
        issued.serial_hex
    }
}

#[test]
fn lego_run_then_renew() {
    let tmp = tempfile::tempdir().unwrap();
    let mut guard = ProcessGuard::default();
    let ca = CaProcess::start(ca_bin(), &mut guard, &tmp.path().join("ca"));
    let root = ca.root_path();
    let lego = Lego::new(&tmp.path().join("lego"));
    let names = [
        "lego-renew.certwright.test",
        "www.lego-renew.certwright.test",
    ];

    lego.run(&ca, &names);
    let first = lego.check_issued(&ca, &root, &names, tmp.path());

    lego.renew(&ca, &names);
    let renewed = lego.check_issued(&ca, &root, &names, tmp.path());
    assert_ne!(renewed, first, "renewal produced a new certificate");
    assert_eq!(lego.accounts().len(), 1, "one account, reused for renewal");
}

// ------------------------------------------------------------------------------------------
// restart

#[test]
fn lego_renews_after_ca_restart_with_same_root_and_account() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("ca");
    let mut guard = ProcessGuard::default();
    let ca = CaProcess::start(ca_bin(), &mut guard, &data_dir);
    let (listen, http01_port) = (ca.listen, ca.http01_port);
    let lego = Lego::new(&tmp.path().join("lego"));
    let names = ["restart.certwright.test"];

    lego.run(&ca, &names);
    // Keep copies: the checks after the restart must be against what existed before it.
    let root_before = tmp.path().join("root-before.pem");
    fs::copy(ca.root_path(), &root_before).unwrap();
    let intermediate_before = fs::read(ca.intermediate_path()).unwrap();
    let first = lego.check_issued(&ca, &root_before, &names, tmp.path());
    let accounts = lego.accounts();
    assert_eq!(accounts.len(), 1, "lego registered one account");
    let account_before = fs::read(&accounts[0]).unwrap();

    ca.stop(&mut guard);
    // Same data directory and ports: lego keys its account by the server URL.
    let ca = CaProcess::start_on(ca_bin(), &mut guard, &data_dir, listen, http01_port);
    assert_eq!(
        fs::read(ca.root_path()).unwrap(),
        fs::read(&root_before).unwrap(),
        "root.pem unchanged across the restart"
    );
    assert_eq!(
        fs::read(ca.intermediate_path()).unwrap(),
        intermediate_before,
        "intermediate.pem unchanged across the restart"
    );

    // Renewal with the account from before the restart: it only works if the CA still
    // knows the account (lego does not register again when it has one).
    lego.renew(&ca, &names);
    let renewed = lego.check_issued(&ca, &root_before, &names, tmp.path());
    assert_ne!(
        renewed, first,
        "renewal after restart produced a new certificate"
    );
    let accounts = lego.accounts();
    assert_eq!(accounts.len(), 1, "still one account after the restart");
    assert_eq!(
        fs::read(&accounts[0]).unwrap(),
        account_before,
        "lego's account (registration URL) unchanged"
    );
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// The TLS listener offers HTTP/2 and HTTP/1.1 by ALPN: a client asking for either gets it.
#[test]
fn the_tls_listener_serves_http2_and_http1_by_alpn() {
    let tmp = tempfile::tempdir().unwrap();
    let mut guard = ProcessGuard::default();
    let ca = CaProcess::start(ca_bin(), &mut guard, &tmp.path().join("ca"));
    let root = fs::read(ca.root_path()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for (h2, want) in [
            (true, reqwest::Version::HTTP_2),
            (false, reqwest::Version::HTTP_11),
        ] {
            let mut b = reqwest::Client::builder()
                .tls_certs_only([reqwest::Certificate::from_pem(&root).unwrap()])
                .timeout(std::time::Duration::from_secs(10));
            if !h2 {
                b = b.http1_only();
            }
            let r = b
                .build()
                .unwrap()
                .get(&ca.directory_url)
                .send()
                .await
                .unwrap();
            assert_eq!(r.version(), want);
            assert_eq!(r.status(), 200);
            let dir: serde_json::Value = r.json().await.unwrap();
            assert!(dir["newNonce"].is_string(), "{dir}");
        }
    });
    ca.stop(&mut guard);
}
