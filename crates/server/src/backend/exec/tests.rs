//! The exec backend against real commands: small shell scripts in a temp dir, run the way
//! an operator's would be.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use certwright_proto::types::Identifier;
use futures_util::future::BoxFuture;
use rustls::pki_types::pem::PemObject;

use super::*;

struct NoCheckpoint;

impl Checkpoint for NoCheckpoint {
    fn save<'a>(&'a self, _state: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

fn csr_der() -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["a.example.com".to_owned()]).unwrap();
    params.serialize_request(&key).unwrap().der().to_vec()
}

fn request() -> BackendRequest {
    BackendRequest {
        request_id: "order-42".into(),
        csr_der: csr_der(),
        identifiers: vec![
            Identifier::dns("a.example.com"),
            Identifier::ip("192.0.2.7"),
            Identifier::dns("b.example.com"),
        ],
        profile: Some("tlsserver".into()),
        eab_label: Some("team-a".into()),
        account_id: 7,
        lifetime_secs: 90 * 86_400 + 1,
        state: None,
    }
}

/// A temp dir with `script.sh` (run through /bin/sh, so no freshly written file is
/// executed while another test thread forks) and an `out` directory the script may write.
struct Script {
    dir: tempfile::TempDir,
}

impl Script {
    fn new(body: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("script.sh"), format!("set -e\n{body}\n")).unwrap();
        std::fs::create_dir(dir.path().join("out")).unwrap();
        Self { dir }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.out().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn section(&self) -> ExecSection {
        let script = self.dir.path().join("script.sh");
        ExecSection {
            command: vec!["/bin/sh".into(), script.to_string_lossy().into_owned()],
            revoke_command: None,
            idempotent: true,
            temporary_exit_codes: vec![75],
            env: BTreeMap::from([("OUT".to_owned(), self.out().to_string_lossy().into_owned())]),
        }
    }

    fn backend(&self, timeout: Duration) -> ExecBackend {
        ExecBackend::new("test-ca", &self.section(), timeout).unwrap()
    }
}

async fn issue(backend: &ExecBackend) -> Result<Vec<u8>, BackendError> {
    backend.issue(&request(), &NoCheckpoint).await
}

fn env_map(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test]
async fn issue_passes_stdout_through_with_the_csr_on_stdin_and_in_a_private_file() {
    let script = Script::new(
        r#"cat > "$OUT/stdin.pem"
cp "$CERTWRIGHT_CSR_FILE" "$OUT/file.pem"
stat -c %a "$CERTWRIGHT_CSR_FILE" > "$OUT/file-mode"
stat -c %a . > "$OUT/dir-mode"
pwd > "$OUT/pwd"
env > "$OUT/env"
printf 'not-really-a-cert\000\001\377'"#,
    );
    let out = issue(&script.backend(Duration::from_secs(20)))
        .await
        .unwrap();
    // Raw bytes, binary included: convert.rs reads them.
    assert_eq!(out, b"not-really-a-cert\x00\x01\xff");

    let stdin = script.read("stdin.pem");
    assert!(
        stdin.starts_with("-----BEGIN CERTIFICATE REQUEST-----\n"),
        "{stdin}"
    );
    assert_eq!(
        stdin,
        script.read("file.pem"),
        "stdin and the file hold the same CSR"
    );
    let der = rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(stdin.as_bytes());
    assert!(der.is_ok(), "the CSR PEM parses");
    assert_eq!(script.read("file-mode").trim(), "600");
    assert_eq!(script.read("dir-mode").trim(), "700");
    let run_dir = PathBuf::from(script.read("pwd").trim());
    assert!(
        !run_dir.exists(),
        "{} is removed after the run",
        run_dir.display()
    );

    let env = env_map(&script.read("env"));
    let want = [
        ("CERTWRIGHT_ACTION", "issue"),
        ("CERTWRIGHT_REQUEST_ID", "order-42"),
        ("CERTWRIGHT_NAMES", "a.example.com 192.0.2.7 b.example.com"),
        ("CERTWRIGHT_DNS_NAMES", "a.example.com b.example.com"),
        ("CERTWRIGHT_IP_ADDRESSES", "192.0.2.7"),
        ("CERTWRIGHT_PROFILE", "tlsserver"),
        ("CERTWRIGHT_EAB_LABEL", "team-a"),
        ("CERTWRIGHT_ACCOUNT_ID", "7"),
        ("CERTWRIGHT_LIFETIME_SECS", "7776001"),
        ("CERTWRIGHT_LIFETIME_DAYS", "91"),
        ("LC_ALL", "C"),
    ];
    for (k, v) in want {
        assert_eq!(env.get(k).map(String::as_str), Some(v), "{k} in {env:?}");
    }
    let run_dir_text = run_dir.to_string_lossy();
    assert_eq!(env["HOME"], run_dir_text);
    assert_eq!(env["TMPDIR"], run_dir_text);
    assert_eq!(
        env["CERTWRIGHT_CSR_FILE"],
        run_dir.join("csr.pem").to_string_lossy()
    );
    assert_eq!(
        env["OUT"],
        script.out().to_string_lossy(),
        "the configured env"
    );
    assert!(!env["PATH"].is_empty());
    // Nothing else of this process's environment (cargo sets plenty) reaches it; the
    // shell adds PWD, SHLVL and `_` itself.
    let allowed = [
        "PATH", "HOME", "TMPDIR", "LC_ALL", "OUT", "PWD", "SHLVL", "_",
    ];
    for k in env.keys() {
        assert!(
            allowed.contains(&k.as_str()) || k.starts_with("CERTWRIGHT_"),
            "{k} leaked into the command's environment"
        );
    }
    assert!(
        std::env::vars().any(|(k, _)| k.starts_with("CARGO")),
        "the test has cargo's env to leak"
    );
}

