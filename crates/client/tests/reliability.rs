//! What happens after issuance (issue #23), against this workspace's `certwright-ca`
//! (named by `CERTWRIGHT_CA_BIN`) with pebble-challtestsrv for dns-01: deploy failures
//! kept and retried, safe and stable renewal times, revoked certificates renewed, every
//! certificate and its root-cause error in `list`, the exit-code table, local
//! preconditions checked before any CA is contacted, `renew --server`; then post-deploy
//! verification against a local TLS server, SIGHUP reload and `check-config`, and pre and
//! post hooks around http-01.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use certwright_client::renewal::parse_rfc3339;
use certwright_testkit::ca_process::{ca_binary_from_env, CaProcess};
use certwright_testkit::process::ProcessGuard;
use common::{ChallTestSrv, Cli};
use serde_json::Value;

/// A running certwright-ca (one per test binary; it dies with the test process).
struct Ca {
    directory_url: String,
    root: PathBuf,
    /// The port the CA's http-01 checks connect to.
    http01_port: u16,
}

fn start_ca() -> Ca {
    let binary = ca_binary_from_env();
    let data = tempfile::tempdir().unwrap().keep();
    let mut guard = ProcessGuard::default();
    let ca = CaProcess::start_with_args(
        &binary,
        &mut guard,
        &data.join("ca"),
        SocketAddr::from(([127, 0, 0, 1], common::free_port())),
        common::free_port(),
        &["--pki-http-listen", "off"],
    );
    // The guard would stop the CA when dropped: it lives as long as the process.
    std::mem::forget(guard);
    Ca {
        directory_url: ca.directory_url.clone(),
        root: ca.root_path(),
        http01_port: ca.http01_port,
    }
}

fn ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| common::on_immortal_thread(start_ca))
}

/// A second, independent CA (for moving a certificate with `renew --server`).
fn other_ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| common::on_immortal_thread(start_ca))
}

/// A state directory with the CLI pointed at the shared CA, and the dns-01 arguments.
struct Fixture {
    cli: Cli,
    _state: tempfile::TempDir,
    dns: Vec<String>,
}

fn fixture() -> Fixture {
    let ca = ca();
    let state = tempfile::tempdir().unwrap();
    let dns = ChallTestSrv::shared();
    let hook = dns.write_hook(state.path());
    Fixture {
        cli: Cli {
            server: ca.directory_url.clone(),
            ca_cert: ca.root.clone(),
            state: state.path().to_owned(),
        },
        dns: vec![
            "--dns01-exec".into(),
            hook.to_str().unwrap().to_owned(),
            "--dns01-resolver".into(),
            format!("127.0.0.1:{}", dns.dns_port),
        ],
        _state: state,
    }
}

impl Fixture {
    /// `issue -d NAME` with dns-01 and `extra` arguments.
    fn issue(&self, name: &str, extra: &[&str]) -> Output {
        let mut args = vec!["--json", "issue", "-d", name];
        args.extend(self.dns.iter().map(String::as_str));
        args.extend_from_slice(extra);
        self.cli.run(&args)
    }

    fn meta(&self, name: &str) -> Value {
        let path = self.cli.cert_dir(name).join("meta.json");
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    /// `list --json`, the row of `name`.
    fn row(&self, name: &str) -> Value {
        let list = self.cli.json(&["list"]);
        list.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in list: {list}"))
            .clone()
    }

    /// Runs with the client's clock moved forward by `secs`.
    fn run_at(&self, secs: i64, args: &[&str]) -> Output {
        let mut cmd = self.cli.command();
        cmd.env("CERTWRIGHT_TEST_TIME_OFFSET", secs.to_string())
            .args(args);
        common::run_bounded(&mut cmd, Duration::from_secs(180))
    }
}

fn last_json(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("null"))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn time(v: &Value) -> time::OffsetDateTime {
    parse_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}"))).unwrap()
}

/// A deploy hook that fails (with a message on stderr) until `flag` exists, and logs
/// each successful run.
fn flaky_hook(dir: &Path) -> (String, PathBuf, PathBuf) {
    let flag = dir.join("server-ready");
    let log = dir.join("deployed.log");
    let hook = format!(
        "if [ -e {flag} ]; then echo \"$CERTWRIGHT_CERT_NAME\" >> {log}; \
         else echo 'warning: noise'; echo 'nginx: reload refused' >&2; exit 1; fi",
        flag = flag.display(),
        log = log.display()
    );
    (hook, flag, log)
}

