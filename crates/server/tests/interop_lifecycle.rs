//! The certificate lifecycle with real clients against a certwright-ca process: certbot
//! and lego revoke (the CRL then lists the certificate with the reason), and External
//! Account Binding required — refused without a binding, accepted with one.

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::relying_party::{check_as_relying_party, plain_get};
use support::{
    ca_bin, certbot_command, create_postgres_database, crl_entries, dns, free_port, leaf,
    lego_command, run_bounded, run_ok, CaProcess, ProcessGuard, CLIENT_TIMEOUT,
};

const EMAIL: &str = support::CLIENT_EMAIL;

fn certbot(dir: &Path, ca: &CaProcess, sub: &str) -> Command {
    certbot_command(dir, ca, sub)
}

fn lego(path: &Path, ca: &CaProcess, names: &[&str]) -> Command {
    let mut cmd = lego_command(path, ca, names);
    cmd.arg("--http")
        .args(["--http.port", &format!("127.0.0.1:{}", ca.http01_port)]);
    cmd
}

#[test]
fn certbot_and_lego_revoke() {
    let _dns = dns();
    let tmp = tempfile::tempdir().unwrap();
    let mut guard = ProcessGuard::default();
    let ca = CaProcess::start(ca_bin(), &mut guard, &tmp.path().join("ca"));

    // certbot: certonly, then revoke --reason keycompromise.
    let cb = tmp.path().join("certbot");
    let mut cmd = certbot(&cb, &ca, "certonly");
    cmd.args([
        "--standalone",
        "--agree-tos",
        "-m",
        EMAIL,
        "-d",
        "cb-revoke.certwright.test",
    ])
    .args([
        "--http-01-port",
        &ca.http01_port.to_string(),
        "--http-01-address",
        "127.0.0.1",
    ]);
    run_ok("certbot certonly", &mut cmd, CLIENT_TIMEOUT, &ca.logs());
    let cert_path = cb.join("config/live/cb-revoke.certwright.test/cert.pem");
    let certbot_serial = leaf(&cert_path).serial_hex;
    let mut cmd = certbot(&cb, &ca, "revoke");
    cmd.arg("--cert-path").arg(&cert_path).args([
        "--reason",
        "keycompromise",
        "--no-delete-after-revoke",
    ]);
    run_ok("certbot revoke", &mut cmd, CLIENT_TIMEOUT, &ca.logs());

    // lego: run, then revoke (reason superseded = 4).
    let lp = tmp.path().join("lego");
    let names = ["lego-revoke.certwright.test"];
    let mut cmd = lego(&lp, &ca, &names);
    cmd.arg("run");
    run_ok("lego run", &mut cmd, CLIENT_TIMEOUT, &ca.logs());
    let lego_serial = leaf(&lp.join("certificates/lego-revoke.certwright.test.crt")).serial_hex;
    let mut cmd = lego(&lp, &ca, &names);
    cmd.args(["revoke", "--reason", "4"]);
    run_ok("lego revoke", &mut cmd, CLIENT_TIMEOUT, &ca.logs());

    let entries = crl_entries(&ca);
    assert!(
        entries.contains(&(certbot_serial.clone(), Some(1))),
        "{certbot_serial} in {entries:?}"
    );
    assert!(
        entries.contains(&(lego_serial.clone(), Some(4))),
        "{lego_serial} in {entries:?}"
    );

    // A second revocation is refused (alreadyRevoked).
    let mut cmd = certbot(&cb, &ca, "revoke");
    cmd.arg("--cert-path").arg(&cert_path).args([
        "--reason",
        "keycompromise",
        "--no-delete-after-revoke",
    ]);
    let out = run_bounded(&mut cmd, CLIENT_TIMEOUT);
    assert!(!out.status.success(), "a second revocation must fail");
    let log = fs::read_to_string(cb.join("logs/letsencrypt.log")).unwrap_or_default();
    assert!(log.contains("alreadyRevoked"), "certbot saw alreadyRevoked");
}