#[tokio::test]
async fn lifetime_days_round_up_and_absent_facts_are_empty() {
    let script = Script::new(r#"env > "$OUT/env"; echo cert"#);
    let mut req = request();
    req.lifetime_secs = 86_400;
    req.profile = None;
    req.eab_label = None;
    req.identifiers = vec![Identifier::dns("only.example.com")];
    script
        .backend(Duration::from_secs(20))
        .issue(&req, &NoCheckpoint)
        .await
        .unwrap();
    let env = env_map(&script.read("env"));
    assert_eq!(env["CERTWRIGHT_LIFETIME_DAYS"], "1");
    assert_eq!(env["CERTWRIGHT_PROFILE"], "");
    assert_eq!(env["CERTWRIGHT_EAB_LABEL"], "");
    assert_eq!(env["CERTWRIGHT_IP_ADDRESSES"], "");
    assert_eq!(env["CERTWRIGHT_NAMES"], "only.example.com");
}

#[tokio::test]
async fn exit_codes_map_to_transient_and_refusals_with_stderr_in_the_cause_only() {
    let script = Script::new(
        r#"echo "backend says: code $CODE" >&2
if [ "$CODE" = signal ]; then kill -TERM $$; fi
exit "$CODE""#,
    );
    let cases: [(&str, Vec<i32>, Option<Refusal>); 7] = [
        ("75", vec![75], None),
        ("42", vec![42, 75], None),
        ("75", vec![42], Some(Refusal::Other)),
        ("65", vec![75], Some(Refusal::BadCsr)),
        ("77", vec![75], Some(Refusal::RejectedIdentifier)),
        ("1", vec![75], Some(Refusal::Other)),
        ("signal", vec![75], Some(Refusal::Other)),
    ];
    for (code, temporary, want) in cases {
        let mut section = script.section();
        section.env.insert("CODE".into(), code.into());
        section.temporary_exit_codes = temporary.clone();
        let backend = ExecBackend::new("test-ca", &section, Duration::from_secs(20)).unwrap();
        let err = issue(&backend).await.unwrap_err();
        let said = format!("backend says: code {code}");
        match (&err, want) {
            (BackendError::Transient(cause), None) => {
                assert!(cause.contains(&said), "{cause}");
                assert!(cause.contains(&format!("exited with {code}")), "{cause}");
            }
            (BackendError::Refused { refusal, cause }, Some(want)) => {
                assert_eq!(*refusal, want, "exit {code}, temporary {temporary:?}");
                assert!(cause.contains(&said), "stderr goes to the cause: {cause}");
                assert!(cause.contains("exec backend test-ca (issue)"), "{cause}");
                if code == "signal" {
                    assert!(cause.contains("killed by signal 15"), "{cause}");
                }
            }
            _ => panic!("exit {code}, temporary {temporary:?}: got {err:?}, want {want:?}"),
        }
    }
    // The same script exiting 0 with output is a success.
    let mut section = script.section();
    section.env.insert("CODE".into(), "0".into());
    let script_ok = Script::new(r#"echo "chatter" >&2; echo cert; exit "$CODE""#);
    section.command[1] = script_ok
        .dir
        .path()
        .join("script.sh")
        .to_string_lossy()
        .into();
    let backend = ExecBackend::new("test-ca", &section, Duration::from_secs(20)).unwrap();
    assert_eq!(issue(&backend).await.unwrap(), b"cert\n");
}

#[tokio::test]
async fn empty_or_oversized_stdout_and_a_missing_program_are_refusals() {
    let empty = Script::new("exit 0");
    match issue(&empty.backend(Duration::from_secs(20))).await {
        Err(BackendError::Refused {
            refusal: Refusal::Other,
            cause,
        }) => {
            assert!(cause.contains("printed no certificate"), "{cause}")
        }
        other => panic!("{other:?}"),
    }
    let big = Script::new(&format!("head -c {} /dev/zero", MAX_STDOUT + 1));
    match issue(&big.backend(Duration::from_secs(20))).await {
        Err(BackendError::Refused {
            refusal: Refusal::Other,
            cause,
        }) => {
            assert!(cause.contains("more than"), "{cause}")
        }
        other => panic!("{other:?}"),
    }
    // Exactly the cap is fine.
    let at_cap = Script::new(&format!("head -c {MAX_STDOUT} /dev/zero"));
    assert_eq!(
        issue(&at_cap.backend(Duration::from_secs(20)))
            .await
            .unwrap()
            .len(),
        MAX_STDOUT
    );
    // Chatty stderr never blocks the command and is cut for the log.
    let chatty = Script::new("head -c 3000000 /dev/zero | tr '\\0' x >&2; exit 1");
    match issue(&chatty.backend(Duration::from_secs(20))).await {
        Err(BackendError::Refused {
            refusal: Refusal::Other,
            cause,
        }) => {
            assert!(cause.contains("[cut at"), "cut");
            assert!(cause.len() < MAX_STDERR + 500, "{} bytes", cause.len());
        }
        other => panic!("{other:?}"),
    }
    let mut section = empty.section();
    section.command = vec!["/nonexistent/certwright-sign".into()];
    let backend = ExecBackend::new("test-ca", &section, Duration::from_secs(20)).unwrap();
    match issue(&backend).await {
        Err(BackendError::Refused {
            refusal: Refusal::Other,
            cause,
        }) => {
            assert!(cause.contains("cannot start"), "{cause}")
        }
        other => panic!("{other:?}"),
    }
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet: it runs no more).
fn process_gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn wait_gone(pid: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !process_gone(pid) {
        assert!(Instant::now() < deadline, "process {pid} still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A script that starts a `sleep` grandchild (its pid in `out/grandchild`) and hangs.
const HANGS: &str = r#"sleep 300 > /dev/null 2>&1 &
echo $! > "$OUT/grandchild"
echo "partial" 
sleep 300"#;

#[tokio::test]
async fn a_time_out_kills_the_whole_process_group_and_is_transient_when_idempotent() {
    let script = Script::new(HANGS);
    let started = Instant::now();
    let err = issue(&script.backend(Duration::from_secs(1)))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&err, BackendError::Transient(c) if c.contains("timed out after 1s")),
        "{err:?}"
    );
    assert!(took < Duration::from_secs(8), "bounded: {took:?}");
    let grandchild = script.read("grandchild");
    wait_gone(grandchild.trim());

    // Not idempotent: a refusal, never run again.
    let script = Script::new(HANGS);
    let mut section = script.section();
    section.idempotent = false;
    let backend = ExecBackend::new("test-ca", &section, Duration::from_secs(1)).unwrap();
    assert!(!backend.resumable());
    match issue(&backend).await {
        Err(BackendError::Refused {
            refusal: Refusal::Other,
            cause,
        }) => {
            assert!(cause.contains("not idempotent"), "{cause}")
        }
        other => panic!("{other:?}"),
    }
    wait_gone(script.read("grandchild").trim());
}

#[tokio::test]
async fn dropping_a_run_kills_its_process_group() {
    let script = Script::new(HANGS);
    let backend = script.backend(Duration::from_secs(300));
    let req = request();
    let run = backend.issue(&req, &NoCheckpoint);
    assert!(
        tokio::time::timeout(Duration::from_secs(2), run)
            .await
            .is_err(),
        "still running"
    );
    // The future is dropped: its command and the grandchild go with it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !script.out().join("grandchild").exists() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_gone(script.read("grandchild").trim());
}

fn revoke_request() -> RevokeRequest {
    RevokeRequest {
        der: vec![0x30, 0x03, 0x02, 0x01, 0x05],
        serial_hex: "0a1b2c".into(),
        reason: 1,
    }
}

#[tokio::test]
async fn revoke_runs_revoke_command_with_the_serial_reason_and_certificate() {
    let script = Script::new(
        r#"env > "$OUT/env"
cp "$CERTWRIGHT_CERT_FILE" "$OUT/cert.pem"
cat > "$OUT/stdin.pem"
exit "${CODE:-0}""#,
    );
    let mut section = script.section();
    section.revoke_command = Some(section.command.clone());
    section.command = vec!["/bin/false".into()];
    let backend = ExecBackend::new("test-ca", &section, Duration::from_secs(20)).unwrap();
    backend.revoke(&revoke_request()).await.unwrap();
    let env = env_map(&script.read("env"));
    assert_eq!(env["CERTWRIGHT_ACTION"], "revoke");
    assert_eq!(env["CERTWRIGHT_SERIAL"], "0a1b2c");
    assert_eq!(env["CERTWRIGHT_REASON"], "1");
    assert_eq!(env["CERTWRIGHT_REASON_NAME"], "keyCompromise");
    let cert = script.read("cert.pem");
    assert_eq!(
        cert,
        "-----BEGIN CERTIFICATE-----\nMAMCAQU=\n-----END CERTIFICATE-----\n"
    );
    assert_eq!(cert, script.read("stdin.pem"));
    assert!(!env.contains_key("CERTWRIGHT_CSR_FILE"));

    // A failing revoke is an error (the RA then records nothing).
    section.env.insert("CODE".into(), "1".into());
    let backend = ExecBackend::new("test-ca", &section, Duration::from_secs(20)).unwrap();
    assert!(matches!(
        backend.revoke(&revoke_request()).await,
        Err(BackendError::Refused {
            refusal: Refusal::Other,
            ..
        })
    ));
    section.env.insert("CODE".into(), "75".into());
    let backend = ExecBackend::new("test-ca", &section, Duration::from_secs(20)).unwrap();
    assert!(matches!(
        backend.revoke(&revoke_request()).await,
        Err(BackendError::Transient(_))
    ));
    // A reason without a name is refused before anything runs.
    std::fs::remove_file(script.out().join("env")).unwrap();
    let mut bad = revoke_request();
    bad.reason = 7;
    assert!(backend.revoke(&bad).await.is_err());
    assert!(!script.out().join("env").exists());
}

#[tokio::test]
async fn without_revoke_command_a_revocation_is_recorded_here_only() {
    let script = Script::new(r#"touch "$OUT/ran""#);
    let backend = script.backend(Duration::from_secs(20));
    backend.revoke(&revoke_request()).await.unwrap();
    assert!(
        !script.out().join("ran").exists(),
        "the issue command is not run to revoke"
    );
}

#[test]
fn reason_names_are_openssls() {
    let names: Vec<_> = (0..=11).map(reason_name).collect();
    assert_eq!(
        names,
        [
            Some("unspecified"),
            Some("keyCompromise"),
            Some("CACompromise"),
            Some("affiliationChanged"),
            Some("superseded"),
            Some("cessationOfOperation"),
            Some("certificateHold"),
            None,
            Some("removeFromCRL"),
            Some("privilegeWithdrawn"),
            Some("AACompromise"),
            None,
        ]
    );
}

#[test]
fn bad_sections_are_refused_at_start() {
    let base = ExecSection {
        command: vec!["/bin/true".into()],
        revoke_command: None,
        idempotent: true,
        temporary_exit_codes: vec![75],
        env: BTreeMap::new(),
    };
    let t = Duration::from_secs(5);
    assert!(ExecBackend::new("x", &base, t).is_ok());
    let refused = |f: &dyn Fn(&mut ExecSection), want: &str| {
        let mut s = base.clone();
        f(&mut s);
        let err = ExecBackend::new("x", &s, t).unwrap_err();
        assert!(err.contains(want), "{err}");
    };
    refused(&|s| s.command.clear(), "command is empty");
    refused(&|s| s.command = vec![String::new()], "command is empty");
    refused(
        &|s| s.revoke_command = Some(vec![]),
        "revoke_command is empty",
    );
    refused(
        &|s| {
            s.env
                .insert("CERTWRIGHT_NAMES".into(), "evil.example".into());
        },
        "reserved",
    );
    refused(
        &|s| {
            s.env.insert("A=B".into(), "x".into());
        },
        "not a valid environment variable",
    );
    refused(
        &|s| s.temporary_exit_codes = vec![0],
        "temporary_exit_codes",
    );
    refused(
        &|s| s.temporary_exit_codes = vec![256],
        "temporary_exit_codes",
    );
    assert!(ExecBackend::new("x", &base, Duration::ZERO).is_err());
    // Debug shows env names, never values.
    let mut s = base.clone();
    s.env.insert("VENDOR_PASSWORD".into(), "hunter2".into());
    let shown = format!("{:?}", ExecBackend::new("x", &s, t).unwrap());
    assert!(
        shown.contains("VENDOR_PASSWORD") && !shown.contains("hunter2"),
        "{shown}"
    );
}
