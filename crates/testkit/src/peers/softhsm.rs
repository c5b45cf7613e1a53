//! SoftHSM2: a real PKCS#11 token for tests, in a temp dir of its own.
//!
//! [`SoftHsm::new`] writes `softhsm2.conf` (`directories.tokendir` in the temp dir, the
//! file object store, `log.level = ERROR`) and initialises one token with
//! `softhsm2-util --init-token --free` (bounded, with `SOFTHSM2_CONF` set for that run
//! only). Tests then point the CA at it:
//!
//! - the module: [`SoftHsm::module_path`] (`libsofthsm2.so`),
//! - the token: `pkcs11:token=<label>;object=<key label>` ([`SoftHsm::label`]),
//! - the user PIN: [`SoftHsm::write_pin_file`] (a 0600 file) or [`SoftHsm::pin`] in an
//!   environment variable,
//! - the configuration: **the process that loads the module must have
//!   `SOFTHSM2_CONF` = [`SoftHsm::conf_path`] when it initialises the module** — SoftHSM2
//!   reads it in `C_Initialize` and nowhere else. For a `certwright-ca` child process set
//!   it with `Command::env`, or use [`SoftHsm::env`]. Inside a test binary, a module is
//!   initialised once per process, so all tests of one binary that load it in-process
//!   must share one configuration (one `SoftHsm`, several key labels), set before the
//!   first load.
//!
//! [`SoftHsm::write_empty_conf`] writes a second configuration whose token directory is
//! empty: a module initialised with it sees no token ("the token was removed").
//! [`SoftHsm::pkcs11_tool`] runs OpenSC's `pkcs11-tool` against the token (bounded).
//! `scripts/test` installs `softhsm2` and `opensc`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::process::{require_binary, run_bounded, run_ok};

/// How long one `softhsm2-util` or `pkcs11-tool` run may take.
pub const SOFTHSM_TIMEOUT: Duration = Duration::from_secs(60);

/// Where Debian's `softhsm2` package puts the module.
pub const MODULE_CANDIDATES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
];

/// The SoftHSM2 module (`libsofthsm2.so`); panics saying how to install it if absent.
pub fn module_path() -> PathBuf {
    MODULE_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "libsofthsm2.so is not installed (looked at {MODULE_CANDIDATES:?}); \
                 scripts/test installs the softhsm2 package"
            )
        })
}

/// A SoftHSM2 token directory and configuration in a temp dir, with one initialised
/// token. Everything is removed when it is dropped.
#[derive(Debug)]
pub struct SoftHsm {
    dir: tempfile::TempDir,
    conf: PathBuf,
    tokens: PathBuf,
    label: String,
    pin: String,
    so_pin: String,
    module: PathBuf,
}

/// The configuration SoftHSM2 reads, for a token directory.
fn conf_text(tokens: &Path) -> String {
    format!(
        "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n\
         slots.removable = false\n",
        tokens.display()
    )
}

impl SoftHsm {
    /// A new configuration and token directory, and a token labelled `label` with user
    /// PIN [`SoftHsm::pin`] and SO PIN [`SoftHsm::so_pin`].
    pub fn new(label: &str) -> Self {
        Self::new_in(&std::env::temp_dir(), label)
    }

    /// [`SoftHsm::new`] with its temp dir inside `parent` (which must exist).
    pub fn new_in(parent: &Path, label: &str) -> Self {
        require_binary("softhsm2-util");
        let module = module_path();
        let dir = tempfile::tempdir_in(parent).expect("a temp dir for SoftHSM2");
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).expect("the SoftHSM2 token dir");
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(&conf, conf_text(&tokens)).expect("softhsm2.conf");
        let hsm = Self {
            dir,
            conf,
            tokens,
            label: label.to_owned(),
            pin: "20261127".to_owned(),
            so_pin: "so-20261127".to_owned(),
            module,
        };
        hsm.init_token(label);
        hsm
    }

    /// Initialises one more token labelled `label` (same PINs) in the first free slot. A
    /// module already initialised in a process sees it only after re-initialising.
    pub fn init_token(&self, label: &str) {
        run_ok(
            "softhsm2-util --init-token",
            Command::new("softhsm2-util")
                .args(["--init-token", "--free", "--label", label])
                .args(["--pin", &self.pin, "--so-pin", &self.so_pin])
                .env("SOFTHSM2_CONF", &self.conf),
            SOFTHSM_TIMEOUT,
            "",
        );
    }

    /// The temp dir holding the configuration and the tokens.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `softhsm2.conf`: what `SOFTHSM2_CONF` must name when the module is initialised.
    pub fn conf_path(&self) -> &Path {
        &self.conf
    }

    /// The token directory (`directories.tokendir`).
    pub fn token_dir(&self) -> &Path {
        &self.tokens
    }

    /// `libsofthsm2.so`.
    pub fn module_path(&self) -> &Path {
        &self.module
    }

    /// The first token's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The tokens' user PIN.
    pub fn pin(&self) -> &str {
        &self.pin
    }

    /// The tokens' security officer PIN.
    pub fn so_pin(&self) -> &str {
        &self.so_pin
    }

    /// The variable and value a process that loads the module needs:
    /// `("SOFTHSM2_CONF", conf_path)`, for `Command::env`.
    pub fn env(&self) -> (&'static str, &Path) {
        ("SOFTHSM2_CONF", &self.conf)
    }

    /// Writes the user PIN (with a trailing newline, as `echo` would) to `path`, mode
    /// 0600, and returns the path.
    pub fn write_pin_file(&self, path: &Path) -> PathBuf {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        writeln!(file, "{}", self.pin).expect("writing the PIN file");
        path.to_owned()
    }

    /// Writes a second configuration, `softhsm2-empty.conf`, whose token directory is
    /// empty: a module initialised with it finds no token. Returns its path.
    pub fn write_empty_conf(&self) -> PathBuf {
        let empty = self.dir.path().join("no-tokens");
        std::fs::create_dir_all(&empty).expect("the empty token dir");
        let conf = self.dir.path().join("softhsm2-empty.conf");
        std::fs::write(&conf, conf_text(&empty)).expect("softhsm2-empty.conf");
        conf
    }

    /// Runs `pkcs11-tool --module <module> args…` with `SOFTHSM2_CONF` set, bounded by
    /// [`SOFTHSM_TIMEOUT`]; returns its output whatever the exit status.
    pub fn pkcs11_tool(&self, args: &[&str]) -> Output {
        require_binary("pkcs11-tool");
        run_bounded(
            Command::new("pkcs11-tool")
                .arg("--module")
                .arg(&self.module)
                .args(args)
                .env("SOFTHSM2_CONF", &self.conf),
            SOFTHSM_TIMEOUT,
        )
    }
}
