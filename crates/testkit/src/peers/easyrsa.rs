//! An Easy-RSA 3 PKI (Debian's `easy-rsa`, `/usr/share/easy-rsa/easyrsa`) as the backend
//! CA of certwright-ca's `exec` backend, with the scripts of `contrib/exec`
//! (`easyrsa-sign`, `easyrsa-revoke`) installed beside it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::peers::openssl_ca::install_script;
use crate::process::run_ok;

/// Where Debian's `easy-rsa` package puts the program (it is not on PATH).
pub const EASYRSA: &str = "/usr/share/easy-rsa/easyrsa";

/// `contrib/exec/easyrsa-sign`: `import-req` and `sign-req server`, idempotent per id.
pub const EASYRSA_SIGN: &str = include_str!("../../../../contrib/exec/easyrsa-sign");
/// `contrib/exec/easyrsa-revoke`: `easyrsa revoke` and `gen-crl`.
pub const EASYRSA_REVOKE: &str = include_str!("../../../../contrib/exec/easyrsa-revoke");

/// An Easy-RSA PKI made for a test.
#[derive(Debug, Clone)]
pub struct EasyRsa {
    /// The directory holding `pki/` and `bin/`.
    pub dir: PathBuf,
}

impl EasyRsa {
    /// `easyrsa init-pki` and `build-ca nopass` (ECDSA P-256) under `dir/pki`, with the
    /// request policy relaxed to allow an empty subject (certbot's CSRs name only
    /// subjectAltNames), and the scripts in `dir/bin`.
    pub fn create(dir: &Path) -> Self {
        assert!(
            Path::new(EASYRSA).is_file(),
            "test peer `easyrsa` is not installed at {EASYRSA} (scripts/test installs the \
             Debian package easy-rsa)"
        );
        fs::create_dir_all(dir).unwrap();
        let rsa = Self {
            dir: dir.to_owned(),
        };
        rsa.easyrsa(&["init-pki"]);
        let cnf = rsa.pki().join("openssl-easyrsa.cnf");
        let text = fs::read_to_string(&cnf).unwrap();
        let relaxed = text.replacen("commonName\t\t= supplied", "commonName\t\t= optional", 1);
        assert_ne!(
            text,
            relaxed,
            "policy_anything's commonName line in {}",
            cnf.display()
        );
        fs::write(&cnf, relaxed).unwrap();
        rsa.easyrsa(&["build-ca", "nopass"]);
        install_script(&rsa.sign_script(), EASYRSA_SIGN);
        install_script(&rsa.revoke_script(), EASYRSA_REVOKE);
        rsa
    }

    fn easyrsa(&self, args: &[&str]) {
        run_ok(
            "easyrsa",
            Command::new(EASYRSA)
                .args(args)
                .current_dir(&self.dir)
                .env("EASYRSA_PKI", self.pki())
                .env("EASYRSA_BATCH", "1")
                .env("EASYRSA_ALGO", "ec")
                .env("EASYRSA_CURVE", "prime256v1")
                .env("EASYRSA_REQ_CN", "Test Easy-RSA Root"),
            Duration::from_secs(60),
            "",
        );
    }

    /// The PKI directory (`EASYRSA_PKI` of the scripts).
    pub fn pki(&self) -> PathBuf {
        self.dir.join("pki")
    }

    /// The CA certificate, a root (the backend's `trust_anchor`).
    pub fn root_path(&self) -> PathBuf {
        self.pki().join("ca.crt")
    }

    /// `bin/easyrsa-sign`.
    pub fn sign_script(&self) -> PathBuf {
        self.dir.join("bin/easyrsa-sign")
    }

    /// `bin/easyrsa-revoke`.
    pub fn revoke_script(&self) -> PathBuf {
        self.dir.join("bin/easyrsa-revoke")
    }

    /// The PKI's `index.txt`.
    pub fn index(&self) -> String {
        fs::read_to_string(self.pki().join("index.txt")).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::openssl::openssl;
    use crate::peers::openssl_ca::{run_script, test_csr};

    #[test]
    fn easyrsa_sign_copies_the_sans_is_idempotent_and_revokes() {
        let tmp = tempfile::tempdir().unwrap();
        let rsa = EasyRsa::create(&tmp.path().join("easyrsa"));
        let csr = test_csr(tmp.path(), "a", "DNS:a.example.com,DNS:b.example.com");
        let pki = rsa.pki();
        let env = [
            ("EASYRSA_PKI", pki.to_str().unwrap()),
            ("CERTWRIGHT_REQUEST_ID", "order-9"),
            ("CERTWRIGHT_CSR_FILE", csr.to_str().unwrap()),
            ("CERTWRIGHT_LIFETIME_DAYS", "3"),
        ];
        let (code, first, err) = run_script(&rsa.sign_script(), &env);
        assert_eq!(code, 0, "{err}");
        let text = String::from_utf8(first.clone()).unwrap();
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{text}");
        assert_eq!(text.matches("BEGIN CERTIFICATE").count(), 2, "leaf and CA");
        let ca_pem = fs::read_to_string(rsa.root_path()).unwrap();
        let ca_b64 = ca_pem.split("-----BEGIN CERTIFICATE-----").nth(1).unwrap();
        assert!(
            text.ends_with(&format!("-----BEGIN CERTIFICATE-----{ca_b64}")),
            "{text}"
        );
        fs::write(tmp.path().join("leaf.pem"), &first).unwrap();
        let root = rsa.root_path();
        let (ok, out) = openssl(
            tmp.path(),
            &["verify", "-CAfile", root.to_str().unwrap(), "leaf.pem"],
        );
        assert!(ok, "{out}");
        let (_, san) = openssl(
            tmp.path(),
            &[
                "x509",
                "-in",
                "leaf.pem",
                "-noout",
                "-ext",
                "subjectAltName",
            ],
        );
        assert!(
            san.contains("DNS:a.example.com, DNS:b.example.com"),
            "{san}"
        );
        let (code, again, _) = run_script(&rsa.sign_script(), &env);
        assert_eq!((code, &again), (0, &first));
        assert_eq!(rsa.index().lines().count(), 1);

        let leaf = tmp.path().join("leaf.pem");
        let (code, _, err) = run_script(
            &rsa.revoke_script(),
            &[
                ("EASYRSA_PKI", pki.to_str().unwrap()),
                ("CERTWRIGHT_SERIAL", "00"),
                ("CERTWRIGHT_REASON", "4"),
                ("CERTWRIGHT_REASON_NAME", "superseded"),
                ("CERTWRIGHT_CERT_FILE", leaf.to_str().unwrap()),
            ],
        );
        assert_eq!(code, 0, "{err}");
        let index = rsa.index();
        assert!(
            index.starts_with('R') && index.contains(",superseded"),
            "{index}"
        );
    }
}
