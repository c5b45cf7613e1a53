//! Creating the hierarchy explicitly (`certwright-ca init`): a root and an intermediate
//! with chosen key types, key locations (a file, or a `pkcs11:` URI: the key is generated
//! in the token), names, lifetimes, path length and name constraints; the root's key
//! optionally offline; or an intermediate that another CA signs — a CSR first, then the
//! import of the certificate with its chain.
//!
//! Every operation refuses to touch an existing CA, writes each file atomically (keys
//! 0600), and removes what it created when it fails midway. A key generated in a token
//! cannot be removed from here; the error names it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa,
    KeyPair, KeyUsagePurpose, NameConstraints,
};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::{ca_params, fingerprint, random_suffix, HierarchyError, HierarchyPaths};
use crate::ca::files::{check_ca_certificate, check_key_matches, pem_chain, IssuerFiles};
use crate::ca::issuer::{rcgen_issuer, LocalIssuer};
use crate::ca::keys::{self, CaKey, KeyLocation, Pkcs11Settings, RcgenKey};
use crate::ca::CaKeyType;
use crate::fsutil::write_atomic;

/// Days the root made on first start is valid (20 years).
pub const DEFAULT_ROOT_DAYS: u32 = 20 * 365;
/// Days the intermediate made on first start is valid (10 years).
pub const DEFAULT_INTERMEDIATE_DAYS: u32 = 10 * 365;

/// What `init` makes: each field is a command-line flag. [`InitOptions::new`] gives what
/// the first start of `serve` makes.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The root's key type.
    pub root_key_type: CaKeyType,
    /// The intermediate's key type.
    pub key_type: CaKeyType,
    /// Where the root's key is generated: default `DATA/root.key`. A `pkcs11:` URI
    /// generates it in a token; a file outside the data directory needs `root_offline`.
    pub root_key: Option<KeyLocation>,
    /// Where the intermediate's key is generated: default `DATA/intermediate.key`; a
    /// `pkcs11:` URI generates it in a token (recorded in `intermediate.key-uri`).
    pub intermediate_key: Option<KeyLocation>,
    /// The organization (O) of both certificates.
    pub organization: String,
    /// The root's common name; default `ORG Root CA XXXXXX` (six random hex digits).
    pub root_cn: Option<String>,
    /// The intermediate's common name; default `ORG Intermediate CA XXXXXX`.
    pub intermediate_cn: Option<String>,
    /// Days the root is valid.
    pub root_days: u32,
    /// Days the intermediate is valid (at most the root's).
    pub intermediate_days: u32,
    /// The intermediate's pathLenConstraint (0: it signs only end-entity certificates).
    pub path_len: u8,
    /// Name constraints on the intermediate: the permitted dNSName subtrees (none: no
    /// constraints).
    pub permitted_dns: Vec<String>,
    /// The root's key is kept out of the data directory (`root_key` is a file outside it
    /// or a `pkcs11:` URI, which is then not recorded): `serve` does without it.
    pub root_offline: bool,
}

impl InitOptions {
    /// The defaults: what the first start of `serve` makes — both keys `key_type` in the
    /// data directory, 20 and 10 years, path length 0, no name constraints.
    pub fn new(key_type: CaKeyType, organization: &str) -> Self {
        Self {
            root_key_type: key_type,
            key_type,
            root_key: None,
            intermediate_key: None,
            organization: organization.to_owned(),
            root_cn: None,
            intermediate_cn: None,
            root_days: DEFAULT_ROOT_DAYS,
            intermediate_days: DEFAULT_INTERMEDIATE_DAYS,
            path_len: 0,
            permitted_dns: Vec::new(),
            root_offline: false,
        }
    }

    fn check(&self) -> Result<(), HierarchyError> {
        let usage = |m: String| Err(HierarchyError::Usage(m));
        if self.organization.trim().is_empty() {
            return usage("the organization name is empty".into());
        }
        for cn in [&self.root_cn, &self.intermediate_cn].into_iter().flatten() {
            if cn.trim().is_empty() {
                return usage("a common name is empty".into());
            }
        }
        if self.root_days == 0 || self.intermediate_days == 0 {
            return usage("a lifetime of 0 days".into());
        }
        if self.intermediate_days > self.root_days {
            return usage(format!(
                "the intermediate ({} days) would outlive the root ({} days)",
                self.intermediate_days, self.root_days
            ));
        }
        for name in &self.permitted_dns {
            if !valid_dns_subtree(name) {
                return usage(format!(
                    "--permitted-dns {name:?} is not a DNS name (e.g. example.com or \
                     .example.com)"
                ));
            }
        }
        Ok(())
    }

    /// Where the root's key goes, and whether `root.key-uri` records it.
    fn root_key_location(
        &self,
        data_dir: &Path,
    ) -> Result<(KeyLocation, Option<String>), HierarchyError> {
        let in_data_dir = data_dir.join("root.key");
        match (&self.root_key, self.root_offline) {
            (None, false) => Ok((KeyLocation::File(in_data_dir), None)),
            (None, true) => Err(HierarchyError::Usage(
                "--root-offline needs --root-key: a file outside the data directory, or a \
                 pkcs11: URI"
                    .into(),
            )),
            (Some(KeyLocation::File(path)), true) => {
                if is_inside(data_dir, path)? {
                    return Err(HierarchyError::Usage(format!(
                        "--root-key {}: an offline root's key must be written outside the \
                         data directory {}",
                        path.display(),
                        data_dir.display()
                    )));
                }
                // Absolute: it is printed for the operator to find again.
                Ok((KeyLocation::File(resolve_file(path)?), None))
            }
            (Some(KeyLocation::File(path)), false) => {
                if !same_path(path, &in_data_dir)? {
                    return Err(HierarchyError::Usage(format!(
                        "--root-key {}: a root key file outside the data directory is an \
                         offline root: add --root-offline (or leave --root-key out for {})",
                        path.display(),
                        in_data_dir.display()
                    )));
                }
                Ok((KeyLocation::File(in_data_dir), None))
            }
            (Some(uri @ KeyLocation::Pkcs11(_)), offline) => {
                Ok((uri.clone(), (!offline).then(|| uri.to_string())))
            }
        }
    }

    /// Where the intermediate's key goes, and whether `intermediate.key-uri` records it.
    fn intermediate_key_location(
        &self,
        files: &IssuerFiles,
    ) -> Result<(KeyLocation, Option<String>), HierarchyError> {
        match &self.intermediate_key {
            None => Ok((KeyLocation::File(files.key.clone()), None)),
            Some(KeyLocation::File(path)) => {
                if !same_path(path, &files.key)? {
                    return Err(HierarchyError::Usage(format!(
                        "--intermediate-key {}: a key file is generated as {} (leave the flag \
                         out); give a pkcs11: URI to generate it in a token",
                        path.display(),
                        files.key.display()
                    )));
                }
                Ok((KeyLocation::File(files.key.clone()), None))
            }
            Some(uri @ KeyLocation::Pkcs11(_)) => Ok((uri.clone(), Some(uri.to_string()))),
        }
    }

