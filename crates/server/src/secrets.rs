//! Secrets at rest: the key-encryption key (KEK) that seals EAB HMAC keys in the database,
//! and the start-up checks of the data directory's file modes.
//!
//! An EAB HMAC key is stored as `v1:` + base64url(nonce ‖ AES-256-GCM ciphertext ‖ tag),
//! with a random 96-bit nonce per key and the key id as associated data (a ciphertext
//! copied onto another key id does not decrypt). The row also names the KEK that sealed
//! it (`eab_keys.kek_id`, a one-way fingerprint of the KEK), so a wrong KEK is told apart
//! from a damaged ciphertext, and a row without one is a plaintext key an older version
//! wrote: start-up (and `certwright-ca migrate`) encrypts those (`app::eab_kek`, which
//! attaches the KEK to the store: this module does not import the store).
//!
//! The KEK comes from, in this order: the environment variable [`KEK_ENV`] (base64url of
//! 32 bytes), the file named by `eab_kek_file` in the configuration (managed by the
//! operator, never created), or `<data_dir>/eab-kek.key` (created 0600 on first start,
//! unless the database already holds keys sealed with another KEK). It is never logged;
//! its id is. Several instances on one PostgreSQL database need the same KEK.

use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use certwright_proto::b64;

use crate::fsutil::{self, LooseMode};

/// Name of the KEK file in the data directory.
pub const KEK_FILE: &str = "eab-kek.key";
/// Environment variable holding the KEK itself (base64url of 32 bytes).
pub const KEK_ENV: &str = "CERTWRIGHT_EAB_KEK";
/// Length of the KEK (AES-256).
pub const KEK_LEN: usize = 32;

/// Prefix of a sealed EAB key (format version 1).
const SEALED_PREFIX: &[u8] = b"v1:";
/// AES-GCM tag length.
const TAG_LEN: usize = 16;

/// Failures around the KEK and sealed keys. None of them carries secret material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsError {
    /// The store needs the KEK and none is attached.
    #[error("no key-encryption key for EAB keys is loaded")]
    NoKek,
    /// The KEK is unusable: neither 32 raw bytes nor their base64, or the RNG failed to
    /// make one.
    #[error("the key-encryption key from {source_desc} is unusable: {reason}")]
    BadKek {
        /// Where the KEK came from (`KekSource::describe`).
        source_desc: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file or directory operation failed.
    #[error("cannot {action} {}: {error}", path.display())]
    Io {
        /// What was being done, e.g. `write`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The data directory's KEK file is missing while the database holds sealed keys.
    #[error(
        "the key-encryption key file {} does not exist, but the database holds {count} EAB key(s) \
         encrypted with KEK id {sealed_with}: restore that file from the backup of the data \
         directory (or set {KEK_ENV} / eab_kek_file to the KEK the other instances use); a new \
         KEK could not decrypt them", path.display()
    )]
    MissingKek {
        /// The missing KEK file.
        path: PathBuf,
        /// How many EAB keys are sealed.
        count: usize,
        /// The id of the KEK that sealed them.
        sealed_with: String,
    },
    /// EAB keys that can still bind an account were sealed with another KEK.
    #[error(
        "{count} EAB key(s) that can still bind an account ({kids}) were encrypted with another \
         key-encryption key (id {sealed_with}); this CA's KEK from {source_desc} has id {have}. \
         Instances sharing a database need the same KEK: restore the original KEK, or revoke \
         these keys with `certwright-ca eab revoke KID` and create new ones"
    )]
    ForeignKek {
        /// How many such keys there are.
        count: usize,
        /// Their key ids, comma-separated.
        kids: String,
        /// The id of the KEK that sealed them.
        sealed_with: String,
        /// The id of this CA's KEK.
        have: String,
        /// Where this CA's KEK came from.
        source_desc: String,
    },
    /// An EAB key was sealed with another KEK than the one loaded.
    #[error(
        "EAB key {kid:?} was encrypted with another key-encryption key (id {sealed_with}); this \
         CA's KEK has id {have}"
    )]
    WrongKek {
        /// The EAB key id.
        kid: String,
        /// The id of the KEK that sealed it.
        sealed_with: String,
        /// The id of the loaded KEK.
        have: String,
    },
    /// An EAB key names the loaded KEK but does not decrypt with it.
    #[error(
        "EAB key {kid:?} does not decrypt with the key-encryption key (id {kek_id}): its stored \
         ciphertext was altered or copied from another key id"
    )]
    Undecryptable {
        /// The EAB key id.
        kid: String,
        /// The id of the KEK that failed to open it.
        kek_id: String,
    },
    /// A stored EAB key is neither plaintext nor in the `v1:` format.
    #[error("EAB key {kid:?} is stored in an unknown form")]
    Malformed {
        /// The EAB key id.
        kid: String,
    },
    /// An EAB key is still stored in plaintext.
    #[error(
        "EAB key {kid:?} is still stored unencrypted (written by an older certwright-ca); start \
         certwright-ca or run `certwright-ca migrate` to encrypt it"
    )]
    Plaintext {
        /// The EAB key id.
        kid: String,
    },
}

