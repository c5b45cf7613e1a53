//! Bringing a new intermediate in (`certwright-ca issuer add`): a key created where the
//! operator says (a file or a token), a certificate signed by the root, and the files
//! under `issuers/NAME/` that running instances pick up. Retirement is a state in the
//! store (`Store::retire_issuer`).

use std::path::Path;

use super::files::{check_key_matches, pem_chain, subject_organization, IssuerFiles};
use super::hierarchy::init::{import_into, sign_intermediate, write_csr, InitOptions, RootOf};
use super::hierarchy::{CaKeyType, HierarchyPaths};
use super::keys::{self, KeyLocation, Pkcs11Settings};
use crate::fsutil::{create_private_dir, write_atomic};

/// What `issuer add` asks for.
#[derive(Debug, Clone)]
pub struct NewIntermediate {
    /// The issuer's name (its directory under `issuers/`).
    pub name: String,
    /// Its key type.
    pub key_type: CaKeyType,
    /// Where its key is created (default `issuers/NAME/key.pem`).
    pub key: Option<String>,
    /// The root's key (default the data directory's `root.key` / `root.key-uri`).
    pub root_key: Option<String>,
    /// Subject CN (default "<organization> Intermediate CA <name>").
    pub common_name: Option<String>,
    /// Subject O when the root's subject has none.
    pub organization: String,
    /// Lifetime in days (capped at the root's notAfter).
    pub days: u32,
}

impl From<super::hierarchy::HierarchyError> for AddError {
    fn from(e: super::hierarchy::HierarchyError) -> Self {
        AddError(e.to_string())
    }
}

/// Why an issuer could not be added; nothing is left behind.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AddError(String);

fn err(detail: impl std::fmt::Display) -> AddError {
    AddError(detail.to_string())
}

/// Issuer `name`'s files and directory, unless an issuer of that name exists.
fn fresh_issuer(
    data_dir: &Path,
    name: &str,
) -> Result<(IssuerFiles, std::path::PathBuf), AddError> {
    let dir = IssuerFiles::dir(data_dir, name);
    if dir.exists() {
        return Err(err(format!(
            "{}: exists; an issuer named {name} is already there",
            dir.display()
        )));
    }
    Ok((IssuerFiles::named(data_dir, name), dir))
}

/// The CA's root certificate (DER), from `root.pem`.
fn root_certificate(paths: &HierarchyPaths) -> Result<Vec<u8>, AddError> {
    let root_pem = std::fs::read_to_string(&paths.root_cert)
        .map_err(|e| err(format!("{}: {e}", paths.root_cert.display())))?;
    pem_chain(&root_pem)
        .map_err(|e| err(format!("{}: {e}", paths.root_cert.display())))?
        .into_iter()
        .next()
        .ok_or_else(|| err(format!("{}: no certificate", paths.root_cert.display())))
}

