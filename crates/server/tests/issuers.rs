//! Several issuers and rotation with real clients against a certwright-ca process: lego
//! gets ECDSA and RSA certificates from the issuer of the matching key type; an issuer
//! added while the CA runs takes over new orders; the old one, retired by a date, keeps
//! answering OCSP and lists its revoked certificates on its own CRL, and ARI asks the
//! holders of its certificates to renew before the date. openssl checks every chain,
//! CRL and OCSP answer from the URLs inside the certificates.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use certwright_server::clock::{parse_rfc3339, rfc3339};
use support::relying_party::{check_as_relying_party, plain_get};
use support::{ca_bin, dns, leaf, lego_command, run_ok, CaProcess, ProcessGuard, CLIENT_TIMEOUT};
use x509_parser::prelude::*;

fn lego(path: &Path, ca: &CaProcess, names: &[&str], key_type: &str) -> Command {
    let mut cmd = lego_command(path, ca, names);
    cmd.arg("--http")
        .args(["--http.port", &format!("127.0.0.1:{}", ca.http01_port)])
        .args(["--key-type", key_type]);
    cmd
}

/// Runs `certwright-ca ARGS --data-dir <the CA's>`; returns stdout.
fn admin(ca: &CaProcess, args: &[&str]) -> String {
    let mut cmd = Command::new(ca_bin());
    cmd.args(args).arg("--data-dir").arg(&ca.data_dir);
    let out = run_ok(
        &format!("certwright-ca {}", args.join(" ")),
        &mut cmd,
        Duration::from_secs(60),
        &ca.logs(),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The name of the issuer whose caIssuers URL the certificate at `path` names.
fn issuer_of(path: &Path) -> String {
    let certs = support::pem_certs(path);
    let (_, _, issuers) = support::x509::pki_urls(&certs[0]);
    let url = issuers.first().expect("a caIssuers URL").clone();
    url.rsplit('/')
        .next()
        .unwrap()
        .trim_end_matches(".der")
        .to_owned()
}

/// Waits (bounded) until the PKI listener serves issuer `name`'s certificate: the running
/// CA has loaded it.
fn wait_for_issuer(ca: &CaProcess, name: &str) {
    let url = format!(
        "http://localhost:{}/ca/{name}.der",
        ca.pki_http_listen.unwrap().port()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while plain_get(&url).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the CA did not load issuer {name}: {}",
            ca.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The ARI renewalInfo of the certificate at `path`: (start, end) Unix seconds.
fn ari_window(ca: &CaProcess, path: &Path) -> (i64, i64) {
    let id = support::x509::ari_id(&support::pem_certs(path)[0]);
    let root = std::fs::read(ca.root_path()).unwrap();
    let body: serde_json::Value = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let client = reqwest::Client::builder()
                .tls_certs_only([reqwest::Certificate::from_pem(&root).unwrap()])
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let dir: serde_json::Value = client
                .get(&ca.directory_url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let url = format!("{}/{id}", dir["renewalInfo"].as_str().unwrap());
            let r = client.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json().await.unwrap()
        });
    let t = |k: &str| {
        let text = body["suggestedWindow"][k].as_str().unwrap();
        parse_rfc3339(text).unwrap()
    };
    (t("start"), t("end"))
}

#[test]
fn issuers_by_key_type_then_rotation_with_lego_and_openssl() {
    let _dns = dns();
    let tmp = tempfile::tempdir().unwrap();
    let mut guard = ProcessGuard::default();
    let ca = CaProcess::start(ca_bin(), &mut guard, &tmp.path().join("ca"));

    // OLD: the first issuer signs lego's ECDSA certificate.
    let old_dir = tmp.path().join("lego-old");
    let old_name = ["old.certwright.test"];
    run_ok(
        "lego run (ec256)",
        lego(&old_dir, &ca, &old_name, "ec256").arg("run"),
        CLIENT_TIMEOUT,
        &ca.logs(),
    );
    let old_cert = old_dir.join("certificates/old.certwright.test.crt");
    assert_eq!(issuer_of(&old_cert), "intermediate");

    // An RSA issuer and a new ECDSA issuer come in while the CA runs.
    admin(&ca, &["issuer", "add", "int-rsa", "--key-type", "rsa2048"]);
    admin(&ca, &["issuer", "add", "int-2", "--key-type", "ec256"]);
    // Refused: a name taken, a bad name; nothing changes.
    let mut cmd = Command::new(ca_bin());
    cmd.args(["issuer", "add", "int-2", "--data-dir"])
        .arg(&ca.data_dir);
    let out = support::run_bounded(&mut cmd, Duration::from_secs(30));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already there"));
    wait_for_issuer(&ca, "int-rsa");
    wait_for_issuer(&ca, "int-2");
    // What names no issuer is 404, never a file of the data directory.
    let pki = format!("http://localhost:{}", ca.pki_http_listen.unwrap().port());
    for path in [
        "/crl/nope.crl",
        "/crl/intermediate",
        "/crl/..%2Fintermediate.crl",
        "/ca/nope.der",
        "/ca/root.der",
        "/ca/..%2Froot.pem",
        "/ca/intermediate.pem",
    ] {
        let (status, body) = plain_get(&format!("{pki}{path}"));
        assert_eq!(status, 404, "{path}");
        assert!(
            !String::from_utf8_lossy(&body).contains("BEGIN"),
            "{path} leaks nothing"
        );
        let problem: serde_json::Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{path}: not a problem document ({e})"));
        assert_eq!(problem["status"], 404, "{path}: {problem}");
        assert!(problem["type"].is_string(), "{path}: {problem}");
    }

    // The CSR's key type picks the issuer: RSA from int-rsa, ECDSA from the newest.
    let rsa_dir = tmp.path().join("lego-rsa");
    run_ok(
        "lego run (rsa2048)",
        lego(&rsa_dir, &ca, &["rsa.certwright.test"], "rsa2048").arg("run"),
        CLIENT_TIMEOUT,
        &ca.logs(),
    );
    let rsa_cert = rsa_dir.join("certificates/rsa.certwright.test.crt");
    assert_eq!(issuer_of(&rsa_cert), "int-rsa");
    check_as_relying_party(&ca, "int-rsa", &rsa_cert, &tmp.path().join("rp-rsa"), false);

    // Retire OLD, renew-by in 30 minutes: new orders chain to NEW, and ARI tells the
    // holder of OLD's certificate to renew now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let by = now + 1800;
    let by_text = rfc3339(by);
    let (_, end_before) = ari_window(&ca, &old_cert);
    assert!(end_before > by, "the usual window ends at expiry");
    admin(&ca, &["issuer", "retire", "intermediate", "--by", &by_text]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (start, end) = ari_window(&ca, &old_cert);
        if end < by {
            assert!(
                start < end && end <= now + 3600,
                "renew now: {start}..{end}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "ARI did not move: {}", ca.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    let new_dir = tmp.path().join("lego-new");
    run_ok(
        "lego run (ec256, after the retirement)",
        lego(&new_dir, &ca, &["new.certwright.test"], "ec256").arg("run"),
        CLIENT_TIMEOUT,
        &ca.logs(),
    );
    let new_cert = new_dir.join("certificates/new.certwright.test.crt");
    assert_eq!(issuer_of(&new_cert), "int-2");
    check_as_relying_party(&ca, "int-2", &new_cert, &tmp.path().join("rp-new"), false);
    // lego renews OLD's certificate: it now comes from NEW.
    let old_copy = tmp.path().join("old.crt");
    std::fs::copy(&old_cert, &old_copy).unwrap();
    run_ok(
        "lego renew",
        lego(&old_dir, &ca, &old_name, "ec256").args([
            "renew",
            "--days",
            "365",
            "--no-random-sleep",
        ]),
        CLIENT_TIMEOUT,
        &ca.logs(),
    );
    assert_eq!(issuer_of(&old_cert), "int-2");

    // OLD still answers for what it issued: good, then revoked on OLD's own CRL and OCSP.
    check_as_relying_party(
        &ca,
        "intermediate",
        &old_copy,
        &tmp.path().join("rp-old"),
        false,
    );
    let serial = leaf(&old_copy).serial_hex;
    admin(
        &ca,
        &["revoke", "--serial", &serial, "--reason", "superseded"],
    );
    check_as_relying_party(
        &ca,
        "intermediate",
        &old_copy,
        &tmp.path().join("rp-old2"),
        true,
    );

    let listing = admin(&ca, &["issuer", "list"]);
    let line = |name: &str| {
        listing
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in {listing}"))
            .to_owned()
    };
    assert!(
        line("intermediate").contains("retired, renew by"),
        "{listing}"
    );
    assert!(line("int-2").contains("active"), "{listing}");
    assert!(line("int-rsa").contains("rsa"), "{listing}");

    // A cross-signed chain: another root (made with openssl) signs int-2's subject and
    // key; after a restart the CA offers it as `Link: rel="alternate"`, and lego's
    // --preferred-chain picks it.
    let (listen, http01) = (ca.listen, ca.http01_port);
    let data_dir = ca.data_dir.clone();
    ca.stop(&mut guard);
    let work = tmp.path().join("cross");
    std::fs::create_dir_all(&work).unwrap();
    let int2 = data_dir.join("issuers/int-2");
    let ssl = |args: &[&str]| {
        let (ok, text) = support::openssl(&work, args);
        assert!(ok, "openssl {args:?}: {text}");
    };
    ssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "other.key",
        "-out",
        "other.pem",
        "-subj",
        "/O=Other/CN=Other Root X",
        "-days",
        "30",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    let int2_pem = int2.join("cert.pem").display().to_string();
    let int2_key = int2.join("key.pem").display().to_string();
    ssl(&[
        "x509",
        "-x509toreq",
        "-in",
        &int2_pem,
        "-signkey",
        &int2_key,
        "-out",
        "cross.csr",
    ]);
    let ski = {
        let der = support::pem_certs(&int2.join("cert.pem")).remove(0);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let ski = cert
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .unwrap();
        ski.iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    std::fs::write(
        work.join("ext.cnf"),
        format!(
            "basicConstraints=critical,CA:TRUE,pathlen:0\n\
             keyUsage=critical,keyCertSign,cRLSign,digitalSignature\n\
             subjectKeyIdentifier={ski}\nauthorityKeyIdentifier=keyid\n"
        ),
    )
    .unwrap();
    ssl(&[
        "x509",
        "-req",
        "-in",
        "cross.csr",
        "-CA",
        "other.pem",
        "-CAkey",
        "other.key",
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        "ext.cnf",
        "-out",
        "cross.pem",
    ]);
    std::fs::copy(work.join("cross.pem"), int2.join("alternate-1.pem")).unwrap();
    let ca = CaProcess::start_on(ca_bin(), &mut guard, &data_dir, listen, http01);
    let alt_dir = tmp.path().join("lego-alt");
    run_ok(
        "lego run --preferred-chain",
        lego(&alt_dir, &ca, &["alt.certwright.test"], "ec256").args([
            "run",
            "--preferred-chain",
            "Other Root X",
        ]),
        CLIENT_TIMEOUT,
        &ca.logs(),
    );
    let alt_cert = alt_dir.join("certificates/alt.certwright.test.crt");
    let chain = support::pem_certs(&alt_cert);
    assert_eq!(chain.len(), 2, "the leaf and the cross-signed intermediate");
    assert_eq!(chain[1], support::pem_certs(&work.join("cross.pem"))[0]);
    support::write_first_cert(&alt_cert, &work.join("leaf.pem"));
    let (ok, text) = support::openssl(
        &work,
        &[
            "verify",
            "-CAfile",
            "other.pem",
            "-untrusted",
            "cross.pem",
            "leaf.pem",
        ],
    );
    assert!(ok && text.contains("leaf.pem: OK"), "{text}");
    ca.stop(&mut guard);
}