/// Where the KEK comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum KekSource {
    /// [`KEK_ENV`]: the KEK itself, base64url.
    Env(String),
    /// `eab_kek_file`: a file the operator manages; it must exist.
    File(PathBuf),
    /// `<data_dir>/eab-kek.key`: created on first start.
    DataDir(PathBuf),
}

impl std::fmt::Debug for KekSource {
    /// Names the source, never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Where the CA's private files are (`app::settings` fills it from the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateFiles {
    /// The data directory (CA keys, the data-directory KEK, the SQLite database).
    pub data_dir: PathBuf,
    /// The operator-managed KEK file (`eab_kek_file`), if any.
    pub eab_kek_file: Option<PathBuf>,
    /// The admin listener's bearer-token file (`admin_token_file`), if any.
    pub admin_token_file: Option<PathBuf>,
    /// The admin listener's TLS key (`admin_tls_key`), if any.
    pub admin_tls_key: Option<PathBuf>,
    /// The SQLite database file, if the database is one (private too).
    pub sqlite_file: Option<PathBuf>,
}

impl KekSource {
    /// The source for `files`: `env` (the value of [`KEK_ENV`], if set) wins over
    /// `eab_kek_file`, which wins over the data directory's file.
    pub fn choose(files: &PrivateFiles, env: Option<String>) -> Self {
        match (env, &files.eab_kek_file) {
            (Some(value), _) => Self::Env(value),
            (None, Some(path)) => Self::File(path.clone()),
            (None, None) => Self::DataDir(files.data_dir.join(KEK_FILE)),
        }
    }

    /// The source for `files` and this process's environment.
    pub fn from_environment(files: &PrivateFiles) -> Self {
        Self::choose(files, std::env::var(KEK_ENV).ok())
    }

    /// What to call it in messages (without the key).
    pub fn describe(&self) -> String {
        match self {
            Self::Env(_) => format!("the environment variable {KEK_ENV}"),
            Self::File(path) => format!("eab_kek_file {}", path.display()),
            Self::DataDir(path) => path.display().to_string(),
        }
    }

    /// The file holding the KEK, if it is one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::Env(_) => None,
            Self::File(path) | Self::DataDir(path) => Some(path),
        }
    }

    /// Loads the KEK. A missing data-directory file is created (0600, atomically) when
    /// `may_create`; a missing `eab_kek_file` is an error.
    pub fn load(&self, may_create: bool) -> Result<Kek, SecretsError> {
        let describe = self.describe();
        let bad = |reason: String| SecretsError::BadKek {
            source_desc: describe.clone(),
            reason,
        };
        match self {
            Self::Env(value) => Kek::from_bytes(
                &decode_kek(value.as_bytes(), false).map_err(bad)?,
                describe.clone(),
            ),
            Self::File(path) | Self::DataDir(path) => match std::fs::read(path) {
                Ok(bytes) => {
                    Kek::from_bytes(&decode_kek(&bytes, true).map_err(bad)?, describe.clone())
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        && may_create
                        && matches!(self, Self::DataDir(_)) =>
                {
                    let mut key = [0u8; KEK_LEN];
                    aws_lc_rs::rand::fill(&mut key)
                        .map_err(|_| bad("the system RNG failed".into()))?;
                    let text = format!("{}\n", b64::encode(key));
                    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        fsutil::create_private_dir(dir).map_err(|error| SecretsError::Io {
                            action: "create",
                            path: dir.to_owned(),
                            error,
                        })?;
                    }
                    fsutil::write_atomic(path, text.as_bytes(), 0o600).map_err(|error| {
                        SecretsError::Io {
                            action: "write",
                            path: path.clone(),
                            error,
                        }
                    })?;
                    let kek = Kek::from_bytes(&key, describe.clone())?;
                    tracing::info!(
                        path = %path.display(),
                        kek_id = kek.id(),
                        "created the key-encryption key for EAB keys; back it up with the CA keys"
                    );
                    Ok(kek)
                }
                Err(error) => Err(SecretsError::Io {
                    action: "read the key-encryption key",
                    path: path.clone(),
                    error,
                }),
            },
        }
    }
}

