//! BIND 9 (`named`) as the primary of a zone that accepts TSIG-signed RFC 2136 updates.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::port::{free_port, wait_for_port};
use crate::process::{spawn, ChildGuard};

/// The `named` binary (it lives in an sbin directory, often not on PATH).
pub fn named_binary() -> PathBuf {
    for p in ["/usr/sbin/named", "/sbin/named"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    PathBuf::from("named")
}

/// Starts `named` in `dir` as the primary of `zone_name` (SOA, NS `ns1`, `ns1` A
/// 127.0.0.1) on a free loopback port, accepting updates signed with the hmac-sha256 TSIG
/// key `key_name`/`secret_b64`. Returns the guard and the port.
pub fn start_bind(
    dir: &Path,
    zone_name: &str,
    key_name: &str,
    secret_b64: &str,
) -> (ChildGuard, u16) {
    let port = free_port();
    let zone = dir.join(format!("{zone_name}.zone"));
    std::fs::write(
        &zone,
        format!("$TTL 60\n@ IN SOA ns1.{zone_name}. hostmaster.{zone_name}. 1 3600 600 86400 60\n@ IN NS ns1.{zone_name}.\nns1 IN A 127.0.0.1\n"),
    )
    .unwrap();
    let conf = dir.join("named.conf");
    std::fs::write(
        &conf,
        format!(
            r#"options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
}};
controls {{ }};
key "{key_name}" {{ algorithm hmac-sha256; secret "{secret_b64}"; }};
zone "{zone_name}" {{
    type primary;
    file "{zone}";
    allow-update {{ key "{key_name}"; }};
}};
"#,
            d = dir.display(),
            zone = zone.display(),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("named.log")).unwrap();
    let child = spawn(
        Command::new(named_binary())
            .args(["-g", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log),
    );
    wait_for_port(port, "named");
    (child, port)
}
