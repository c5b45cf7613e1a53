//! The `exec` backend: a CA with a command-line (an OpenSSL `ca` directory, Easy-RSA, a
//! vendor CLI), driven by a command that gets the CSR and the order's facts and prints
//! the certificate. `docs/upstream.md` ("The exec backend") is the operator's contract;
//! in short:
//!
//! - **Run.** `command` is run directly (no shell), in its own process group, in a fresh
//!   private directory (0700) that is also its `HOME` and `TMPDIR` and is removed after
//!   the run. The CSR (PEM) is on its stdin and in the file `CERTWRIGHT_CSR_FILE` (0600)
//!   in that directory.
//! - **Environment.** Cleared, then: `PATH` (certwright-ca's own, or
//!   [`DEFAULT_PATH`]), `HOME` and `TMPDIR` (the run's directory), `LC_ALL=C`; the
//!   `env` of the configuration; and the `CERTWRIGHT_*` variables of the action (which
//!   `env` cannot override): for `issue` `CERTWRIGHT_ACTION`, `CERTWRIGHT_REQUEST_ID`,
//!   `CERTWRIGHT_NAMES`, `CERTWRIGHT_DNS_NAMES`, `CERTWRIGHT_IP_ADDRESSES`,
//!   `CERTWRIGHT_PROFILE`, `CERTWRIGHT_EAB_LABEL`, `CERTWRIGHT_ACCOUNT_ID`,
//!   `CERTWRIGHT_LIFETIME_SECS`, `CERTWRIGHT_LIFETIME_DAYS`, `CERTWRIGHT_CSR_FILE`; for
//!   `revoke` `CERTWRIGHT_ACTION`, `CERTWRIGHT_SERIAL`, `CERTWRIGHT_REASON`,
//!   `CERTWRIGHT_REASON_NAME`, `CERTWRIGHT_CERT_FILE`.
//! - **Output.** stdout is the certificate and its chain (PEM, DER or PKCS#7 certs-only),
//!   returned as it is (`convert` reads it), at most [`MAX_STDOUT`] bytes. stderr (the
//!   first [`MAX_STDERR`] bytes) is logged at warn when the run fails and goes into the
//!   error's cause, which is for the log and the audit trail only.
//! - **Exit.** 0: done. One of `temporary_exit_codes` (default 75, `EX_TEMPFAIL`):
//!   [`BackendError::Transient`]. 65 (`EX_DATAERR`): refused, [`Refusal::BadCsr`]. 77
//!   (`EX_NOPERM`): refused, [`Refusal::RejectedIdentifier`]. Anything else, or killed by
//!   a signal: refused, [`Refusal::Other`].
//! - **Time-out.** After the backend's `timeout_secs` the whole process group gets
//!   SIGKILL; that is transient when the command is `idempotent` (it will be run again
//!   with the same `CERTWRIGHT_REQUEST_ID`), else a refusal: the first run may have
//!   signed, and a second run could sign twice.

use std::fmt;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use certwright_proto::types::IdentifierType;
use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::{Backend, BackendError, BackendRequest, Checkpoint, Refusal, RevokeRequest};
use crate::config::ExecSection;

/// The most a command may print on stdout: more is a refusal (no certificate chain is
/// that long).
pub const MAX_STDOUT: usize = 1024 * 1024;

/// How much of a command's stderr is kept for the log; the rest is read and dropped.
pub const MAX_STDERR: usize = 16 * 1024;

/// `PATH` of the command when certwright-ca itself has none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Exit code `EX_DATAERR`: the backend refused the CSR (`badCSR`).
pub const EXIT_BAD_CSR: i32 = 65;

/// Exit code `EX_NOPERM`: the backend refused a name (`rejectedIdentifier`).
pub const EXIT_REJECTED_IDENTIFIER: i32 = 77;

/// How long a killed process group may take to be reaped.
const REAP_GRACE: Duration = Duration::from_secs(5);

/// A command-line CA.
pub struct ExecBackend {
    name: String,
    section: ExecSection,
    timeout: Duration,
}

