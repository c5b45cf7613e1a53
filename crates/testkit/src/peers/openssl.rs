//! The real `openssl` command: bounded runs, and the checks tests make with it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::{require_binary, run_bounded, run_ok};

/// How long one openssl run may take.
pub const OPENSSL_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `openssl args` in `dir` (bounded by [`OPENSSL_TIMEOUT`], no proxy in between);
/// returns (success, stdout+stderr).
pub fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    require_binary("openssl");
    let out = run_bounded(
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            // Loopback only: no proxy in between.
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .env("no_proxy", "*"),
        OPENSSL_TIMEOUT,
    );
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The arguments of `openssl ocsp` asking the responder at `url` about `leaf.pem`,
/// issued by the certificate in the file `issuer`, and verifying the answer against
/// `root.pem` (file names in the run's directory), with 10 s for the responder; `extra`
/// follows.
pub fn ocsp_query_args<'a>(issuer: &'a str, url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "ocsp", "-issuer", issuer, "-cert", "leaf.pem", "-CAfile", "root.pem", "-timeout", "10",
        "-url", url,
    ];
    args.extend_from_slice(extra);
    args
}

/// [`openssl`] from async code (on a blocking thread of the runtime).
pub async fn openssl_async(dir: &Path, args: &[&str]) -> (bool, String) {
    let dir = dir.to_owned();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        openssl(&dir, &args)
    })
    .await
    .unwrap()
}

/// `openssl verify -purpose sslserver -CAfile root -untrusted untrusted leaf` must say OK.
pub fn openssl_verify_server(root: &Path, untrusted: &Path, leaf: &Path) {
    require_binary("openssl");
    let out = run_ok(
        "openssl verify",
        Command::new("openssl")
            .arg("verify")
            .args(["-purpose", "sslserver"])
            .arg("-CAfile")
            .arg(root)
            .arg("-untrusted")
            .arg(untrusted)
            .arg(leaf),
        OPENSSL_TIMEOUT,
        "",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        format!("{}: OK", leaf.display()),
        "openssl verify output"
    );
}

/// `openssl verify` of the `cert.pem` and `chain.pem` a client stored in `cert_dir`
/// against `root_pem` (written to `cert_dir/test-root.pem`) must succeed.
pub fn openssl_verify_stored(cert_dir: &Path, root_pem: &str) {
    let root = cert_dir.join("test-root.pem");
    std::fs::write(&root, root_pem).unwrap();
    require_binary("openssl");
    let out = run_bounded(
        Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(&root)
            .arg("-untrusted")
            .arg(cert_dir.join("chain.pem"))
            .arg(cert_dir.join("cert.pem")),
        OPENSSL_TIMEOUT,
    );
    assert!(
        out.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The subjectAltName extension as openssl prints it (a second parser's view of the SANs).
pub fn openssl_san(cert: &Path) -> String {
    require_binary("openssl");
    let out = run_ok(
        "openssl x509",
        Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(cert),
        OPENSSL_TIMEOUT,
        "",
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