/// The KEK as text or bytes: base64url / base64 of 32 bytes (surrounding whitespace and
/// padding allowed) or, in a file (`raw_ok`), exactly 32 raw bytes; so
/// `openssl rand -base64 32`, `openssl rand 32 > FILE` and the file certwright-ca writes
/// all work. The environment variable takes text only: a 32-character passphrase there is
/// refused, not taken for a key.
fn decode_kek(bytes: &[u8], raw_ok: bool) -> Result<[u8; KEK_LEN], String> {
    // Base64 of 32 bytes is at least 43 characters: 32 bytes are the raw key.
    if let Ok(raw) = <[u8; KEK_LEN]>::try_from(bytes) {
        if raw_ok {
            return Ok(raw);
        }
        return Err(format!(
            "{KEK_LEN} characters: not base64 of {KEK_LEN} bytes (43 characters)"
        ));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| format!("neither {KEK_LEN} raw bytes nor base64 text"))?;
    let normalized: String = text
        .trim()
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    let decoded = b64::decode(&normalized)
        .map_err(|_| format!("neither {KEK_LEN} raw bytes nor base64 text"))?;
    <[u8; KEK_LEN]>::try_from(decoded.as_slice())
        .map_err(|_| format!("decodes to {} bytes, not {KEK_LEN}", decoded.len()))
}

/// The key-encryption key. Its `Debug` shows the id and source, never the key.
pub struct Kek {
    key: LessSafeKey,
    id: String,
    source: String,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kek")
            .field("id", &self.id)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Kek {
    /// A KEK from its 32 bytes; `source` names where it came from (for messages).
    pub fn from_bytes(bytes: &[u8], source: impl Into<String>) -> Result<Self, SecretsError> {
        let source = source.into();
        if bytes.len() != KEK_LEN {
            return Err(SecretsError::BadKek {
                source_desc: source,
                reason: format!("{} bytes, not {KEK_LEN}", bytes.len()),
            });
        }
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| SecretsError::BadKek {
            source_desc: source.clone(),
            reason: "not an AES-256 key".into(),
        })?;
        // The id: a one-way fingerprint (HMAC-SHA-256 of a fixed label under the KEK), safe
        // to log and to store, telling KEKs apart without revealing them.
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, bytes),
            b"certwright eab-kek id v1",
        );
        let id = tag.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self {
            key: LessSafeKey::new(unbound),
            id,
            source,
        })
    }

    /// The KEK's public fingerprint (16 hex digits), stored with every key it seals.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where it came from (a path or the environment variable's name).
    pub fn source(&self) -> &str {
        &self.source
    }

    fn aad(kid: &str) -> Vec<u8> {
        let mut aad = b"certwright eab-hmac-key v1\0".to_vec();
        aad.extend_from_slice(kid.as_bytes());
        aad
    }

    /// Seals the HMAC key of EAB key `kid`: its stored form.
    pub fn seal(&self, kid: &str, hmac_key: &[u8]) -> Result<Vec<u8>, SecretsError> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| SecretsError::BadKek {
            source_desc: self.source.clone(),
            reason: "the system RNG failed".into(),
        })?;
        let mut in_out = hmac_key.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(kid)),
                &mut in_out,
            )
            .map_err(|_| SecretsError::Malformed { kid: kid.into() })?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&in_out);
        let mut stored = SEALED_PREFIX.to_vec();
        stored.extend_from_slice(b64::encode(blob).as_bytes());
        Ok(stored)
    }

    /// Opens the stored HMAC key of EAB key `kid`, sealed by the KEK with id `kek_id`
    /// (`None`: a plaintext row of an older version, refused until it is sealed).
    pub fn open(
        &self,
        kid: &str,
        kek_id: Option<&str>,
        stored: &[u8],
    ) -> Result<Vec<u8>, SecretsError> {
        let Some(kek_id) = kek_id else {
            return Err(SecretsError::Plaintext { kid: kid.into() });
        };
        if kek_id != self.id {
            return Err(SecretsError::WrongKek {
                kid: kid.into(),
                sealed_with: kek_id.into(),
                have: self.id.clone(),
            });
        }
        let malformed = || SecretsError::Malformed { kid: kid.into() };
        let text = stored.strip_prefix(SEALED_PREFIX).ok_or_else(malformed)?;
        let blob = std::str::from_utf8(text)
            .ok()
            .and_then(|t| b64::decode(t).ok())
            .ok_or_else(malformed)?;
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(malformed());
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| malformed())?;
        let mut in_out = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(Self::aad(kid)), &mut in_out)
            .map_err(|_| SecretsError::Undecryptable {
                kid: kid.into(),
                kek_id: kek_id.into(),
            })?;
        Ok(plain.to_vec())
    }
}

