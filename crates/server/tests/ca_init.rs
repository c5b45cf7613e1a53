//! `certwright-ca init`, run as the real binary: the offline root (serve and certbot work
//! with no root key in the data directory), an intermediate signed by a root made with the
//! `openssl` CLI (CSR, import, then lego), the refusals of a wrong key, a wrong chain and a
//! non-CA certificate (each naming its file, the data directory unchanged), and name
//! constraints that `openssl verify` enforces.
//!
//! The peers (certbot, lego, openssl, pebble-challtestsrv) must be installed
//! (`scripts/test` does it); a missing one fails the test. Everything runs on loopback, and
//! every command is bounded in time.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::{
    ca_bin, certbot_command, leaf, lego_command, openssl, openssl_verify, pem_certs, run_bounded,
    run_ok, write_first_cert, CaProcess, ProcessGuard, CLIENT_EMAIL, CLIENT_TIMEOUT,
};
use x509_parser::prelude::{FromDer, X509Certificate};

/// How long one `certwright-ca init` may take (RSA keys included).
const INIT_TIMEOUT: Duration = Duration::from_secs(60);

/// `certwright-ca init --data-dir DATA args…`, bounded; its output.
fn init(data: &Path, args: &[&str]) -> Output {
    run_bounded(
        Command::new(ca_bin())
            .arg("init")
            .arg("--data-dir")
            .arg(data)
            .args(args),
        INIT_TIMEOUT,
    )
}