    fn root_cn(&self, suffix: &str) -> String {
        self.root_cn
            .clone()
            .unwrap_or_else(|| format!("{} Root CA {suffix}", self.organization))
    }

    fn intermediate_cn(&self, suffix: &str) -> String {
        self.intermediate_cn
            .clone()
            .unwrap_or_else(|| format!("{} Intermediate CA {suffix}", self.organization))
    }
}

/// What [`create`] made.
#[derive(Debug, Clone)]
pub struct Created {
    /// `root.pem`.
    pub root_cert: PathBuf,
    /// Where the root's key is.
    pub root_key: KeyLocation,
    /// The root's key is not in (nor recorded in) the data directory.
    pub root_offline: bool,
    /// `intermediate.pem`.
    pub intermediate_cert: PathBuf,
    /// Where the intermediate's key is.
    pub intermediate_key: KeyLocation,
    /// SHA-256 fingerprint of the root certificate.
    pub root_fingerprint: String,
}

/// What [`write_intermediate_csr`] made.
#[derive(Debug, Clone)]
pub struct CsrWritten {
    /// The CSR (PEM).
    pub csr: PathBuf,
    /// Where the intermediate's key is.
    pub key: KeyLocation,
}

/// What [`import_intermediate`] wrote.
#[derive(Debug, Clone)]
pub struct Imported {
    /// `root.pem`: the chain's root.
    pub root_cert: PathBuf,
    /// `intermediate.pem`: the intermediate, then any CA certificates between it and the
    /// root.
    pub intermediate_cert: PathBuf,
    /// Where the intermediate's key is.
    pub intermediate_key: KeyLocation,
    /// The root's subject.
    pub root_subject: String,
    /// SHA-256 fingerprint of the root certificate.
    pub root_fingerprint: String,
}

/// Files created so far; removed again unless [`Rollback::commit`] is called.
#[derive(Default)]
struct Rollback {
    created: Vec<PathBuf>,
    token_keys: Vec<String>,
    committed: bool,
}

impl Rollback {
    /// Writes a new file (refusing to replace one) and remembers it.
    fn write(&mut self, path: &Path, data: &[u8], mode: u32) -> Result<(), HierarchyError> {
        if path.exists() {
            return Err(HierarchyError::State(format!(
                "{}: exists; refusing to replace it",
                path.display()
            )));
        }
        write_atomic(path, data, mode).map_err(|error| HierarchyError::Io {
            path: path.to_owned(),
            error,
        })?;
        self.created.push(path.to_owned());
        Ok(())
    }

    /// Generates a key at `location`, remembering the file (or, for a token, the URI, to
    /// name it if a later step fails).
    fn generate_key(
        &mut self,
        location: &KeyLocation,
        key_type: CaKeyType,
        pkcs11: &Pkcs11Settings,
    ) -> Result<Arc<dyn CaKey>, HierarchyError> {
        let key = keys::generate(location, key_type, pkcs11)?;
        match location {
            KeyLocation::File(path) => self.created.push(path.clone()),
            KeyLocation::Pkcs11(uri) => self.token_keys.push(uri.to_string()),
        }
        Ok(key)
    }

    fn commit(mut self) {
        self.committed = true;
    }

    /// The error of a failed step, noting any token key left behind.
    fn fail(self, e: HierarchyError) -> HierarchyError {
        if self.token_keys.is_empty() {
            return e;
        }
        HierarchyError::State(format!(
            "{e} (the key generated in the token stays there: {}; delete it before running \
             init again)",
            self.token_keys.join(", ")
        ))
    }
}

