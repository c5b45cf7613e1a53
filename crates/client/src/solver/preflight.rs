//! Local preconditions of a solver, checked before any CA is contacted: a wildcard needs
//! dns-01, a web root must exist, a listener's port must be free, a hook must exist.
//! Each failure is an [`Error::Config`] that says what to change.

use std::net::SocketAddr;
use std::path::Path;

use super::SolverSpec;
use crate::error::{Error, Result};

/// Checks what can be checked locally about answering challenges for `names` with
/// `solver`: [`check_static`], and that a listener's port is free now.
pub fn check(solver: &SolverSpec, names: &[String]) -> Result<()> {
    check_static(solver, names)?;
    match solver {
        SolverSpec::Http01Listen(addr) => port_free(*addr, "--http01-listen"),
        SolverSpec::TlsAlpn01Listen(addr) => port_free(*addr, "--tlsalpn01-listen"),
        _ => Ok(()),
    }
}

/// The checks that do not depend on the moment (a configuration file's): wildcards only
/// with dns-01, the web root and the hook files exist.
pub fn check_static(solver: &SolverSpec, names: &[String]) -> Result<()> {
    let wildcard = names.iter().find(|n| n.starts_with("*."));
    match solver {
        SolverSpec::Http01Listen(_) => no_wildcard(wildcard, "http-01"),
        SolverSpec::Webroot(dir) => {
            no_wildcard(wildcard, "http-01")?;
            webroot_exists(dir)
        }
        SolverSpec::TlsAlpn01Listen(_) => no_wildcard(wildcard, "tls-alpn-01"),
        SolverSpec::Dns01Exec { script, .. } => file_exists(script, "--dns01-exec"),
        SolverSpec::Dns01Rfc2136 { config, .. } => file_exists(config, "--dns01-rfc2136"),
    }
}

fn no_wildcard(wildcard: Option<&String>, kind: &str) -> Result<()> {
    match wildcard {
        Some(w) => Err(Error::Config(format!(
            "{w} is a wildcard: CAs validate wildcards only with dns-01 \
             (use --dns01-exec or --dns01-rfc2136), not {kind}"
        ))),
        None => Ok(()),
    }
}

fn webroot_exists(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    Err(Error::Config(format!(
        "--webroot {}: no such directory (give the web server's document root)",
        dir.display()
    )))
}

fn file_exists(path: &Path, option: &str) -> Result<()> {
    if path.is_file() {
        return Ok(());
    }
    Err(Error::Config(format!(
        "{option} {}: no such file",
        path.display()
    )))
}

/// How long a port in use is given to become free: a listener of this process that was
/// just dropped (the previous certificate's solver) closes asynchronously.
const PORT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

fn port_free(addr: SocketAddr, option: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + PORT_GRACE;
    let mut bound = std::net::TcpListener::bind(addr);
    while matches!(&bound, Err(e) if e.kind() == std::io::ErrorKind::AddrInUse)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
        bound = std::net::TcpListener::bind(addr);
    }
    match bound {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(Error::Config(format!(
            "{option} {addr}: the address is already in use (another web server? stop it \
             in a pre-hook, or use --webroot)"
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(Error::Config(format!(
            "{option} {addr}: permission denied (ports below 1024 need root or \
                 CAP_NET_BIND_SERVICE)"
        ))),
        Err(e) => Err(Error::Config(format!("{option} {addr}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_need_dns01_and_paths_must_exist() {
        let names = vec!["*.a.test".to_owned()];
        let dir = tempfile::tempdir().unwrap();
        let e = check(&SolverSpec::Webroot(dir.path().into()), &names).unwrap_err();
        assert!(e.to_string().contains("dns-01"), "{e}");
        let e = check(
            &SolverSpec::Webroot(dir.path().join("typo")),
            &["a.test".into()],
        )
        .unwrap_err();
        assert!(e.to_string().contains("no such directory"), "{e}");
        assert!(!dir.path().join("typo").exists(), "nothing is created");
        check(&SolverSpec::Webroot(dir.path().into()), &["a.test".into()]).unwrap();
    }

    #[test]
    fn a_port_in_use_is_found() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let e = check(&SolverSpec::Http01Listen(addr), &["a.test".into()]).unwrap_err();
        assert!(e.to_string().contains("already in use"), "{e}");
        drop(held);
        check(&SolverSpec::Http01Listen(addr), &["a.test".into()]).unwrap();
    }
}
