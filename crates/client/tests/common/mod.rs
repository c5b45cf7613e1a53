//! The `certwright` command line under test ([`Cli`]) and the tampering proxy
//! ([`tamper`], which reads chains with the client's own code); the peers they run
//! against (Pebble, pebble-challtestsrv) and process handling come from
//! certwright-testkit. Each peer is stopped when its guard drops or, for shared fixtures,
//! when the test process exits (PDEATHSIG).
#![allow(dead_code)]

pub(crate) mod tamper;

// Each test binary uses a part of what is re-exported.
#[allow(unused_imports)]
pub(crate) use certwright_testkit::{
    peers::challtestsrv::ChallTestSrv,
    peers::openssl::{openssl_verify_stored as openssl_verify, OPENSSL_TIMEOUT},
    peers::pebble::Pebble,
    port::free_port,
    process::{on_immortal_thread, run_bounded, send_signal, spawn, Signal},
};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// A `certwright` command with the server, trust and state dir set.
pub(crate) struct Cli {
    pub(crate) server: String,
    pub(crate) ca_cert: PathBuf,
    pub(crate) state: PathBuf,
}

impl Cli {
    pub(crate) fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_certwright"));
        c.arg("--server")
            .arg(&self.server)
            .arg("--ca-cert")
            .arg(&self.ca_cert)
            .arg("--state-dir")
            .arg(&self.state)
            .env_remove("CERTWRIGHT_TEST_TIME_OFFSET");
        c
    }

    /// Runs with a bounded time; returns the output.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        run_bounded(self.command().args(args), Duration::from_secs(180))
    }

    /// Runs, asserts success, parses stdout's last line as JSON (`--json` is added).
    pub(crate) fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "certwright {args:?} failed: {:?}\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(stdout.lines().last().unwrap_or("null")).unwrap()
    }

    pub(crate) fn cert_dir(&self, name: &str) -> PathBuf {
        self.state
            .join("certs")
            .join(name.replace('*', "_wildcard"))
    }
}

/// The mode bits of a file.
pub(crate) fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}