impl Drop for Rollback {
    fn drop(&mut self) {
        if !self.committed {
            for path in self.created.iter().rev() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// The CA files of `data_dir` that exist: `init` starts only where there are none.
fn existing_ca_files(data_dir: &Path) -> Vec<PathBuf> {
    let paths = HierarchyPaths::new(data_dir);
    let files = IssuerFiles::first(data_dir);
    [
        paths.root_cert,
        paths.root_key,
        paths.root_key_uri,
        files.cert,
        files.key,
        files.key_uri,
        paths.tls_cert,
        paths.tls_key,
        files.ocsp_cert,
        files.ocsp_key,
        files.ocsp_key_uri,
        data_dir.join("issuers"),
    ]
    .into_iter()
    .filter(|p| p.exists())
    .collect()
}

fn refuse_existing(data_dir: &Path) -> Result<(), HierarchyError> {
    let existing = existing_ca_files(data_dir);
    if existing.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = existing
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let files = IssuerFiles::first(data_dir);
    let pending = (files.key.exists() || files.key_uri.exists()) && !files.cert.exists();
    let hint = if pending {
        "; an intermediate key from `init --intermediate-csr` is waiting for its \
         certificate: import it with `init --import-intermediate CERT --chain CHAIN`, or \
         remove the key to start over"
    } else {
        ""
    };
    Err(HierarchyError::State(format!(
        "{} already holds a CA ({}): init creates a CA only in a data directory without \
         one, and changed nothing{hint}",
        data_dir.display(),
        names.join(", ")
    )))
}

/// `init`: creates a root and an intermediate in `data_dir` as `opts` says, refusing a
/// data directory that holds any CA file. The keys are generated where `opts` puts them
/// (`keys::generate`); `root.pem` and `intermediate.pem` (the latter last) are written,
/// and `root.key-uri`/`intermediate.key-uri` for keys in a token. On failure, nothing
/// it created is left.
pub fn create(
    data_dir: &Path,
    opts: &InitOptions,
    pkcs11: &Pkcs11Settings,
) -> Result<Created, HierarchyError> {
    refuse_existing(data_dir)?;
    create_unchecked(data_dir, opts, pkcs11)
}

/// [`create`] without the check for other CA files (first start: the caller checked
/// the files that matter).
pub(super) fn create_unchecked(
    data_dir: &Path,
    opts: &InitOptions,
    pkcs11: &Pkcs11Settings,
) -> Result<Created, HierarchyError> {
    opts.check()?;
    let paths = HierarchyPaths::new(data_dir);
    let files = IssuerFiles::first(data_dir);
    let (root_location, root_record) = opts.root_key_location(data_dir)?;
    let (intermediate_location, intermediate_record) = opts.intermediate_key_location(&files)?;
    let mut rollback = Rollback::default();
    let suffix = random_suffix();
    let result = (|| -> Result<Created, HierarchyError> {
        let root_key = rollback.generate_key(&root_location, opts.root_key_type, pkcs11)?;
        let root_cert = ca_params(
            &opts.root_cn(&suffix),
            &opts.organization,
            opts.root_days,
            None,
        )
        .self_signed(&RcgenKey(root_key.clone()))?;
        let intermediate_key =
            rollback.generate_key(&intermediate_location, opts.key_type, pkcs11)?;
        let intermediate_pem = sign_intermediate(
            opts,
            &opts.intermediate_cn(&suffix),
            root_cert.der(),
            root_key,
            intermediate_key,
        )?;
        if let Some(uri) = &root_record {
            rollback.write(&paths.root_key_uri, format!("{uri}\n").as_bytes(), 0o600)?;
        }
        if let Some(uri) = &intermediate_record {
            rollback.write(&files.key_uri, format!("{uri}\n").as_bytes(), 0o600)?;
        }
        rollback.write(&paths.root_cert, root_cert.pem().as_bytes(), 0o644)?;
        // Last: from here on the data directory holds a CA.
        rollback.write(&files.cert, intermediate_pem.as_bytes(), 0o644)?;
        Ok(Created {
            root_cert: paths.root_cert.clone(),
            root_key: root_location.clone(),
            root_offline: opts.root_offline,
            intermediate_cert: files.cert.clone(),
            intermediate_key: intermediate_location.clone(),
            root_fingerprint: fingerprint(root_cert.der()),
        })
    })();
    match result {
        Ok(created) => {
            rollback.commit();
            Ok(created)
        }
        Err(e) => Err(rollback.fail(e)),
    }
}

/// A new intermediate signed by the root key at `root_key`, replacing a lost one: a new
/// `intermediate.key` (defaults of `opts`) and `intermediate.pem`.
pub(super) fn replace_intermediate(
    data_dir: &Path,
    root_key: &KeyLocation,
    opts: &InitOptions,
    pkcs11: &Pkcs11Settings,
) -> Result<(), HierarchyError> {
    let paths = HierarchyPaths::new(data_dir);
    let files = IssuerFiles::first(data_dir);
    let root_pem = super::read(&paths.root_cert)?;
    let root_der = super::pem_to_der(&paths.root_cert, &root_pem)?;
    let root_key = keys::open(root_key, pkcs11)?;
    check_key_matches(&root_der, root_key.as_ref()).map_err(|detail| HierarchyError::Invalid {
        path: paths.root_cert.clone(),
        detail,
    })?;
    let mut rollback = Rollback::default();
    let result = (|| -> Result<(), HierarchyError> {
        let key =
            rollback.generate_key(&KeyLocation::File(files.key.clone()), opts.key_type, pkcs11)?;
        let pem = sign_intermediate(
            opts,
            &opts.intermediate_cn(&random_suffix()),
            &root_der,
            root_key,
            key,
        )?;
        // Replaces the certificate whose key was lost.
        super::write(&files.cert, &pem, 0o644)
    })();
    match result {
        Ok(()) => {
            rollback.commit();
            tracing::warn!(
                cert = %files.cert.display(),
                "the intermediate's key was missing: made a new intermediate, signed by the root"
            );
            Ok(())
        }
        Err(e) => Err(rollback.fail(e)),
    }
}

/// The intermediate's certificate (PEM), signed by `root_key` as the root `root_der`
/// (also `issuer add`'s, in `ca/rotation.rs`).
pub(crate) fn sign_intermediate(
    opts: &InitOptions,
    cn: &str,
    root_der: &[u8],
    root_key: Arc<dyn CaKey>,
    intermediate_key: Arc<dyn CaKey>,
) -> Result<String, HierarchyError> {
    let mut params = ca_params(
        cn,
        &opts.organization,
        opts.intermediate_days,
        Some(opts.path_len),
    );
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    if !opts.permitted_dns.is_empty() {
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: opts
                .permitted_dns
                .iter()
                .map(|n| GeneralSubtree::DnsName(n.clone()))
                .collect(),
            excluded_subtrees: Vec::new(),
        });
    }
    // Not past the root.
    let (_, root) = X509Certificate::from_der(root_der)
        .map_err(|e| HierarchyError::Usage(format!("the root certificate does not parse: {e}")))?;
    params.not_after = params
        .not_after
        .min(root.validity().not_after.to_datetime());
    let root_der = rustls::pki_types::CertificateDer::from(root_der.to_vec());
    let issuer = rcgen::Issuer::from_ca_cert_der(&root_der, RcgenKey(root_key))?;
    let cert = params.signed_by(&RcgenKey(intermediate_key), &issuer)?;
    Ok(cert.pem())
}

// ------------------------------------------------------------ own intermediate

/// `init --intermediate-csr FILE`: generates the intermediate's key (at
/// `opts.intermediate_key`, default `DATA/intermediate.key`) and writes a PKCS#10 CSR
/// (PEM) for it to `csr_path`, for another CA to sign. The CSR names `O=organization,
/// CN=intermediate_cn` and requests a CA certificate with pathLenConstraint
/// `opts.path_len` and keyCertSign/cRLSign; the signing CA decides what the certificate
/// says. Refuses a data directory holding any CA file; on failure, removes the key file.
pub fn write_intermediate_csr(
    data_dir: &Path,
    opts: &InitOptions,
    csr_path: &Path,
    pkcs11: &Pkcs11Settings,
) -> Result<CsrWritten, HierarchyError> {
    refuse_existing(data_dir)?;
    let cn = opts.intermediate_cn(&random_suffix());
    write_csr(&IssuerFiles::first(data_dir), opts, &cn, csr_path, pkcs11)
}

/// Generates the key of the issuer at `files` (at `opts.intermediate_key`, default its
/// key file) and writes a CSR for it (`O=organization, CN=cn`, a CA with pathLen
/// `opts.path_len`) to `csr_path`; on failure removes what it wrote. `init
/// --intermediate-csr` and `issuer add --csr`.
pub(crate) fn write_csr(
    files: &IssuerFiles,
    opts: &InitOptions,
    cn: &str,
    csr_path: &Path,
    pkcs11: &Pkcs11Settings,
) -> Result<CsrWritten, HierarchyError> {
    opts.check()?;
    let csr_path = &resolve_file(csr_path)?;
    let files = files.clone();
    let (location, record) = opts.intermediate_key_location(&files)?;
    let mut rollback = Rollback::default();
    let result = (|| -> Result<CsrWritten, HierarchyError> {
        let key = rollback.generate_key(&location, opts.key_type, pkcs11)?;
        if let Some(uri) = &record {
            rollback.write(&files.key_uri, format!("{uri}\n").as_bytes(), 0o600)?;
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, opts.organization.as_str());
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Constrained(opts.path_len));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let csr = params.serialize_request(&RcgenKey(key))?;
        let pem = csr.pem()?;
        write_atomic(csr_path, pem.as_bytes(), 0o644).map_err(|error| HierarchyError::Io {
            path: csr_path.to_owned(),
            error,
        })?;
        Ok(CsrWritten {
            csr: csr_path.to_owned(),
            key: location.clone(),
        })
    })();
    match result {
        Ok(written) => {
            rollback.commit();
            Ok(written)
        }
        Err(e) => Err(rollback.fail(e)),
    }
}

