//! Real ACME clients, certbot and lego, pointed at a [`CaProcess`] and trusting its root.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::ca_process::CaProcess;
use crate::process::require_binary;

/// How long one run of a real ACME client (a whole issuance or renewal) may take.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);

/// The contact address the interop tests register with.
pub const CLIENT_EMAIL: &str = "admin@example.com";

/// certbot `sub` with its config/work/logs directories under `dir`, trusting the CA's root
/// and pointed at its directory (no solver chosen yet).
pub fn certbot_command(dir: &Path, ca: &CaProcess, sub: &str) -> Command {
    require_binary("certbot");
    let mut cmd = Command::new("certbot");
    cmd.env("REQUESTS_CA_BUNDLE", ca.root_path())
        .arg(sub)
        .arg("--non-interactive")
        .arg("--config-dir")
        .arg(dir.join("config"))
        .arg("--work-dir")
        .arg(dir.join("work"))
        .arg("--logs-dir")
        .arg(dir.join("logs"))
        .args(["--server", &ca.directory_url]);
    cmd
}

/// lego with its `--path`, trusting the CA's root, for `names`: the global flags, to which
/// a test adds a solver and the subcommand (lego 4.9 wants global flags first).
pub fn lego_command(path: &Path, ca: &CaProcess, names: &[&str]) -> Command {
    require_binary("lego");
    let mut cmd = Command::new("lego");
    cmd.env("LEGO_CA_CERTIFICATES", ca.root_path())
        .arg("--path")
        .arg(path)
        .args(["--server", &ca.directory_url])
        .args(["--email", CLIENT_EMAIL])
        .arg("--accept-tos");
    for name in names {
        cmd.args(["--domains", name]);
    }
    cmd
}
