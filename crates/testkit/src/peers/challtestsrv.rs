//! pebble-challtestsrv as a DNS server: A 127.0.0.1 for every name, and TXT records set
//! through its management API (`POST /set-txt`, `/clear-txt`, …).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::port::{free_port, wait_for_port};
use crate::process::{on_immortal_thread, require_binary, spawn, ChildGuard};

/// A running pebble-challtestsrv (DNS only); stopped when dropped.
pub struct ChallTestSrv {
    /// Its DNS port (UDP and TCP) on 127.0.0.1.
    pub dns_port: u16,
    /// Its management API port on 127.0.0.1.
    pub mgmt_port: u16,
    /// `127.0.0.1:dns_port`.
    pub addr: SocketAddr,
    /// `127.0.0.1:mgmt_port`.
    pub management: SocketAddr,
    _child: ChildGuard,
}

impl ChallTestSrv {
    /// Starts one on free ports; it dies with the calling thread (see
    /// [`crate::process::spawn`]) or when dropped.
    pub fn start() -> Self {
        require_binary("pebble-challtestsrv");
        let dns_port = free_port();
        let mgmt_port = free_port();
        let child = spawn(
            Command::new("pebble-challtestsrv")
                .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-management", &format!("127.0.0.1:{mgmt_port}")])
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        // The DNS side is UDP (and TCP); its management port is TCP and opens alongside it.
        wait_for_port(mgmt_port, "pebble-challtestsrv management");
        wait_for_port(dns_port, "pebble-challtestsrv DNS");
        Self {
            dns_port,
            mgmt_port,
            addr: SocketAddr::from(([127, 0, 0, 1], dns_port)),
            management: SocketAddr::from(([127, 0, 0, 1], mgmt_port)),
            _child: child,
        }
    }

    /// The one shared by every test of this test binary, started on first use; it lives
    /// exactly as long as the test binary.
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<ChallTestSrv> = OnceLock::new();
        SHARED.get_or_init(|| on_immortal_thread(Self::start))
    }

    /// A dns-01 exec hook (bash, /dev/tcp; no curl needed) that sets and clears TXT
    /// records through the management API; it logs `ACTION NAME` lines to
    /// `dir/dns01-hook.log`.
    pub fn write_hook(&self, dir: &Path) -> PathBuf {
        let path = dir.join("dns01-hook.sh");
        let script = format!(
            r#"#!/bin/bash
set -e
case "$1" in
  present) endpoint=/set-txt; body="{{\"host\":\"$2\",\"value\":\"$3\"}}" ;;
  cleanup) endpoint=/clear-txt; body="{{\"host\":\"$2\"}}" ;;
  *) echo "unknown action $1" >&2; exit 2 ;;
esac
exec 3<>/dev/tcp/127.0.0.1/{port}
printf 'POST %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' "$endpoint" "${{#body}}" "$body" >&3
read -r status <&3
case "$status" in *" 200"*) ;; *) echo "challtestsrv answered: $status" >&2; exit 1 ;; esac
echo "$1 $2" >> "{log}"
"#,
            port = self.mgmt_port,
            log = dir.join("dns01-hook.log").display()
        );
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }
}

/// The shared challtestsrv of this test binary ([`ChallTestSrv::shared`]).
pub fn dns() -> &'static ChallTestSrv {
    ChallTestSrv::shared()
}
