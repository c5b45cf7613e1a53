//! dns-01 through RFC 2136 dynamic updates with TSIG to a real BIND 9 (`named`) on a
//! loopback port; Pebble asks that BIND for the TXT records.

mod common;

use std::process::Command;

use base64::Engine;
use certwright_testkit::peers::bind::start_bind;
use common::{openssl_verify, Cli, Pebble};

const KEY_NAME: &str = "certwright-test.";

#[test]
fn dns01_rfc2136_with_tsig_against_bind() {
    let dir = tempfile::tempdir().unwrap();
    let mut secret = [0u8; 32];
    secret
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = (i as u8).wrapping_mul(37) ^ 0x5a);
    let secret_b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    let (_named, bind_port) = start_bind(dir.path(), "rfc2136.test", KEY_NAME, &secret_b64);
    let pebble = common::on_immortal_thread(move || Pebble::start_with(false, Some(bind_port)));
    let state = tempfile::tempdir().unwrap();
    let c = Cli {
        server: pebble.directory_url.clone(),
        ca_cert: pebble.listener_root.clone(),
        state: state.path().to_owned(),
    };
    let write_config = |name: &str, secret: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "server = \"127.0.0.1:{bind_port}\"\ntsig_key_name = \"{KEY_NAME}\"\ntsig_algorithm = \"hmac-sha256\"\ntsig_secret = \"{secret}\"\n"
            ),
        )
        .unwrap();
        path
    };

    // A wrong TSIG secret: BIND refuses the update and the error says so.
    let wrong = write_config(
        "wrong.toml",
        &base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
    );
    let out = c.run(&[
        "issue",
        "-d",
        "bad.rfc2136.test",
        "--dns01-rfc2136",
        wrong.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the update"), "{err}");

    let good = write_config("rfc2136.toml", &secret_b64);
    let v = c.json(&[
        "issue",
        "-d",
        "*.rfc2136.test",
        "-d",
        "www.rfc2136.test",
        "--dns01-rfc2136",
        good.to_str().unwrap(),
        "--dns01-timeout",
        "60",
    ]);
    assert_eq!(v["action"], "issued", "{v}");
    openssl_verify(&c.cert_dir("*.rfc2136.test"), &pebble.root_pem(0));

    // Cleanup removed the TXT records: BIND has no TXT at either name any more.
    for name in [
        "_acme-challenge.rfc2136.test",
        "_acme-challenge.www.rfc2136.test",
    ] {
        // dig (bind9-dnsutils) is installed by scripts/test.
        let out = common::run_bounded(
            Command::new("dig").args([
                "+short",
                "-p",
                &bind_port.to_string(),
                "@127.0.0.1",
                name,
                "TXT",
            ]),
            std::time::Duration::from_secs(30),
        );
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "",
            "{name} still has TXT"
        );
    }
    drop(pebble);
}