/// `init` that must succeed; its stdout.
fn init_ok(data: &Path, args: &[&str]) -> String {
    let out = init(data, args);
    assert!(
        out.status.success(),
        "certwright-ca init {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `init` that must fail; its stderr.
fn init_refused(data: &Path, args: &[&str]) -> String {
    let out = init(data, args);
    assert!(
        !out.status.success(),
        "certwright-ca init {args:?} succeeded but should have been refused:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `openssl args…` in `dir`, which must succeed.
fn openssl_ok(dir: &Path, args: &[&str]) {
    let (ok, out) = openssl(dir, args);
    assert!(ok, "openssl {args:?} failed:\n{out}");
}

/// Every file in `dir` (not recursive) with its bytes: a refusal must leave it equal.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.clone(), fs::read(&p).unwrap()))
        .collect()
}

fn der_of(pem_file: &Path) -> Vec<u8> {
    pem_certs(pem_file).remove(0)
}

#[test]
fn an_offline_root_then_serve_and_certbot_without_the_root_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("ca");
    let vault = tmp.path().join("vault");
    fs::create_dir(&vault).unwrap();
    let root_key = vault.join("root.key");

    // The offline root key may not go into the data directory.
    let err = init_refused(
        &data,
        &[
            "--root-offline",
            "--root-key",
            data.join("root.key").to_str().unwrap(),
        ],
    );
    assert!(err.contains("outside the data directory"), "{err}");
    assert!(!data.exists(), "a refused init leaves no data directory");

    let out = init_ok(
        &data,
        &[
            "--root-offline",
            "--root-key",
            root_key.to_str().unwrap(),
            "--organization",
            "Offline Test",
        ],
    );
    assert!(out.contains("does not need it"), "{out}");
    assert!(
        !data.join("root.key").exists(),
        "no root key in the data directory"
    );
    assert_eq!(
        fs::metadata(&root_key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    for name in ["root.pem", "intermediate.pem", "intermediate.key"] {
        assert!(data.join(name).is_file(), "{name}");
    }

    // A second init is refused and changes nothing.
    let before = snapshot(&data);
    let err = init_refused(&data, &[]);
    assert!(err.contains("already holds a CA"), "{err}");
    assert_eq!(snapshot(&data), before);

    // The root key is gone for good: serve and certbot do without it. The CA's readiness
    // probe connects trusting root.pem only, so the listener's certificate (issued by the
    // intermediate, sent with it) verifies to the root; certbot trusts root.pem only too.
    let mut guard = ProcessGuard::default();
    fs::remove_file(&root_key).unwrap();
    let ca = CaProcess::start(ca_bin(), &mut guard, &data);
    let tls = pem_certs(&data.join("tls.pem"));
    assert_eq!(tls.len(), 2, "tls.pem holds the leaf and the intermediate");
    assert_eq!(tls[1], der_of(&data.join("intermediate.pem")));

    let certbot_dir = tmp.path().join("certbot");
    let name = "offline-root.certwright.test";
    let mut cmd = certbot_command(&certbot_dir, &ca, "certonly");
    cmd.args(["--http-01-port", &ca.http01_port.to_string()])
        .args(["--http-01-address", "127.0.0.1"])
        .args([
            "--standalone",
            "--agree-tos",
            "-m",
            CLIENT_EMAIL,
            "-d",
            name,
        ]);
    run_ok("certbot certonly", &mut cmd, CLIENT_TIMEOUT, &ca.logs());
    let live = certbot_dir.join("config/live").join(name);
    assert_eq!(leaf(&live.join("cert.pem")).dns_names, [name]);
    openssl_verify(
        &data.join("root.pem"),
        &live.join("chain.pem"),
        &live.join("cert.pem"),
    );
    assert!(!data.join("root.key").exists(), "serving made no root key");
    ca.stop(&mut guard);
}

/// A root CA made with the openssl CLI, as a corporate CA would have one.
struct OpensslRoot {
    dir: PathBuf,
    cert: PathBuf,
}

impl OpensslRoot {
    fn new(dir: &Path, name: &str, cn: &str) -> Self {
        let key = format!("{name}.key");
        let cert = format!("{name}.pem");
        openssl_ok(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &cert,
                "-days",
                "3650",
                "-sha256",
                "-subj",
                &format!("/O=Corp/CN={cn}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-addext",
                "subjectKeyIdentifier=hash",
            ],
        );
        Self {
            dir: dir.to_owned(),
            cert: dir.join(cert),
        }
    }

    /// Signs `csr` with the extensions in `ext` (a file in the root's directory) into
    /// `out`, as `openssl x509 -req` does for a corporate CA.
    fn sign(&self, csr: &Path, ext: &str, out: &str) -> PathBuf {
        let name = self.cert.file_stem().unwrap().to_str().unwrap();
        openssl_ok(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                csr.to_str().unwrap(),
                "-CA",
                &format!("{name}.pem"),
                "-CAkey",
                &format!("{name}.key"),
                "-CAcreateserial",
                "-days",
                "1825",
                "-sha256",
                "-extfile",
                ext,
                "-out",
                out,
            ],
        );
        self.dir.join(out)
    }
}

const INTERMEDIATE_EXT: &str = "basicConstraints=critical,CA:TRUE,pathlen:0\n\
keyUsage=critical,keyCertSign,cRLSign\n\
subjectKeyIdentifier=hash\n\
authorityKeyIdentifier=keyid:always\n";

const LEAF_EXT: &str = "basicConstraints=critical,CA:FALSE\n\
keyUsage=critical,digitalSignature\n\
extendedKeyUsage=serverAuth\n\
subjectAltName=DNS:not-a-ca.certwright.test\n";

#[test]
fn own_intermediate_signed_by_an_openssl_root_then_lego() {
    let tmp = tempfile::tempdir().unwrap();
    let corp = tmp.path().join("corp");
    fs::create_dir(&corp).unwrap();
    fs::write(corp.join("intermediate.ext"), INTERMEDIATE_EXT).unwrap();
    fs::write(corp.join("leaf.ext"), LEAF_EXT).unwrap();
    let root = OpensslRoot::new(&corp, "root", "Corp Root CA");
    let data = tmp.path().join("ca");

    // Step 1: the key and the CSR.
    let csr = tmp.path().join("intermediate.csr");
    let out = init_ok(
        &data,
        &[
            "--intermediate-csr",
            csr.to_str().unwrap(),
            "--organization",
            "Corp",
            "--intermediate-cn",
            "Corp ACME Issuing CA",
        ],
    );
    assert!(out.contains("--import-intermediate"), "{out}");
    let (ok, text) = openssl(
        tmp.path(),
        &[
            "req",
            "-in",
            "intermediate.csr",
            "-noout",
            "-verify",
            "-subject",
        ],
    );
    assert!(ok && text.contains("Corp ACME Issuing CA"), "{text}");
    assert_eq!(
        fs::metadata(data.join("intermediate.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(!data.join("root.pem").exists());
    // serve refuses to start half-way, saying what to do.
    let err = String::from_utf8_lossy(
        &run_bounded(
            Command::new(ca_bin())
                .args(["serve", "--admin-listen", "off", "--pki-http-listen", "off"])
                .args(["--listen", "127.0.0.1:0", "--data-dir"])
                .arg(&data),
            INIT_TIMEOUT,
        )
        .stderr,
    )
    .into_owned();
    assert!(err.contains("--import-intermediate"), "{err}");

    // The corporate CA signs it: the intermediate, and two wrong certificates.
    let good = root.sign(&csr, "intermediate.ext", "intermediate.crt");
    let not_ca = root.sign(&csr, "leaf.ext", "leaf.crt");
    let other_data = tmp.path().join("other-ca");
    let other_csr = tmp.path().join("other.csr");
    init_ok(
        &other_data,
        &["--intermediate-csr", other_csr.to_str().unwrap()],
    );
    let other_key_cert = root.sign(&other_csr, "intermediate.ext", "other.crt");
    let impostor = OpensslRoot::new(&corp, "impostor", "Corp Root CA");
    let impostor_cert = impostor.sign(&csr, "intermediate.ext", "impostor-signed.crt");

    // Refusals: each names its file and leaves the data directory as it was.
    let before = snapshot(&data);
    let import = |cert: &Path, chain: &Path| {
        init_refused(
            &data,
            &[
                "--import-intermediate",
                cert.to_str().unwrap(),
                "--chain",
                chain.to_str().unwrap(),
            ],
        )
    };
    let err = import(&other_key_cert, &root.cert);
    assert!(
        err.contains("other.crt: the private key does not match the certificate"),
        "{err}"
    );
    assert_eq!(snapshot(&data), before);
    let err = import(&good, &impostor.cert);
    assert!(err.contains("impostor.pem: the certificate"), "{err}");
    assert!(err.contains("is not signed by certificate 1"), "{err}");
    assert_eq!(snapshot(&data), before);
    let err = import(&impostor_cert, &root.cert);
    assert!(err.contains("root.pem: the certificate"), "{err}");
    assert_eq!(snapshot(&data), before);
    let err = import(&not_ca, &root.cert);
    assert!(
        err.contains("leaf.crt: the certificate is not a CA certificate"),
        "{err}"
    );
    assert_eq!(snapshot(&data), before);

    // The right one.
    let out = init_ok(
        &data,
        &[
            "--import-intermediate",
            good.to_str().unwrap(),
            "--chain",
            root.cert.to_str().unwrap(),
        ],
    );
    assert!(out.contains("CN=Corp Root CA"), "{out}");
    assert_eq!(der_of(&data.join("root.pem")), der_of(&root.cert));
    assert_eq!(
        pem_certs(&data.join("intermediate.pem")),
        vec![der_of(&good)]
    );
    assert!(!data.join("root.key").exists());

    // serve, then lego; the chain verifies to the openssl root.
    let mut guard = ProcessGuard::default();
    let ca = CaProcess::start(ca_bin(), &mut guard, &data);
    let lego_dir = tmp.path().join("lego");
    let name = "own-intermediate.certwright.test";
    let mut cmd = lego_command(&lego_dir, &ca, &[name]);
    cmd.arg("--http")
        .args(["--http.port", &format!("127.0.0.1:{}", ca.http01_port)])
        .arg("run");
    run_ok("lego run", &mut cmd, CLIENT_TIMEOUT, &ca.logs());
    let bundle = lego_dir.join("certificates").join(format!("{name}.crt"));
    let issuer = lego_dir
        .join("certificates")
        .join(format!("{name}.issuer.crt"));
    let leaf_file = tmp.path().join("lego-leaf.pem");
    write_first_cert(&bundle, &leaf_file);
    assert_eq!(leaf(&leaf_file).dns_names, [name]);
    openssl_verify(&root.cert, &issuer, &leaf_file);
    openssl_verify(&root.cert, &good, &leaf_file);
    ca.stop(&mut guard);
}

#[test]
fn name_constraints_on_the_intermediate_are_enforced_by_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("ca");
    init_ok(
        &data,
        &[
            "--permitted-dns",
            "example.test",
            "--key-type",
            "ec384",
            "--root-key-type",
            "rsa2048",
            "--path-len",
            "0",
            "--intermediate-days",
            "30",
        ],
    );
    let inter_der = der_of(&data.join("intermediate.pem"));
    let (_, inter) = X509Certificate::from_der(&inter_der).unwrap();
    let nc = inter.name_constraints().unwrap().expect("name constraints");
    let permitted: Vec<String> = nc
        .value
        .permitted_subtrees
        .as_ref()
        .unwrap()
        .iter()
        .map(|t| t.base.to_string())
        .collect();
    assert_eq!(permitted, ["DNSName(example.test)"]);
    let days =
        (inter.validity().not_after.timestamp() - inter.validity().not_before.timestamp()) / 86400;
    assert_eq!(days, 30);
    let root_der = der_of(&data.join("root.pem"));
    let (_, root) = X509Certificate::from_der(&root_der).unwrap();
    assert_eq!(
        root.public_key().algorithm.algorithm.to_id_string(),
        "1.2.840.113549.1.1.1",
        "an RSA root"
    );

    // Leaves signed with the intermediate's key directly: openssl accepts a name inside
    // the subtree and rejects one outside.
    let key_pem = fs::read_to_string(data.join("intermediate.key")).unwrap();
    let key = rcgen::KeyPair::from_pem(&key_pem).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_der(&inter_der.clone().into(), key).unwrap();
    for (name, allowed) in [("www.example.test", true), ("www.other.test", false)] {
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&leaf_key, &issuer).unwrap();
        fs::write(tmp.path().join("leaf.pem"), cert.pem()).unwrap();
        let root_pem = data.join("root.pem");
        let chain = data.join("intermediate.pem");
        let (ok, out) = openssl(
            tmp.path(),
            &[
                "verify",
                "-CAfile",
                root_pem.to_str().unwrap(),
                "-untrusted",
                chain.to_str().unwrap(),
                "leaf.pem",
            ],
        );
        assert_eq!(ok, allowed, "openssl verify of {name}:\n{out}");
        if !allowed {
            assert!(out.contains("permitted subtree violation"), "{out}");
        }
    }

    // serve on localhost cannot be given a listener certificate by this intermediate: it
    // stops with what to do.
    let out = run_bounded(
        Command::new(ca_bin())
            .args(["serve", "--admin-listen", "off", "--pki-http-listen", "off"])
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data),
        INIT_TIMEOUT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("do not allow the listener's name(s) localhost"),
        "{err}"
    );
    assert!(err.contains("tls.pem"), "{err}");
}
