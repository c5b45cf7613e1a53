//! The `certwright` command against this workspace's own CA binary, `certwright-ca`,
//! with pebble-challtestsrv as the CA's DNS resolver. The binary is the one named by
//! `CERTWRIGHT_CA_BIN` (scripts/test builds it and sets it).

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use certwright_testkit::ca_process::{ca_binary_from_env, CaProcess};
use certwright_testkit::process::ProcessGuard;
use common::{mode, openssl_verify, ChallTestSrv, Cli};

#[test]
fn issue_renew_and_revoke_against_certwright_ca() {
    // Built by scripts/test (`cargo build -p certwright-server --bin certwright-ca`) and
    // named in CERTWRIGHT_CA_BIN: a test never runs cargo itself.
    let binary = ca_binary_from_env();
    // The CA's resolver: the test binary's shared challtestsrv, where the dns-01 hook
    // below sets the TXT records.
    let dns = ChallTestSrv::shared();
    let data = tempfile::tempdir().unwrap();
    let (port, http01) = (common::free_port(), common::free_port());
    let mut guard = ProcessGuard::default();
    let _ca = CaProcess::start_with_args(
        &binary,
        &mut guard,
        &data.path().join("ca"),
        SocketAddr::from(([127, 0, 0, 1], port)),
        http01,
        &["--pki-http-listen", "off"],
    );
    let root = data.path().join("ca/root.pem");
    let state = tempfile::tempdir().unwrap();
    let c = Cli {
        server: format!("https://localhost:{port}/directory"),
        ca_cert: root.clone(),
        state: state.path().to_owned(),
    };
    let root_pem = std::fs::read_to_string(&root).unwrap();

    // http-01 standalone, ECDSA key.
    let v = c.json(&[
        "issue",
        "-d",
        "web.cw.test",
        "-d",
        "www.cw.test",
        "--key-type",
        "ec256",
        "--http01-listen",
        &format!("127.0.0.1:{http01}"),
        "--email",
        "ops@cw.test",
    ]);
    assert_eq!(v["action"], "issued", "{v}");
    let dir = c.cert_dir("web.cw.test");
    assert_eq!(mode(&dir.join("privkey.pem")), 0o600);
    openssl_verify(&dir, &root_pem);

    // dns-01 exec hook, RSA key, through the CA's resolver (challtestsrv).
    let hook = dns.write_hook(state.path());
    let resolver = format!("127.0.0.1:{}", dns.dns_port);
    let d = c.json(&[
        "issue",
        "-d",
        "dns.cw.test",
        "--key-type",
        "rsa2048",
        "--dns01-exec",
        hook.to_str().unwrap(),
        "--dns01-resolver",
        &resolver,
    ]);
    assert_eq!(d["action"], "issued", "{d}");
    openssl_verify(&c.cert_dir("dns.cw.test"), &root_pem);

    // The CA offers ARI: not due now; once the operator moves the window into the past
    // (`certwright-ca renew-early`), a plain `renew` renews.
    assert_eq!(c.json(&["renew", "web.cw.test"])["action"], "not_due");
    let serial = v["serial"].as_str().unwrap().to_owned();
    let out = common::run_bounded(
        Command::new(&binary)
            .args(["renew-early", "--serial", &serial, "--data-dir"])
            .arg(data.path().join("ca")),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "renew-early: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let old_meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(c.cert_dir("web.cw.test").join("meta.json")).unwrap(),
    )
    .unwrap();
    let old_ari_id = old_meta["ari_id"].as_str().expect("an ARI id").to_owned();
    let ari = c.json(&["renew", "web.cw.test"]);
    assert_eq!(ari["action"], "renewed", "{ari}");
    // The renewal order named the old certificate in `replaces`: the CA now refuses a
    // second replacement of it.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        use certwright_client::client::{Account, AcmeClient, ClientOptions};
        let store = certwright_client::store::Store::open(state.path()).unwrap();
        let (_, creds) = store.load_account(&c.server).unwrap().unwrap();
        let client = AcmeClient::new(ClientOptions::new(&c.server).trust_pem(root_pem.clone()))
            .await
            .unwrap();
        let account = Account::load(client, &creds).await.unwrap();
        let err = account
            .new_order(
                vec![certwright_proto::types::Identifier::dns("web.cw.test")],
                None,
                Some(old_ari_id),
            )
            .await
            .unwrap_err();
        assert!(
            err.is_problem(certwright_proto::ProblemType::AlreadyReplaced),
            "{err}"
        );
    });
    let v = ari;

    // A profile: certwright-ca's built-in "shortlived" gives 7 days.
    let s = c.json(&[
        "issue",
        "-d",
        "short.cw.test",
        "--profile",
        "shortlived",
        "--dns01-exec",
        hook.to_str().unwrap(),
        "--dns01-resolver",
        &resolver,
    ]);
    let nb = certwright_client::renewal::parse_rfc3339(s["not_before"].as_str().unwrap()).unwrap();
    let na = certwright_client::renewal::parse_rfc3339(s["not_after"].as_str().unwrap()).unwrap();
    assert!(na - nb <= time::Duration::days(8), "{s}");

    // An EdDSA (Ed25519) account key, issuing with an RSA 3072 certificate key.
    let ed_state = tempfile::tempdir().unwrap();
    let ed = Cli {
        server: c.server.clone(),
        ca_cert: c.ca_cert.clone(),
        state: ed_state.path().to_owned(),
    };
    assert_eq!(
        ed.json(&["account", "register", "--key-type", "ed25519"])["key"],
        "Ed25519"
    );
    let e = ed.json(&[
        "issue",
        "-d",
        "eddsa.cw.test",
        "--key-type",
        "rsa3072",
        "--dns01-exec",
        hook.to_str().unwrap(),
        "--dns01-resolver",
        &resolver,
    ]);
    assert_eq!(e["action"], "issued");
    openssl_verify(&ed.cert_dir("eddsa.cw.test"), &root_pem);

    // Forced renewal with a new key.
    let r = c.json(&["renew", "--force", "web.cw.test"]);
    assert_eq!(r["action"], "renewed");
    assert_ne!(r["serial"], v["serial"]);
    openssl_verify(&dir, &root_pem);

    // Revocation by the account key.
    let rv = c.json(&["revoke", "web.cw.test", "--reason", "superseded"]);
    assert_eq!(rv["action"], "revoked");
    assert_eq!(
        c.json(&["list"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["revoked"] == true)
            .count(),
        1
    );
}