/// `init --import-intermediate CERT --chain CHAIN`: installs an intermediate another CA
/// signed. `key` is its key (default: the one `--intermediate-csr` made, `DATA/
/// intermediate.key` or `intermediate.key-uri`; a file elsewhere is copied in as
/// `DATA/intermediate.key`, a `pkcs11:` URI recorded in `intermediate.key-uri`).
///
/// Checks, each failure naming its file: the certificate is a CA with keyCertSign and
/// valid now; the key matches it and signs as it; `chain_path` leads from it to a
/// self-signed root, its last certificate (each link: issuer name, signature, the parent
/// a CA allowing the path length, valid now). Then writes `root.pem` (the chain's root)
/// and `intermediate.pem` (the intermediate, then the chain's certificates below the
/// root). A refusal leaves the data directory as it was.
pub fn import_intermediate(
    data_dir: &Path,
    cert_path: &Path,
    chain_path: &Path,
    key: Option<&KeyLocation>,
    pkcs11: &Pkcs11Settings,
) -> Result<Imported, HierarchyError> {
    let paths = HierarchyPaths::new(data_dir);
    let files = IssuerFiles::first(data_dir);
    for existing in [&paths.root_cert, &files.cert, &paths.tls_cert] {
        if existing.exists() {
            return Err(HierarchyError::State(format!(
                "{}: exists, so {} already holds a CA: an intermediate is imported only \
                 into a data directory prepared with `init --intermediate-csr`; nothing \
                 was changed",
                existing.display(),
                data_dir.display()
            )));
        }
    }
    import_into(
        &files,
        &RootOf::WriteTo(paths.root_cert.clone()),
        cert_path,
        chain_path,
        key,
        pkcs11,
    )
}

/// What to do with the root an imported chain ends at.
pub(crate) enum RootOf {
    /// Write it to this file (`init`: the CA's root is the corporate one).
    WriteTo(PathBuf),
    /// It must be this certificate (`issuer add --import`: the CA's own `root.pem`).
    MustBe {
        /// The root certificate's DER.
        der: Vec<u8>,
        /// Its file, for messages.
        path: PathBuf,
    },
}

/// Installs the intermediate at `cert_path` (chain `chain_path`, key `key` or the one
/// the CSR step made) as the issuer at `files`, checking everything
/// [`import_intermediate`] checks; the chain's root is handled as `root` says.
pub(crate) fn import_into(
    files: &IssuerFiles,
    root_of: &RootOf,
    cert_path: &Path,
    chain_path: &Path,
    key: Option<&KeyLocation>,
    pkcs11: &Pkcs11Settings,
) -> Result<Imported, HierarchyError> {
    let data_dir = files.cert.parent().unwrap_or(Path::new("."));
    let invalid = |path: &Path, detail: String| HierarchyError::Invalid {
        path: path.to_owned(),
        detail,
    };

    // The key: given, or the one the CSR step made.
    let location = match key {
        Some(location) => location.clone(),
        None => {
            let location = files.key_location()?;
            if matches!(&location, KeyLocation::File(p) if !p.exists()) {
                return Err(HierarchyError::State(format!(
                    "{}: no intermediate key: make the CSR first (`init --intermediate-csr \
                     FILE` or `issuer add NAME --csr FILE` makes the key), or name the key",
                    files.key.display()
                )));
            }
            location
        }
    };
    let copy_key_from = match &location {
        KeyLocation::File(path) if !same_path(path, &files.key)? => {
            if files.key.exists() || files.key_uri.exists() {
                return Err(HierarchyError::State(format!(
                    "--intermediate-key {}: {} already holds an intermediate key; remove it \
                     to import with another",
                    path.display(),
                    data_dir.display()
                )));
            }
            Some(path.clone())
        }
        KeyLocation::File(_) => None,
        KeyLocation::Pkcs11(uri) => {
            if files.key.exists() {
                return Err(HierarchyError::State(format!(
                    "--intermediate-key {uri}: {} exists; remove it to import with a key in \
                     a token",
                    files.key.display()
                )));
            }
            None
        }
    };
    let record_uri = match &location {
        KeyLocation::Pkcs11(uri) => match std::fs::read_to_string(&files.key_uri) {
            Ok(recorded) if recorded.trim() == uri.to_string() => None,
            Ok(recorded) => {
                return Err(HierarchyError::State(format!(
                    "{}: names another key ({}) than --intermediate-key {uri}",
                    files.key_uri.display(),
                    recorded.trim()
                )))
            }
            Err(_) => Some(uri.to_string()),
        },
        KeyLocation::File(_) => None,
    };

    // The certificate (a bundle's further certificates count as the chain's start).
    let cert_pem = super::read(cert_path)?;
    let mut given = pem_chain(&cert_pem).map_err(|d| invalid(cert_path, d))?;
    if given.is_empty() {
        return Err(invalid(cert_path, "holds no certificate".into()));
    }
    let intermediate_der = given.remove(0);
    check_ca_certificate(&intermediate_der).map_err(|d| invalid(cert_path, d))?;
    let (_, intermediate) = X509Certificate::from_der(&intermediate_der)
        .map_err(|e| invalid(cert_path, format!("not an X.509 certificate: {e}")))?;
    check_valid_now(&intermediate).map_err(|d| invalid(cert_path, d))?;
    let intermediate_key = keys::open(&location, pkcs11)?;
    check_key_matches(&intermediate_der, intermediate_key.as_ref())
        .map_err(|d| invalid(cert_path, format!("{d} ({location})")))?;

    // The chain up to the root.
    let chain_pem = super::read(chain_path)?;
    let mut chain = given;
    chain.extend(pem_chain(&chain_pem).map_err(|d| invalid(chain_path, d))?);
    // A chain file that starts with the intermediate itself is fine.
    while chain.first() == Some(&intermediate_der) {
        chain.remove(0);
    }
    verify_chain(&intermediate, &chain).map_err(|d| invalid(chain_path, d))?;
    let root_der = chain.pop().expect("verify_chain refuses an empty chain");
    let (_, root) = X509Certificate::from_der(&root_der)
        .map_err(|e| invalid(chain_path, format!("not an X.509 certificate: {e}")))?;
    if let RootOf::MustBe { der, path } = root_of {
        if *der != root_der {
            return Err(invalid(
                chain_path,
                format!(
                    "the chain ends at {}, not at this CA's root ({}): clients trusting the \
                     CA would not trust the new intermediate",
                    root.subject(),
                    path.display()
                ),
            ));
        }
    }

    // The key signs as the certificate, in certificates certwright-ca would issue.
    let mut intermediate_pem = pem_encode(&intermediate_der);
    for der in &chain {
        intermediate_pem.push_str(&pem_encode(der));
    }
    trial_issue(&intermediate_der, &intermediate_pem, intermediate_key)
        .map_err(|d| invalid(cert_path, d))?;

    let mut rollback = Rollback::default();
    let result = (|| -> Result<(), HierarchyError> {
        if let Some(source) = &copy_key_from {
            let pem = super::read(source)?;
            KeyPair::from_pem(&pem)
                .map_err(|e| invalid(source, format!("not a usable private key: {e}")))?;
            rollback.write(&files.key, pem.as_bytes(), 0o600)?;
        }
        if let Some(uri) = &record_uri {
            rollback.write(&files.key_uri, format!("{uri}\n").as_bytes(), 0o600)?;
        }
        if let RootOf::WriteTo(root_cert) = root_of {
            rollback.write(root_cert, pem_encode(&root_der).as_bytes(), 0o644)?;
        }
        rollback.write(&files.cert, intermediate_pem.as_bytes(), 0o644)?;
        // What serve will load.
        files.load(pkcs11)?;
        Ok(())
    })();
    match result {
        Ok(()) => rollback.commit(),
        Err(e) => return Err(rollback.fail(e)),
    }
    Ok(Imported {
        root_cert: match root_of {
            RootOf::WriteTo(path) | RootOf::MustBe { path, .. } => path.clone(),
        },
        intermediate_cert: files.cert.clone(),
        intermediate_key: match copy_key_from {
            Some(_) => KeyLocation::File(files.key.clone()),
            None => location,
        },
        root_subject: root.subject().to_string(),
        root_fingerprint: fingerprint(&root_der),
    })
}

