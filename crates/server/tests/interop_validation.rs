//! Interop of the other validation methods with real ACME clients: lego and certbot get
//! wildcard certificates from a `certwright-ca` process over dns-01, and lego over
//! tls-alpn-01.
//!
//! The CA resolves names through the `pebble-challtestsrv` DNS server shared by this test
//! binary (A 127.0.0.1 for every name). The clients publish their dns-01 TXT records through
//! a hook script that calls challtestsrv's management API, as a DNS provider's API would;
//! the hook logs every call, so a test sees which records the client published. No
//! http-01 responder runs in the dns-01 tests, and wildcard names can only be validated by
//! dns-01, so a certificate proves the dns-01 path end to end.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{
    ca_bin, certbot_command, dns, free_port, leaf, lego_command, openssl_verify, run_bounded,
    run_ok, write_first_cert, CaProcess, ProcessGuard, CLIENT_TIMEOUT,
};

const EMAIL: &str = support::CLIENT_EMAIL;

/// A hook for both clients: lego's exec provider calls it as `hook present|cleanup FQDN
/// VALUE`; certbot's manual hooks call it with no arguments and `CERTBOT_DOMAIN` /
/// `CERTBOT_VALIDATION` (and `CERTBOT_AUTH_OUTPUT` on cleanup) in the environment.
/// `HOOK_WRONG_VALUE=1` publishes a value that is not the key authorization digest.
const DNS_HOOK: &str = r#"#!/usr/bin/env python3
import json, os, sys, urllib.request

mgmt = os.environ["CHALLTESTSRV_MANAGEMENT"]
if len(sys.argv) == 4:
    action, fqdn, value = sys.argv[1], sys.argv[2], sys.argv[3]
else:
    action = "cleanup" if "CERTBOT_AUTH_OUTPUT" in os.environ else "present"
    fqdn = "_acme-challenge." + os.environ["CERTBOT_DOMAIN"].removeprefix("*.") + "."
    value = os.environ["CERTBOT_VALIDATION"]
if os.environ.get("HOOK_WRONG_VALUE") == "1":
    value = "x" * 43
if action == "present":
    body = {"host": fqdn, "value": value}
    path = "/set-txt"
elif action == "cleanup":
    body = {"host": fqdn}
    path = "/clear-txt"
else:
    sys.exit(0)
req = urllib.request.Request(
    "http://" + mgmt + path,
    data=json.dumps(body).encode(),
    headers={"Content-Type": "application/json"},
    method="POST",
)
urllib.request.urlopen(req, timeout=10).read()
with open(os.environ["HOOK_LOG"], "a") as log:
    log.write(f"{action} {fqdn} {value}\n")
"#;

/// Writes the hook into `dir`; returns its path and the path of its call log.
fn write_hook(dir: &Path) -> (PathBuf, PathBuf) {
    fs::create_dir_all(dir).unwrap();
    let hook = dir.join("dns-hook.py");
    fs::write(&hook, DNS_HOOK).unwrap();
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
    (hook, dir.join("dns-hook.log"))
}

/// The hook's calls, as `(action, fqdn, value)`.
fn hook_calls(log: &Path) -> Vec<(String, String, String)> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let mut next = || parts.next().unwrap_or_default().to_owned();
            (next(), next(), next())
        })
        .collect()
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// lego publishing its dns-01 records through the exec provider and the hook. Its own
/// lookups (CNAME following) go to challtestsrv, never to the system's resolvers.
fn lego_dns01(path: &Path, ca: &CaProcess, names: &[&str], hook: &Path, log: &Path) -> Command {
    let mut cmd = lego_command(path, ca, names);
    cmd.env("EXEC_PATH", hook)
        .env("EXEC_POLLING_INTERVAL", "1")
        .env("EXEC_PROPAGATION_TIMEOUT", "30")
        // Two records at one owner name (a name and its wildcard) make lego present them
        // one after the other, 60 s apart by default.
        .env("EXEC_SEQUENCE_INTERVAL", "1")
        .env("CHALLTESTSRV_MANAGEMENT", dns().management.to_string())
        .env("HOOK_LOG", log)
        .args(["--dns", "exec", "--dns.disable-cp"])
        .args(["--dns.resolvers", &dns().addr.to_string()])
        .arg("run");
    cmd
}

/// Checks the SANs of `cert` and its chain (leaf + issuer in `bundle`) against the CA root.
fn check_chain(ca: &CaProcess, bundle: &Path, names: &[&str], scratch: &Path) {
    let issued = leaf(bundle);
    assert_eq!(issued.dns_names, sorted(names), "SANs of the certificate");
    assert!(issued.server_auth, "leaf has the serverAuth EKU");
    let leaf_only = scratch.join("leaf.pem");
    write_first_cert(bundle, &leaf_only);
    openssl_verify(&ca.root_path(), bundle, &leaf_only);
}