/// Rotation seen from the client: the CA's operator adds a new intermediate and retires
/// the old one by a date; ARI tells certwright to renew the old issuer's certificate, and
/// a plain `renew` gets one from the new intermediate.
#[test]
fn renew_moves_to_the_new_intermediate_when_the_old_one_retires() {
    let binary = ca_binary_from_env();
    let _dns = ChallTestSrv::shared();
    let data = tempfile::tempdir().unwrap();
    let ca_dir = data.path().join("ca");
    let (port, http01) = (common::free_port(), common::free_port());
    let mut guard = ProcessGuard::default();
    let _ca = CaProcess::start_with_args(
        &binary,
        &mut guard,
        &ca_dir,
        SocketAddr::from(([127, 0, 0, 1], port)),
        http01,
        &["--pki-http-listen", "off"],
    );
    let state = tempfile::tempdir().unwrap();
    let c = Cli {
        server: format!("https://localhost:{port}/directory"),
        ca_cert: ca_dir.join("root.pem"),
        state: state.path().to_owned(),
    };
    let listen = format!("127.0.0.1:{http01}");
    let v = c.json(&["issue", "-d", "rotate.cw.test", "--http01-listen", &listen]);
    assert_eq!(v["action"], "issued", "{v}");
    let chain = |issuer: &str| {
        let fullchain =
            std::fs::read_to_string(c.cert_dir("rotate.cw.test").join("fullchain.pem")).unwrap();
        let cert = std::fs::read_to_string(ca_dir.join(issuer)).unwrap();
        fullchain.contains(cert.trim())
    };
    assert!(
        chain("intermediate.pem"),
        "issued by the first intermediate"
    );

    let admin = |args: &[&str]| {
        let out = common::run_bounded(
            Command::new(&binary)
                .args(args)
                .arg("--data-dir")
                .arg(&ca_dir),
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "certwright-ca {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    admin(&["issuer", "add", "int-new"]);
    let by = time::OffsetDateTime::now_utc() + time::Duration::minutes(30);
    let by = by
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    admin(&["issuer", "retire", "intermediate", "--by", &by]);
    // The running CA applies both within a few seconds; until then `renew` is not due.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = c.json(&["renew", "rotate.cw.test"]);
        if r["action"] == "renewed" {
            break;
        }
        assert_eq!(r["action"], "not_due", "{r}");
        assert!(
            std::time::Instant::now() < deadline,
            "certwright never renewed: {r}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        chain("issuers/int-new/cert.pem"),
        "renewed from the new intermediate"
    );
}