/// PEM of one certificate.
fn pem_encode(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn check_valid_now(cert: &X509Certificate<'_>) -> Result<(), String> {
    if cert.validity().is_valid() {
        Ok(())
    } else {
        Err(format!(
            "the certificate ({}) is not valid now: valid from {} to {}",
            cert.subject(),
            cert.validity().not_before,
            cert.validity().not_after
        ))
    }
}

/// The chain `chain` (DER, nearest first) leads from `cert` to a self-signed root, its
/// last certificate: each certificate's issuer is the next one's subject and its
/// signature verifies with that one's key; each parent is a CA with keyCertSign, valid
/// now, whose pathLenConstraint allows the CA certificates below it. The error is a
/// sentence about the chain (for the chain file's name to precede).
pub fn verify_chain(cert: &X509Certificate<'_>, chain: &[Vec<u8>]) -> Result<(), String> {
    if chain.is_empty() {
        return Err(
            "holds no certificate other than the intermediate: the chain must lead up to \
             the root, its last certificate"
                .into(),
        );
    }
    let mut parsed = Vec::with_capacity(chain.len());
    for (i, der) in chain.iter().enumerate() {
        let (_, c) = X509Certificate::from_der(der)
            .map_err(|e| format!("certificate {}: not an X.509 certificate: {e}", i + 1))?;
        parsed.push(c);
    }
    let mut child = cert;
    for (i, parent) in parsed.iter().enumerate() {
        let n = i + 1;
        if child.issuer().as_raw() != parent.subject().as_raw() {
            return Err(format!(
                "the certificate {} is not signed by certificate {n} ({}): it names {} as \
                 its issuer",
                child.subject(),
                parent.subject(),
                child.issuer()
            ));
        }
        if child.verify_signature(Some(parent.public_key())).is_err() {
            return Err(format!(
                "the certificate {} is not signed by certificate {n} ({}): its signature \
                 does not verify with that certificate's key",
                child.subject(),
                parent.subject()
            ));
        }
        check_ca_certificate(parent.as_raw())
            .map_err(|e| format!("certificate {n} ({}): {e}", parent.subject()))?;
        check_valid_now(parent).map_err(|e| format!("certificate {n}: {e}"))?;
        // Below this parent: the intermediate and the chain's certificates before it.
        if let Ok(Some(bc)) = parent.basic_constraints() {
            if let Some(max) = bc.value.path_len_constraint {
                if n as u64 > u64::from(max) {
                    return Err(format!(
                        "certificate {n} ({}) allows {max} CA certificate(s) below it \
                         (pathLenConstraint), but {n} follow it",
                        parent.subject()
                    ));
                }
            }
        }
        child = parent;
    }
    let root = parsed.last().expect("not empty");
    if root.issuer().as_raw() != root.subject().as_raw() || root.verify_signature(None).is_err() {
        return Err(format!(
            "the last certificate ({}, issued by {}) is not a self-signed root: end the \
             chain with the root CA's certificate",
            root.subject(),
            root.issuer()
        ));
    }
    Ok(())
}

/// The last certificate of `chain` (the intermediate, then CAs above it) is signed by
/// the root `root_der`. The error is a sentence about the chain's file.
pub(super) fn check_chains_to_root(chain: &[Vec<u8>], root_der: &[u8]) -> Result<(), String> {
    let top = chain.last().ok_or("holds no certificate")?;
    let (_, top) =
        X509Certificate::from_der(top).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let (_, root) = X509Certificate::from_der(root_der)
        .map_err(|e| format!("the root certificate does not parse: {e}"))?;
    if top.issuer().as_raw() == root.subject().as_raw()
        && top.verify_signature(Some(root.public_key())).is_ok()
    {
        Ok(())
    } else {
        Err(format!(
            "the certificate {} is not signed by the root ({})",
            top.subject(),
            root.subject()
        ))
    }
}

/// Signs a throwaway leaf as the intermediate (`der`, chain `chain_pem`, `key`) the way
/// the CA will, and checks it: its issuer name is the intermediate's subject byte for
/// byte and the signature verifies.
fn trial_issue(der: &[u8], chain_pem: &str, key: Arc<dyn CaKey>) -> Result<(), String> {
    let issuer: Arc<dyn crate::ca::Issuer> =
        Arc::new(LocalIssuer::new(der.to_vec(), chain_pem, key));
    let signer = rcgen_issuer(issuer).map_err(|e| {
        format!("certwright-ca cannot issue as this certificate (its subject or key usage): {e}")
    })?;
    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("a trial signature failed: {e}"))?;
    let mut params = CertificateParams::new(vec!["trial.invalid".to_owned()])
        .map_err(|e| format!("a trial signature failed: {e}"))?;
    params.use_authority_key_identifier_extension = true;
    let leaf = params
        .signed_by(&leaf_key, &signer)
        .map_err(|e| format!("the key did not sign as this certificate: {e}"))?;
    let (_, leaf) = X509Certificate::from_der(leaf.der())
        .map_err(|e| format!("a trial certificate does not parse: {e}"))?;
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    if leaf.issuer().as_raw() != cert.subject().as_raw() {
        return Err(format!(
            "its subject ({}) cannot be written byte for byte as the issuer of the \
             certificates certwright-ca would issue, so clients would not chain them to it",
            cert.subject()
        ));
    }
    leaf.verify_signature(Some(cert.public_key()))
        .map_err(|_| "a signature made with the key does not verify with the certificate".into())
}

