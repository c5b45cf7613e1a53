//! CA keys in a PKCS#11 token (SoftHSM2): `certwright-ca init` creates the intermediate's
//! key in the token, the OCSP responder signs with a token key made with `pkcs11-tool`,
//! and certbot and lego get certificates whose chains, CRLs and OCSP answers openssl
//! verifies; the private keys cannot be read out. A token that goes away mid-run leaves
//! the order `processing` (never `valid` without a certificate, never lost) and the
//! issuance completes once the token is back.
//!
//! One SoftHSM2 configuration serves the whole binary: `SOFTHSM2_CONF` is set before any
//! module is loaded, in this process (the in-process CA) and its children (the CA
//! process, `init`); each test has its own token.

mod harness;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use certwright_server::clock::Clock;
use certwright_testkit::peers::softhsm::SoftHsm;
use harness::TestCa;
use support::relying_party::check_as_relying_party;
use support::{
    ca_bin, certbot_command, dns, lego_command, run_ok, CaProcess, ProcessGuard, CLIENT_TIMEOUT,
};

/// The binary's SoftHSM2, with `SOFTHSM2_CONF` set for this process and its children.
fn hsm() -> &'static SoftHsm {
    static HSM: OnceLock<SoftHsm> = OnceLock::new();
    HSM.get_or_init(|| {
        let hsm = SoftHsm::new("first");
        std::env::set_var("SOFTHSM2_CONF", hsm.conf_path());
        hsm
    })
}

/// A token of its own for one test, and a configuration file naming the module and a
/// 0600 PIN file. Returns the configuration and the token's own directory inside the
/// token dir (the one that appeared with it: tokens are made one at a time).
fn token_and_config(dir: &Path, label: &str) -> (PathBuf, PathBuf) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let hsm = hsm();
    let token_dir = {
        let _one = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = || -> Vec<PathBuf> {
            std::fs::read_dir(hsm.token_dir())
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect()
        };
        let before = list();
        hsm.init_token(label);
        list()
            .into_iter()
            .find(|p| !before.contains(p))
            .expect("the new token's directory")
    };
    let pin = hsm.write_pin_file(&dir.join("pin"));
    let config = dir.join("ca.toml");
    std::fs::write(
        &config,
        format!(
            "[pkcs11]\nmodule = {:?}\npin_file = {:?}\n",
            hsm.module_path().display().to_string(),
            pin.display().to_string()
        ),
    )
    .unwrap();
    (config, token_dir)
}

/// `certwright-ca init` with the intermediate's key generated in token `label` (and the
/// root's too, with `root_in_token`).
fn init_in_token(data: &Path, config: &Path, label: &str, root_in_token: bool) {
    let uri = format!("pkcs11:token={label};object=intermediate");
    let mut cmd = Command::new(ca_bin());
    cmd.arg("init")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .args(["--intermediate-key", &uri]);
    let root_uri = format!("pkcs11:token={label};object=root");
    if root_in_token {
        cmd.args(["--root-key", &root_uri]);
    }
    run_ok("certwright-ca init", &mut cmd, Duration::from_secs(60), "");
    assert_eq!(
        std::fs::read_to_string(data.join("intermediate.key-uri"))
            .unwrap()
            .trim(),
        uri
    );
    assert!(
        !data.join("intermediate.key").exists(),
        "no key file for a token key"
    );
    if root_in_token {
        assert!(
            !data.join("root.key").exists(),
            "the root's key is in the token"
        );
        assert_eq!(
            std::fs::read_to_string(data.join("root.key-uri"))
                .unwrap()
                .trim(),
            root_uri
        );
    }
}