#[test]
fn a_failed_deploy_hook_is_recorded_shown_and_retried_until_it_succeeds() {
    let f = fixture();
    let (hook, flag, log) = flaky_hook(f.cli.state.as_path());
    let name = "deploy.cw.test";
    let out = f.issue(name, &["--deploy-hook", &hook]);
    // Issued, but the deploy failed: reported with the certificate, exit 1 (a failure,
    // not "bad arguments").
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v = last_json(&out);
    assert_eq!(v["action"], "issued", "{v}");
    assert_eq!(v["deploy"], "failed", "{v}");
    assert!(
        v["deploy_error"]
            .as_str()
            .unwrap()
            .contains("reload refused"),
        "{v}"
    );
    let serial = v["serial"].as_str().unwrap().to_owned();
    // Recorded in meta.json, shown by list.
    let meta = f.meta(name);
    assert_eq!(meta["deploy_failure"]["failures"], 1, "{meta}");
    assert_eq!(meta["serial"], serial.as_str());
    let row = f.row(name);
    assert_eq!(row["status"], "deploy failed", "{row}");
    assert!(
        row["error"].as_str().unwrap().contains("reload refused"),
        "{row}"
    );
    let human = f.cli.run(&["list"]);
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(human.contains("deploy failed"), "{human}");

    // Before the retry time: still reported as failed (exit 1), the hook not run again.
    let out = f.cli.run(&["--json", "renew"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(last_json(&out)["action"], "deploy_failed", "{}", text(&out));
    assert_eq!(f.meta(name)["deploy_failure"]["failures"], 1);

    // After the backoff (1 minute): retried, fails again, backoff doubles.
    let out = f.run_at(90, &["--json", "renew"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let meta = f.meta(name);
    assert_eq!(meta["deploy_failure"]["failures"], 2, "{meta}");
    let retry = time(&meta["deploy_failure"]["retry_at"]);
    let now = time::OffsetDateTime::now_utc();
    assert!(retry > now + time::Duration::seconds(90 + 100), "{meta}");
    assert!(!log.exists(), "the hook never succeeded");

    // The web server is fixed: the next retry deploys the same certificate, once.
    std::fs::write(&flag, "").unwrap();
    let out = f.run_at(600, &["--json", "renew"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(last_json(&out)["action"], "deployed", "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), format!("{name}\n"));
    let meta = f.meta(name);
    assert!(meta.get("deploy_failure").is_none(), "{meta}");
    assert_eq!(meta["serial"], serial.as_str(), "deployed, not renewed");
    assert_eq!(f.row(name)["status"], "valid");
    let out = f.run_at(900, &["--json", "renew"]);
    assert_eq!(last_json(&out)["action"], "not_due", "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1);
}

#[test]
fn renewal_times_keep_the_safety_floor_and_stay_put_between_runs() {
    let f = fixture();
    for (name, profile, fraction) in [
        ("short.timing.cw.test", Some("shortlived"), 0.5),
        ("long.timing.cw.test", None, 2.0 / 3.0),
    ] {
        let mut extra = vec![];
        if let Some(p) = profile {
            extra.extend(["--profile", p]);
        }
        let out = f.issue(name, &extra);
        assert!(out.status.success(), "{}", text(&out));
        let meta = f.meta(name);
        let (nb, na) = (time(&meta["not_before"]), time(&meta["not_after"]));
        let renew_at = time(&meta["renew_at"]);
        let floor = nb + (na - nb) * fraction;
        // Whatever the window, never later than the floor, and not absurdly early.
        assert!(
            renew_at <= floor,
            "{name}: {renew_at} after the floor {floor}"
        );
        assert!(renew_at > nb + (na - nb) / 2 - (na - nb) / 10, "{meta}");
        // certwright-ca's ARI window (recorded): around the floor, ending well before expiry.
        let window = &meta["ari_window"];
        let end = time(&window[1]);
        assert!(
            na - end > (na - nb) / 4,
            "{name}: window {window} ends too late"
        );
        // Asking again (every `renew` consults ARI) keeps the time chosen.
        for _ in 0..6 {
            let v = f.cli.json(&["renew", name]);
            assert_eq!(v["action"], "not_due", "{v}");
            assert_eq!(f.meta(name)["renew_at"], meta["renew_at"], "{name} moved");
        }
    }
}

#[test]
fn a_revoked_certificate_is_renewed_at_once_and_listed_as_revoked() {
    let f = fixture();
    let name = "revoked.cw.test";
    let out = f.issue(name, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let first = last_json(&out);
    let v = f.cli.json(&["revoke", name, "--reason", "keyCompromise"]);
    assert_eq!(v["action"], "revoked");
    let row = f.row(name);
    assert_eq!(row["status"], "revoked", "{row}");
    assert_eq!(row["next_renewal"], "now", "{row}");
    // No --force: a revoked certificate is due.
    let r = f.cli.json(&["renew"]);
    assert_eq!(r["action"], "renewed", "{r}");
    assert_ne!(r["serial"], first["serial"]);
    let row = f.row(name);
    assert_eq!(row["status"], "valid", "{row}");
    assert_eq!(row["revoked"], false);
}

#[test]
fn every_certificate_is_listed_with_the_root_cause_of_its_failure() {
    let f = fixture();
    // A CA that is not there: one line, the root cause, no library chain.
    let closed = format!("https://127.0.0.1:{}/directory", common::free_port());
    let name = "never.cw.test";
    let mut args = vec!["issue", "-d", name];
    args.extend(f.dns.iter().map(String::as_str));
    let out = common::run_bounded(
        Command::new(env!("CARGO_BIN_EXE_certwright"))
            .args(["--server", &closed, "--ca-cert"])
            .arg(&f.cli.ca_cert)
            .arg("--state-dir")
            .arg(&f.cli.state)
            .args(&args),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one error line: {stderr}");
    assert!(lines[0].contains("connection refused"), "{stderr}");
    assert!(!lines[0].contains("error sending request"), "{stderr}");
    // Never issued, still listed, with the same cause in --json.
    let row = f.row(name);
    assert_eq!(row["status"], "never issued", "{row}");
    assert!(
        row["error"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{row}"
    );
    let human = String::from_utf8_lossy(&f.cli.run(&["list"]).stdout).to_string();
    assert!(
        human.contains("never issued") && human.contains("connection refused"),
        "{human}"
    );

    // A private CA without --ca-cert: the hint.
    let out = common::run_bounded(
        Command::new(env!("CARGO_BIN_EXE_certwright"))
            .args(["--server", &f.cli.server, "--state-dir"])
            .arg(&f.cli.state)
            .args(["--json", "account", "register"]),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v = last_json(&out);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("certificate not trusted — try --ca-cert"),
        "{v}"
    );
    let out = common::run_bounded(
        Command::new(env!("CARGO_BIN_EXE_certwright"))
            .args(["--server", &f.cli.server, "--state-dir"])
            .arg(&f.cli.state)
            .args(["account", "register"]),
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("try --ca-cert"), "{stderr}");

    // A fallback: the warning names the cause too.
    let mut args = vec!["--json", "--server", &closed, "--server", &f.cli.server];
    args.extend(["issue", "-d", "fallback.cw.test"]);
    args.extend(f.dns.iter().map(String::as_str));
    let out = common::run_bounded(
        Command::new(env!("CARGO_BIN_EXE_certwright"))
            .args(["--ca-cert"])
            .arg(&f.cli.ca_cert)
            .arg("--state-dir")
            .arg(&f.cli.state)
            .args(&args),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", text(&out));
    let v = last_json(&out);
    let why = v["fallbacks"][0]["error"].as_str().unwrap();
    assert!(why.contains("connection refused"), "{v}");
    assert!(out.stderr.is_empty(), "{}", text(&out));
}

#[test]
fn a_silent_server_times_out_with_that_cause() {
    // Accepts connections (the kernel's backlog) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/directory", silent.local_addr().unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(async {
            let mut options = certwright_client::ClientOptions::new(&url);
            options.request_timeout = Duration::from_secs(1);
            certwright_client::AcmeClient::new(options).await
        })
        .unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

#[test]
fn exit_codes_follow_the_documented_table() {
    let f = fixture();
    let state = f.cli.state.clone();
    let bin = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_certwright"));
        c.arg("--state-dir").arg(&state);
        c
    };
    let run = |c: &mut Command| common::run_bounded(c, Duration::from_secs(120));

    // 0: success, also "nothing due".
    assert_eq!(code(&run(bin().arg("list"))), Some(0));
    let out = f.issue("ok.exit.cw.test", &[]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(code(&f.cli.run(&["renew"])), Some(0));

    // 1: a failure that is not the CA's refusal: nobody listening; a URL that is no ACME
    // directory (404); a failing deploy hook.
    let closed = format!("https://127.0.0.1:{}/directory", common::free_port());
    let out = run(bin().args(["--server", &closed, "account", "register"]));
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    let not_acme = f.cli.server.replace("/directory", "/no-such-directory");
    let out = run(bin()
        .args(["--server", &not_acme, "--ca-cert"])
        .arg(&f.cli.ca_cert)
        .args(["account", "register"]));
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    let out = f.issue("hook.exit.cw.test", &["--deploy-hook", "exit 7"]);
    assert_eq!(code(&out), Some(1), "{}", text(&out));

    // 2: bad arguments or configuration, local preconditions.
    assert_eq!(code(&run(bin().arg("--no-such-flag"))), Some(2));
    let out = run(bin().args(["run", "--config", "/nonexistent/agent.toml"]));
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    let out = run(bin().args(["check-config", "/nonexistent/agent.toml"]));
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    let out = f.cli.run(&[
        "issue",
        "-d",
        "*.exit.cw.test",
        "--http01-listen",
        "127.0.0.1:1",
    ]);
    assert_eq!(code(&out), Some(2), "{}", text(&out));

    // 3: the CA refused with a problem document (a second revocation).
    f.cli.json(&["revoke", "ok.exit.cw.test"]);
    let out = f.cli.run(&["revoke", "ok.exit.cw.test"]);
    assert_eq!(code(&out), Some(3), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("alreadyRevoked"));

    // 4: some of several certificates failed (the revoked one renews; the one whose hook
    // fails does not count as a success).
    let out = f
        .cli
        .run(&["renew", "--force", "ok.exit.cw.test", "hook.exit.cw.test"]);
    assert_eq!(code(&out), Some(4), "{}", text(&out));

    // 5: another run holds the certificate's lock.
    let store = certwright_client::store::Store::open(&state).unwrap();
    let lock = store.lock_cert("ok.exit.cw.test").unwrap();
    let out = f.cli.run(&["renew", "--force", "ok.exit.cw.test"]);
    assert_eq!(code(&out), Some(5), "{}", text(&out));
    drop(lock);
}

/// A TCP listener standing in for a CA: did anybody connect?
struct Watched(TcpListener);

impl Watched {
    fn new() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        Self(l)
    }
    fn url(&self) -> String {
        format!("https://{}/directory", self.0.local_addr().unwrap())
    }
    fn contacted(&self) -> bool {
        self.0.accept().is_ok()
    }
}

#[test]
fn local_preconditions_are_checked_before_any_ca_is_contacted() {
    let f = fixture();
    let ca = Watched::new();
    let second = Watched::new();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let webroot = f.cli.state.join("www-typo");
    let cases: [(&[&str], &str); 4] = [
        (
            &["-d", "busy.cw.test", "--http01-listen", &busy_addr],
            "already in use",
        ),
        (
            &["-d", "busy.cw.test", "--tlsalpn01-listen", &busy_addr],
            "already in use",
        ),
        (
            &["-d", "*.wild.cw.test", "--http01-listen", "127.0.0.1:1"],
            "dns-01",
        ),
        (
            &["-d", "web.cw.test", "--webroot", webroot.to_str().unwrap()],
            "no such directory",
        ),
    ];
    for (args, want) in cases {
        let out = common::run_bounded(
            Command::new(env!("CARGO_BIN_EXE_certwright"))
                .args([
                    "--server",
                    &ca.url(),
                    "--server",
                    &second.url(),
                    "--state-dir",
                ])
                .arg(&f.cli.state)
                .arg("issue")
                .args(args),
            Duration::from_secs(60),
        );
        assert_eq!(code(&out), Some(2), "{args:?}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            !ca.contacted() && !second.contacted(),
            "{args:?} contacted a CA"
        );
    }
    assert!(!webroot.exists(), "a mistyped web root is not created");
    // --dry-run checks the same and contacts nobody; `:PORT` is every IPv4 address.
    let free = format!(":{}", common::free_port());
    let out = common::run_bounded(
        Command::new(env!("CARGO_BIN_EXE_certwright"))
            .args(["--json", "--server", &ca.url(), "--state-dir"])
            .arg(&f.cli.state)
            .args([
                "issue",
                "--dry-run",
                "-d",
                "dry.cw.test",
                "--http01-listen",
                &free,
            ]),
        Duration::from_secs(60),
    );
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(last_json(&out)["action"], "dry_run", "{}", text(&out));
    assert!(!ca.contacted(), "a dry run contacted the CA");
    let out = f.cli.run(&[
        "issue",
        "--dry-run",
        "-d",
        "dry.cw.test",
        "--http01-listen",
        &busy_addr,
    ]);
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    assert_eq!(
        f.cli.json(&["list"]),
        serde_json::json!([]),
        "no state left"
    );
    drop(busy);

    // renew --dry-run: due or not, preconditions, nothing changed.
    let out = f.issue("dry-renew.cw.test", &[]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let before = f.meta("dry-renew.cw.test");
    let v = f.cli.json(&["renew", "--dry-run"]);
    assert_eq!(v["due"], false, "{v}");
    assert_eq!(v["preconditions"], "ok", "{v}");
    let v = f.cli.json(&["renew", "--dry-run", "--force"]);
    assert_eq!(v["due"], true, "{v}");
    assert_eq!(
        f.meta("dry-renew.cw.test"),
        before,
        "a dry run changes nothing"
    );
}

#[test]
fn renew_with_server_moves_the_certificate_to_that_ca() {
    let f = fixture();
    let other = other_ca();
    let name = "moved.cw.test";
    let out = f.issue(name, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_certwright"));
    cmd.args(["--json", "--server", &other.directory_url])
        .args(["--ca-cert"])
        .arg(&f.cli.ca_cert)
        .arg("--ca-cert")
        .arg(&other.root)
        .arg("--state-dir")
        .arg(&f.cli.state)
        .args(["renew", "--force", name]);
    let out = common::run_bounded(&mut cmd, Duration::from_secs(120));
    assert!(out.status.success(), "{}", text(&out));
    let v = last_json(&out);
    assert_eq!(v["action"], "renewed", "{v}");
    assert_eq!(v["ca"], other.directory_url.as_str(), "{v}");
    let meta = f.meta(name);
    assert_eq!(meta["issued_by"], other.directory_url.as_str());
    assert_eq!(meta["servers"], serde_json::json!([other.directory_url]));
    // The chain now ends at the other CA's root.
    let root = std::fs::read_to_string(&other.root).unwrap();
    common::openssl_verify(&f.cli.cert_dir(name), &root);
}

#[test]
fn the_agent_records_a_certificate_it_cannot_get_and_keeps_the_others() {
    let f = fixture();
    let closed = format!("https://127.0.0.1:{}/directory", common::free_port());
    let config = f.cli.state.join("agent.toml");
    let (hook_args, ca) = (&f.dns, ca());
    std::fs::write(
        &config,
        format!(
            r#"
server = "{server}"
ca_cert = "{root}"

[[certificate]]
domains = ["agent-ok.cw.test"]
dns01_exec = "{hook}"
dns01_resolvers = ["{resolver}"]

[[certificate]]
name = "agent-unreachable"
domains = ["agent-bad.cw.test"]
server = "{closed}"
dns01_exec = "{hook}"
dns01_resolvers = ["{resolver}"]
"#,
            server = ca.directory_url,
            root = ca.root.display(),
            hook = hook_args[1],
            resolver = hook_args[3],
        ),
    )
    .unwrap();
    let out = f.cli.run(&["check-config", config.to_str().unwrap()]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_certwright"));
    cmd.arg("--state-dir")
        .arg(&f.cli.state)
        .args(["--json", "run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = common::spawn(&mut cmd);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let rows = loop {
        let list = f.cli.json(&["list"]);
        let rows = list.as_array().unwrap().clone();
        if rows.len() == 2 {
            break rows;
        }
        assert!(child.0.try_wait().unwrap().is_none(), "the agent exited");
        assert!(
            std::time::Instant::now() < deadline,
            "agent too slow: {list}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    common::send_signal(child.id(), common::Signal::TERM);
    let status = child.wait_timeout(Duration::from_secs(30)).expect("stops");
    assert!(status.success(), "{status}");
    let bad = rows
        .iter()
        .find(|r| r["name"] == "agent-unreachable")
        .unwrap();
    assert_eq!(bad["status"], "never issued", "{bad}");
    assert!(
        bad["error"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{bad}"
    );
    let meta = f.meta("agent-unreachable");
    assert_eq!(meta["failures"], 1, "{meta}");
    let ok = rows
        .iter()
        .find(|r| r["name"] == "agent-ok.cw.test")
        .unwrap();
    assert_eq!(ok["status"], "valid", "{ok}");
}

/// A TLS server on loopback that serves `initial` until `reload_flag` appears, then the
/// certificate and key in `cert_dir` (as a web server does after `systemctl reload`). It
/// records the SNI of every handshake. It runs until the test process ends.
struct TlsServer {
    addr: SocketAddr,
    sni: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

fn tls_server(name: &str, reload_flag: PathBuf, cert_dir: PathBuf) -> TlsServer {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::sync::{Arc, Mutex};
    let old = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    let initial = (
        vec![old.cert.der().clone()],
        PrivateKeyDer::Pkcs8(old.signing_key.serialize_der().into()),
    );
    let config = |(chain, key): (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)| {
        Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
        )
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let sni = Arc::new(Mutex::new(Vec::new()));
    let seen = sni.clone();
    let mut current = config(initial);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                if std::fs::remove_file(&reload_flag).is_ok() {
                    let chain = CertificateDer::pem_file_iter(cert_dir.join("fullchain.pem"))
                        .unwrap()
                        .collect::<Result<Vec<_>, _>>()
                        .unwrap();
                    let key = PrivateKeyDer::from_pem_file(cert_dir.join("privkey.pem")).unwrap();
                    current = config((chain, key));
                }
                let acceptor = tokio_rustls::TlsAcceptor::from(current.clone());
                let seen = seen.clone();
                tokio::spawn(async move {
                    let work = acceptor.accept(tcp);
                    if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), work).await {
                        let name = tls.get_ref().1.server_name().unwrap_or("").to_owned();
                        seen.lock().unwrap().push(name);
                    }
                });
            }
        });
    });
    TlsServer { addr, sni }
}

#[test]
fn deploy_is_verified_against_the_served_certificate_with_retries() {
    let f = fixture();
    let name = "verify.cw.test";
    let flag = f.cli.state.join("reload-requested");
    let server = tls_server(name, flag.clone(), f.cli.cert_dir(name));
    let endpoint = server.addr.to_string();

    // The hook does not reload the server: it keeps serving the old certificate. The
    // deploy is a failure, recorded, with the reason.
    let out = f.issue(name, &["--deploy-hook", "true", "--verify", &endpoint]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v = last_json(&out);
    assert_eq!(v["deploy"], "failed", "{v}");
    let why = v["deploy_error"].as_str().unwrap();
    assert!(why.contains("not the new certificate"), "{v}");
    assert!(why.contains(&endpoint), "{v}");
    assert_eq!(f.row(name)["status"], "deploy failed");
    assert!(
        server.sni.lock().unwrap().iter().all(|s| s == name),
        "SNI sent: {:?}",
        server.sni.lock().unwrap()
    );
    assert!(server.sni.lock().unwrap().len() >= 2, "retried");

    // A hook that reloads the server a moment later (in the background): the check
    // retries until the new certificate is served.
    let hook = format!("(sleep 1; touch {}) >/dev/null 2>&1 &", flag.display());
    let out = f.issue(
        name,
        &["--force", "--deploy-hook", &hook, "--verify", &endpoint],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = last_json(&out);
    assert_eq!(v["deploy"], "ok", "{v}");
    assert_eq!(f.row(name)["status"], "valid");
    let meta = f.meta(name);
    assert_eq!(
        meta["verify"],
        serde_json::json!([endpoint]),
        "kept for renewals"
    );
}

#[test]
fn sighup_reloads_the_agent_file_and_a_bad_file_keeps_the_running_one() {
    let f = fixture();
    let ca = ca();
    let config = f.cli.state.join("agent.toml");
    let cert = |name: &str| {
        format!(
            "[[certificate]]\ndomains = [\"{name}\"]\ndns01_exec = \"{}\"\ndns01_resolvers = [\"{}\"]\n",
            f.dns[1], f.dns[3]
        )
    };
    let head = format!(
        "server = \"{}\"\nca_cert = \"{}\"\n",
        ca.directory_url,
        ca.root.display()
    );
    std::fs::write(&config, format!("{head}{}", cert("hup-one.cw.test"))).unwrap();
    let events = f.cli.state.join("agent-events.jsonl");
    let metrics_port = common::free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_certwright"));
    cmd.arg("--state-dir")
        .arg(&f.cli.state)
        .args([
            "--json",
            "run",
            "--metrics",
            &format!("127.0.0.1:{metrics_port}"),
        ])
        .arg("--config")
        .arg(&config)
        .stdout(std::fs::File::create(&events).unwrap())
        .stderr(std::process::Stdio::null());
    let mut child = common::spawn(&mut cmd);
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "agent: no {what}: {}",
                std::fs::read_to_string(&events).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let listed = |name: &str| {
        f.cli
            .json(&["list"])
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == name && r["status"] == "valid")
    };
    wait_for("first certificate", &|| listed("hup-one.cw.test"));
    // Monitoring: the status file and the Prometheus metrics follow each pass.
    let status_file = f.cli.state.join("status.json");
    wait_for("status file", &|| {
        std::fs::read_to_string(&status_file).is_ok_and(|s| s.contains("hup-one.cw.test"))
    });
    let status: Value =
        serde_json::from_str(&std::fs::read_to_string(&status_file).unwrap()).unwrap();
    assert_eq!(status["certificates"][0]["status"], "valid", "{status}");
    let metrics = http_get(metrics_port, "/metrics");
    assert!(
        metrics
            .contains("certwright_certificate_expiry_timestamp_seconds{name=\"hup-one.cw.test\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("certwright_certificate_consecutive_failures{name=\"hup-one.cw.test\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("certwright_events_total{event=\"issued\"} 1"),
        "{metrics}"
    );

    // A certificate added to the file: issued after SIGHUP.
    std::fs::write(
        &config,
        format!(
            "{head}{}{}",
            cert("hup-one.cw.test"),
            cert("hup-two.cw.test")
        ),
    )
    .unwrap();
    common::send_signal(child.id(), common::Signal::HUP);
    wait_for("added certificate", &|| listed("hup-two.cw.test"));

    // A broken file: said why, the agent keeps running with what it had.
    std::fs::write(&config, format!("{head}[[certificate]]\ndomains = 7\n")).unwrap();
    common::send_signal(child.id(), common::Signal::HUP);
    wait_for("reload_failed event", &|| {
        std::fs::read_to_string(&events)
            .unwrap_or_default()
            .contains("\"reload_failed\"")
    });
    assert!(child.0.try_wait().unwrap().is_none(), "the agent stopped");
    let out = f.cli.run(&["check-config", config.to_str().unwrap()]);
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("domains"),
        "{}",
        text(&out)
    );
    common::send_signal(child.id(), common::Signal::TERM);
    let status = child.wait_timeout(Duration::from_secs(30)).expect("stops");
    assert!(status.success(), "{status}");
}

#[test]
fn pre_and_post_hooks_free_the_http01_port_around_issuance() {
    let f = fixture();
    let port = ca().http01_port;
    // Another "web server" holds the port the CA checks: a process of its own
    // (pebble-challtestsrv's http-01 server, a test peer anyway; started through sh, so
    // that it is not this test's child and is reaped when killed; `timeout` bounds it).
    let pidfile = f.cli.state.join("blocker.pid");
    let blocker = format!(
        "timeout 120 pebble-challtestsrv -http01 127.0.0.1:{port} -https01 '' -dns01 '' \
         -tlsalpn01 '' -management 127.0.0.1:{mgmt} </dev/null >/dev/null 2>&1 & \
         echo $! > {pid}",
        mgmt = common::free_port(),
        pid = pidfile.display()
    );
    let out = common::run_bounded(
        Command::new("sh").args(["-c", &blocker]),
        Duration::from_secs(10),
    );
    assert!(out.status.success());
    certwright_testkit::port::wait_for_port(port, "the blocking server");
    let listen = format!("127.0.0.1:{port}");
    let name = "prepost.cw.test";
    let out = f
        .cli
        .run(&["issue", "-d", name, "--http01-listen", &listen]);
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already in use"));

    let log = f.cli.state.join("hooks.log");
    let pre = format!(
        "pid=$(cat {pid}); kill $pid; while kill -0 $pid 2>/dev/null; do sleep 0.05; done; \
         echo \"pre $CERTWRIGHT_HOOK\" >> {log}",
        pid = pidfile.display(),
        log = log.display()
    );
    let post = format!("echo \"post $CERTWRIGHT_HOOK\" >> {}", log.display());
    let deploy = format!("echo deploy >> {}", log.display());
    let out = f.cli.run(&[
        "--json",
        "issue",
        "-d",
        name,
        "--http01-listen",
        &listen,
        "--pre-hook",
        &pre,
        "--post-hook",
        &post,
        "--deploy-hook",
        &deploy,
    ]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(last_json(&out)["action"], "issued");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "pre pre\npost post\ndeploy\n"
    );
    // Kept for renewals.
    assert_eq!(f.meta(name)["pre_hook"], pre.as_str());
}

/// A webhook receiver on loopback: each request's timestamp, signature and body.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, String, Vec<u8>)>>>;

fn webhook_receiver() -> (String, Received) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: Received = Default::default();
    let sink = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut ts, mut sig, mut len) = (String::new(), String::new(), 0usize);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let (k, v) = line.split_once(':').unwrap_or((&line, ""));
                match k.to_ascii_lowercase().as_str() {
                    "x-certwright-timestamp" => ts = v.trim().to_owned(),
                    "x-certwright-signature" => sig = v.trim().to_owned(),
                    "content-length" => len = v.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_ok() {
                sink.lock().unwrap().push((ts, sig, body));
            }
            stream
                .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                .ok();
        }
    });
    (url, got)
}

#[test]
fn the_agent_notifies_failure_and_recovery_by_signed_webhook_and_hook() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture();
    let ca = ca();
    let (url, received) = webhook_receiver();
    let secret = f.cli.state.join("webhook.key");
    let key = "a-shared-secret-of-32-bytes-long";
    std::fs::write(&secret, key).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let hook_log = f.cli.state.join("notify.log");
    let config = f.cli.state.join("agent.toml");
    let write = |server: &str| {
        std::fs::write(
            &config,
            format!(
                r#"
ca_cert = "{root}"
webhook_url = "{url}"
webhook_secret_file = "{secret}"
notify_hook = 'echo "$CERTWRIGHT_EVENT $CERTWRIGHT_CERT_NAME" >> {log}'

[[certificate]]
domains = ["notify.cw.test"]
server = "{server}"
dns01_exec = "{hook}"
dns01_resolvers = ["{resolver}"]
"#,
                root = ca.root.display(),
                secret = secret.display(),
                log = hook_log.display(),
                hook = f.dns[1],
                resolver = f.dns[3],
            ),
        )
        .unwrap()
    };
    write(&format!(
        "https://127.0.0.1:{}/directory",
        common::free_port()
    ));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_certwright"));
    cmd.arg("--state-dir")
        .arg(&f.cli.state)
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("CERTWRIGHT_WEBHOOK_SECRET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = common::spawn(&mut cmd);
    let events = || -> Vec<Value> {
        received
            .lock()
            .unwrap()
            .iter()
            .map(|(ts, sig, body)| {
                let ts: i64 = ts.parse().expect("a timestamp header");
                let want = certwright_client::notify::signature(key.as_bytes(), ts, body);
                assert_eq!(sig, &want, "signature of {}", String::from_utf8_lossy(body));
                serde_json::from_slice(body).unwrap()
            })
            .collect()
    };
    let wait_for = |event: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while !events().iter().any(|e| e["event"] == event) {
            assert!(
                std::time::Instant::now() < deadline,
                "no {event} event: {:?}",
                events()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for("failed");
    let failed = events()
        .into_iter()
        .find(|e| e["event"] == "failed")
        .unwrap();
    assert_eq!(failed["name"], "notify.cw.test");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{failed}"
    );
    // The CA is fixed in the file: after SIGHUP the certificate is issued, and the
    // recovery is reported.
    write(&ca.directory_url);
    common::send_signal(child.id(), common::Signal::HUP);
    wait_for("recovered");
    assert!(child.0.try_wait().unwrap().is_none(), "the agent stopped");
    common::send_signal(child.id(), common::Signal::TERM);
    let status = child.wait_timeout(Duration::from_secs(30)).expect("stops");
    assert!(status.success(), "{status}");
    let log = std::fs::read_to_string(&hook_log).unwrap();
    assert_eq!(
        log, "failed notify.cw.test\nrecovered notify.cw.test\n",
        "the notify hook saw the same events"
    );
}

/// A plain HTTP GET on loopback; the body.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nhost: localhost\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or(out)
}

#[test]
fn the_agent_works_on_several_certificates_at_once_within_its_bound() {
    let f = fixture();
    let ca = ca();
    let inflight = f.cli.state.join("inflight");
    std::fs::create_dir(&inflight).unwrap();
    let counts = f.cli.state.join("counts");
    // Each deploy hook counts the hooks running at the same moment.
    let hook = format!(
        "mkdir {d}/$CERTWRIGHT_CERT_NAME && ls {d} | wc -l >> {c} && sleep 0.5; \
         rmdir {d}/$CERTWRIGHT_CERT_NAME",
        d = inflight.display(),
        c = counts.display()
    );
    let n = certwright_client::agent::CONCURRENT_RENEWALS + 3;
    let mut config = format!(
        "server = \"{}\"\nca_cert = \"{}\"\n",
        ca.directory_url,
        ca.root.display()
    );
    for i in 0..n {
        config.push_str(&format!(
            "[[certificate]]\ndomains = [\"many{i}.cw.test\"]\ndns01_exec = \"{}\"\n\
             dns01_resolvers = [\"{}\"]\ndeploy_hook = '{hook}'\n",
            f.dns[1], f.dns[3]
        ));
    }
    let path = f.cli.state.join("agent.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_certwright"));
    cmd.arg("--state-dir")
        .arg(&f.cli.state)
        .args(["run", "--config"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = common::spawn(&mut cmd);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let done = std::fs::read_to_string(&counts).map_or(0, |c| c.lines().count());
        if done == n {
            break;
        }
        assert!(child.0.try_wait().unwrap().is_none(), "the agent exited");
        assert!(
            std::time::Instant::now() < deadline,
            "{done} of {n} deployed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    common::send_signal(child.id(), common::Signal::TERM);
    let status = child.wait_timeout(Duration::from_secs(30)).expect("stops");
    assert!(status.success(), "{status}");
    // Every certificate issued (one account, created once, shared by concurrent
    // issuances), and never more at once than the bound.
    let rows = f.cli.json(&["list"]);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), n);
    assert!(rows.iter().all(|r| r["status"] == "valid"), "{rows:?}");
    let most = std::fs::read_to_string(&counts)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse::<usize>().unwrap())
        .max()
        .unwrap();
    eprintln!("deploy hooks at once, at most: {most}");
    assert!(
        most <= certwright_client::agent::CONCURRENT_RENEWALS,
        "{most} at once"
    );
    assert_eq!(
        std::fs::read_dir(f.cli.state.join("accounts"))
            .unwrap()
            .count(),
        1
    );
}
