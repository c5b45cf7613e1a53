//! The agent's directory: its key, its certificate, the agent CA and the state file.
//!
//! ```text
//! DIR/            0700
//!   key.pem       the agent's P-256 key (PKCS#8 PEM), 0600
//!   cert.pem      its client certificate, 0600
//!   ca.pem        the agent CA (pinned at enrolment), 0600
//!   state.json    servers, name, segment, 0600 (written last: it marks a complete enrolment)
//! ```
//!
//! Every write is atomic: a temporary file in the same directory, fsync, rename, fsync of
//! the directory.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The key file's name.
pub const KEY_FILE: &str = "key.pem";
/// The certificate file's name.
pub const CERT_FILE: &str = "cert.pem";
/// The agent CA file's name.
pub const CA_FILE: &str = "ca.pem";
/// The state file's name.
pub const STATE_FILE: &str = "state.json";
/// A renewed certificate waits under this name until its key is in place.
pub const NEXT_CERT_FILE: &str = "cert.next.pem";

/// What the agent remembers besides its key and certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// The CA instances' agent listeners (`https://HOST:PORT`), the enrolment one first.
    pub servers: Vec<String>,
    /// The agent's name (from the CA).
    pub name: String,
    /// The segment the agent serves (from the CA).
    pub segment: String,
}

/// The paths of one agent directory.
#[derive(Debug, Clone)]
pub struct AgentDir {
    /// The directory itself.
    pub dir: PathBuf,
}

impl AgentDir {
    /// The directory `dir` (not created).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `DIR/name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Whether an enrolment is stored (any of its files exists).
    pub fn is_enrolled(&self) -> bool {
        [STATE_FILE, KEY_FILE, CERT_FILE]
            .iter()
            .any(|f| self.path(f).exists())
    }

    /// Creates the directory (and its parents) and makes it 0700.
    pub fn create(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
    }

    /// Reads the state file.
    pub fn read_state(&self) -> anyhow::Result<State> {
        let path = self.path(STATE_FILE);
        let text = std::fs::read(&path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read {} ({e}); enrol first with `certwright-va-agent enroll`",
                path.display()
            )
        })?;
        serde_json::from_slice(&text)
            .map_err(|e| anyhow::anyhow!("{} is not an agent state file: {e}", path.display()))
    }

    /// Writes the state file (0600, atomically).
    pub fn write_state(&self, state: &State) -> std::io::Result<()> {
        let mut text = serde_json::to_vec_pretty(state).expect("the state serializes");
        text.push(b'\n');
        write_atomic(&self.path(STATE_FILE), &text, 0o600)
    }

    /// Reads `DIR/name` as text.
    pub fn read_text(&self, name: &str) -> anyhow::Result<String> {
        let path = self.path(name);
        std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
    }
}

/// Writes `data` to `path` atomically with permissions `mode` (exactly, whatever the
/// umask).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} is not a file path", path.display())))?;
    let mut rnd = [0u8; 6];
    aws_lc_rs::rand::fill(&mut rnd).map_err(|_| std::io::Error::other("no randomness"))?;
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
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_are_0600_and_the_directory_0700() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = AgentDir::new(tmp.path().join("a/b"));
        dir.create().unwrap();
        assert_eq!(mode(&dir.dir), 0o700);
        let key = dir.path(KEY_FILE);
        write_atomic(&key, b"one", 0o600).unwrap();
        write_atomic(&key, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&key).unwrap(), b"two");
        assert_eq!(mode(&key), 0o600);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&dir.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(KEY_FILE)]);
    }

    #[test]
    fn the_state_file_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = AgentDir::new(tmp.path());
        assert!(!dir.is_enrolled());
        assert!(dir.read_state().is_err());
        let state = State {
            servers: vec![
                "https://ca.test:9555".into(),
                "https://ca2.test:9555".into(),
            ],
            name: "lab-1".into(),
            segment: "lab".into(),
        };
        dir.write_state(&state).unwrap();
        assert_eq!(dir.read_state().unwrap(), state);
        assert_eq!(mode(&dir.path(STATE_FILE)), 0o600);
        assert!(dir.is_enrolled());
    }
}
