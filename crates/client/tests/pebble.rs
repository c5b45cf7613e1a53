//! The `certwright` command against Pebble (Let's Encrypt's test CA) and
//! pebble-challtestsrv, one shared instance per test binary. Pebble rejects 5% of nonces,
//! so every test also exercises the badNonce retry.

mod common;

use std::path::Path;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::{mode, openssl_verify, Cli, Pebble};
use serde_json::Value;

fn pebble() -> &'static Pebble {
    static P: OnceLock<Pebble> = OnceLock::new();
    P.get_or_init(|| common::on_immortal_thread(|| Pebble::start(false)))
}

/// Pebble validates http-01 and tls-alpn-01 on fixed ports: one test at a time uses them.
fn port_lock() -> MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(|e| e.into_inner())
}

fn cli(p: &Pebble, state: &Path) -> Cli {
    Cli {
        server: p.directory_url.clone(),
        ca_cert: p.listener_root.clone(),
        state: state.to_owned(),
    }
}

/// Checks the stored files of `name`: modes, chain verified by openssl against one of
/// Pebble's roots, names in the leaf.
fn check_files(p: &Pebble, c: &Cli, name: &str, names: &[&str]) -> Value {
    let dir = c.cert_dir(name);
    assert_eq!(mode(&dir.join("privkey.pem")), 0o600);
    assert_eq!(mode(&dir.join("fullchain.pem")), 0o644);
    let fullchain = std::fs::read_to_string(dir.join("fullchain.pem")).unwrap();
    let cert = std::fs::read_to_string(dir.join("cert.pem")).unwrap();
    let chain = std::fs::read_to_string(dir.join("chain.pem")).unwrap();
    assert_eq!(fullchain, format!("{cert}{chain}"));
    let info = certwright_client::certinfo::CertInfo::from_chain_pem(&fullchain).unwrap();
    for n in names {
        assert!(
            info.names.iter().any(|x| x == n),
            "{n} not in {:?}",
            info.names
        );
    }
    // The default chain ends at Pebble's root 0.
    openssl_verify(&dir, &p.root_pem(0));
    serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap()
}