/// Whether a stored value has the sealed form (for checks over raw rows).
pub fn looks_sealed(stored: &[u8]) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

/// Files and directories that must not be open to group or others, with the mode each
/// should have: the data directory (0700), every `*.key` in it, the KEK file and the admin
/// token file and the admin TLS key (0600), and the SQLite database with its `-wal` and `-shm` files (0600).
pub fn private_paths(files: &PrivateFiles) -> Vec<(PathBuf, u32)> {
    let mut paths = vec![(files.data_dir.clone(), 0o700)];
    if let Ok(entries) = std::fs::read_dir(&files.data_dir) {
        let mut keys: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "key"))
            .collect();
        keys.sort();
        paths.extend(keys.into_iter().map(|p| (p, 0o600)));
    }
    if let Some(file) = KekSource::choose(files, None).file() {
        if !paths.iter().any(|(p, _)| p == file) {
            paths.push((file.to_owned(), 0o600));
        }
    }
    if let Some(token) = &files.admin_token_file {
        paths.push((token.clone(), 0o600));
    }
    if let Some(key) = &files.admin_tls_key {
        paths.push((key.clone(), 0o600));
    }
    if let Some(db) = &files.sqlite_file {
        for suffix in ["", "-wal", "-shm"] {
            let mut name = db.clone().into_os_string();
            name.push(suffix);
            paths.push((PathBuf::from(name), 0o600));
        }
    }
    paths
}