// ------------------------------------------------------------ name constraints

/// A DNS subtree as `--permitted-dns` takes it: a host name, or one with a leading dot
/// (subdomains only).
fn valid_dns_subtree(name: &str) -> bool {
    let name = name.strip_prefix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `name` lies in the DNS subtree `base` (RFC 5280 §4.2.1.10: the name itself or a
/// subdomain; a base starting with a dot: subdomains only).
fn dns_within(name: &str, base: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let base = base.trim_end_matches('.').to_ascii_lowercase();
    if base.is_empty() {
        return true;
    }
    match base.strip_prefix('.') {
        Some(parent) => name.ends_with(&format!(".{parent}")),
        None => name == base || name.ends_with(&format!(".{base}")),
    }
}

/// `ip` lies in the subtree `base` (address then mask, 8 or 32 bytes).
fn ip_within(ip: &std::net::IpAddr, base: &[u8]) -> bool {
    let bytes = match ip {
        std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
        std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    if base.len() != bytes.len() * 2 {
        return false;
    }
    let (addr, mask) = base.split_at(bytes.len());
    bytes
        .iter()
        .zip(addr)
        .zip(mask)
        .all(|((b, a), m)| b & m == a & m)
}

fn subtree_ips<'a>(trees: &[x509_parser::extensions::GeneralSubtree<'a>]) -> Vec<&'a [u8]> {
    trees
        .iter()
        .filter_map(|t| match t.base {
            GeneralName::IPAddress(b) => Some(b),
            _ => None,
        })
        .collect()
}

fn subtree_dns<'a>(trees: &[x509_parser::extensions::GeneralSubtree<'a>]) -> Vec<&'a str> {
    trees
        .iter()
        .filter_map(|t| match t.base {
            GeneralName::DNSName(d) => Some(d),
            _ => None,
        })
        .collect()
}

/// A subtree as a person writes it: `example.com`, `10.0.0.0/255.0.0.0`.
fn describe_subtree(base: &GeneralName<'_>) -> String {
    match base {
        GeneralName::DNSName(d) => (*d).to_owned(),
        GeneralName::IPAddress(b) if b.len() == 8 || b.len() == 32 => {
            let (addr, mask) = b.split_at(b.len() / 2);
            match (super::ip_from_bytes(addr), super::ip_from_bytes(mask)) {
                (Some(a), Some(m)) => format!("{a}/{m}"),
                _ => base.to_string(),
            }
        }
        other => other.to_string(),
    }
}

/// The name constraints of the CA certificate `ca` allow every one of `names` (DNS
/// names and IP addresses; RFC 5280 §4.2.1.10). The error lists those refused and what
/// is permitted.
pub fn names_permitted(ca: &X509Certificate<'_>, names: &[String]) -> Result<(), String> {
    let Ok(Some(nc)) = ca.name_constraints() else {
        return Ok(());
    };
    let nc = &nc.value;
    let permitted = nc.permitted_subtrees.as_deref().unwrap_or_default();
    let excluded = nc.excluded_subtrees.as_deref().unwrap_or_default();
    let allowed = |name: &str| -> bool {
        match name.parse::<std::net::IpAddr>() {
            Ok(ip) => {
                let p = subtree_ips(permitted);
                (p.is_empty() || p.iter().any(|b| ip_within(&ip, b)))
                    && !subtree_ips(excluded).iter().any(|b| ip_within(&ip, b))
            }
            Err(_) => {
                let p = subtree_dns(permitted);
                (p.is_empty() || p.iter().any(|b| dns_within(name, b)))
                    && !subtree_dns(excluded).iter().any(|b| dns_within(name, b))
            }
        }
    };
    let refused: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| !allowed(n))
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    let described: Vec<String> = permitted
        .iter()
        .map(|t| describe_subtree(&t.base))
        .collect();
    Err(format!(
        "name(s) {} (permitted: {})",
        refused.join(", "),
        if described.is_empty() {
            "see its excluded subtrees".to_owned()
        } else {
            described.join(", ")
        }
    ))
}

/// `path` is inside `dir` (both resolved; `path` need not exist, its directory must).
fn is_inside(dir: &Path, path: &Path) -> Result<bool, HierarchyError> {
    let dir = resolve(dir)?;
    Ok(resolve_file(path)?.starts_with(dir))
}

/// `a` and `b` name the same file (their directories resolved; the files need not
/// exist).
fn same_path(a: &Path, b: &Path) -> Result<bool, HierarchyError> {
    Ok(resolve_file(a)? == resolve_file(b)?)
}

fn resolve(dir: &Path) -> Result<PathBuf, HierarchyError> {
    std::fs::canonicalize(dir).map_err(|error| HierarchyError::Io {
        path: dir.to_owned(),
        error,
    })
}

