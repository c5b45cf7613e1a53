//! certwright-ca in front of command-line CAs (the `exec` backend, `docs/upstream.md`),
//! end to end: certbot and lego get certificates whose signer is a real OpenSSL `ca`
//! directory (PEM, and certs-only PKCS#7 DER) or a real Easy-RSA PKI, driven by the
//! scripts of `contrib/exec`, chosen per order by the routing rules; revocation reaches
//! the backend's index. Faults: a hanging command (killed, retried, then the order fails
//! at its deadline), a command returning a certificate for another key or other names,
//! refusals, a failing revoke command, and SIGKILL of certwright-ca while the command
//! runs. openssl checks every chain against the backend's own root.

mod support;

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use certwright_proto::{b64, AccountKey, KeyType};
use certwright_testkit::acme::{Acme, Responder};
use certwright_testkit::peers::easyrsa::EasyRsa;
use certwright_testkit::peers::openssl_ca::{install_script, OpensslCa};
use serde_json::{json, Value};
use support::{
    ca_bin, certbot_command, dns, free_port, lego_command, pem_certs, run_bounded, run_ok,
    CaProcess, ProcessGuard, CLIENT_EMAIL, CLIENT_TIMEOUT,
};

/// Where this binary keeps its shared backend CAs (under cargo's target directory; those
/// of earlier runs whose process is gone are removed).
fn scratch(name: &str) -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    for entry in fs::read_dir(base).into_iter().flatten().flatten() {
        let file = entry.file_name();
        let Some(pid) = file.to_str().and_then(|f| f.strip_prefix("upstream-exec-")) else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    let dir = base
        .join(format!("upstream-exec-{}", std::process::id()))
        .join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// The OpenSSL CA every test of this binary shares (the scripts lock it per request id
/// and per `openssl ca` run).
fn openssl_ca() -> &'static OpensslCa {
    static CA: OnceLock<OpensslCa> = OnceLock::new();
    CA.get_or_init(|| OpensslCa::create(&scratch("openssl-ca")))
}

/// The Easy-RSA PKI every test of this binary shares.
fn easyrsa() -> &'static EasyRsa {
    static PKI: OnceLock<EasyRsa> = OnceLock::new();
    PKI.get_or_init(|| EasyRsa::create(&scratch("easyrsa")))
}

/// A TOML string.
fn q(p: impl AsRef<Path>) -> String {
    format!("{:?}", p.as_ref().to_string_lossy())
}

/// `[backends.NAME]` of type exec.
fn exec_backend(
    name: &str,
    anchor: &Path,
    command: &Path,
    revoke: Option<&Path>,
    env: &[(&str, String)],
    timing: (u64, u64),
) -> String {
    let env: Vec<String> = env.iter().map(|(k, v)| format!("{k} = {}", q(v))).collect();
    let revoke = revoke
        .map(|r| format!("revoke_command = [{}]\n", q(r)))
        .unwrap_or_default();
    format!(
        "[backends.{name}]\ntype = \"exec\"\ntimeout_secs = {}\ndeadline_secs = {}\n\
         trust_anchor = {}\n\n[backends.{name}.exec]\ncommand = [{}]\n{revoke}env = {{ {} }}\n\n",
        timing.0,
        timing.1,
        q(anchor),
        q(command),
        env.join(", ")
    )
}

fn rule(backend: &str, key: &str, value: &str) -> String {
    format!("[[routing.rules]]\nbackend = \"{backend}\"\n{key} = \"{value}\"\n\n")
}

/// The configuration with the three real backends: `openssl` (PEM) for EAB label
/// `team-openssl`, `easyrsa` for `team-easyrsa`, `openssl-p7` (PKCS#7 DER) for names
/// under `p7.certwright.test`; everything else `local`.
fn real_backends_config() -> String {
    let (ossl, rsa) = (openssl_ca(), easyrsa());
    let ca_dir = ossl.dir.to_string_lossy().into_owned();
    let mut toml = exec_backend(
        "openssl",
        &ossl.root_path(),
        &ossl.sign_script(),
        Some(&ossl.revoke_script()),
        &[("CA_DIR", ca_dir.clone())],
        (30, 120),
    );
    toml += &exec_backend(
        "openssl-p7",
        &ossl.root_path(),
        &ossl.sign_script(),
        Some(&ossl.revoke_script()),
        &[("CA_DIR", ca_dir), ("CA_OUTPUT", "pkcs7-der".into())],
        (30, 120),
    );
    toml += &exec_backend(
        "easyrsa",
        &rsa.root_path(),
        &rsa.sign_script(),
        Some(&rsa.revoke_script()),
        &[("EASYRSA_PKI", rsa.pki().to_string_lossy().into_owned())],
        (30, 120),
    );
    toml += &rule("openssl", "eab_label", "team-openssl");
    toml += &rule("easyrsa", "eab_label", "team-easyrsa");
    toml += &rule("openssl-p7", "suffix", "p7.certwright.test");
    toml
}