#[test]
fn certbot_and_lego_with_the_issuing_and_ocsp_keys_in_softhsm() {
    let _dns = dns();
    let hsm = hsm();
    let tmp = tempfile::tempdir().unwrap();
    let (config, _) = token_and_config(tmp.path(), "e2e");
    let data = tmp.path().join("ca");
    init_in_token(&data, &config, "e2e", true);
    // The OCSP responder signs with a key made in the token by OpenSC's pkcs11-tool.
    let out = hsm.pkcs11_tool(&[
        "--token-label",
        "e2e",
        "--login",
        "--pin",
        hsm.pin(),
        "--keypairgen",
        "--key-type",
        "EC:prime256v1",
        "--label",
        "ocsp",
        "--id",
        "0a",
    ]);
    assert!(
        out.status.success(),
        "pkcs11-tool --keypairgen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(data.join("ocsp.key-uri"), "pkcs11:token=e2e;object=ocsp\n").unwrap();

    let mut guard = ProcessGuard::default();
    let ca = CaProcess::start_with_config(ca_bin(), &mut guard, &data, &config);
    assert!(
        !data.join("ocsp.key").exists(),
        "the responder key stays in the token"
    );

    let cb = tmp.path().join("certbot");
    let mut cmd = certbot_command(&cb, &ca, "certonly");
    cmd.args(["--standalone", "--agree-tos", "-m", support::CLIENT_EMAIL])
        .args(["-d", "cb-hsm.certwright.test"])
        .args(["--http-01-port", &ca.http01_port.to_string()])
        .args(["--http-01-address", "127.0.0.1"]);
    run_ok("certbot certonly", &mut cmd, CLIENT_TIMEOUT, &ca.logs());
    let certbot_bundle = cb.join("config/live/cb-hsm.certwright.test/fullchain.pem");
    check_as_relying_party(
        &ca,
        "intermediate",
        &certbot_bundle,
        &tmp.path().join("rp-certbot"),
        false,
    );

    let lp = tmp.path().join("lego");
    let names = ["lego-hsm.certwright.test"];
    let lego = || {
        let mut cmd = lego_command(&lp, &ca, &names);
        cmd.arg("--http")
            .args(["--http.port", &format!("127.0.0.1:{}", ca.http01_port)]);
        cmd
    };
    run_ok("lego run", lego().arg("run"), CLIENT_TIMEOUT, &ca.logs());
    let lego_bundle = tmp.path().join("lego-hsm.crt");
    std::fs::copy(
        lp.join("certificates/lego-hsm.certwright.test.crt"),
        &lego_bundle,
    )
    .unwrap();
    check_as_relying_party(
        &ca,
        "intermediate",
        &lego_bundle,
        &tmp.path().join("rp-lego"),
        false,
    );
    // Revoked: the CRL signed in the token lists it, the token-signed OCSP says so.
    run_ok(
        "lego revoke",
        lego().args(["revoke", "--reason", "4"]),
        CLIENT_TIMEOUT,
        &ca.logs(),
    );
    check_as_relying_party(
        &ca,
        "intermediate",
        &lego_bundle,
        &tmp.path().join("rp-lego-revoked"),
        true,
    );

    // A second intermediate, signed by the root in the token, its key in the token too.
    let mut cmd = Command::new(ca_bin());
    cmd.args([
        "issuer",
        "add",
        "int-hsm",
        "--key",
        "pkcs11:token=e2e;object=int-hsm",
    ])
    .arg("--config")
    .arg(&config)
    .arg("--data-dir")
    .arg(&data);
    run_ok(
        "certwright-ca issuer add",
        &mut cmd,
        Duration::from_secs(60),
        &ca.logs(),
    );
    let verify = support::openssl(
        &data,
        &["verify", "-CAfile", "root.pem", "issuers/int-hsm/cert.pem"],
    );
    assert!(verify.0, "{}", verify.1);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("issuers/int-hsm/key-uri"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "key-uri is written 0600, as init writes it"
    );

    // The private keys cannot be read out of the token.
    for label in ["intermediate", "ocsp", "root", "int-hsm"] {
        let out_file = tmp.path().join(format!("{label}.der"));
        let out_arg = out_file.display().to_string();
        let _ = hsm.pkcs11_tool(&[
            "--token-label",
            "e2e",
            "--login",
            "--pin",
            hsm.pin(),
            "--read-object",
            "--type",
            "privkey",
            "--label",
            label,
            "--output-file",
            &out_arg,
        ]);
        let exported = std::fs::read(&out_file).unwrap_or_default();
        assert!(
            exported.is_empty(),
            "{label}: the token gave its private key out"
        );
    }
    ca.stop(&mut guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_gone_mid_run_leaves_the_order_processing_until_it_is_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (config_file, token_dir) = token_and_config(tmp.path(), "unplugged");
    let data = tmp.path().join("ca");
    init_in_token(&data, &config_file, "unplugged", false);
    let pkcs11 = certwright_server::config::Config::from_file(&config_file)
        .unwrap()
        .pkcs11;

    let responder = harness::Responder::start().await;
    let clock = Clock::system();
    let ca = TestCa::start_in(data.clone(), None, responder, clock.clone(), move |c| {
        c.pkcs11 = pkcs11;
    })
    .await;
    let acme = ca.account().await;
    let (_, done, _) = acme.issue(&["before.example.test"], &ca.responder).await;
    assert_eq!(done["status"], "valid");

    // The token goes away: finalize answers, the order stays processing, no certificate.
    let away = tmp.path().join("token-away");
    std::fs::rename(&token_dir, &away).unwrap();
    let r = acme.new_order(&["during.example.test"]).await;
    let order_url = r.location();
    let order = r.json();
    acme.authorize(&order, &ca.responder).await;
    let ready = acme.wait_order(&order_url).await;
    assert_eq!(ready["status"], "ready");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = support::x509::csr(&["during.example.test"], &key);
    let finalized = acme.finalize(&ready, &csr).await;
    assert_eq!(finalized.status, 200, "{:?}", finalized.json());
    assert_eq!(finalized.json()["status"], "processing");
    let polled = acme.post(&order_url, None).await.json();
    assert_eq!(polled["status"], "processing");
    assert!(polled.get("certificate").is_none());
    // Not ready: the issuing key does not sign.
    let ready_check = reqwest::get(format!("{}/readyz", ca.admin_base))
        .await
        .unwrap();
    assert_eq!(ready_check.status(), 503);

    // Back: once the order's lease has run out the sweeper issues it.
    std::fs::rename(&away, &token_dir).unwrap();
    clock.advance(3600);
    let deadline = Instant::now() + Duration::from_secs(60);
    let valid = loop {
        let o = acme.post(&order_url, None).await.json();
        if o["status"] == "valid" {
            break o;
        }
        assert_eq!(o["status"], "processing", "{o}");
        assert!(Instant::now() < deadline, "the issuance was not resumed");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let chain = acme
        .post(valid["certificate"].as_str().unwrap(), None)
        .await;
    assert_eq!(chain.status, 200);
    harness::wait_for_integrity(&ca.store, Duration::from_secs(10), String::new).await;
}