#[test]
fn lego_dns01_wildcard_through_exec_provider() {
    let tmp = tempfile::tempdir().unwrap();
    let mut guard = ProcessGuard::default();
    let ca = CaProcess::start(ca_bin(), &mut guard, &tmp.path().join("ca"));
    let (hook, log) = write_hook(&tmp.path().join("hook"));
    let names = ["lego-dns.certwright.test", "*.lego-dns.certwright.test"];

    let path = tmp.path().join("lego");
    run_ok(
        "lego --dns exec run",
        &mut lego_dns01(&path, &ca, &names, &hook, &log),
        CLIENT_TIMEOUT,
        &ca.logs(),
    );

    // Both names put a record at the same owner name, each with its own digest.
    let calls = hook_calls(&log);
    let presented: Vec<&(String, String, String)> =
        calls.iter().filter(|c| c.0 == "present").collect();
    assert_eq!(presented.len(), 2, "two TXT records published: {calls:?}");
    assert!(
        presented
            .iter()
            .all(|c| c.1 == "_acme-challenge.lego-dns.certwright.test."),
        "records at the challenge owner name: {calls:?}"
    );
    assert_ne!(
        presented[0].2, presented[1].2,
        "one digest per authorization"
    );
    assert!(
        calls.iter().any(|c| c.0 == "cleanup"),
        "lego cleaned up: {calls:?}"
    );

    let cert = path.join("certificates/_.lego-dns.certwright.test.crt");
    let cert = if cert.exists() {
        cert
    } else {
        path.join("certificates/lego-dns.certwright.test.crt")
    };
    check_chain(&ca, &cert, &names, tmp.path());
}

#[test]
fn lego_dns01_wrong_txt_value_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut guard = ProcessGuard::default();
    let ca = CaProcess::start(ca_bin(), &mut guard, &tmp.path().join("ca"));
    let (hook, log) = write_hook(&tmp.path().join("hook"));
    let names = ["lego-wrong.certwright.test"];

    let path = tmp.path().join("lego");
    let mut cmd = lego_dns01(&path, &ca, &names, &hook, &log);
    cmd.env("HOOK_WRONG_VALUE", "1");
    let out = run_bounded(&mut cmd, CLIENT_TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "lego must fail when the TXT record is wrong:\n{stderr}"
    );
    assert!(
        stderr.contains("urn:ietf:params:acme:error:incorrectResponse"),
        "lego reports the CA's incorrectResponse problem:\n{stderr}\n{}",
        ca.logs()
    );
    assert!(
        hook_calls(&log).iter().any(|c| c.0 == "present"),
        "the record was published before the CA looked"
    );
    assert!(
        !path
            .join("certificates/lego-wrong.certwright.test.crt")
            .exists(),
        "no certificate after a failed validation"
    );
}

#[test]
fn certbot_dns01_wildcard_through_manual_hooks() {
    let tmp = tempfile::tempdir().unwrap();
    let mut guard = ProcessGuard::default();
    let ca = CaProcess::start(ca_bin(), &mut guard, &tmp.path().join("ca"));
    let (hook, log) = write_hook(&tmp.path().join("hook"));
    let names = [
        "certbot-dns.certwright.test",
        "*.certbot-dns.certwright.test",
    ];

    let dir = tmp.path().join("certbot");
    let mut cmd = certbot_command(&dir, &ca, "certonly");
    cmd.env("CHALLTESTSRV_MANAGEMENT", dns().management.to_string())
        .env("HOOK_LOG", &log)
        .args(["--agree-tos", "-m", EMAIL])
        .args(["--manual", "--preferred-challenges", "dns"])
        .arg("--manual-auth-hook")
        .arg(&hook)
        .arg("--manual-cleanup-hook")
        .arg(&hook);
    for name in names {
        cmd.args(["-d", name]);
    }
    let context = || {
        let log = fs::read_to_string(dir.join("logs/letsencrypt.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "--- certbot log (last 80 lines)\n{}\n{}",
            lines[lines.len().saturating_sub(80)..].join("\n"),
            ca.logs()
        )
    };
    let out = run_bounded(&mut cmd, CLIENT_TIMEOUT);
    assert!(
        out.status.success(),
        "certbot certonly --manual dns failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        context()
    );

    let calls = hook_calls(&log);
    let presented: Vec<_> = calls.iter().filter(|c| c.0 == "present").collect();
    assert_eq!(presented.len(), 2, "two TXT records published: {calls:?}");
    assert!(
        presented
            .iter()
            .all(|c| c.1 == "_acme-challenge.certbot-dns.certwright.test."),
        "records at the challenge owner name: {calls:?}"
    );

    let live = dir.join("config/live/certbot-dns.certwright.test");
    check_chain(&ca, &live.join("fullchain.pem"), &names, tmp.path());
}

#[test]
fn lego_tlsalpn01() {
    let tmp = tempfile::tempdir().unwrap();
    let mut guard = ProcessGuard::default();
    let data_dir = tmp.path().join("ca");
    let alpn_port = free_port();
    let listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let ca = CaProcess::start_with_args(
        ca_bin(),
        &mut guard,
        &data_dir,
        listen,
        free_port(),
        &["--tlsalpn01-port", &alpn_port.to_string()],
    );
    let names = ["lego-alpn.certwright.test", "www.lego-alpn.certwright.test"];

    let path = tmp.path().join("lego");
    let mut cmd = lego_command(&path, &ca, &names);
    // Only the tls-alpn-01 solver: nothing answers http-01 or dns-01.
    cmd.arg("--tls")
        .args(["--tls.port", &format!("127.0.0.1:{alpn_port}")])
        .arg("run");
    run_ok("lego --tls run", &mut cmd, CLIENT_TIMEOUT, &ca.logs());

    check_chain(
        &ca,
        &path.join("certificates/lego-alpn.certwright.test.crt"),
        &names,
        tmp.path(),
    );
}
