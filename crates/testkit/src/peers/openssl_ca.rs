//! An OpenSSL `ca` directory (a root and an intermediate that `openssl ca` signs with,
//! `index.txt`, `copy_extensions = copy`) as the backend CA of certwright-ca's `exec`
//! backend, with the scripts of `contrib/exec` (`openssl-sign`, `openssl-revoke`)
//! installed in its `bin/`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::peers::openssl::openssl;

/// `contrib/exec/openssl-sign`: signs the CSR with `openssl ca`, idempotent per request id.
pub const OPENSSL_SIGN: &str = include_str!("../../../../contrib/exec/openssl-sign");
/// `contrib/exec/openssl-revoke`: `openssl ca -revoke` with the reason's name.
pub const OPENSSL_REVOKE: &str = include_str!("../../../../contrib/exec/openssl-revoke");

/// An OpenSSL CA directory made for a test.
#[derive(Debug, Clone)]
pub struct OpensslCa {
    /// The CA directory (`CA_DIR` of the scripts).
    pub dir: PathBuf,
}

/// One line of `index.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// `V` (valid), `R` (revoked) or `E` (expired).
    pub status: char,
    /// The serial, uppercase hex as openssl writes it.
    pub serial: String,
    /// The subject as openssl writes it (`/CN=…`, or empty).
    pub subject: String,
    /// The revocation field (`date,reason`), empty unless revoked.
    pub revoked: String,
}

/// Writes `text` to `path` as an executable script.
pub fn install_script(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn must(dir: &Path, args: &[&str]) {
    let (ok, out) = openssl(dir, args);
    assert!(ok, "openssl {}: {out}", args.join(" "));
}

impl OpensslCa {
    /// Makes the CA in `dir` (created): an ECDSA P-256 root (`root.pem`), an intermediate
    /// it signs (`intermediate.pem`, also `chain.pem`), `ca.cnf` for `openssl ca` with the
    /// intermediate, and the scripts in `bin/`.
    pub fn create(dir: &Path) -> Self {
        fs::create_dir_all(dir.join("private")).unwrap();
        fs::create_dir_all(dir.join("newcerts")).unwrap();
        fs::write(dir.join("index.txt"), "").unwrap();
        fs::write(dir.join("index.txt.attr"), "unique_subject = no\n").unwrap();
        // A random first serial, as docs/upstream.md advises: two CAs made by tests (or a
        // CA and another backend) never hand out the same serials.
        let mut first = [0u8; 16];
        aws_lc_rs::rand::fill(&mut first).unwrap();
        first[0] = (first[0] & 0x7f) | 0x10;
        let first: String = first.iter().map(|b| format!("{b:02X}")).collect();
        fs::write(dir.join("serial"), format!("{first}\n")).unwrap();
        fs::write(dir.join("crlnumber"), "1000\n").unwrap();
        fs::write(dir.join("ca.cnf"), ca_config(dir)).unwrap();
        fs::write(dir.join("ext.cnf"), EXTENSIONS).unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut root = vec![
            "req",
            "-x509",
            "-days",
            "3650",
            "-subj",
            "/CN=Test OpenSSL Root",
        ];
        root.extend(ec);
        root.extend([
            "-keyout",
            "private/root.key",
            "-out",
            "root.pem",
            "-config",
            "ext.cnf",
            "-extensions",
            "root",
        ]);
        must(dir, &root);
        let mut inter = vec!["req", "-new", "-subj", "/CN=Test OpenSSL Intermediate"];
        inter.extend(ec);
        inter.extend([
            "-keyout",
            "private/intermediate.key",
            "-out",
            "intermediate.csr",
        ]);
        must(dir, &inter);
        must(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "intermediate.csr",
                "-CA",
                "root.pem",
                "-CAkey",
                "private/root.key",
                "-CAcreateserial",
                "-days",
                "3650",
                "-extfile",
                "ext.cnf",
                "-extensions",
                "intermediate",
                "-out",
                "intermediate.pem",
            ],
        );
        fs::copy(dir.join("intermediate.pem"), dir.join("chain.pem")).unwrap();
        let ca = Self {
            dir: dir.to_owned(),
        };
        install_script(&ca.sign_script(), OPENSSL_SIGN);
        install_script(&ca.revoke_script(), OPENSSL_REVOKE);
        ca
    }

    /// The root (the backend's `trust_anchor`).
    pub fn root_path(&self) -> PathBuf {
        self.dir.join("root.pem")
    }

    /// The intermediate that signs leaves (`openssl verify -untrusted`).
    pub fn intermediate_path(&self) -> PathBuf {
        self.dir.join("intermediate.pem")
    }

    /// `bin/openssl-sign`.
    pub fn sign_script(&self) -> PathBuf {
        self.dir.join("bin/openssl-sign")
    }

    /// `bin/openssl-revoke`.
    pub fn revoke_script(&self) -> PathBuf {
        self.dir.join("bin/openssl-revoke")
    }

    /// Every line of `index.txt`.
    pub fn index(&self) -> Vec<IndexEntry> {
        fs::read_to_string(self.dir.join("index.txt"))
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                assert!(f.len() >= 6, "index.txt line {l:?}");
                IndexEntry {
                    status: f[0].chars().next().unwrap_or('?'),
                    serial: f[3].to_owned(),
                    subject: f[5].to_owned(),
                    revoked: f[2].to_owned(),
                }
            })
            .collect()
    }

    /// The index entry of serial `serial_hex` (any case, leading zeros ignored).
    pub fn entry(&self, serial_hex: &str) -> Option<IndexEntry> {
        let norm = |s: &str| s.trim_start_matches('0').to_ascii_uppercase();
        let want = norm(serial_hex);
        self.index().into_iter().find(|e| norm(&e.serial) == want)
    }
}