/// Certificates certbot and lego obtain name the plain-HTTP PKI URLs; openssl verifies
/// their chains, CRLs and OCSP answers fetched from those URLs, before and after the
/// clients revoke them; the PKI listener serves no ACME.
#[test]
fn certbot_lego_and_openssl_use_the_plain_http_pki_urls() {
    let _dns = dns();
    let tmp = tempfile::tempdir().unwrap();
    let mut guard = ProcessGuard::default();
    let ca = CaProcess::start(ca_bin(), &mut guard, &tmp.path().join("ca"));
    let pki = format!("http://localhost:{}", ca.pki_http_listen.unwrap().port());
    // The CA says where the listener is and what certificates name (printed just after
    // the directory URL the start waited for).
    let printed = format!("named in certificates as {pki}");
    let stdout = || fs::read_to_string(ca.data_dir.join("ca-stdout.0.txt")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !stdout().contains(&printed) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(stdout().contains(&printed), "{}", stdout());
    // No ACME on the plain listener.
    for path in ["/directory", "/acme/new-nonce"] {
        assert_eq!(plain_get(&format!("{pki}{path}")).0, 404, "{path}");
    }

    let cb = tmp.path().join("certbot");
    let mut cmd = certbot(&cb, &ca, "certonly");
    cmd.args(["--standalone", "--agree-tos", "-m", EMAIL])
        .args(["-d", "cb-pki.certwright.test"])
        .args(["--http-01-port", &ca.http01_port.to_string()])
        .args(["--http-01-address", "127.0.0.1"]);
    run_ok("certbot certonly", &mut cmd, CLIENT_TIMEOUT, &ca.logs());
    let certbot_bundle = cb.join("config/live/cb-pki.certwright.test/fullchain.pem");

    let lp = tmp.path().join("lego");
    let names = ["lego-pki.certwright.test"];
    let mut cmd = lego(&lp, &ca, &names);
    cmd.arg("run");
    run_ok("lego run", &mut cmd, CLIENT_TIMEOUT, &ca.logs());
    // Kept aside: `lego revoke` archives the certificate.
    let lego_bundle = tmp.path().join("lego-pki.crt");
    fs::copy(
        lp.join("certificates/lego-pki.certwright.test.crt"),
        &lego_bundle,
    )
    .unwrap();

    for (name, bundle) in [("certbot", &certbot_bundle), ("lego", &lego_bundle)] {
        check_as_relying_party(
            &ca,
            "intermediate",
            bundle,
            &tmp.path().join(format!("rp-{name}")),
            false,
        );
    }

    let mut cmd = certbot(&cb, &ca, "revoke");
    cmd.arg("--cert-path")
        .arg(cb.join("config/live/cb-pki.certwright.test/cert.pem"))
        .args(["--reason", "keycompromise", "--no-delete-after-revoke"]);
    run_ok("certbot revoke", &mut cmd, CLIENT_TIMEOUT, &ca.logs());
    let mut cmd = lego(&lp, &ca, &names);
    cmd.args(["revoke", "--reason", "4"]);
    run_ok("lego revoke", &mut cmd, CLIENT_TIMEOUT, &ca.logs());

    for (name, bundle) in [("certbot", &certbot_bundle), ("lego", &lego_bundle)] {
        check_as_relying_party(
            &ca,
            "intermediate",
            bundle,
            &tmp.path().join(format!("rp2-{name}")),
            true,
        );
    }
    ca.stop(&mut guard);
}

/// Creates an EAB key with the admin command; returns (kid, hmac key).
fn eab_create(ca: &CaProcess, label: &str) -> (String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_certwright-ca"));
    cmd.args(["eab", "create", "--json", "--label", label])
        .arg("--data-dir")
        .arg(&ca.data_dir);
    let out = run_ok(
        "certwright-ca eab create",
        &mut cmd,
        CLIENT_TIMEOUT,
        &ca.logs(),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["kid"].as_str().unwrap().to_owned(),
        v["hmac_key"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn external_account_binding_with_certbot_and_lego() {
    let _dns = dns();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("ca.toml");
    fs::write(&config, "[directory]\nexternal_account_required = true\n").unwrap();
    let mut guard = ProcessGuard::default();
    let ca = CaProcess::start_with_config(ca_bin(), &mut guard, &tmp.path().join("ca"), &config);

    // certbot without a binding: refused.
    let cb = tmp.path().join("certbot");
    let mut cmd = certbot(&cb, &ca, "register");
    cmd.args(["--agree-tos", "-m", EMAIL]);
    let out = run_bounded(&mut cmd, CLIENT_TIMEOUT);
    assert!(!out.status.success(), "registration without EAB must fail");
    let log = fs::read_to_string(cb.join("logs/letsencrypt.log")).unwrap_or_default();
    assert!(
        log.contains("externalAccountRequired"),
        "certbot saw externalAccountRequired"
    );

    // With the binding: registered, then a certificate.
    let (kid, hmac) = eab_create(&ca, "team-certbot");
    let mut cmd = certbot(&cb, &ca, "register");
    cmd.args([
        "--agree-tos",
        "-m",
        EMAIL,
        "--eab-kid",
        &kid,
        "--eab-hmac-key",
        &hmac,
    ]);
    run_ok(
        "certbot register --eab",
        &mut cmd,
        CLIENT_TIMEOUT,
        &ca.logs(),
    );
    let mut cmd = certbot(&cb, &ca, "certonly");
    cmd.args(["--standalone", "-d", "cb-eab.certwright.test"])
        .args([
            "--http-01-port",
            &ca.http01_port.to_string(),
            "--http-01-address",
            "127.0.0.1",
        ]);
    run_ok(
        "certbot certonly (EAB account)",
        &mut cmd,
        CLIENT_TIMEOUT,
        &ca.logs(),
    );
    // The key is used up: it cannot bind a second account.
    let cb2 = tmp.path().join("certbot2");
    let mut cmd = certbot(&cb2, &ca, "register");
    cmd.args([
        "--agree-tos",
        "-m",
        EMAIL,
        "--eab-kid",
        &kid,
        "--eab-hmac-key",
        &hmac,
    ]);
    assert!(
        !run_bounded(&mut cmd, CLIENT_TIMEOUT).status.success(),
        "an EAB key binds one account"
    );

    // lego with --eab.
    let (kid, hmac) = eab_create(&ca, "team-lego");
    let names = ["lego-eab.certwright.test"];
    let lp = tmp.path().join("lego");
    let mut cmd = lego(&lp, &ca, &names);
    cmd.args(["--eab", "--kid", &kid, "--hmac", &hmac, "run"]);
    run_ok("lego --eab run", &mut cmd, CLIENT_TIMEOUT, &ca.logs());
    assert!(lp
        .join("certificates/lego-eab.certwright.test.crt")
        .exists());

    // The admin listing shows both keys bound.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_certwright-ca"));
    cmd.args(["eab", "list", "--json"])
        .arg("--data-dir")
        .arg(&ca.data_dir);
    let out = run_ok(
        "certwright-ca eab list",
        &mut cmd,
        CLIENT_TIMEOUT,
        &ca.logs(),
    );
    let keys: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bound = keys
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["state"].as_str().unwrap().starts_with("bound"))
        .count();
    assert_eq!(bound, 2, "{keys}");
}

/// A CA moved from SQLite to PostgreSQL with `export`/`import` keeps serving certbot: the
/// same account renews, and an earlier revocation is still on the CRL.
#[test]
fn certbot_renews_after_the_ca_moves_from_sqlite_to_postgres() {
    let _dns = dns();
    let tmp = tempfile::tempdir().unwrap();
    let mut guard = ProcessGuard::default();
    let data_dir = tmp.path().join("ca");
    let listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let http01_port = free_port();
    let ca = CaProcess::start_on(ca_bin(), &mut guard, &data_dir, listen, http01_port);

    let cb = tmp.path().join("certbot");
    let certonly = |ca: &CaProcess, name: &str| {
        let mut cmd = certbot(&cb, ca, "certonly");
        cmd.args(["--standalone", "--agree-tos", "-m", EMAIL, "-d", name])
            .args(["--http-01-port", &ca.http01_port.to_string()])
            .args(["--http-01-address", "127.0.0.1"]);
        run_ok("certbot certonly", &mut cmd, CLIENT_TIMEOUT, &ca.logs());
    };
    certonly(&ca, "move-kept.certwright.test");
    certonly(&ca, "move-revoked.certwright.test");
    let revoked_path = cb.join("config/live/move-revoked.certwright.test/cert.pem");
    let revoked_serial = leaf(&revoked_path).serial_hex;
    let mut cmd = certbot(&cb, &ca, "revoke");
    cmd.arg("--cert-path").arg(&revoked_path).args([
        "--reason",
        "keycompromise",
        "--no-delete-after-revoke",
    ]);
    run_ok("certbot revoke", &mut cmd, CLIENT_TIMEOUT, &ca.logs());
    let kept_path = cb.join("config/live/move-kept.certwright.test/cert.pem");
    let kept_before = leaf(&kept_path).serial_hex;
    ca.stop(&mut guard);

    // export from SQLite, import into a fresh PostgreSQL database.
    let export = tmp.path().join("export.jsonl");
    let admin = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_certwright-ca"));
        cmd.args(args).arg("--data-dir").arg(&data_dir);
        run_ok("certwright-ca", &mut cmd, Duration::from_secs(60), "")
    };
    admin(&["export", "--out", export.to_str().unwrap()]);
    let url = create_postgres_database();
    let out = admin(&[
        "import",
        "--in",
        export.to_str().unwrap(),
        "--database-url",
        &url,
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("imported"),
        "{out:?}"
    );

    // The same CA (keys, address) on PostgreSQL: certbot renews with its account.
    let ca = CaProcess::start_with_args(
        ca_bin(),
        &mut guard,
        &data_dir,
        listen,
        http01_port,
        &["--database-url", &url],
    );
    let accounts_before = fs::read_dir(cb.join("config/accounts")).unwrap().count();
    let mut cmd = certbot(&cb, &ca, "renew");
    cmd.args(["--force-renewal", "--no-random-sleep-on-renew"])
        .args(["--cert-name", "move-kept.certwright.test"])
        .args(["--http-01-port", &ca.http01_port.to_string()])
        .args(["--http-01-address", "127.0.0.1"]);
    run_ok("certbot renew", &mut cmd, CLIENT_TIMEOUT, &ca.logs());
    let kept_after = leaf(&kept_path).serial_hex;
    assert_ne!(kept_before, kept_after, "certbot got a new certificate");
    assert_eq!(
        fs::read_dir(cb.join("config/accounts")).unwrap().count(),
        accounts_before,
        "certbot renewed with the account it had"
    );
    let entries = crl_entries(&ca);
    assert!(
        entries.contains(&(revoked_serial.clone(), Some(1))),
        "the revocation moved too: {revoked_serial} in {entries:?}"
    );
    // The database really is PostgreSQL: the renewal landed there.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stored = rt.block_on(async {
        let store = certwright_server::store::Store::open(&url).await.unwrap();
        store.certificate(&kept_after).await.map(|c| c.serial)
    });
    assert_eq!(stored.unwrap(), kept_after);
    ca.stop(&mut guard);
}