#[test]
fn http01_standalone_issue_list_renew_and_revoke() {
    let p = pebble();
    let state = tempfile::tempdir().unwrap();
    let c = cli(p, state.path());
    let listen = format!("127.0.0.1:{}", p.http_port);
    let _ports = port_lock();
    let v = c.json(&[
        "issue",
        "-d",
        "http.example.test",
        "-d",
        "www.http.example.test",
        "--key-type",
        "ec256",
        "--http01-listen",
        &listen,
        "--email",
        "ops@example.test",
    ]);
    assert_eq!(v["action"], "issued");
    let meta = check_files(
        p,
        &c,
        "http.example.test",
        &["http.example.test", "www.http.example.test"],
    );
    assert_eq!(meta["key_type"], "ec256");
    // The account key is private too.
    let accounts: Vec<_> = std::fs::read_dir(state.path().join("accounts"))
        .unwrap()
        .collect();
    assert_eq!(accounts.len(), 1);
    let acct_dir = accounts[0].as_ref().unwrap().path();
    assert_eq!(mode(&acct_dir.join("account.key")), 0o600);

    // Issuing again is a no-op while the certificate is not due.
    let again = c.json(&[
        "issue",
        "-d",
        "http.example.test",
        "-d",
        "www.http.example.test",
        "--http01-listen",
        &listen,
    ]);
    assert_eq!(again["action"], "unchanged");
    let due = c.json(&["renew"]);
    assert_eq!(due["action"], "not_due");

    let list = c.json(&["list"]);
    let row = &list[0];
    assert_eq!(row["name"], "http.example.test");
    assert!(row["days_left"].as_i64().unwrap() > 0);
    assert!(row["issuer"].as_str().unwrap().contains("Pebble"), "{row}");

    // Forced renewal: a new serial and a new key; the old version is archived.
    let old_key = std::fs::read(c.cert_dir("http.example.test").join("privkey.pem")).unwrap();
    let r = c.json(&["renew", "--force", "http.example.test"]);
    assert_eq!(r["action"], "renewed");
    assert_ne!(r["serial"], meta["serial"]);
    let dir = c.cert_dir("http.example.test");
    assert_ne!(std::fs::read(dir.join("privkey.pem")).unwrap(), old_key);
    assert_eq!(
        std::fs::read(dir.join("archive/1/privkey.pem")).unwrap(),
        old_key
    );
    check_files(p, &c, "http.example.test", &["http.example.test"]);
    drop(_ports);

    // Revocation with a reason by the account key; Pebble refuses a second revocation.
    let rv = c.json(&["revoke", "http.example.test", "--reason", "keyCompromise"]);
    assert_eq!(rv["reason"], 1);
    let out = c.run(&["revoke", "http.example.test", "--reason", "superseded"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("alreadyRevoked"));
    assert_eq!(c.json(&["list"])[0]["revoked"], true);
}

/// A tiny static file server for the webroot test (Pebble's http-01 port).
fn serve_dir(port: u16, root: std::path::PathBuf) -> impl Drop {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    struct Stop(Arc<AtomicBool>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let flag = stop.clone();
    std::thread::spawn(move || {
        while !flag.load(Ordering::SeqCst) {
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            s.set_nonblocking(false).ok();
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line).ok();
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let file = root.join(path.trim_start_matches('/'));
            let resp = match std::fs::read(&file) {
                Ok(body) if !path.contains("..") => {
                    let mut r =
                        format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                            .into_bytes();
                    r.extend(body);
                    r
                }
                _ => b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
            };
            s.write_all(&resp).ok();
        }
    });
    Stop(stop)
}

#[test]
fn webroot_with_rsa_key_removes_token_files() {
    let p = pebble();
    let state = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let c = cli(p, state.path());
    let _ports = port_lock();
    let _server = serve_dir(p.http_port, root.path().to_owned());
    let v = c.json(&[
        "issue",
        "-d",
        "webroot.example.test",
        "--key-type",
        "rsa2048",
        "--webroot",
        root.path().to_str().unwrap(),
    ]);
    assert_eq!(v["action"], "issued");
    let meta = check_files(p, &c, "webroot.example.test", &["webroot.example.test"]);
    assert_eq!(meta["key_type"], "rsa2048");
    let key =
        std::fs::read_to_string(c.cert_dir("webroot.example.test").join("privkey.pem")).unwrap();
    let der = certwright_client::store::pem_decode(&key, "PRIVATE KEY").unwrap();
    assert!(matches!(
        certwright_proto::AccountKey::from_pkcs8(&der).unwrap(),
        certwright_proto::AccountKey::Rsa(_)
    ));
    let challenge_dir = root.path().join(".well-known/acme-challenge");
    assert_eq!(
        std::fs::read_dir(challenge_dir).unwrap().count(),
        0,
        "token files left behind"
    );
}

#[test]
fn tls_alpn01_standalone() {
    let p = pebble();
    let state = tempfile::tempdir().unwrap();
    let c = cli(p, state.path());
    let _ports = port_lock();
    let v = c.json(&[
        "issue",
        "-d",
        "alpn.example.test",
        "--key-type",
        "ec384",
        "--tlsalpn01-listen",
        &format!("127.0.0.1:{}", p.tls_port),
    ]);
    assert_eq!(v["action"], "issued");
    check_files(p, &c, "alpn.example.test", &["alpn.example.test"]);
}

/// An IP identifier over tls-alpn-01: Pebble's VA sends the address's reverse-DNS name as
/// SNI (RFC 8738 §6), and the responder must answer for it.
#[test]
fn tls_alpn01_standalone_ip_identifier() {
    let p = pebble();
    let state = tempfile::tempdir().unwrap();
    let c = cli(p, state.path());
    let _ports = port_lock();
    let v = c.json(&[
        "issue",
        "-d",
        "127.0.0.1",
        "--tlsalpn01-listen",
        &format!("127.0.0.1:{}", p.tls_port),
    ]);
    assert_eq!(v["action"], "issued", "{v}");
    check_files(p, &c, "127.0.0.1", &["127.0.0.1"]);
}

#[test]
fn dns01_exec_hook_wildcard_and_preferred_chain() {
    let p = pebble();
    let state = tempfile::tempdir().unwrap();
    let c = cli(p, state.path());
    let hook = p.dns.write_hook(state.path());
    let resolver = format!("127.0.0.1:{}", p.dns.dns_port);
    // Pebble offers an alternate chain to its second root; prefer it by name.
    let root1 = p.root_pem(1);
    let root1_cn = {
        let der = certwright_client::certinfo::chain_ders(&root1).unwrap();
        certwright_client::certinfo::CertInfo::from_der(&der[0])
            .unwrap()
            .issuer
    };
    let v = c.json(&[
        "issue",
        "-d",
        "*.wild.example.test",
        "-d",
        "wild.example.test",
        "--dns01-exec",
        hook.to_str().unwrap(),
        "--dns01-resolver",
        &resolver,
        "--preferred-chain",
        &root1_cn,
    ]);
    assert_eq!(v["action"], "issued");
    let dir = c.cert_dir("*.wild.example.test");
    let fullchain = std::fs::read_to_string(dir.join("fullchain.pem")).unwrap();
    let issuers = certwright_client::certinfo::chain_issuers(&fullchain);
    assert_eq!(
        issuers.last().unwrap(),
        &root1_cn,
        "preferred chain not chosen"
    );
    openssl_verify(&dir, &root1);
    let log = std::fs::read_to_string(state.path().join("dns01-hook.log")).unwrap();
    // Both names share one TXT name; each was presented and cleaned up.
    assert_eq!(
        log.matches("present _acme-challenge.wild.example.test.")
            .count(),
        2,
        "{log}"
    );
    assert_eq!(
        log.matches("cleanup _acme-challenge.wild.example.test.")
            .count(),
        2,
        "{log}"
    );
}

#[test]
fn dns01_hook_failure_is_reported_with_exit_code() {
    let p = pebble();
    let state = tempfile::tempdir().unwrap();
    let c = cli(p, state.path());
    let hook = state.path().join("broken.sh");
    std::fs::write(&hook, "#!/bin/sh\necho 'zone is read-only' >&2\nexit 7\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = c.run(&[
        "issue",
        "-d",
        "broken.example.test",
        "--dns01-exec",
        hook.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("zone is read-only"), "{err}");
    assert!(!c
        .cert_dir("broken.example.test")
        .join("fullchain.pem")
        .exists());
}

#[test]
fn account_register_update_rollover_deactivate() {
    let p = pebble();
    let state = tempfile::tempdir().unwrap();
    let c = cli(p, state.path());
    let reg = c.json(&[
        "account",
        "register",
        "--email",
        "a@example.test",
        "--key-type",
        "ec384",
    ]);
    assert_eq!(reg["status"], "valid");
    assert_eq!(reg["key"], "ECDSA P-384");
    let shown = c.json(&["account", "show"]);
    assert_eq!(shown["url"], reg["url"]);
    let upd = c.json(&["account", "update", "--email", "b@example.test"]);
    assert_eq!(upd["contact"][0], "mailto:b@example.test");

    let roll = c.json(&["account", "rollover", "--key-type", "ec256"]);
    assert_ne!(roll["old_key_thumbprint"], roll["new_key_thumbprint"]);
    assert_eq!(roll["url"], reg["url"]);
    // The stored key is the new one: the account is found and used with it.
    let shown = c.json(&["account", "show"]);
    assert_eq!(shown["key"], "ECDSA P-256");
    assert_eq!(shown["url"], reg["url"]);

    let de = c.json(&["account", "deactivate"]);
    assert_eq!(de["status"], "deactivated");
    // A deactivated account can no longer order: the CA's problem and exit code 3.
    let hook = p.dns.write_hook(state.path());
    let out = c.run(&[
        "issue",
        "-d",
        "gone.example.test",
        "--dns01-exec",
        hook.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthorized"));
}

#[test]
fn revoke_by_certificate_key() {
    let p = pebble();
    let state = tempfile::tempdir().unwrap();
    let c = cli(p, state.path());
    let hook = p.dns.write_hook(state.path());
    let resolver = format!("127.0.0.1:{}", p.dns.dns_port);
    c.json(&[
        "issue",
        "-d",
        "certkey.example.test",
        "--key-type",
        "rsa2048",
        "--dns01-exec",
        hook.to_str().unwrap(),
        "--dns01-resolver",
        &resolver,
    ]);
    let v = c.json(&[
        "revoke",
        "certkey.example.test",
        "--by-cert-key",
        "--reason",
        "4",
    ]);
    assert_eq!(v["action"], "revoked");
    let out = c.run(&["revoke", "certkey.example.test", "--by-cert-key"]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn external_account_binding() {
    let p = common::on_immortal_thread(|| Pebble::start(true));
    let state = tempfile::tempdir().unwrap();
    let c = cli(&p, state.path());
    let out = c.run(&["account", "register", "--email", "e@example.test"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("externalAccountRequired"));
    let wrong = c.run(&[
        "account",
        "register",
        "--eab-kid",
        "kid-1",
        "--eab-hmac-key",
        "b10lLJs8l1GPIzsLP0s6pMt8O0XVGnfTaCeROxQM0BIt2XrJMDHJZBM5NuQmQJQH",
    ]);
    assert_eq!(
        wrong.status.code(),
        Some(3),
        "a MAC key of another kid must be refused"
    );
    let v = c.json(&[
        "account",
        "register",
        "--eab-kid",
        "kid-1",
        "--eab-hmac-key",
        "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W",
    ]);
    assert_eq!(v["status"], "valid");
    // Then it issues.
    let hook = p.dns.write_hook(state.path());
    let resolver = format!("127.0.0.1:{}", p.dns.dns_port);
    let i = c.json(&[
        "issue",
        "-d",
        "eab.example.test",
        "--dns01-exec",
        hook.to_str().unwrap(),
        "--dns01-resolver",
        &resolver,
    ]);
    assert_eq!(i["action"], "issued");
    drop(p);
}

#[test]
fn falls_back_to_the_next_ca_and_reports_why() {
    let p = pebble();
    let state = tempfile::tempdir().unwrap();
    let hook = p.dns.write_hook(state.path());
    let resolver = format!("127.0.0.1:{}", p.dns.dns_port);
    let dead = format!("https://localhost:{}/dir", common::free_port());
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_certwright"));
    cmd.args(["--json", "--server", &dead, "--server", &p.directory_url])
        .arg("--ca-cert")
        .arg(&p.listener_root)
        .arg("--state-dir")
        .arg(state.path())
        .args([
            "issue",
            "-d",
            "fallback.example.test",
            "--dns01-exec",
            hook.to_str().unwrap(),
            "--dns01-resolver",
            &resolver,
        ]);
    let out = common::run_bounded(&mut cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ca"], p.directory_url);
    assert_eq!(v["fallbacks"][0]["ca"], dead);
    assert!(!v["fallbacks"][0]["error"].as_str().unwrap().is_empty());
}

#[test]
fn agent_issues_renews_with_moved_clock_runs_hooks_and_stops_on_sigterm() {
    let p = pebble();
    let state = tempfile::tempdir().unwrap();
    let hook = p.dns.write_hook(state.path());
    let deploy_log = state.path().join("deploy.log");
    let config = state.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
server = "{server}"
ca_cert = "{root}"

[[certificate]]
name = "agent-one"
domains = ["agent1.example.test"]
dns01_exec = "{hook}"
dns01_resolvers = ["127.0.0.1:{dns}"]
deploy_hook = 'echo "$CERTWRIGHT_CERT_NAME $CERTWRIGHT_FULLCHAIN_PATH $CERTWRIGHT_KEY_PATH" >> {log}'

[[certificate]]
domains = ["agent2.example.test"]
key_type = "rsa2048"
dns01_exec = "{hook}"
dns01_resolvers = ["127.0.0.1:{dns}"]
deploy_hook = 'echo "$CERTWRIGHT_CERT_NAME $CERTWRIGHT_FULLCHAIN_PATH $CERTWRIGHT_KEY_PATH" >> {log}'
"#,
            server = p.directory_url,
            root = p.listener_root.display(),
            hook = hook.display(),
            dns = p.dns.dns_port,
            log = deploy_log.display(),
        ),
    )
    .unwrap();
    let run_agent = |offset_secs: i64, want_lines: usize, settle: Duration| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_certwright"));
        cmd.arg("--state-dir")
            .arg(state.path())
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env("CERTWRIGHT_TEST_TIME_OFFSET", offset_secs.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = common::spawn(&mut cmd);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let lines = std::fs::read_to_string(&deploy_log)
                .map(|s| s.lines().count())
                .unwrap_or(0);
            if lines >= want_lines {
                break;
            }
            if let Some(status) = child.0.try_wait().unwrap() {
                panic!("agent exited early: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "agent did not deploy {want_lines} certificates in time"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // Give a looping agent the chance to misbehave, then stop it: SIGTERM, clean exit.
        std::thread::sleep(settle);
        common::send_signal(child.id(), common::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = child.0.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "agent ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "agent exit status {status}");
    };
    // First run: both certificates are missing, issued, deployed.
    run_agent(0, 2, Duration::ZERO);
    let c = cli(p, state.path());
    let serial = |name: &str| -> String {
        let meta: Value = serde_json::from_str(
            &std::fs::read_to_string(c.cert_dir(name).join("meta.json")).unwrap(),
        )
        .unwrap();
        meta["serial"].as_str().unwrap().to_owned()
    };
    let (s1, s2) = (serial("agent-one"), serial("agent2.example.test"));
    let log = std::fs::read_to_string(&deploy_log).unwrap();
    assert!(
        log.contains(&format!(
            "agent-one {}",
            c.cert_dir("agent-one").join("fullchain.pem").display()
        )),
        "{log}"
    );
    // Second run with the clock moved past the renewal time of both: both renewed, hooks run.
    // The renewed certificates are due again at once under this clock too (they were
    // issued moments later); the agent's reissue guard keeps it from looping.
    let far = 6 * 365 * 86400;
    run_agent(far, 4, Duration::from_secs(3));
    let lines = std::fs::read_to_string(&deploy_log)
        .unwrap()
        .lines()
        .count();
    assert_eq!(lines, 4, "a certificate was renewed twice in one run");
    assert_ne!(serial("agent-one"), s1);
    assert_ne!(serial("agent2.example.test"), s2);
    assert!(c
        .cert_dir("agent-one")
        .join("archive/1/fullchain.pem")
        .exists());
}

#[test]
fn issue_from_own_csr_keeps_no_key() {
    let p = pebble();
    let state = tempfile::tempdir().unwrap();
    let c = cli(p, state.path());
    let key = state.path().join("own.key");
    let csr = state.path().join("own.csr");
    let out = common::run_bounded(
        std::process::Command::new("openssl")
            .args([
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr)
            .args([
                "-subj",
                "/CN=csr.example.test",
                "-addext",
                "subjectAltName=DNS:csr.example.test,DNS:alt.csr.example.test",
            ]),
        common::OPENSSL_TIMEOUT,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hook = p.dns.write_hook(state.path());
    let resolver = format!("127.0.0.1:{}", p.dns.dns_port);
    let v = c.json(&[
        "issue",
        "--csr",
        csr.to_str().unwrap(),
        "--dns01-exec",
        hook.to_str().unwrap(),
        "--dns01-resolver",
        &resolver,
    ]);
    assert_eq!(
        v["names"],
        serde_json::json!(["csr.example.test", "alt.csr.example.test"])
    );
    let dir = c.cert_dir("csr.example.test");
    assert!(!dir.join("privkey.pem").exists());
    openssl_verify(&dir, &p.root_pem(0));
    // The certificate is for the CSR's key.
    let pubkey = |args: &[&str]| {
        common::run_bounded(
            std::process::Command::new("openssl").args(args),
            common::OPENSSL_TIMEOUT,
        )
        .stdout
    };
    assert_eq!(
        pubkey(&["pkey", "-pubout", "-in", key.to_str().unwrap()]),
        pubkey(&[
            "x509",
            "-pubkey",
            "-noout",
            "-in",
            dir.join("cert.pem").to_str().unwrap()
        ])
    );
}

/// The library directly: Pebble rejects 5% of good nonces, so among 300 signed requests
/// some are answered `badNonce` (all but certainly: 0.95^300 < 1e-6) and every one of them
/// must still succeed through the retry. Also: finding an account by its key.
#[test]
fn library_retries_bad_nonces_and_finds_accounts_by_key() {
    use certwright_client::client::NewAccountOptions;
    use certwright_client::{Account, AcmeClient, ClientOptions};
    use certwright_proto::{AccountKey, KeyType, ProblemType};
    let p = pebble();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let options = ClientOptions::new(&p.directory_url)
            .trust_pem(std::fs::read(&p.listener_root).unwrap());
        let client = AcmeClient::new(options).await.unwrap();
        let key = AccountKey::generate(KeyType::EcP256).unwrap();
        let pkcs8 = key.to_pkcs8().unwrap();
        let mut account = Account::create(
            client.clone(),
            key,
            &NewAccountOptions {
                contact: vec!["lib@example.test".into()],
                terms_of_service_agreed: true,
                eab: None,
            },
        )
        .await
        .unwrap();
        for _ in 0..300 {
            account.refresh().await.unwrap();
        }
        assert!(
            client.bad_nonce_retries() > 0,
            "no badNonce seen in 300 requests"
        );

        let found = Account::find(client.clone(), AccountKey::from_pkcs8(&pkcs8).unwrap())
            .await
            .unwrap();
        assert_eq!(found.url(), account.url());
        let stranger = AccountKey::generate(KeyType::EcP256).unwrap();
        let err = Account::find(client.clone(), stranger).await.unwrap_err();
        assert!(err.is_problem(ProblemType::AccountDoesNotExist), "{err}");
        assert_eq!(err.problem().unwrap().http_status(), 400);
    });
}

#[test]
fn account_keys_of_every_jws_algorithm() {
    let p = pebble();
    for (kt, want) in [
        ("ec256", "ECDSA P-256"),
        ("ec384", "ECDSA P-384"),
        ("rsa2048", "RSA 2048"),
    ] {
        let state = tempfile::tempdir().unwrap();
        let c = cli(p, state.path());
        let v = c.json(&["account", "register", "--key-type", kt]);
        assert_eq!(v["key"], want);
        assert_eq!(c.json(&["account", "show"])["status"], "valid", "{kt}");
    }
    // Pebble has no EdDSA: the refusal arrives as its problem document and exit code 3
    // (EdDSA is exercised against certwright-ca).
    let state = tempfile::tempdir().unwrap();
    let out = cli(p, state.path()).run(&["account", "register", "--key-type", "ed25519"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("badPublicKey"));
}

/// The certificate files of `dir` are a working set: the key fits the leaf, and the chain
/// verifies with openssl.
fn assert_working_set(p: &Pebble, dir: &Path) {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let key = std::fs::read_to_string(dir.join("privkey.pem")).unwrap();
    let key = certwright_client::certinfo::CertKey::from_pem(&key).unwrap();
    let chain = std::fs::read_to_string(dir.join("fullchain.pem")).unwrap();
    let ders = certwright_client::certinfo::chain_ders(&chain).unwrap();
    let (_, leaf) = X509Certificate::from_der(&ders[0]).unwrap();
    assert_eq!(
        leaf.public_key().raw,
        rcgen::PublicKeyData::subject_public_key_info(&key.pair).as_slice(),
        "privkey.pem does not fit fullchain.pem"
    );
    openssl_verify(dir, &p.root_pem(0));
}

/// SIGKILL of a renewal at several moments: each time the files on disk are a working
/// set (old or new, never mixed), and a run afterwards completes the renewal.
#[test]
fn a_kill_during_renewal_never_leaves_a_broken_certificate() {
    let p = pebble();
    let state = tempfile::tempdir().unwrap();
    let c = cli(p, state.path());
    let listen = format!("127.0.0.1:{}", p.http_port);
    let _ports = port_lock();
    let v = c.json(&[
        "issue",
        "-d",
        "kill.example.test",
        "--http01-listen",
        &listen,
    ]);
    assert_eq!(v["action"], "issued");
    let first_serial = v["serial"].clone();
    let dir = c.cert_dir("kill.example.test");
    assert_working_set(p, &dir);
    // A renewal against Pebble takes a few hundred milliseconds: kill it at points spread
    // over that time (bounded count).
    for delay_ms in [30u64, 120, 220, 320, 450, 600, 800] {
        let mut child = common::spawn(
            c.command()
                .args(["renew", "--force", "kill.example.test"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        );
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.0.kill();
        let _ = child.0.wait();
        assert_working_set(p, &dir);
    }
    let done = c.json(&["renew", "--force", "kill.example.test"]);
    assert_eq!(done["action"], "renewed", "{done}");
    assert_ne!(done["serial"], first_serial);
    assert_working_set(p, &dir);
}

/// A CA that hands out a certificate for another key, a chain that does not link, or a
/// cut-off PEM: each renewal fails with a reason, the files on disk stay exactly the
/// working set they were, and the next honest renewal replaces them.
#[test]
fn a_broken_certificate_from_the_ca_never_replaces_a_working_one() {
    use common::tamper::{Tamper, TamperingProxy};
    let p = pebble();
    let proxy = common::on_immortal_thread(|| TamperingProxy::start(p));
    let state = tempfile::tempdir().unwrap();
    let c = Cli {
        server: proxy.directory_url.clone(),
        ca_cert: proxy.listener_root.clone(),
        state: state.path().to_owned(),
    };
    let listen = format!("127.0.0.1:{}", p.http_port);
    let _ports = port_lock();
    let name = "tampered.example.test";
    let v = c.json(&["issue", "-d", name, "--http01-listen", &listen]);
    assert_eq!(v["action"], "issued", "{v}");
    let dir = c.cert_dir(name);
    assert_working_set(p, &dir);
    let files = ["privkey.pem", "cert.pem", "chain.pem", "fullchain.pem"];
    let meta = || -> Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap()
    };
    let snapshot = || {
        files
            .iter()
            .map(|f| std::fs::read(dir.join(f)).unwrap())
            .collect::<Vec<_>>()
    };
    let before = snapshot();
    let cases = [
        (Tamper::ForeignKey, "not for our key"),
        (Tamper::BrokenChain, "chain is broken"),
        (Tamper::Truncated, "certificate"),
    ];
    for (attempt, (mode, reason)) in cases.into_iter().enumerate() {
        let served = proxy.tampered();
        proxy.set(mode);
        let out = c.run(&["renew", "--force", name]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{mode:?}: renewal succeeded: {stderr}"
        );
        assert!(
            stderr.contains(reason),
            "{mode:?}: no '{reason}' in: {stderr}"
        );
        // Pebble offers alternate chains too: every one of them was spoiled.
        assert!(proxy.tampered() > served, "{mode:?} was not served");
        let now = snapshot();
        for ((f, a), b) in files.iter().zip(&before).zip(&now) {
            assert!(
                a == b,
                "{mode:?} changed {f}: {}",
                String::from_utf8_lossy(b)
            );
        }
        // meta.json keeps the certificate it describes and records the failure.
        let m = meta();
        assert_eq!(m["serial"], v["serial"], "{m}");
        assert_eq!(m["failures"], attempt as u64 + 1, "{m}");
        assert!(m["last_error"].as_str().unwrap().contains(reason), "{m}");
        assert_working_set(p, &dir);
    }
    proxy.set(Tamper::Nothing);
    let done = c.json(&["renew", "--force", name]);
    assert_eq!(done["action"], "renewed", "{done}");
    assert_ne!(done["serial"], v["serial"]);
    assert!(snapshot() != before);
    assert_eq!(meta()["serial"], done["serial"]);
    assert_eq!(meta()["failures"], 0);
    assert_working_set(p, &dir);
}
