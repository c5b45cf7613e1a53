//! The state directory: accounts per CA and certificates per name.
//!
//! ```text
//! STATE/
//!   accounts/<ca-slug>/account.json     directory URL, account URL, contacts
//!   accounts/<ca-slug>/account.key      PKCS#8 PEM, 0600
//!   certs/<name>/cert.pem chain.pem fullchain.pem privkey.pem   symlinks to current/…
//!   certs/<name>/current                symlink to archive/<n>, the version in use
//!   certs/<name>/archive/<n>/…          every version, the current one included
//!   certs/<name>/meta.json
//!   certs/<name>/.lock                  held while a run works on this certificate
//! ```
//! Every write is atomic (temporary file, fsync, rename, fsync of the directory). A new
//! version is written whole into its own `archive/<n>/` first and then made current by
//! replacing the one `current` symlink, so the four files change together: a crash at
//! any moment leaves either the old set or the new one, never a key that does not fit
//! its certificate.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::client::AccountCredentials;
use crate::error::{Error, Result};
use crate::solver::SolverSpec;

/// Writes `data` to `path` atomically with permissions `mode`.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Error::Config(format!("{} is not a file path", path.display())))?;
    let mut rnd = [0u8; 6];
    aws_lc_rs::rand::fill(&mut rnd).expect("the system RNG works");
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        certwright_proto::b64::encode(rnd)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed the mode; set it exactly.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| Error::io(path, e))
}

fn create_dir_private(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(dir, e))
}

/// A file-system name for a CA's directory URL (`acme-v02.example.org_directory`).
pub fn ca_slug(directory_url: &str) -> String {
    let rest = directory_url
        .split_once("://")
        .map_or(directory_url, |(_, r)| r);
    let slug: String = rest
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    slug.trim_matches('_').to_owned()
}

/// A certificate name usable as a directory name (`*.example.org` → `_wildcard.example.org`).
pub fn cert_dir_name(name: &str) -> Result<String> {
    let n = name.replace('*', "_wildcard");
    if n.is_empty()
        || n.starts_with('.')
        || !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return Err(Error::Config(format!(
            "{name:?} cannot name a certificate (letters, digits, . - _ only)"
        )));
    }
    Ok(n)
}

/// What is kept about an account besides its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    /// The CA's directory URL.
    pub directory_url: String,
    /// The account URL.
    pub url: String,
    /// Contacts as registered.
    #[serde(default)]
    pub contact: Vec<String>,
    /// `valid` or `deactivated` as last seen.
    pub status: String,
}

/// What is kept about a certificate (meta.json): how to renew it and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertMeta {
    /// The names in the certificate.
    pub names: Vec<String>,
    /// CA directory URLs, tried in this order.
    pub servers: Vec<String>,
    /// The CA that issued the current certificate.
    pub issued_by: String,
    /// Key type name (`ec256`, …).
    pub key_type: String,
    /// Keep the certificate key across renewals.
    #[serde(default)]
    pub reuse_key: bool,
    /// How challenges are answered.
    pub solver: SolverSpec,
    /// Requested profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Preferred chain (issuer common name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_chain: Option<String>,
    /// Contacts for new accounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email: Vec<String>,
    /// Issuer common name.
    pub issuer: String,
    /// RFC 3339.
    pub not_before: String,
    /// RFC 3339.
    pub not_after: String,
    /// Serial, hex.
    pub serial: String,
    /// ARI certificate ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ari_id: Option<String>,
    /// When to renew (RFC 3339), chosen at issuance or from the CA's ARI window. Never
    /// acted on later than the safety floor ([`crate::renewal::latest_renewal`]).
    pub renew_at: String,
    /// The CA's ARI window `renew_at` was drawn from (start, end; RFC 3339): the time is
    /// drawn again only when the window moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ari_window: Option<(String, String)>,
    /// Consecutive failed renewal attempts.
    #[serde(default)]
    pub failures: u32,
    /// Earliest next attempt after a failure (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<String>,
    /// The last failure, for `list` and logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Whether the certificate was revoked through certwright.
    #[serde(default)]
    pub revoked: bool,
    /// The CSR was supplied by the user (no privkey.pem is kept).
    #[serde(default)]
    pub external_csr: bool,
    /// Command run after each issuance or renewal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_hook: Option<String>,
    /// Hook run before each issuance or renewal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_hook: Option<String>,
    /// Hook run after the CA work of each issuance or renewal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_hook: Option<String>,
    /// Endpoints (`host:port`) checked to serve the new certificate after deployment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verify: Vec<String>,
    /// When the current certificate was obtained (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    /// Set while the deploy hook (or the verification after it) of the current
    /// certificate has not succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_failure: Option<DeployFailure>,
}