/// Warns (naming the file, its mode and the `chmod` to run) about every private file or
/// directory in `files` that group or others may access; returns what it found.
pub fn warn_loose_modes(files: &PrivateFiles) -> Vec<LooseMode> {
    let found = fsutil::loose_modes(&private_paths(files));
    for loose in &found {
        tracing::warn!(
            path = %loose.path.display(),
            mode = format!("{:04o}", loose.mode),
            "{loose}"
        );
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The admin listener's token file is checked with the other private files.
    #[test]
    fn the_admin_token_file_is_a_private_path() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("admin-token");
        std::fs::write(&token, "0123456789abcdef0123").unwrap();
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let files = PrivateFiles {
            data_dir: dir.path().join("data"),
            eab_kek_file: None,
            admin_token_file: Some(token.clone()),
            admin_tls_key: None,
            sqlite_file: Some(dir.path().join("data/certwright.db")),
        };
        let loose = fsutil::loose_modes(&private_paths(&files));
        assert_eq!(loose.len(), 1, "{loose:?}");
        assert_eq!(
            (loose[0].path.clone(), loose[0].mode, loose[0].want),
            (token, 0o644, 0o600)
        );
    }

    fn kek(byte: u8) -> Kek {
        Kek::from_bytes(&[byte; KEK_LEN], "test").unwrap()
    }

    #[test]
    fn seal_and_open_round_trip_with_a_fresh_nonce_each_time() {
        let k = kek(1);
        let a = k.seal("kid-1", b"the mac key").unwrap();
        let b = k.seal("kid-1", b"the mac key").unwrap();
        assert!(a.starts_with(b"v1:") && looks_sealed(&a));
        assert_ne!(a, b, "a random nonce per seal");
        assert_eq!(k.open("kid-1", Some(k.id()), &a).unwrap(), b"the mac key");
        assert_eq!(k.open("kid-1", Some(k.id()), &b).unwrap(), b"the mac key");
        assert!(!String::from_utf8_lossy(&a).contains("the mac key"));
    }

    #[test]
    fn a_ciphertext_does_not_open_under_another_kid_or_kek_or_when_altered() {
        let k = kek(1);
        let sealed = k.seal("kid-1", b"secret").unwrap();
        assert!(matches!(
            k.open("kid-2", Some(k.id()), &sealed),
            Err(SecretsError::Undecryptable { .. })
        ));
        let other = kek(2);
        assert_ne!(other.id(), k.id());
        assert!(matches!(
            other.open("kid-1", Some(k.id()), &sealed),
            Err(SecretsError::WrongKek { .. })
        ));
        // Another KEK that claims the id (a forged kek_id column) still cannot open it.
        assert!(matches!(
            other.open("kid-1", Some(other.id()), &sealed),
            Err(SecretsError::Undecryptable { .. })
        ));
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert!(k.open("kid-1", Some(k.id()), &altered).is_err());
        for junk in [&b""[..], b"v1:", b"v1:!!!", b"v2:AAAA", b"v1:AAAA"] {
            assert!(matches!(
                k.open("kid-1", Some(k.id()), junk),
                Err(SecretsError::Malformed { .. })
            ));
        }
        assert!(matches!(
            k.open("kid-1", None, b"plaintext"),
            Err(SecretsError::Plaintext { .. })
        ));
    }

    #[test]
    fn kek_text_forms_and_bad_values() {
        let raw = [7u8; KEK_LEN];
        let id = kek(7).id().to_owned();
        let url = b64::encode(raw);
        let std = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, raw);
        for form in [
            raw.to_vec(),
            url.clone().into_bytes(),
            format!("{url}\n").into_bytes(),
            std.into_bytes(),
        ] {
            let k = Kek::from_bytes(&decode_kek(&form, true).unwrap(), "t").unwrap();
            assert_eq!(k.id(), id);
        }
        assert!(
            decode_kek(&raw, false).is_err(),
            "raw bytes from a file only"
        );
        let passphrase = KekSource::Env("a 32-character passphrase here!!".into());
        assert!(passphrase.load(false).is_err());
        assert!(decode_kek(b"too short", true).is_err());
        assert!(decode_kek(b64::encode([1u8; 16]).as_bytes(), true).is_err());
        let source = KekSource::Env("not base64 at all!".into());
        let e = source.load(true).unwrap_err().to_string();
        assert!(e.contains(KEK_ENV), "{e}");
        // Neither Debug nor messages show the key.
        let secret = KekSource::Env(url.clone());
        assert!(!format!("{secret:?}").contains(&url));
        assert!(!format!("{:?}", secret.load(false).unwrap()).contains(&url));
    }

    #[test]
    fn the_data_dir_kek_is_created_once_0600_and_an_operator_file_never() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEK_FILE);
        let source = KekSource::DataDir(path.clone());
        assert!(source.load(false).is_err(), "not created unless allowed");
        let first = source.load(true).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(source.load(true).unwrap().id(), first.id(), "reused");
        // The same key works from the environment variable.
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(KekSource::Env(text).load(false).unwrap().id(), first.id());
        let managed = KekSource::File(dir.path().join("missing.key"));
        assert!(managed.load(true).is_err());
        assert!(!dir.path().join("missing.key").exists());
    }
}