impl fmt::Debug for ExecBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `env` may hold secrets (a vendor CLI's password): names only.
        f.debug_struct("ExecBackend")
            .field("name", &self.name)
            .field("command", &self.section.command)
            .field("revoke_command", &self.section.revoke_command)
            .field("idempotent", &self.section.idempotent)
            .field("env", &self.section.env.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ExecBackend {
    /// The backend `name` of `[backends.NAME.exec]`; each run may take `timeout`.
    pub fn new(name: &str, section: &ExecSection, timeout: Duration) -> Result<Self, String> {
        let key = format!("backends.{name}.exec");
        if section.command.first().is_none_or(String::is_empty) {
            return Err(format!("{key}.command is empty"));
        }
        if let Some(revoke) = &section.revoke_command {
            if revoke.first().is_none_or(String::is_empty) {
                return Err(format!(
                    "{key}.revoke_command is empty (leave it out to record revocations here only)"
                ));
            }
        }
        for (var, value) in &section.env {
            if var.is_empty() || var.contains(['=', '\0']) || value.contains('\0') {
                return Err(format!(
                    "{key}.env: {var:?} is not a valid environment variable"
                ));
            }
            if var.to_ascii_uppercase().starts_with("CERTWRIGHT_") {
                return Err(format!(
                    "{key}.env: {var} is set by certwright-ca itself (CERTWRIGHT_* is reserved)"
                ));
            }
        }
        if let Some(code) = section
            .temporary_exit_codes
            .iter()
            .find(|c| !(1..=255).contains(*c))
        {
            return Err(format!(
                "{key}.temporary_exit_codes: {code} is not an exit code of a failed run (1 to 255)"
            ));
        }
        if timeout.is_zero() {
            return Err(format!("backends.{name}.timeout_secs must be positive"));
        }
        Ok(Self {
            name: name.into(),
            section: section.clone(),
            timeout,
        })
    }

    /// Runs `program` for `action` with `input` on stdin and in the file `file_var` of
    /// the run's private directory; `vars` are the action's `CERTWRIGHT_*` variables.
    async fn run(
        &self,
        action: Action,
        program: &[String],
        input: &[u8],
        file_var: (&str, &str),
        vars: Vec<(&'static str, String)>,
    ) -> Result<Vec<u8>, BackendError> {
        let shown = program.join(" ");
        let fail = |refusal: Refusal, why: String| BackendError::Refused {
            refusal,
            cause: format!("exec backend {} ({action}): `{shown}`: {why}", self.name),
        };
        let transient = |why: String| {
            BackendError::Transient(format!(
                "exec backend {} ({action}): `{shown}`: {why}",
                self.name
            ))
        };

        let dir = RunDir::create().map_err(|e| transient(format!("private directory: {e}")))?;
        let (file_var, file_name) = file_var;
        let input_path = dir.path.join(file_name);
        write_private(&input_path, input)
            .map_err(|e| transient(format!("writing {}: {e}", input_path.display())))?;

        let mut cmd = tokio::process::Command::new(&program[0]);
        cmd.args(&program[1..])
            .current_dir(&dir.path)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH")
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| DEFAULT_PATH.into()),
            )
            .env("HOME", &dir.path)
            .env("TMPDIR", &dir.path)
            .env("LC_ALL", "C")
            .envs(&self.section.env)
            .env("CERTWRIGHT_ACTION", action.as_str())
            .env(file_var, &input_path)
            .envs(vars)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that a time-out kills what it started too.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| match e.kind() {
            // Not there or not executable: a configuration error, no retry helps.
            ErrorKind::NotFound | ErrorKind::PermissionDenied => {
                fail(Refusal::Other, format!("cannot start: {e}"))
            }
            _ => transient(format!("cannot start: {e}")),
        })?;
        // From here until it is reaped, the group dies with this future (a time-out, or
        // the caller dropping it).
        let mut group = GroupKill(child.id().and_then(|id| i32::try_from(id).ok()));

        let mut stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let feed = async {
            if let Some(stdin) = stdin.as_mut() {
                // A command that does not read its stdin closes it: not an error.
                let _ = stdin.write_all(input).await;
                let _ = stdin.shutdown().await;
            }
            drop(stdin);
        };
        let ran = tokio::time::timeout(self.timeout, async {
            let ((), out, err, status) = tokio::join!(
                feed,
                read_capped(stdout, MAX_STDOUT),
                read_capped(stderr, MAX_STDERR),
                child.wait()
            );
            (out, err, status)
        })
        .await;

        let (out, err, status) = match ran {
            Ok(done) => {
                group.disarm();
                done
            }
            Err(_) => {
                group.kill();
                let _ = tokio::time::timeout(REAP_GRACE, child.wait()).await;
                let why = format!(
                    "timed out after {}s; its process group was killed",
                    self.timeout.as_secs()
                );
                tracing::warn!(backend = %self.name, %action, command = %shown, "{why}");
                return Err(if self.section.idempotent {
                    transient(why)
                } else {
                    fail(
                        Refusal::Other,
                        format!("{why}, and the command is not idempotent: it may have signed, so it is not run again"),
                    )
                });
            }
        };
        let status = status.map_err(|e| transient(format!("waiting for it: {e}")))?;
        let (stdout, stdout_cut) = out.map_err(|e| transient(format!("reading stdout: {e}")))?;
        let (stderr, stderr_cut) = err.map_err(|e| transient(format!("reading stderr: {e}")))?;
        let stderr = Stderr(String::from_utf8_lossy(&stderr).into_owned(), stderr_cut);
        drop(dir);

        match classify(status, &self.section.temporary_exit_codes) {
            Outcome::Done if stdout_cut => {
                let why = format!("printed more than {MAX_STDOUT} bytes on stdout");
                tracing::warn!(backend = %self.name, %action, command = %shown, stderr = stderr.text(), "{why}");
                Err(fail(Refusal::Other, format!("{why}{stderr}")))
            }
            Outcome::Done if stdout.is_empty() && action == Action::Issue => {
                let why = "exited 0 but printed no certificate".to_owned();
                tracing::warn!(backend = %self.name, %action, command = %shown, stderr = stderr.text(), "{why}");
                Err(fail(Refusal::Other, format!("{why}{stderr}")))
            }
            Outcome::Done => {
                if !stderr.0.is_empty() {
                    tracing::debug!(backend = %self.name, %action, command = %shown, stderr = stderr.text(), "exec backend command succeeded");
                }
                Ok(stdout)
            }
            Outcome::Temporary(why) => {
                tracing::warn!(backend = %self.name, %action, command = %shown, stderr = stderr.text(), "{why} (temporary: retried)");
                Err(transient(format!("{why}{stderr}")))
            }
            Outcome::Refused(refusal, why) => {
                tracing::warn!(backend = %self.name, %action, command = %shown, stderr = stderr.text(), "{why}");
                Err(fail(refusal, format!("{why}{stderr}")))
            }
        }
    }
}