/// A deploy hook that failed for the current certificate: retried with backoff until it
/// succeeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployFailure {
    /// Consecutive failed runs.
    pub failures: u32,
    /// Earliest next run (RFC 3339).
    pub retry_at: String,
    /// What the last run reported.
    pub error: String,
}

impl CertMeta {
    /// Metadata for a certificate that has never been issued: how to get it, and no
    /// certificate (empty serial, dates and issuer).
    pub fn never_issued(
        spec_names: Vec<String>,
        servers: Vec<String>,
        key_type: &str,
        solver: SolverSpec,
    ) -> Self {
        Self {
            names: spec_names,
            servers,
            issued_by: String::new(),
            key_type: key_type.to_owned(),
            reuse_key: false,
            solver,
            profile: None,
            preferred_chain: None,
            email: Vec::new(),
            issuer: String::new(),
            not_before: String::new(),
            not_after: String::new(),
            serial: String::new(),
            ari_id: None,
            renew_at: String::new(),
            ari_window: None,
            failures: 0,
            retry_at: None,
            last_error: None,
            revoked: false,
            external_csr: false,
            deploy_hook: None,
            verify: Vec::new(),
            pre_hook: None,
            post_hook: None,
            last_success: None,
            deploy_failure: None,
        }
    }

    /// Whether a certificate was ever issued for this entry.
    pub fn is_issued(&self) -> bool {
        !self.serial.is_empty()
    }

    /// The validity of the current certificate, when there is one.
    pub fn validity(&self) -> Option<(time::OffsetDateTime, time::OffsetDateTime)> {
        Some((
            crate::renewal::parse_rfc3339(&self.not_before)?,
            crate::renewal::parse_rfc3339(&self.not_after)?,
        ))
    }

    /// The lifetime of the current certificate, when there is one.
    pub fn lifetime(&self) -> Option<time::Duration> {
        self.validity().map(|(nb, na)| na - nb)
    }

    /// Whether the last issuance, renewal or deploy failed.
    pub fn has_failure(&self) -> bool {
        self.failures > 0 || self.deploy_failure.is_some()
    }
}

/// The files of one issued certificate version.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// Leaf PEM.
    pub cert: String,
    /// Intermediates PEM.
    pub chain: String,
    /// Leaf and intermediates.
    pub fullchain: String,
    /// Private key PEM (absent for a user CSR).
    pub privkey: Option<String>,
}

/// Paths of a certificate's stable files (given to deploy hooks).
#[derive(Debug, Clone)]
pub struct CertPaths {
    /// The certificate's directory.
    pub dir: PathBuf,
    /// cert.pem.
    pub cert: PathBuf,
    /// chain.pem.
    pub chain: PathBuf,
    /// fullchain.pem.
    pub fullchain: PathBuf,
    /// privkey.pem.
    pub privkey: PathBuf,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A held lock; released on drop.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

fn lock_file(path: &Path) -> Result<Lock> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Lock { _file: file }),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(Error::Locked(path.display().to_string())),
        Err(e) => Err(Error::io(path, e.into())),
    }
}