/// The root's and the intermediate's extensions (and the `[req]` that `openssl req` wants).
const EXTENSIONS: &str = "[req]
distinguished_name = dn
[dn]
[root]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[intermediate]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// `ca.cnf`: `openssl ca` with the intermediate, any subject (certbot's CSRs have none),
/// the CSR's subjectAltName copied.
fn ca_config(dir: &Path) -> String {
    format!(
        "[ca]
default_ca = CA_default

[CA_default]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
certificate = $dir/intermediate.pem
private_key = $dir/private/intermediate.key
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
default_days = 90
default_crl_days = 7
policy = policy_any
unique_subject = no
email_in_dn = no
# The CSR's subjectAltName (the ACME order's names) goes into the certificate.
copy_extensions = copy
x509_extensions = leaf

[policy_any]
commonName = optional

[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
",
        dir = dir.display()
    )
}

/// Runs `script` as certwright-ca's exec backend would (a cleared environment plus
/// `env`); returns (exit code, stdout, stderr). For the fixtures' own tests.
#[cfg(test)]
pub(crate) fn run_script(script: &Path, env: &[(&str, &str)]) -> (i32, Vec<u8>, String) {
    let mut cmd = std::process::Command::new(script);
    cmd.env_clear().env("PATH", "/usr/local/bin:/usr/bin:/bin");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = crate::process::run_bounded(&mut cmd, std::time::Duration::from_secs(60));
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A CSR for `san` (an `openssl req -addext` subjectAltName) with an empty subject, as
/// certbot makes them, in `dir/NAME.csr`. For the fixtures' own tests.
#[cfg(test)]
pub(crate) fn test_csr(dir: &Path, name: &str, san: &str) -> PathBuf {
    let csr = format!("{name}.csr");
    let key = format!("{name}.key");
    let ext = format!("subjectAltName={san}");
    must(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/",
            "-addext",
            &ext,
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
    );
    dir.join(csr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_show_the_scripts_the_tests_run() {
        let docs = include_str!("../../../../docs/upstream.md");
        for (name, script) in [
            ("openssl-sign", OPENSSL_SIGN),
            ("openssl-revoke", OPENSSL_REVOKE),
            ("easyrsa-sign", crate::peers::easyrsa::EASYRSA_SIGN),
            ("easyrsa-revoke", crate::peers::easyrsa::EASYRSA_REVOKE),
        ] {
            assert!(
                docs.contains(&format!("```sh\n{script}```")),
                "docs/upstream.md does not show contrib/exec/{name} as it is"
            );
        }
    }

    #[test]
    fn openssl_sign_is_idempotent_per_request_id_and_revoke_marks_the_index() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = OpensslCa::create(&tmp.path().join("ca"));
        let csr = test_csr(tmp.path(), "a", "DNS:a.example.com,IP:127.0.0.1");
        let csr = csr.to_str().unwrap();
        let ca_dir = ca.dir.to_str().unwrap();
        let sign = |id: &str, output: &str| {
            run_script(
                &ca.sign_script(),
                &[
                    ("CA_DIR", ca_dir),
                    ("CA_OUTPUT", output),
                    ("CERTWRIGHT_REQUEST_ID", id),
                    ("CERTWRIGHT_CSR_FILE", csr),
                    ("CERTWRIGHT_LIFETIME_DAYS", "3"),
                ],
            )
        };
        let (code, first, err) = sign("order-1", "pem");
        assert_eq!(code, 0, "{err}");
        let text = String::from_utf8(first.clone()).unwrap();
        assert_eq!(
            text.matches("BEGIN CERTIFICATE").count(),
            2,
            "leaf and intermediate"
        );
        fs::write(tmp.path().join("chain.pem"), &first).unwrap();
        let (ok, out) = openssl(
            tmp.path(),
            &[
                "verify",
                "-CAfile",
                ca.root_path().to_str().unwrap(),
                "-untrusted",
                ca.intermediate_path().to_str().unwrap(),
                "chain.pem",
            ],
        );
        assert!(ok, "{out}");
        let (ok, san) = openssl(
            tmp.path(),
            &[
                "x509",
                "-in",
                "chain.pem",
                "-noout",
                "-ext",
                "subjectAltName",
            ],
        );
        assert!(
            ok && san.contains("DNS:a.example.com") && san.contains("IP Address:127.0.0.1"),
            "{san}"
        );

        // Again with the same id: the same chain, no second certificate.
        let (code, again, _) = sign("order-1", "pem");
        assert_eq!((code, &again), (0, &first));
        assert_eq!(ca.index().len(), 1);
        // PKCS#7 DER of the same chain.
        let (code, p7, _) = sign("order-1", "pkcs7-der");
        assert_eq!(code, 0);
        assert_eq!(p7[0], 0x30, "DER");
        fs::write(tmp.path().join("chain.p7b"), &p7).unwrap();
        let (ok, certs) = openssl(
            tmp.path(),
            &[
                "pkcs7",
                "-inform",
                "DER",
                "-in",
                "chain.p7b",
                "-print_certs",
            ],
        );
        assert!(
            ok && certs.matches("BEGIN CERTIFICATE").count() == 2,
            "{certs}"
        );
        // Another id: another certificate.
        assert_eq!(sign("order-2", "pem").0, 0);
        assert_eq!(ca.index().len(), 2);

        // A run killed right after `openssl ca` signed (its serial noted, the chain not
        // kept): the next run finds that certificate again instead of signing twice.
        let state = ca.dir.join("certwright/default");
        let next = fs::read_to_string(ca.dir.join("serial")).unwrap();
        fs::write(state.join("order-4.serial"), next.trim()).unwrap();
        let (ok, out) = openssl(
            tmp.path(),
            &[
                "ca",
                "-batch",
                "-config",
                ca.dir.join("ca.cnf").to_str().unwrap(),
                "-notext",
                "-in",
                csr,
                "-out",
                "interrupted.pem",
            ],
        );
        assert!(ok, "{out}");
        assert_eq!(ca.index().len(), 3);
        let (code, found, err) = sign("order-4", "pem");
        assert_eq!(code, 0, "{err}");
        assert_eq!(ca.index().len(), 3, "not signed twice");
        fs::write(tmp.path().join("found.pem"), &found).unwrap();
        let serial_of = |file: &str| {
            let (ok, s) = openssl(tmp.path(), &["x509", "-in", file, "-noout", "-serial"]);
            assert!(ok, "{s}");
            s.trim().trim_start_matches("serial=").to_owned()
        };
        assert_eq!(serial_of("found.pem"), next.trim());
        assert_eq!(serial_of("interrupted.pem"), next.trim());
        // A noted serial that another request's certificate took (the run was killed
        // before signing): that certificate is not this CSR's, so this one is signed.
        let other = test_csr(tmp.path(), "b", "DNS:b.example.com");
        fs::write(state.join("order-5.serial"), next.trim()).unwrap();
        let (code, fresh, err) = run_script(
            &ca.sign_script(),
            &[
                ("CA_DIR", ca_dir),
                ("CERTWRIGHT_REQUEST_ID", "order-5"),
                ("CERTWRIGHT_CSR_FILE", other.to_str().unwrap()),
                ("CERTWRIGHT_LIFETIME_DAYS", "3"),
            ],
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(ca.index().len(), 4);
        fs::write(tmp.path().join("fresh.pem"), &fresh).unwrap();
        assert_ne!(serial_of("fresh.pem"), next.trim());

        // A CSR openssl cannot read: 65.
        fs::write(csr, "garbage").unwrap();
        assert_eq!(sign("order-3", "pem").0, 65);
        assert_eq!(ca.index().len(), 4);

        let (ok, serial) = openssl(
            tmp.path(),
            &["x509", "-in", "chain.pem", "-noout", "-serial"],
        );
        assert!(ok);
        let serial = serial
            .trim()
            .trim_start_matches("serial=")
            .to_ascii_lowercase();
        let revoke = || {
            run_script(
                &ca.revoke_script(),
                &[
                    ("CA_DIR", ca_dir),
                    ("CERTWRIGHT_SERIAL", &serial),
                    ("CERTWRIGHT_REASON", "1"),
                    ("CERTWRIGHT_REASON_NAME", "keyCompromise"),
                    (
                        "CERTWRIGHT_CERT_FILE",
                        tmp.path().join("chain.pem").to_str().unwrap(),
                    ),
                ],
            )
        };
        let (code, _, err) = revoke();
        assert_eq!(code, 0, "{err}");
        let entry = ca.entry(&serial).unwrap();
        assert_eq!(entry.status, 'R');
        assert!(entry.revoked.ends_with(",keyCompromise"), "{entry:?}");
        // Revoking again is not an error.
        assert_eq!(revoke().0, 0);
        assert_eq!(ca.index().iter().filter(|e| e.status == 'R').count(), 1);
    }
}