/// Creates issuer `request.name` in `data_dir`: its key, a certificate the root signs as
/// `init` signs the first intermediate (pathLen 0, keyCertSign/cRLSign/digitalSignature,
/// serverAuth and clientAuth, not past the root), and its files. Refuses an existing
/// issuer; removes what it wrote if any step fails.
pub fn add_issuer(
    data_dir: &Path,
    request: &NewIntermediate,
    pkcs11: &Pkcs11Settings,
) -> Result<IssuerFiles, AddError> {
    let (files, dir) = fresh_issuer(data_dir, &request.name)?;
    // The root: its certificate, and its key (which must match it).
    let paths = HierarchyPaths::new(data_dir);
    let root_der = root_certificate(&paths)?;
    let root_location = match &request.root_key {
        Some(text) => KeyLocation::parse(text).map_err(err)?,
        // root.key-uri, else root.key; an offline root has neither (refused just below).
        None => paths
            .root_key_location()
            .map_err(err)?
            .unwrap_or_else(|| KeyLocation::File(paths.root_key.clone())),
    };
    if let KeyLocation::File(p) = &root_location {
        if !p.exists() {
            return Err(err(format!(
                "{}: no root key there; with an offline root, name it with --root-key \
                 (a path on the offline medium, or a pkcs11: URI)",
                p.display()
            )));
        }
    }
    let root_key = keys::open(&root_location, pkcs11).map_err(err)?;
    check_key_matches(&root_der, root_key.as_ref())
        .map_err(|e| err(format!("{root_location}: {e}")))?;

    create_private_dir(&dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    let result = (|| {
        let location = match &request.key {
            Some(text) => KeyLocation::parse(text).map_err(err)?,
            None => KeyLocation::File(files.key.clone()),
        };
        let key = keys::generate(&location, request.key_type, pkcs11).map_err(err)?;
        if let KeyLocation::Pkcs11(uri) = &location {
            write_atomic(&files.key_uri, format!("{uri}\n").as_bytes(), 0o600)
                .map_err(|e| err(format!("{}: {e}", files.key_uri.display())))?;
        }
        // The new intermediate names the organization of the root that signs it.
        let organization = subject_organization(&root_der).unwrap_or(request.organization.clone());
        let mut opts = InitOptions::new(request.key_type, &organization);
        opts.intermediate_days = request.days;
        let cn = request
            .common_name
            .clone()
            .unwrap_or_else(|| format!("{organization} Intermediate CA {}", request.name));
        let pem = sign_intermediate(&opts, &cn, &root_der, root_key.clone(), key)
            .map_err(|e| err(format!("signing the intermediate with the root: {e}")))?;
        write_atomic(&files.cert, pem.as_bytes(), 0o644)
            .map_err(|e| err(format!("{}: {e}", files.cert.display())))?;
        Ok(())
    })();
    if let Err(e) = result {
        // Nothing half-made stays behind (a token key is left: say so).
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    Ok(files)
}

/// `issuer add NAME --csr FILE`: makes issuer NAME's key (a file in `issuers/NAME/`, or
/// `request.key` in a token) and writes a CSR for another CA (an offline or corporate
/// root) to sign; `issuer add NAME --import` then installs the certificate. Refuses an
/// existing issuer; removes what it wrote if a step fails.
pub fn add_issuer_csr(
    data_dir: &Path,
    request: &NewIntermediate,
    csr_path: &Path,
    pkcs11: &Pkcs11Settings,
) -> Result<IssuerFiles, AddError> {
    let (files, dir) = fresh_issuer(data_dir, &request.name)?;
    let paths = HierarchyPaths::new(data_dir);
    let organization = root_certificate(&paths)
        .ok()
        .and_then(|der| subject_organization(&der))
        .unwrap_or(request.organization.clone());
    let mut opts = InitOptions::new(request.key_type, &organization);
    opts.intermediate_key = request
        .key
        .as_deref()
        .map(KeyLocation::parse)
        .transpose()
        .map_err(err)?;
    let cn = request
        .common_name
        .clone()
        .unwrap_or_else(|| format!("{organization} Intermediate CA {}", request.name));
    create_private_dir(&dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    if let Err(e) = write_csr(&files, &opts, &cn, csr_path, pkcs11) {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(err(e));
    }
    Ok(files)
}

/// `issuer add NAME --import CERT --chain CHAIN`: installs the certificate another CA
/// signed for the key `add_issuer_csr` made (or `key`), after `init`'s checks of the
/// certificate, key and chain — and the chain must end at this CA's own root, which
/// clients trust. Running instances then load it.
pub fn import_issuer(
    data_dir: &Path,
    name: &str,
    cert_path: &Path,
    chain_path: &Path,
    key: Option<&str>,
    pkcs11: &Pkcs11Settings,
) -> Result<IssuerFiles, AddError> {
    let files = IssuerFiles::named(data_dir, name);
    if files.cert.exists() {
        return Err(err(format!(
            "{}: exists; issuer {name} has its certificate already",
            files.cert.display()
        )));
    }
    if !IssuerFiles::dir(data_dir, name).exists() {
        return Err(err(format!(
            "no issuer {name} waiting for its certificate: run `issuer add {name} --csr FILE` first"
        )));
    }
    let paths = HierarchyPaths::new(data_dir);
    let root_der = root_certificate(&paths)?;
    let key = key.map(KeyLocation::parse).transpose().map_err(err)?;
    import_into(
        &files,
        &RootOf::MustBe {
            der: root_der,
            path: paths.root_cert.clone(),
        },
        cert_path,
        chain_path,
        key.as_ref(),
        pkcs11,
    )
    .map_err(err)?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::issuer::Issuer;
    use x509_parser::prelude::{FromDer, X509Certificate};

    #[test]
    fn an_added_issuer_is_signed_by_the_root_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let h = crate::ca::test_hierarchy(dir.path());
        let request = NewIntermediate {
            name: "int-rsa".into(),
            key_type: CaKeyType::Rsa2048,
            key: None,
            root_key: None,
            common_name: None,
            organization: "certwright".into(),
            days: 30,
        };
        let none = Pkcs11Settings::default();
        let files = add_issuer(dir.path(), &request, &none).unwrap();
        let issuer = files.load(&none).unwrap();
        let (_, cert) = X509Certificate::from_der(issuer.certificate_der()).unwrap();
        let (_, root) = X509Certificate::from_der(&h.root_der).unwrap();
        cert.verify_signature(Some(root.public_key())).unwrap();
        assert_eq!(cert.issuer(), root.subject());
        assert_eq!(
            cert.basic_constraints()
                .unwrap()
                .unwrap()
                .value
                .path_len_constraint,
            Some(0)
        );
        let lifetime =
            cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert_eq!(lifetime, 30 * 86400 + 3600, "30 days from an hour ago");
        assert!(matches!(
            cert.public_key().parsed().unwrap(),
            x509_parser::public_key::PublicKey::RSA(_)
        ));
        let names: Vec<String> = IssuerFiles::all(dir.path())
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names, ["intermediate", "int-rsa"]);

        // The same name again, or without the root key: refused, nothing written.
        let again = add_issuer(dir.path(), &request, &none).unwrap_err();
        assert!(again.to_string().contains("already there"), "{again}");
        std::fs::rename(dir.path().join("root.key"), dir.path().join("away.key")).unwrap();
        let offline = NewIntermediate {
            name: "int-2".into(),
            ..request.clone()
        };
        let e = add_issuer(dir.path(), &offline, &none).unwrap_err();
        assert!(e.to_string().contains("--root-key"), "{e}");
        assert!(!IssuerFiles::dir(dir.path(), "int-2").exists());
        // Named on the command line (an offline medium), it works.
        let with_root = NewIntermediate {
            root_key: Some(dir.path().join("away.key").display().to_string()),
            ..offline
        };
        add_issuer(dir.path(), &with_root, &none).unwrap();
        // A root key that is not the root's: refused.
        let wrong = NewIntermediate {
            name: "int-3".into(),
            root_key: Some(dir.path().join("tls.key").display().to_string()),
            ..request
        };
        let e = add_issuer(dir.path(), &wrong, &none).unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        assert!(!IssuerFiles::dir(dir.path(), "int-3").exists());
    }

    /// Signs the CSR at `csr` as a CA (pathLen 0) with the root of the hierarchy in `dir`,
    /// as an offline ceremony would; returns the certificate's PEM.
    fn sign_as_root(dir: &Path, csr: &Path) -> String {
        let root_pem = std::fs::read_to_string(dir.join("root.pem")).unwrap();
        let root_key =
            rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join("root.key")).unwrap())
                .unwrap();
        let root = rcgen::Issuer::from_ca_cert_pem(&root_pem, root_key).unwrap();
        let mut request = rcgen::CertificateSigningRequestParams::from_pem(
            &std::fs::read_to_string(csr).unwrap(),
        )
        .unwrap();
        request.params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        request.params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        request.params.use_authority_key_identifier_extension = true;
        request.signed_by(&root).unwrap().pem()
    }

    #[test]
    fn an_issuer_from_a_csr_the_root_signs_elsewhere_is_imported_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let h = crate::ca::test_hierarchy(dir.path());
        let none = Pkcs11Settings::default();
        let request = NewIntermediate {
            name: "int-offline".into(),
            key_type: CaKeyType::Ec384,
            key: None,
            root_key: None,
            common_name: None,
            organization: "ignored: the root's O wins".into(),
            days: 30,
        };
        let csr = dir.path().join("int.csr");
        add_issuer_csr(dir.path(), &request, &csr, &none).unwrap();
        let issuer_dir = IssuerFiles::dir(dir.path(), "int-offline");
        assert!(issuer_dir.join("key.pem").exists() && !issuer_dir.join("cert.pem").exists());
        // Not loaded while it waits: no certificate yet.
        let cert = dir.path().join("int.pem");
        std::fs::write(&cert, sign_as_root(dir.path(), &csr)).unwrap();

        // A chain to another root is refused, naming the file; nothing is written.
        let other = tempfile::tempdir().unwrap();
        crate::ca::test_hierarchy(other.path());
        let e = import_issuer(
            dir.path(),
            "int-offline",
            &cert,
            &other.path().join("root.pem"),
            None,
            &none,
        )
        .unwrap_err();
        assert!(e.to_string().contains("root.pem"), "{e}");
        assert!(!issuer_dir.join("cert.pem").exists());

        // The CA's own root: imported, and it loads.
        import_issuer(
            dir.path(),
            "int-offline",
            &cert,
            &h.paths.root_cert,
            None,
            &none,
        )
        .unwrap();
        let issuer = IssuerFiles::named(dir.path(), "int-offline")
            .load(&none)
            .unwrap();
        let (_, c) = X509Certificate::from_der(issuer.certificate_der()).unwrap();
        let org = c
            .subject()
            .iter_organization()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(org, "certwright");
        // Twice: refused.
        let e = import_issuer(
            dir.path(),
            "int-offline",
            &cert,
            &h.paths.root_cert,
            None,
            &none,
        )
        .unwrap_err();
        assert!(e.to_string().contains("already"), "{e}");
        // Without the CSR step: refused.
        let e =
            import_issuer(dir.path(), "nope", &cert, &h.paths.root_cert, None, &none).unwrap_err();
        assert!(e.to_string().contains("--csr"), "{e}");
    }
}