impl Store {
    /// Opens (and creates, 0700) the state directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        create_dir_private(&root)?;
        create_dir_private(&root.join("accounts"))?;
        create_dir_private(&root.join("certs"))?;
        Ok(Self { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn account_dir(&self, directory_url: &str) -> PathBuf {
        self.root.join("accounts").join(ca_slug(directory_url))
    }

    /// Locks the account of a CA (creation, rollover) against other runs.
    pub fn lock_account(&self, directory_url: &str) -> Result<Lock> {
        let dir = self.account_dir(directory_url);
        create_dir_private(&dir)?;
        lock_file(&dir.join(".lock"))
    }

    /// The stored account for a CA.
    pub fn load_account(
        &self,
        directory_url: &str,
    ) -> Result<Option<(AccountRecord, AccountCredentials)>> {
        let dir = self.account_dir(directory_url);
        let json = dir.join("account.json");
        let text = match std::fs::read_to_string(&json) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&json, e)),
        };
        let record: AccountRecord = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", json.display())))?;
        let key_path = dir.join("account.key");
        let pem = std::fs::read_to_string(&key_path).map_err(|e| Error::io(&key_path, e))?;
        let key_pkcs8 = pem_decode(&pem, "PRIVATE KEY").ok_or_else(|| {
            Error::Config(format!("{} is not a PKCS#8 PEM key", key_path.display()))
        })?;
        let creds = AccountCredentials {
            url: record.url.clone(),
            key_pkcs8,
        };
        Ok(Some((record, creds)))
    }

    /// Stores an account (key 0600).
    pub fn save_account(&self, record: &AccountRecord, creds: &AccountCredentials) -> Result<()> {
        let dir = self.account_dir(&record.directory_url);
        create_dir_private(&dir)?;
        write_atomic(
            &dir.join("account.key"),
            pem_encode("PRIVATE KEY", &creds.key_pkcs8).as_bytes(),
            0o600,
        )?;
        let json = serde_json::to_vec_pretty(record).expect("serializes");
        write_atomic(&dir.join("account.json"), &json, 0o644)
    }

    /// The directory of a certificate.
    pub fn cert_dir(&self, name: &str) -> Result<PathBuf> {
        Ok(self.root.join("certs").join(cert_dir_name(name)?))
    }

    /// The stable paths of a certificate.
    pub fn cert_paths(&self, name: &str) -> Result<CertPaths> {
        let dir = self.cert_dir(name)?;
        Ok(CertPaths {
            cert: dir.join("cert.pem"),
            chain: dir.join("chain.pem"),
            fullchain: dir.join("fullchain.pem"),
            privkey: dir.join("privkey.pem"),
            dir,
        })
    }

    /// Locks a certificate for this run; another run gets [`Error::Locked`].
    pub fn lock_cert(&self, name: &str) -> Result<Lock> {
        let dir = self.cert_dir(name)?;
        create_dir_private(&dir)?;
        lock_file(&dir.join(".lock"))
    }

    /// The metadata of a certificate, if it exists.
    pub fn load_meta(&self, name: &str) -> Result<Option<CertMeta>> {
        let path = self.cert_dir(name)?.join("meta.json");
        match std::fs::read_to_string(&path) {
            Ok(t) => serde_json::from_str(&t)
                .map(Some)
                .map_err(|e| Error::Config(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Writes the metadata of a certificate.
    pub fn save_meta(&self, name: &str, meta: &CertMeta) -> Result<()> {
        let dir = self.cert_dir(name)?;
        create_dir_private(&dir)?;
        let json = serde_json::to_vec_pretty(meta).expect("serializes");
        write_atomic(&dir.join("meta.json"), &json, 0o644)
    }

    /// The current private key PEM of a certificate.
    pub fn load_privkey(&self, name: &str) -> Result<Option<String>> {
        let path = self.cert_paths(name)?.privkey;
        match std::fs::read_to_string(&path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// The current fullchain PEM of a certificate.
    pub fn load_fullchain(&self, name: &str) -> Result<Option<String>> {
        let path = self.cert_paths(name)?.fullchain;
        match std::fs::read_to_string(&path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Installs a new version: written whole into a fresh `archive/<n>/`, then made
    /// current by atomically replacing the `current` symlink; the metadata follows. (A
    /// crash before the swap leaves the old version in use; one after it, before the
    /// metadata, leaves metadata about the old certificate, so the next run renews again.)
    pub fn save_certificate(&self, name: &str, files: &CertFiles, meta: &CertMeta) -> Result<()> {
        let paths = self.cert_paths(name)?;
        self.install_version(&paths, files)?;
        self.save_meta(name, meta)
    }

    /// Writes `files` as a new version and makes it current (see `save_certificate`).
    fn install_version(&self, paths: &CertPaths, files: &CertFiles) -> Result<()> {
        create_dir_private(&paths.dir)?;
        let archive = paths.dir.join("archive");
        create_dir_private(&archive)?;
        let current = paths.dir.join("current");
        if !is_symlink(&current) && paths.fullchain.exists() {
            self.adopt_unversioned(paths, &archive)?;
        }
        let n = next_version(&archive)?;
        let slot = archive.join(n.to_string());
        create_dir_private(&slot)?;
        if let Some(key) = &files.privkey {
            write_atomic(&slot.join("privkey.pem"), key.as_bytes(), 0o600)?;
        }
        write_atomic(&slot.join("cert.pem"), files.cert.as_bytes(), 0o644)?;
        write_atomic(&slot.join("chain.pem"), files.chain.as_bytes(), 0o644)?;
        write_atomic(
            &slot.join("fullchain.pem"),
            files.fullchain.as_bytes(),
            0o644,
        )?;
        replace_symlink(&current, Path::new("archive").join(n.to_string()).as_path())?;
        link_stable_paths(paths)
    }

    /// Turns the regular files of an install from before versioned directories into a
    /// version of its own, made current, with the stable paths linked to it. The content
    /// at every stable path is the same before and after.
    fn adopt_unversioned(&self, paths: &CertPaths, archive: &Path) -> Result<()> {
        let n = next_version(archive)?;
        let slot = archive.join(n.to_string());
        create_dir_private(&slot)?;
        for (from, mode) in [
            (&paths.cert, 0o644),
            (&paths.chain, 0o644),
            (&paths.fullchain, 0o644),
            (&paths.privkey, 0o600),
        ] {
            if let Ok(data) = std::fs::read(from) {
                write_atomic(
                    &slot.join(from.file_name().expect("a file name")),
                    &data,
                    mode,
                )?;
            }
        }
        replace_symlink(
            &paths.dir.join("current"),
            Path::new("archive").join(n.to_string()).as_path(),
        )?;
        link_stable_paths(paths)
    }

    /// Stops managing a certificate: removes its directory (every version, the key and
    /// the metadata), holding its lock while doing so.
    pub fn delete(&self, name: &str) -> Result<bool> {
        let dir = self.cert_dir(name)?;
        if !dir.exists() {
            return Ok(false);
        }
        let _lock = self.lock_cert(name)?;
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(true)
    }

    /// Names of all stored certificates with their metadata, sorted by name.
    pub fn list(&self) -> Result<Vec<(String, CertMeta)>> {
        let dir = self.root.join("certs");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if let Ok(Some(meta)) = self.load_meta(&name) {
                out.push((name, meta));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// The next free version number under `archive/`.
fn next_version(archive: &Path) -> Result<u32> {
    Ok(std::fs::read_dir(archive)
        .map_err(|e| Error::io(archive, e))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .map_or(1, |m| m + 1))
}

/// Points `link` at `target` atomically: a new symlink renamed over the old entry, then
/// the directory fsynced.
fn replace_symlink(link: &Path, target: &Path) -> Result<()> {
    let dir = link.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        link.file_name().and_then(|n| n.to_str()).unwrap_or("link")
    ));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, link).map_err(|e| Error::io(link, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Makes each stable path (`fullchain.pem`, …) a symlink to `current/<file>`.
fn link_stable_paths(paths: &CertPaths) -> Result<()> {
    for path in [&paths.cert, &paths.chain, &paths.fullchain, &paths.privkey] {
        let file = path.file_name().expect("a file name");
        let target = Path::new("current").join(file);
        if std::fs::read_link(path).is_ok_and(|t| t == target) {
            continue;
        }
        replace_symlink(path, &target)?;
    }
    Ok(())
}

/// PEM-encodes DER with `label`.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Decodes the first PEM block with `label`.
pub fn pem_decode(pem: &str, label: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let body: String = pem[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_modes_and_pem() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp left"
        );
        let pem = pem_encode("PRIVATE KEY", &[1, 2, 3, 250]);
        assert_eq!(pem_decode(&pem, "PRIVATE KEY").unwrap(), [1, 2, 3, 250]);
        assert_eq!(pem_decode(&pem, "CERTIFICATE"), None);
    }

    #[test]
    fn names_and_slugs() {
        assert_eq!(
            ca_slug("https://localhost:14000/dir"),
            "localhost_14000_dir"
        );
        assert_eq!(cert_dir_name("*.a.test").unwrap(), "_wildcard.a.test");
        assert!(cert_dir_name("../etc").is_err());
        assert!(cert_dir_name("a/b").is_err());
    }

    fn files(tag: &str, key: bool) -> CertFiles {
        CertFiles {
            cert: format!("cert {tag}"),
            chain: format!("chain {tag}"),
            fullchain: format!("cert {tag}chain {tag}"),
            privkey: key.then(|| format!("key {tag}")),
        }
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn versions_are_swapped_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let paths = store.cert_paths("a.test").unwrap();
        store.install_version(&paths, &files("one", true)).unwrap();
        store.install_version(&paths, &files("two", true)).unwrap();
        assert_eq!(read(&paths.fullchain), "cert twochain two");
        assert_eq!(read(&paths.privkey), "key two");
        assert_eq!(read(&paths.dir.join("archive/1/privkey.pem")), "key one");
        assert_eq!(
            std::fs::read_link(paths.dir.join("current")).unwrap(),
            Path::new("archive/2")
        );
        let mode = std::fs::metadata(&paths.privkey)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        // A crash while a third version is being written (before the swap): the stable
        // paths still show version two, whole; the next install goes past the debris.
        let slot = paths.dir.join("archive/3");
        std::fs::create_dir(&slot).unwrap();
        std::fs::write(slot.join("privkey.pem"), "key half").unwrap();
        assert_eq!(read(&paths.privkey), "key two");
        assert_eq!(read(&paths.cert), "cert two");
        store.install_version(&paths, &files("four", true)).unwrap();
        assert_eq!(read(&paths.privkey), "key four");
        assert_eq!(read(&paths.chain), "chain four");
        // A CSR-based certificate has no key file.
        store.install_version(&paths, &files("csr", false)).unwrap();
        assert!(!paths.privkey.exists());
        assert_eq!(read(&paths.cert), "cert csr");
    }

    #[test]
    fn an_unversioned_install_is_adopted_without_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let paths = store.cert_paths("old.test").unwrap();
        std::fs::create_dir_all(&paths.dir).unwrap();
        for (p, v) in [
            (&paths.cert, "cert old"),
            (&paths.chain, "chain old"),
            (&paths.fullchain, "cert oldchain old"),
            (&paths.privkey, "key old"),
        ] {
            std::fs::write(p, v).unwrap();
        }
        store.install_version(&paths, &files("new", true)).unwrap();
        assert_eq!(read(&paths.privkey), "key new");
        assert_eq!(read(&paths.dir.join("archive/1/privkey.pem")), "key old");
        assert_eq!(
            read(&paths.dir.join("archive/1/fullchain.pem")),
            "cert oldchain old"
        );
        assert!(std::fs::symlink_metadata(&paths.fullchain)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("state")).unwrap();
        let held = store.lock_cert("a.test").unwrap();
        assert!(matches!(store.lock_cert("a.test"), Err(Error::Locked(_))));
        drop(held);
        store.lock_cert("a.test").unwrap();
    }

    #[test]
    fn account_round_trip_with_private_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let url = "https://ca.test/dir";
        assert!(store.load_account(url).unwrap().is_none());
        let rec = AccountRecord {
            directory_url: url.into(),
            url: "https://ca.test/acct/1".into(),
            contact: vec![],
            status: "valid".into(),
        };
        let creds = AccountCredentials {
            url: rec.url.clone(),
            key_pkcs8: vec![9; 40],
        };
        store.save_account(&rec, &creds).unwrap();
        assert_eq!(store.load_account(url).unwrap().unwrap(), (rec, creds));
        let key = dir.path().join("accounts/ca.test_dir/account.key");
        let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