impl Backend for ExecBackend {
    fn kind(&self) -> &'static str {
        "exec"
    }

    fn resumable(&self) -> bool {
        self.section.idempotent
    }

    fn issue<'a>(
        &'a self,
        request: &'a BackendRequest,
        _checkpoint: &'a dyn Checkpoint,
    ) -> BoxFuture<'a, Result<Vec<u8>, BackendError>> {
        Box::pin(async move {
            let csr = pem("CERTIFICATE REQUEST", &request.csr_der);
            self.run(
                Action::Issue,
                &self.section.command,
                csr.as_bytes(),
                ("CERTWRIGHT_CSR_FILE", "csr.pem"),
                issue_vars(request),
            )
            .await
        })
    }

    fn revoke<'a>(&'a self, request: &'a RevokeRequest) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let Some(program) = &self.section.revoke_command else {
                tracing::info!(
                    backend = %self.name,
                    serial = %request.serial_hex,
                    reason = request.reason,
                    "exec backend has no revoke_command: the revocation is recorded here only"
                );
                return Ok(());
            };
            let Some(reason_name) = reason_name(request.reason) else {
                return Err(BackendError::Refused {
                    refusal: Refusal::Other,
                    cause: format!(
                        "exec backend {}: revocation reason {} has no name",
                        self.name, request.reason
                    ),
                });
            };
            let cert = pem("CERTIFICATE", &request.der);
            self.run(
                Action::Revoke,
                program,
                cert.as_bytes(),
                ("CERTWRIGHT_CERT_FILE", "cert.pem"),
                vec![
                    ("CERTWRIGHT_SERIAL", request.serial_hex.clone()),
                    ("CERTWRIGHT_REASON", request.reason.to_string()),
                    ("CERTWRIGHT_REASON_NAME", reason_name.to_owned()),
                ],
            )
            .await
            .map(drop)
        })
    }
}