/// Runs `certwright-ca ARGS --data-dir <the CA's>`; returns stdout.
fn admin(data_dir: &Path, args: &[&str], context: &str) -> String {
    let mut cmd = Command::new(ca_bin());
    cmd.args(args).arg("--data-dir").arg(data_dir);
    let out = run_ok(
        &format!("certwright-ca {}", args.join(" ")),
        &mut cmd,
        Duration::from_secs(60),
        context,
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `certs list --json [--issuer NAME]`.
fn certs(data_dir: &Path, issuer: Option<&str>) -> Vec<Value> {
    let mut args = vec!["certs", "list", "--json"];
    if let Some(i) = issuer {
        args.extend(["--issuer", i]);
    }
    let out = admin(data_dir, &args, "");
    serde_json::from_str::<Value>(&out)
        .unwrap_or_else(|e| panic!("certs list: {e}: {out}"))
        .as_array()
        .unwrap()
        .clone()
}

/// The audit trail's actions, oldest first.
fn audit_actions(data_dir: &Path) -> Vec<Value> {
    admin(data_dir, &["audit", "export"], "")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Creates an EAB key labelled `label`; returns (kid, hmac key).
fn eab_create(ca: &CaProcess, label: &str) -> (String, String) {
    let out = admin(
        &ca.data_dir,
        &["eab", "create", "--json", "--label", label],
        &ca.logs(),
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    (
        v["kid"].as_str().unwrap().to_owned(),
        v["hmac_key"].as_str().unwrap().to_owned(),
    )
}

/// The serial of the first certificate of a PEM file, lowercase hex without leading
/// zeros (as `certs list` and the RA have it).
fn serial_of(pem: &Path) -> String {
    let der = pem_certs(pem).remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let hex: String = cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    hex.trim_start_matches('0').to_owned()
}

fn norm_serial(s: &str) -> String {
    s.trim_start_matches('0').to_ascii_lowercase()
}

/// `openssl verify -CAfile root [-untrusted chain] cert` must say OK.
fn verify(root: &Path, chain: Option<&Path>, cert: &Path) {
    let mut cmd = Command::new("openssl");
    cmd.arg("verify").arg("-CAfile").arg(root);
    if let Some(chain) = chain {
        cmd.arg("-untrusted").arg(chain);
    }
    let out = run_ok("openssl verify", cmd.arg(cert), Duration::from_secs(30), "");
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(said.trim(), format!("{}: OK", cert.display()), "{said}");
}

/// An ACME client of the real kind.
#[derive(Clone, Copy)]
enum Client {
    Certbot,
    Lego,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Certbot => "certbot",
            Client::Lego => "lego",
        }
    }

    /// Gets a certificate for `name` with the client state in `dir`, binding the account
    /// with `eab` when given; returns (leaf PEM file, chain PEM file).
    fn get(
        self,
        ca: &CaProcess,
        dir: &Path,
        name: &str,
        eab: Option<&(String, String)>,
    ) -> (PathBuf, PathBuf) {
        match self {
            Client::Certbot => {
                let mut cmd = certbot_command(dir, ca, "certonly");
                cmd.args([
                    "--standalone",
                    "--agree-tos",
                    "-m",
                    CLIENT_EMAIL,
                    "-d",
                    name,
                ])
                .args(["--http-01-port", &ca.http01_port.to_string()])
                .args(["--http-01-address", "127.0.0.1"]);
                if let Some((kid, hmac)) = eab {
                    cmd.args(["--eab-kid", kid, "--eab-hmac-key", hmac]);
                }
                run_ok("certbot certonly", &mut cmd, CLIENT_TIMEOUT, &ca.logs());
                let live = dir.join("config/live").join(name);
                (live.join("cert.pem"), live.join("chain.pem"))
            }
            Client::Lego => {
                let mut cmd = lego_command(dir, ca, &[name]);
                cmd.arg("--http")
                    .args(["--http.port", &format!("127.0.0.1:{}", ca.http01_port)]);
                if let Some((kid, hmac)) = eab {
                    cmd.args(["--eab", "--kid", kid, "--hmac", hmac]);
                }
                run_ok("lego run", cmd.arg("run"), CLIENT_TIMEOUT, &ca.logs());
                // lego's .crt is the leaf and its chain; keep copies (revoke archives it).
                let bundle = dir.join("certificates").join(format!("{name}.crt"));
                let certs = pem_certs(&bundle);
                let leaf = dir.join(format!("{name}.leaf.pem"));
                let chain = dir.join(format!("{name}.chain.pem"));
                fs::write(&leaf, pem(&certs[..1])).unwrap();
                fs::write(&chain, pem(&certs[1..])).unwrap();
                (leaf, chain)
            }
        }
    }

    /// Revokes the certificate in `leaf` (got with the client state in `dir`) for
    /// keyCompromise.
    fn revoke(self, ca: &CaProcess, dir: &Path, name: &str, leaf: &Path) {
        match self {
            Client::Certbot => {
                let mut cmd = certbot_command(dir, ca, "revoke");
                cmd.arg("--cert-path").arg(leaf).args([
                    "--reason",
                    "keycompromise",
                    "--no-delete-after-revoke",
                ]);
                run_ok("certbot revoke", &mut cmd, CLIENT_TIMEOUT, &ca.logs());
            }
            Client::Lego => {
                let mut cmd = lego_command(dir, ca, &[name]);
                cmd.args(["revoke", "--reason", "1"]);
                run_ok("lego revoke", &mut cmd, CLIENT_TIMEOUT, &ca.logs());
            }
        }
    }
}

fn pem(ders: &[Vec<u8>]) -> String {
    use base64::Engine;
    let mut out = String::new();
    for der in ders {
        let b = base64::engine::general_purpose::STANDARD.encode(der);
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// One client through every backend: by EAB label to `openssl` and `easyrsa`, by suffix
/// to `openssl-p7`, unmatched to `local`; then a revocation that reaches the backend.
fn through_every_backend(client: Client) {
    let _dns = dns();
    let c = client.name();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("ca.toml");
    fs::write(&config, real_backends_config()).unwrap();
    let mut guard = ProcessGuard::default();
    let ca = CaProcess::start_with_config(ca_bin(), &mut guard, &tmp.path().join("ca"), &config);
    let (ossl, rsa) = (openssl_ca(), easyrsa());

    // EAB label team-openssl → the OpenSSL CA, PEM.
    let name = format!("{c}-openssl.certwright.test");
    let eab = eab_create(&ca, "team-openssl");
    let dir = tmp.path().join("openssl");
    let (openssl_leaf, chain) = client.get(&ca, &dir, &name, Some(&eab));
    verify(&ossl.root_path(), Some(&chain), &openssl_leaf);
    let openssl_serial = serial_of(&openssl_leaf);
    let entry = ossl
        .entry(&openssl_serial)
        .expect("in the OpenSSL CA's index");
    assert_eq!(entry.status, 'V');

    // EAB label team-easyrsa → Easy-RSA (leaf only: its CA is the root).
    let name_rsa = format!("{c}-easyrsa.certwright.test");
    let eab = eab_create(&ca, "team-easyrsa");
    let dir_rsa = tmp.path().join("easyrsa");
    let (rsa_leaf, _) = client.get(&ca, &dir_rsa, &name_rsa, Some(&eab));
    verify(&rsa.root_path(), None, &rsa_leaf);
    let rsa_serial = serial_of(&rsa_leaf);

    // No EAB, a name under p7.certwright.test → the OpenSSL CA, PKCS#7 DER.
    let plain = tmp.path().join("plain");
    let name_p7 = format!("{c}.p7.certwright.test");
    let (p7_leaf, p7_chain) = client.get(&ca, &plain, &name_p7, None);
    verify(&ossl.root_path(), Some(&p7_chain), &p7_leaf);
    let p7_serial = serial_of(&p7_leaf);
    assert!(ossl.entry(&p7_serial).is_some());

    // Unmatched → local: the CA's own hierarchy, not in any backend's index.
    let name_local = format!("{c}-local.certwright.test");
    let (local_leaf, local_chain) = client.get(&ca, &plain, &name_local, None);
    verify(&ca.root_path(), Some(&local_chain), &local_leaf);
    let local_serial = serial_of(&local_leaf);
    assert!(ossl.entry(&local_serial).is_none());

    // The store names each certificate's backend.
    for (issuer, serial) in [
        ("openssl", &openssl_serial),
        ("easyrsa", &rsa_serial),
        ("openssl-p7", &p7_serial),
    ] {
        let listed = certs(&ca.data_dir, Some(issuer));
        let serials: Vec<String> = listed
            .iter()
            .map(|c| norm_serial(c["serial"].as_str().unwrap()))
            .collect();
        assert_eq!(
            serials,
            std::slice::from_ref(serial),
            "certs list --issuer {issuer}"
        );
        assert_eq!(listed[0]["issuer"], issuer);
    }
    let all = certs(&ca.data_dir, None);
    assert_eq!(all.len(), 4, "{all:?}");
    let local = all
        .iter()
        .find(|c| norm_serial(c["serial"].as_str().unwrap()) == local_serial)
        .expect("the local certificate is listed");
    assert!(
        !["openssl", "easyrsa", "openssl-p7"].contains(&local["issuer"].as_str().unwrap()),
        "{local}"
    );

    // Revocation reaches the backend: certbot's through OpenSSL, lego's through Easy-RSA.
    let (backend, leaf, dir, name) = match client {
        Client::Certbot => ("openssl", &openssl_leaf, &dir, &name),
        Client::Lego => ("easyrsa", &rsa_leaf, &dir_rsa, &name_rsa),
    };
    client.revoke(&ca, dir, name, leaf);
    let serial = serial_of(leaf);
    match client {
        Client::Certbot => {
            let entry = ossl.entry(&serial).unwrap();
            assert_eq!(entry.status, 'R', "{entry:?}");
            assert!(entry.revoked.ends_with(",keyCompromise"), "{entry:?}");
        }
        Client::Lego => {
            let line = rsa
                .index()
                .lines()
                .find(|l| norm_serial(l.split('\t').nth(3).unwrap()) == serial)
                .map(str::to_owned)
                .expect("in the Easy-RSA index");
            assert!(
                line.starts_with('R') && line.contains(",keyCompromise"),
                "{line}"
            );
        }
    }
    let listed = certs(&ca.data_dir, Some(backend));
    assert!(listed[0]["revoked_at"].is_i64(), "{listed:?}");
    // The others stay valid at their backends.
    assert_eq!(ossl.entry(&p7_serial).unwrap().status, 'V');
    ca.stop(&mut guard);
}

#[test]
fn certbot_gets_certificates_from_openssl_pkcs7_easyrsa_and_local_by_routing_and_revokes_at_openssl(
) {
    through_every_backend(Client::Certbot);
}

#[test]
fn lego_gets_certificates_from_openssl_pkcs7_easyrsa_and_local_by_routing_and_revokes_at_easyrsa() {
    through_every_backend(Client::Lego);
}

/// A CA process speaking plain HTTP to the test ACME client, with `config`.
fn start_plain(
    guard: &mut ProcessGuard,
    data_dir: &Path,
    listen: SocketAddr,
    http01_port: u16,
    config: &Path,
) -> CaProcess {
    let base = format!("http://{listen}");
    let config = config.to_string_lossy().into_owned();
    tokio::task::block_in_place(|| {
        CaProcess::start_with_args(
            ca_bin(),
            guard,
            data_dir,
            listen,
            http01_port,
            &["--no-tls", "--base-url", &base, "--config", &config],
        )
    })
}

/// Authorizes an order for `names` and finalizes it with a fresh key; returns (order
/// URL, the finalize answer).
async fn finalize(acme: &Acme, responder: &Responder, names: &[&str]) -> (String, Value) {
    let r = acme.new_order(names).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let url = r.location();
    let order = r.json();
    for a in acme.authorize(&order, responder).await {
        assert_eq!(a["status"], "valid", "{a}");
    }
    let ready = acme.wait_order(&url).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let r = acme
        .finalize(&ready, &certwright_testkit::x509::csr(names, &key))
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    (url, r.json())
}

/// Polls the order until it leaves `processing` (bounded by `limit`).
async fn settle(acme: &Acme, url: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let o = acme.post(url, None).await.json();
        if o["status"] != "processing" {
            return o;
        }
        assert!(
            Instant::now() < deadline,
            "order {url} still processing: {o}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A failed order: `invalid`, the problem `kind`, no certificate.
fn assert_failed(order: &Value, kind: &str) {
    assert_eq!(order["status"], "invalid", "{order}");
    assert_eq!(
        order["error"]["type"],
        format!("urn:ietf:params:acme:error:{kind}"),
        "{order}"
    );
    assert!(order.get("certificate").is_none(), "{order}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_hang_mismatch_refusals_and_a_failing_revoke_deliver_nothing() {
    let _dns = dns();
    support::quiet_cut_requests();
    let tmp = tempfile::tempdir().unwrap();
    // A CA of its own: its index must show that nothing was signed for these orders.
    let ossl = OpensslCa::create(&tmp.path().join("openssl-ca"));
    let ca_dir = ossl.dir.to_string_lossy().into_owned();
    let bin = tmp.path().join("bin");
    let runs = tmp.path().join("runs");
    fs::create_dir_all(&runs).unwrap();
    let runs_s = runs.to_string_lossy().into_owned();

    // Hangs, with a grandchild: each run leaves its pid in RUNS.
    let hang = bin.join("hang");
    install_script(
        &hang,
        "#!/bin/sh\nsleep 300 >/dev/null 2>&1 &\necho $! >> \"$RUNS/hang\"\nsleep 300\n",
    );
    // Signs, with the OpenSSL CA's intermediate but outside its index, a certificate for
    // another key (same names) or for other names (the CSR's key).
    let other_key = bin.join("other-key");
    install_script(
        &other_key,
        r#"#!/bin/sh
set -eu
san=""
for n in $CERTWRIGHT_DNS_NAMES; do san="${san:+$san,}DNS:$n"; done
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj / \
    -addext "subjectAltName=$san" -keyout other.key -out other.csr 2>/dev/null
openssl x509 -req -in other.csr -CA "$CA_DIR/intermediate.pem" \
    -CAkey "$CA_DIR/private/intermediate.key" -copy_extensions copy -days 1 2>/dev/null
cat "$CA_DIR/chain.pem"
echo ran >> "$RUNS/other-key"
"#,
    );
    let other_names = bin.join("other-names");
    install_script(
        &other_names,
        r#"#!/bin/sh
set -eu
printf 'subjectAltName=DNS:evil.certwright.test\n' > ext.cnf
openssl x509 -req -in "$CERTWRIGHT_CSR_FILE" -CA "$CA_DIR/intermediate.pem" \
    -CAkey "$CA_DIR/private/intermediate.key" -extfile ext.cnf -days 1 2>/dev/null
cat "$CA_DIR/chain.pem"
echo ran >> "$RUNS/other-names"
"#,
    );
    let refuse = bin.join("refuse");
    install_script(
        &refuse,
        "#!/bin/sh\necho \"secret backend detail $CODE\" >&2\nexit \"$CODE\"\n",
    );
    let env = |extra: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        let mut v = vec![("CA_DIR", ca_dir.clone()), ("RUNS", runs_s.clone())];
        v.extend(extra.iter().map(|(k, x)| (*k, x.to_string())));
        v
    };
    let root = ossl.root_path();
    let mut toml = exec_backend("hang", &root, &hang, None, &env(&[]), (2, 6));
    toml += &exec_backend("other-key", &root, &other_key, None, &env(&[]), (30, 60));
    toml += &exec_backend(
        "other-names",
        &root,
        &other_names,
        None,
        &env(&[]),
        (30, 60),
    );
    toml += &exec_backend(
        "bad-csr",
        &root,
        &refuse,
        None,
        &env(&[("CODE", "65")]),
        (30, 60),
    );
    toml += &exec_backend(
        "no-names",
        &root,
        &refuse,
        None,
        &env(&[("CODE", "77")]),
        (30, 60),
    );
    toml += &exec_backend(
        "no-revoke",
        &root,
        &ossl.sign_script(),
        Some(Path::new("/bin/false")),
        &env(&[]),
        (30, 60),
    );
    for b in [
        "hang",
        "other-key",
        "other-names",
        "bad-csr",
        "no-names",
        "no-revoke",
    ] {
        toml += &rule(b, "suffix", &format!("{b}.certwright.test"));
    }
    let config = tmp.path().join("ca.toml");
    fs::write(&config, toml).unwrap();

    let responder = Responder::start().await;
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut guard = ProcessGuard::default();
    let data_dir = tmp.path().join("ca");
    let ca = start_plain(&mut guard, &data_dir, listen, responder.port, &config);
    let mut acme = Acme::new(
        &format!("http://{listen}"),
        AccountKey::generate(KeyType::EcP256).unwrap(),
    )
    .await;
    assert_eq!(acme.register().await.status, 201);

    // The hanging command: finalize answers processing; each run is killed after 2 s
    // with its grandchild, retried, and the order fails once the 6 s deadline is near.
    let started = Instant::now();
    let (hang_url, answer) = finalize(&acme, &responder, &["x.hang.certwright.test"]).await;
    assert_eq!(answer["status"], "processing", "{answer}");
    // Meanwhile, the other faults.
    for (name, kind, audit) in [
        (
            "x.other-key.certwright.test",
            "serverInternal",
            Some("backend.mismatch"),
        ),
        (
            "x.other-names.certwright.test",
            "serverInternal",
            Some("backend.mismatch"),
        ),
        ("x.bad-csr.certwright.test", "badCSR", None),
        ("x.no-names.certwright.test", "rejectedIdentifier", None),
    ] {
        let (url, _) = finalize(&acme, &responder, &[name]).await;
        let order = settle(&acme, &url, Duration::from_secs(60)).await;
        assert_failed(&order, kind);
        let detail = order["error"]["detail"].as_str().unwrap();
        assert!(
            !detail.contains("secret backend detail"),
            "stderr reached the client: {detail}"
        );
        if let Some(action) = audit {
            let actions = audit_actions(&data_dir);
            let found = actions.iter().any(|e| {
                e["action"] == action && e["details"]["backend"] == name.split('.').nth(1).unwrap()
            });
            assert!(found, "audit has {action} for {name}: {actions:?}");
        }
    }
    assert_eq!(
        fs::read_to_string(runs.join("other-key"))
            .unwrap()
            .lines()
            .count(),
        1
    );
    assert_eq!(
        fs::read_to_string(runs.join("other-names"))
            .unwrap()
            .lines()
            .count(),
        1
    );

    let order = settle(&acme, &hang_url, Duration::from_secs(40)).await;
    let took = started.elapsed();
    assert_failed(&order, "serverInternal");
    assert!(
        took >= Duration::from_secs(4),
        "failed only near the deadline: {took:?}"
    );
    let pids = fs::read_to_string(runs.join("hang")).unwrap();
    let pids: Vec<&str> = pids.lines().collect();
    assert!(pids.len() >= 2, "retried after the time-out: {pids:?}");
    for pid in &pids {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty()
                || stat
                    .rsplit_once(')')
                    .unwrap()
                    .1
                    .trim_start()
                    .starts_with('Z'),
            "the hanging command's grandchild {pid} was killed: {stat}"
        );
    }
    // Nothing was stored, and the OpenSSL CA's index has nothing for these orders.
    assert!(certs(&data_dir, None).is_empty(), "no certificate stored");
    assert!(ossl.index().is_empty());

    // A revoke command that fails: the client gets serverInternal, nothing is recorded
    // here, and the backend's index still has the certificate valid.
    let (url, _) = finalize(&acme, &responder, &["x.no-revoke.certwright.test"]).await;
    let order = settle(&acme, &url, Duration::from_secs(60)).await;
    assert_eq!(order["status"], "valid", "{order}");
    let chain = acme
        .post(order["certificate"].as_str().unwrap(), None)
        .await;
    let der =
        certwright_testkit::x509::pem_chain(&String::from_utf8(chain.body).unwrap()).remove(0);
    let revoke_url = acme.dir.revoke_cert.clone();
    let r = acme
        .post(
            &revoke_url,
            Some(&json!({"certificate": b64::encode(&der), "reason": 1})),
        )
        .await;
    r.assert_problem(certwright_proto::ProblemType::ServerInternal, 500);
    let listed = certs(&data_dir, Some("no-revoke"));
    assert_eq!(listed.len(), 1);
    assert!(listed[0]["revoked_at"].is_null(), "{listed:?}");
    let serial = listed[0]["serial"].as_str().unwrap();
    assert_eq!(ossl.entry(serial).unwrap().status, 'V');
    drop(ca);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_the_command_runs_then_restart_gives_exactly_one_certificate() {
    let _dns = dns();
    support::quiet_cut_requests();
    let tmp = tempfile::tempdir().unwrap();
    // A CA of its own: its index must hold exactly what this test signs.
    let ossl = OpensslCa::create(&tmp.path().join("openssl-ca"));
    let marker = tmp.path().join("in-flight");
    // Leaves a marker, holds 3 s (certwright-ca is killed meanwhile), then signs.
    let slow = tmp.path().join("bin/slow-sign");
    install_script(
        &slow,
        &format!(
            "#!/bin/sh\necho \"$$\" >> \"$MARKER\"\nsleep 3\nexec {}\n",
            ossl.sign_script().display()
        ),
    );
    let toml = exec_backend(
        "openssl",
        &ossl.root_path(),
        &slow,
        None,
        &[
            ("CA_DIR", ossl.dir.to_string_lossy().into_owned()),
            ("MARKER", marker.to_string_lossy().into_owned()),
        ],
        (30, 120),
    ) + "[routing]\ndefault = \"openssl\"\n";
    let config = tmp.path().join("ca.toml");
    fs::write(&config, toml).unwrap();

    let responder = Responder::start().await;
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut guard = ProcessGuard::default();
    let data_dir = tmp.path().join("ca");
    let ca = start_plain(&mut guard, &data_dir, listen, responder.port, &config);
    let mut acme = Acme::new(
        &format!("http://{listen}"),
        AccountKey::generate(KeyType::EcP256).unwrap(),
    )
    .await;
    assert_eq!(acme.register().await.status, 201);

    let (url, answer) = finalize(&acme, &responder, &["kill.certwright.test"]).await;
    assert_eq!(answer["status"], "processing", "{answer}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !marker.exists() {
        assert!(
            Instant::now() < deadline,
            "the command never started\n{}",
            ca.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::task::block_in_place(|| ca.kill(&mut guard));
    assert!(ossl.index().is_empty(), "killed before the backend signed");

    let ca = start_plain(&mut guard, &data_dir, listen, responder.port, &config);
    let order = settle(&acme, &url, Duration::from_secs(60)).await;
    assert_eq!(order["status"], "valid", "{order}\n{}", ca.logs());
    let chain = acme
        .post(order["certificate"].as_str().unwrap(), None)
        .await;
    assert_eq!(chain.status, 200);
    let chain_pem = tmp.path().join("chain.pem");
    fs::write(&chain_pem, &chain.body).unwrap();
    verify(
        &ossl.root_path(),
        Some(&ossl.intermediate_path()),
        &chain_pem,
    );

    // The command ran twice (before the kill and after the restart) and signed once.
    let runs = fs::read_to_string(&marker).unwrap();
    assert_eq!(runs.lines().count(), 2, "{runs}");
    let index = ossl.index();
    assert_eq!(
        index.len(),
        1,
        "exactly one certificate at the backend: {index:?}"
    );
    assert_eq!(norm_serial(&index[0].serial), serial_of(&chain_pem));
    let stored = certs(&data_dir, Some("openssl"));
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(
        norm_serial(stored[0]["serial"].as_str().unwrap()),
        serial_of(&chain_pem)
    );
    let mut cmd = Command::new(ca_bin());
    cmd.args(["check", "--data-dir"]).arg(&data_dir);
    let out = run_bounded(&mut cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "certwright-ca check: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    tokio::task::block_in_place(|| ca.stop(&mut guard));
}