/// `path` with its directory resolved.
fn resolve_file(path: &Path) -> Result<PathBuf, HierarchyError> {
    let absolute = std::path::absolute(path).map_err(|error| HierarchyError::Io {
        path: path.to_owned(),
        error,
    })?;
    let (Some(parent), Some(name)) = (absolute.parent(), absolute.file_name()) else {
        return Err(HierarchyError::Usage(format!(
            "{}: not a file name",
            path.display()
        )));
    };
    Ok(resolve(parent)?.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::Hierarchy;
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

    fn none() -> Pkcs11Settings {
        Pkcs11Settings::default()
    }

    /// Every file under `dir` with its bytes (to show a refusal changed nothing).
    fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
        out
    }

    fn parse(path: &Path) -> Vec<Vec<u8>> {
        pem_chain(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn init_makes_what_the_flags_say() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = InitOptions::new(CaKeyType::Ec256, "Example Corp");
        opts.root_key_type = CaKeyType::Ec384;
        opts.root_cn = Some("Example Root".into());
        opts.intermediate_cn = Some("Example Issuing CA".into());
        opts.root_days = 3650;
        opts.intermediate_days = 400;
        opts.path_len = 1;
        opts.permitted_dns = vec!["example.test".into(), ".corp.test".into()];
        let created = create(dir.path(), &opts, &none()).unwrap();
        assert!(!created.root_offline);
        assert_eq!(
            created.root_key,
            KeyLocation::File(dir.path().join("root.key"))
        );

        let root_der = parse(&created.root_cert).remove(0);
        let (_, root) = X509Certificate::from_der(&root_der).unwrap();
        assert_eq!(
            root.subject().to_string(),
            "O=Example Corp, CN=Example Root"
        );
        assert_eq!(
            root.public_key().algorithm.algorithm.to_id_string(),
            "1.2.840.10045.2.1"
        );
        let days = |c: &X509Certificate<'_>| {
            (c.validity().not_after.timestamp() - c.validity().not_before.timestamp()) / 86400
        };
        assert_eq!(days(&root), 3650);

        let inter_der = parse(&created.intermediate_cert).remove(0);
        let (_, inter) = X509Certificate::from_der(&inter_der).unwrap();
        assert_eq!(
            inter.subject().to_string(),
            "O=Example Corp, CN=Example Issuing CA"
        );
        assert_eq!(days(&inter), 400);
        let bc = inter.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca);
        assert_eq!(bc.path_len_constraint, Some(1));
        let nc = inter.name_constraints().unwrap().unwrap();
        assert!(nc.critical);
        let permitted: Vec<String> = nc
            .value
            .permitted_subtrees
            .as_ref()
            .unwrap()
            .iter()
            .map(|t| describe_subtree(&t.base))
            .collect();
        assert_eq!(permitted, ["example.test", ".corp.test"]);
        verify_chain(&inter, &[root_der]).unwrap();
        for key in ["root.key", "intermediate.key"] {
            let mode = std::fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }

        // A second init changes nothing.
        let before = snapshot(dir.path());
        let err = create(dir.path(), &opts, &none())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("already holds a CA"), "{err}");
        assert!(err.contains("root.pem"), "{err}");
        assert_eq!(snapshot(dir.path()), before);
    }

    #[test]
    fn an_offline_root_key_stays_out_of_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let mut opts = InitOptions::new(CaKeyType::Ec256, "certwright");
        opts.root_offline = true;

        // Refused: no key location, or one inside the data directory.
        let err = create(&data, &opts, &none()).err().unwrap().to_string();
        assert!(err.contains("--root-offline needs --root-key"), "{err}");
        opts.root_key = Some(KeyLocation::File(data.join("sub").join("..").join("r.key")));
        std::fs::create_dir(data.join("sub")).unwrap();
        let err = create(&data, &opts, &none()).err().unwrap().to_string();
        assert!(err.contains("outside the data directory"), "{err}");
        // And a key file elsewhere without --root-offline.
        let mut online = InitOptions::new(CaKeyType::Ec256, "certwright");
        online.root_key = Some(KeyLocation::File(elsewhere.path().join("root.key")));
        let err = create(&data, &online, &none()).err().unwrap().to_string();
        assert!(err.contains("add --root-offline"), "{err}");
        assert!(snapshot(&data).is_empty());

        let root_key = elsewhere.path().join("root.key");
        opts.root_key = Some(KeyLocation::File(root_key.clone()));
        let created = create(&data, &opts, &none()).unwrap();
        assert!(created.root_offline);
        let mode = std::fs::metadata(&root_key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!data.join("root.key").exists());
        assert!(!data.join("root.key-uri").exists());

        // serve's load works without it, and the root key signed the intermediate.
        let h = Hierarchy::load_or_create(
            &data,
            CaKeyType::Ec256,
            "certwright",
            &["localhost".into()],
            &none(),
        )
        .unwrap();
        let key = keys::open(&KeyLocation::File(root_key), &none()).unwrap();
        check_key_matches(&h.root_der, key.as_ref()).unwrap();
        assert!(!data.join("root.key").exists());
    }

    #[test]
    fn a_failed_init_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = InitOptions::new(CaKeyType::Ec256, "certwright");
        // The root key is made; the intermediate's, in a token nobody configured, is not.
        opts.intermediate_key =
            Some(KeyLocation::parse("pkcs11:token=none;object=intermediate").unwrap());
        assert!(create(dir.path(), &opts, &none()).is_err());
        assert!(
            snapshot(dir.path()).is_empty(),
            "{:?}",
            snapshot(dir.path())
        );

        let mut opts = InitOptions::new(CaKeyType::Ec256, "certwright");
        opts.intermediate_days = opts.root_days + 1;
        let err = create(dir.path(), &opts, &none())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("outlive the root"), "{err}");
        opts.intermediate_days = 10;
        opts.permitted_dns = vec!["exa mple.test".into()];
        let err = create(dir.path(), &opts, &none())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--permitted-dns"), "{err}");
        assert!(snapshot(dir.path()).is_empty());
    }

    /// A root and intermediate of "another CA", made with rcgen: the root key, and the
    /// signed intermediate for `csr_key`'s public key.
    struct OtherCa {
        root_pem: String,
        root: rcgen::Issuer<'static, KeyPair>,
    }

    impl OtherCa {
        fn new(cn: &str) -> Self {
            let key = KeyPair::generate().unwrap();
            let params = ca_params(cn, "Corp", 3650, None);
            let cert = params.self_signed(&key).unwrap();
            Self {
                root_pem: cert.pem(),
                root: rcgen::Issuer::new(params, key),
            }
        }

        /// Signs the CSR at `csr` with `ca`; returns the certificate's PEM.
        fn sign(&self, csr: &Path, ca: bool) -> String {
            let pem = std::fs::read_to_string(csr).unwrap();
            let mut req = rcgen::CertificateSigningRequestParams::from_pem(&pem).unwrap();
            if ca {
                req.params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
                req.params.key_usages =
                    vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            } else {
                req.params.is_ca = IsCa::ExplicitNoCa;
                req.params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            }
            req.params.use_authority_key_identifier_extension = true;
            req.signed_by(&self.root).unwrap().pem()
        }
    }

    #[test]
    fn own_intermediate_csr_then_import() {
        let dir = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let data = dir.path();
        let opts = InitOptions::new(CaKeyType::Ec256, "Example Corp");
        let csr = work.path().join("intermediate.csr");
        let written = write_intermediate_csr(data, &opts, &csr, &none()).unwrap();
        assert_eq!(
            written.key,
            KeyLocation::File(data.join("intermediate.key"))
        );
        let pem = std::fs::read_to_string(&csr).unwrap();
        assert!(
            pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
            "{pem}"
        );
        // A second CSR step (or an init) is refused.
        let err = write_intermediate_csr(data, &opts, &csr, &none())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--import-intermediate"), "{err}");

        let corp = OtherCa::new("Corp Root");
        let cert = work.path().join("intermediate.crt");
        let chain = work.path().join("chain.pem");
        std::fs::write(&chain, &corp.root_pem).unwrap();
        let before = snapshot(data);

        // Refused, each naming its file, nothing written: a non-CA certificate ...
        std::fs::write(&cert, corp.sign(&csr, false)).unwrap();
        let err = import_intermediate(data, &cert, &chain, None, &none())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("intermediate.crt: the certificate is not a CA"),
            "{err}"
        );
        assert_eq!(snapshot(data), before);
        // ... another key's certificate ...
        let other_dir = tempfile::tempdir().unwrap();
        let other_csr = work.path().join("other.csr");
        write_intermediate_csr(other_dir.path(), &opts, &other_csr, &none()).unwrap();
        std::fs::write(&cert, corp.sign(&other_csr, true)).unwrap();
        let err = import_intermediate(data, &cert, &chain, None, &none())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("intermediate.crt: the private key does not match the certificate"),
            "{err}"
        );
        assert_eq!(snapshot(data), before);
        // ... a chain to another root (same name, other key) ...
        std::fs::write(&cert, corp.sign(&csr, true)).unwrap();
        let impostor = OtherCa::new("Corp Root");
        std::fs::write(&chain, &impostor.root_pem).unwrap();
        let err = import_intermediate(data, &cert, &chain, None, &none())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("chain.pem: the certificate"), "{err}");
        assert!(err.contains("is not signed by certificate 1"), "{err}");
        assert_eq!(snapshot(data), before);
        // ... a chain that ends short of a self-signed root, or is empty.
        std::fs::write(&chain, "").unwrap();
        let err = import_intermediate(data, &cert, &chain, None, &none())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("chain.pem: holds no certificate"), "{err}");
        assert_eq!(snapshot(data), before);

        // The right chain: imported.
        std::fs::write(&chain, &corp.root_pem).unwrap();
        let imported = import_intermediate(data, &cert, &chain, None, &none()).unwrap();
        assert_eq!(imported.root_subject, "O=Corp, CN=Corp Root");
        assert_eq!(
            std::fs::read_to_string(&imported.root_cert).unwrap(),
            pem_encode(&pem_chain(&corp.root_pem).unwrap()[0])
        );
        assert_eq!(parse(&imported.intermediate_cert).len(), 1);
        // Imported twice: refused.
        let err = import_intermediate(data, &cert, &chain, None, &none())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("already holds a CA"), "{err}");

        let h = Hierarchy::load_or_create(
            data,
            CaKeyType::Ec256,
            "ignored",
            &["localhost".into()],
            &none(),
        )
        .unwrap();
        assert_eq!(
            h.root_pem,
            std::fs::read_to_string(&imported.root_cert).unwrap()
        );
        let tls = pem_chain(&h.tls_cert_pem).unwrap();
        let (_, leaf) = X509Certificate::from_der(&tls[0]).unwrap();
        let (_, inter) = X509Certificate::from_der(&h.intermediate_der).unwrap();
        assert!(super::super::issued_by(&leaf, &inter));
    }

    #[test]
    fn a_chain_through_a_second_intermediate_and_path_lengths() {
        let corp = OtherCa::new("Corp Root");
        // Corp Root -> Policy CA (pathlen 1) -> ours.
        let policy_key = KeyPair::generate().unwrap();
        let policy_params = ca_params("Policy CA", "Corp", 1000, Some(1));
        let policy = policy_params.signed_by(&policy_key, &corp.root).unwrap();
        let policy_issuer = rcgen::Issuer::new(policy_params, policy_key);
        let ours_key = KeyPair::generate().unwrap();
        let ours = ca_params("Ours", "Corp", 500, Some(0))
            .signed_by(&ours_key, &policy_issuer)
            .unwrap();
        let (_, ours_cert) = X509Certificate::from_der(ours.der()).unwrap();
        let root_der = pem_chain(&corp.root_pem).unwrap().remove(0);
        verify_chain(&ours_cert, &[policy.der().to_vec(), root_der.clone()]).unwrap();
        // Out of order, or missing the middle: refused.
        let err = verify_chain(&ours_cert, std::slice::from_ref(&root_der)).unwrap_err();
        assert!(err.contains("not signed by certificate 1"), "{err}");
        let err = verify_chain(&ours_cert, &[policy.der().to_vec()]).unwrap_err();
        assert!(err.contains("not a self-signed root"), "{err}");

        // A root that allows no CA below it.
        let key = KeyPair::generate().unwrap();
        let mut strict = ca_params("Strict Root", "Corp", 3650, Some(0));
        strict.use_authority_key_identifier_extension = false;
        let strict_cert = strict.self_signed(&key).unwrap();
        let strict = rcgen::Issuer::new(strict, key);
        let ours = ca_params("Ours", "Corp", 500, Some(0))
            .signed_by(&ours_key, &strict)
            .unwrap();
        let (_, ours_cert) = X509Certificate::from_der(ours.der()).unwrap();
        let err = verify_chain(&ours_cert, &[strict_cert.der().to_vec()]).unwrap_err();
        assert!(err.contains("pathLenConstraint"), "{err}");
    }

    #[test]
    fn name_constraint_matching() {
        assert!(dns_within("example.test", "example.test"));
        assert!(dns_within("a.b.Example.test.", "example.test"));
        assert!(!dns_within("badexample.test", "example.test"));
        assert!(!dns_within("example.test", ".example.test"));
        assert!(dns_within("a.example.test", ".example.test"));
        assert!(ip_within(
            &"10.1.2.3".parse().unwrap(),
            &[10, 0, 0, 0, 255, 0, 0, 0]
        ));
        assert!(!ip_within(
            &"11.1.2.3".parse().unwrap(),
            &[10, 0, 0, 0, 255, 0, 0, 0]
        ));
        assert!(valid_dns_subtree(".corp.test") && !valid_dns_subtree("a..b"));
    }
}