/// What the command is asked to do (`CERTWRIGHT_ACTION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Issue,
    Revoke,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Issue => "issue",
            Action::Revoke => "revoke",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `CERTWRIGHT_*` variables of an `issue` run (the CSR file's is added by `run`).
fn issue_vars(request: &BackendRequest) -> Vec<(&'static str, String)> {
    let values = |kind: Option<IdentifierType>| {
        request
            .identifiers
            .iter()
            .filter(|i| kind.is_none_or(|k| i.kind == k))
            .map(|i| i.value.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let secs = request.lifetime_secs.max(0);
    vec![
        ("CERTWRIGHT_REQUEST_ID", request.request_id.clone()),
        ("CERTWRIGHT_NAMES", values(None)),
        ("CERTWRIGHT_DNS_NAMES", values(Some(IdentifierType::Dns))),
        ("CERTWRIGHT_IP_ADDRESSES", values(Some(IdentifierType::Ip))),
        (
            "CERTWRIGHT_PROFILE",
            request.profile.clone().unwrap_or_default(),
        ),
        (
            "CERTWRIGHT_EAB_LABEL",
            request.eab_label.clone().unwrap_or_default(),
        ),
        ("CERTWRIGHT_ACCOUNT_ID", request.account_id.to_string()),
        ("CERTWRIGHT_LIFETIME_SECS", secs.to_string()),
        // Whole days, rounded up (`openssl ca -days` takes days).
        (
            "CERTWRIGHT_LIFETIME_DAYS",
            (secs.saturating_add(86_399) / 86_400).to_string(),
        ),
    ]
}

/// The name openssl gives RFC 5280 reason `code` (`openssl ca -crl_reason`).
pub fn reason_name(code: u8) -> Option<&'static str> {
    Some(match code {
        0 => "unspecified",
        1 => "keyCompromise",
        2 => "CACompromise",
        3 => "affiliationChanged",
        4 => "superseded",
        5 => "cessationOfOperation",
        6 => "certificateHold",
        8 => "removeFromCRL",
        9 => "privilegeWithdrawn",
        10 => "AACompromise",
        _ => return None,
    })
}

/// How a finished run ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Done,
    Temporary(String),
    Refused(Refusal, String),
}

/// The exit-code contract (see the module's documentation).
fn classify(status: ExitStatus, temporary: &[i32]) -> Outcome {
    match status.code() {
        Some(0) => Outcome::Done,
        Some(code) if temporary.contains(&code) => {
            Outcome::Temporary(format!("exited with {code}"))
        }
        Some(EXIT_BAD_CSR) => Outcome::Refused(
            Refusal::BadCsr,
            format!("exited with {EXIT_BAD_CSR} (EX_DATAERR: the CSR is refused)"),
        ),
        Some(EXIT_REJECTED_IDENTIFIER) => Outcome::Refused(
            Refusal::RejectedIdentifier,
            format!("exited with {EXIT_REJECTED_IDENTIFIER} (EX_NOPERM: a name is refused)"),
        ),
        Some(code) => Outcome::Refused(Refusal::Other, format!("exited with {code}")),
        None => Outcome::Refused(
            Refusal::Other,
            match status.signal() {
                Some(sig) => format!("killed by signal {sig}"),
                None => "ended without an exit code".to_owned(),
            },
        ),
    }
}

/// A command's stderr (its first [`MAX_STDERR`] bytes, and whether there was more), for
/// the log and the error's cause, never for a client. Displayed as the cause's suffix
/// `; stderr: …`, or nothing when it printed nothing.
struct Stderr(String, bool);

impl Stderr {
    /// The text, for a log field.
    fn text(&self) -> &str {
        self.0.trim()
    }
}

impl fmt::Display for Stderr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.trim();
        if text.is_empty() {
            return Ok(());
        }
        write!(f, "; stderr: {text}")?;
        if self.1 {
            write!(f, " [cut at {MAX_STDERR} bytes]")?;
        }
        Ok(())
    }
}

/// Reads `pipe` to its end, keeping the first `cap` bytes; true if there was more (the
/// rest is read and dropped, so the command never blocks on a full pipe).
async fn read_capped<R: AsyncRead + Unpin>(
    pipe: Option<R>,
    cap: usize,
) -> std::io::Result<(Vec<u8>, bool)> {
    let Some(mut pipe) = pipe else {
        return Ok((Vec::new(), false));
    };
    let mut kept = Vec::new();
    (&mut pipe).take(cap as u64).read_to_end(&mut kept).await?;
    let rest = tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await?;
    Ok((kept, rest > 0))
}

/// SIGKILL to a run's process group when dropped armed (a time-out, or the run's future
/// dropped), so that nothing the command started outlives it.
struct GroupKill(Option<i32>);

impl GroupKill {
    fn kill(&mut self) {
        if let Some(pid) = self.0.take().and_then(rustix::process::Pid::from_raw) {
            // ESRCH: the group is gone already.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }

    /// The command exited and its pipes closed: leave whatever it left in the background.
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The private directory of one run (0700, under the system's temp directory), removed
/// with everything in it when dropped.
struct RunDir {
    path: PathBuf,
}

impl RunDir {
    fn create() -> std::io::Result<Self> {
        let base = std::env::temp_dir();
        let mut last = None;
        for _ in 0..8 {
            let mut random = [0u8; 8];
            aws_lc_rs::rand::fill(&mut random[..])
                .map_err(|_| std::io::Error::other("no random bytes"))?;
            let path = base.join(format!("certwright-exec-{}", crate::encoding::hex(&random)));
            // Not recursive: an existing directory (someone else's) is an error, not reused.
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(Self { path }),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no free name")))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(dir = %self.path.display(), "removing an exec run's directory: {e}");
        }
    }
}

/// Writes a new file with mode 0600.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

/// PEM of one `label` object.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests;
