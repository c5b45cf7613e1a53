//! Remote validation agents end to end (#22), in network namespaces made by the test.
//!
//! The segment (`testkit::netns::Segment`) is a namespace with a host address the root
//! namespace cannot route to (an `unreachable` route guards it), a DNS server of its own
//! that resolves every name to that host, and a veth pair to the root namespace. The CA
//! (`certwright-ca serve`, a process in the root namespace) listens for ACME and for agents
//! on the root end of the veth pair; its own DNS server (a `TestDns` on loopback) does not
//! know the segment's names (NXDOMAIN), so without an agent it never connects anywhere.
//! `certwright-va-agent` runs inside the segment (`ip netns exec`), as do certbot and lego
//! (their standalone responders bind inside) and the certwright client library (on the
//! segment's namespace thread).
//!
//! Every packet stays on loopback or inside the namespaces the test made. The tests need
//! root (CI runs as root); without it they say so and return.
//!
//! `certwright-va-agent` is another package's binary: `scripts/test` builds it and names
//! it in `CERTWRIGHT_VA_AGENT_BIN`.

mod support;

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certwright_proto::keyauth::{dns01_txt_value, key_authorization};
use certwright_testkit::acme::{http01_challenge, Acme};
use certwright_testkit::ca_process::va_agent_binary_from_env;
use certwright_testkit::netns::{can_make_segments, Segment};
use certwright_testkit::process::{spawn, ChildGuard, Signal};
use certwright_testkit::testdns::TestDns;
use serde_json::{json, Value};
use support::{
    ca_bin, certbot_command, free_port, leaf, lego_command, run_bounded, run_ok, CaProcess,
    ProcessGuard, CLIENT_EMAIL, CLIENT_TIMEOUT,
};

/// The segment's name in the CA's routes and the agents' enrolments.
const SEGMENT: &str = "vlan-hr";
/// Names under this suffix are validated in the segment only.
const SUFFIX: &str = "hr.test";
/// Names under this suffix need the CA's own VA and the segment to agree (quorum 2).
const MPIC_SUFFIX: &str = "mpic.test";
/// The port tls-alpn-01 connects to (inside the segment).
const TLSALPN01_PORT: u16 = 5443;
/// The connection problem type.
const CONNECTION: &str = "urn:ietf:params:acme:error:connection";
/// How long one short command (enrol, list, remove) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// One CA, one segment with its DNS server, and the CA's DNS server.
struct Lab {
    // Dropped first: the CA and the agents stop before the segment goes away.
    _guard: ProcessGuard,
    agents: Vec<(String, ChildGuard)>,
    ca: CaProcess,
    config: PathBuf,
    agent_bin: PathBuf,
    /// The agent listener's URL (`https://10.A.N.1:PORT`).
    agent_url: String,
    /// The ACME base URL (`https://10.A.N.1:PORT`).
    acme_base: String,
    /// The CA's DNS (root namespace, loopback): knows nothing of the segment.
    ca_dns: TestDns,
    /// The segment's DNS (inside): every name is the segment's host.
    seg_dns: TestDns,
    seg: Segment,
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Option<Self> {
        if let Err(why) = can_make_segments() {
            eprintln!("{why}");
            return None;
        }
        let agent_bin = va_agent_binary_from_env();
        let started = Instant::now();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let seg = Segment::new();
        let host = seg.host_addr;
        let seg_dns = seg.spawn_in(move || async move {
            let dns = TestDns::start().await.expect("DNS server in the segment");
            dns.set_default_a(Some(host));
            dns
        });
        let ca_dns = rt.block_on(TestDns::start()).expect("the CA's DNS server");
        ca_dns.set_default_a(None);

        let dir = tempfile::tempdir().unwrap();
        let root = seg.root_addr;
        let (acme_port, agent_port) = (free_port(), free_port());
        let config = dir.path().join("ca.toml");
        fs::write(
            &config,
            format!(
                r#"
[validation]
timeout_secs = 3
tlsalpn01_port = {TLSALPN01_PORT}

[[validation.routes]]
name = "corroborated"
suffixes = ["{MPIC_SUFFIX}"]
perspectives = ["local", "{SEGMENT}"]
quorum = 2

[[validation.routes]]
name = "hr"
suffixes = ["{SUFFIX}"]
perspectives = ["{SEGMENT}"]

[agents]
listen = "{root}:{agent_port}"
server_names = ["{root}"]
job_timeout_secs = 5
pickup_timeout_secs = 2
attempts = 2
"#
            ),
        )
        .unwrap();
        let acme_base = format!("https://{root}:{acme_port}");
        let mut guard = ProcessGuard::default();
        let ca = CaProcess::start_with_dns(
            ca_bin(),
            &mut guard,
            &dir.path().join("ca"),
            SocketAddr::from((root, acme_port)),
            free_port(),
            ca_dns.addr,
            &[
                "--config",
                config.to_str().unwrap(),
                "--base-url",
                &acme_base,
            ],
        );
        eprintln!(
            "lab up in {:?}: segment {} (host {host}), CA {acme_base}",
            started.elapsed(),
            seg.name
        );
        Some(Self {
            _guard: guard,
            agents: Vec::new(),
            ca,
            config,
            agent_bin,
            agent_url: format!("https://{root}:{agent_port}"),
            acme_base,
            ca_dns,
            seg_dns,
            seg,
            rt,
            dir,
        })
    }

    /// `certwright-ca ARGS… --config … --data-dir …`, bounded.
    fn ca_command(&self, args: &[&str]) -> std::process::Output {
        run_bounded(
            Command::new(ca_bin())
                .args(args)
                .arg("--config")
                .arg(&self.config)
                .arg("--data-dir")
                .arg(&self.ca.data_dir),
            COMMAND_TIMEOUT,
        )
    }

    /// A one-time enrolment token for agent `name` of the segment.
    fn enrol_token(&self, name: &str) -> String {
        let out = self.ca_command(&["agent", "enroll", name, "--segment", SEGMENT]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "agent enroll {name}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let start = text
            .find("cwva1")
            .unwrap_or_else(|| panic!("no cwva1 token in: {text}"));
        text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "-_.:~".contains(*c))
            .collect()
    }

    fn agent_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join("agents").join(name)
    }

    /// `certwright-va-agent enroll` inside the segment, into `dir`.
    fn agent_enroll(&self, token: &str, dir: &Path) -> std::process::Output {
        run_bounded(
            self.seg
                .command(&self.agent_bin)
                .args(["enroll", "--server", &self.agent_url, "--token", token])
                .arg("--dir")
                .arg(dir),
            COMMAND_TIMEOUT,
        )
    }

    /// Enrols agent `name` (token, then the real agent binary inside the segment).
    fn enrol(&self, name: &str) {
        let token = self.enrol_token(name);
        let out = self.agent_enroll(&token, &self.agent_dir(name));
        assert!(
            out.status.success(),
            "certwright-va-agent enroll {name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the enrolled agent `name` inside the segment, asking the segment's DNS.
    fn start_agent(&mut self, name: &str) {
        let dir = self.agent_dir(name);
        let log = |what: &str| fs::File::create(dir.join(format!("{what}.txt"))).unwrap();
        let child = spawn(
            self.seg
                .command(&self.agent_bin)
                .arg("run")
                .arg("--dir")
                .arg(&dir)
                .args(["--dns", &self.seg_dns.addr.to_string()])
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(log("stdout"))
                .stderr(log("stderr")),
        );
        self.agents.push((name.to_owned(), child));
    }

    /// The running agent `name`'s process.
    fn agent(&mut self, name: &str) -> &mut ChildGuard {
        &mut self
            .agents
            .iter_mut()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("agent {name} not started"))
            .1
    }

    fn agent_log(&self, name: &str) -> String {
        fs::read_to_string(self.agent_dir(name).join("stderr.txt")).unwrap_or_default()
    }

    /// `certwright-ca agent list --json`.
    fn agent_list(&self) -> Vec<Value> {
        let out = self.ca_command(&["agent", "list", "--json"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "agent list: {text}");
        let json = text
            .lines()
            .find(|l| l.trim_start().starts_with('['))
            .unwrap_or("[]");
        serde_json::from_str::<Value>(json)
            .unwrap_or_else(|e| panic!("agent list --json: {e}: {text}"))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn listed(&self, name: &str) -> Option<Value> {
        self.agent_list().into_iter().find(|a| a["name"] == name)
    }

    /// Waits (bounded) until agent `name` has been in contact with the CA.
    fn wait_contact(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self
                .listed(name)
                .is_some_and(|a| !a["last_contact"].is_null())
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "agent {name} never contacted the CA\n{}\n{}",
                self.agent_log(name),
                self.ca.logs()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// A registered ACME test client (root namespace; the CA's listener is local there).
    fn acme(&self) -> Acme {
        let root = fs::read(self.ca.root_path()).unwrap();
        self.rt.block_on(async {
            let mut acme = Acme::new_trusting(
                &self.acme_base,
                certwright_proto::AccountKey::generate(certwright_proto::KeyType::EcP256).unwrap(),
                &root,
            )
            .await;
            acme.register().await;
            acme
        })
    }
}

/// An order for `name`; returns (authorization URL, the challenge of `kind`).
fn order_challenge(lab: &Lab, acme: &Acme, name: &str, kind: &str) -> (String, Value) {
    lab.rt.block_on(async {
        let r = acme.new_order(&[name]).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let order = r.json();
        let authz_url = order["authorizations"][0].as_str().unwrap().to_owned();
        let authz = acme.post(&authz_url, None).await.json();
        let chall = if kind == "http-01" {
            http01_challenge(&authz)
        } else {
            authz["challenges"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
                .cloned()
                .unwrap_or_else(|| panic!("no {kind} in {authz}"))
        };
        (authz_url, chall)
    })
}

/// Answers the challenge and waits (bounded by `within`) for the authorization to leave
/// `pending`; returns it.
fn answer_and_wait(
    lab: &Lab,
    acme: &Acme,
    authz_url: &str,
    chall: &Value,
    within: Duration,
) -> Value {
    lab.rt.block_on(async {
        let r = acme
            .post(chall["url"].as_str().unwrap(), Some(&json!({})))
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let deadline = Instant::now() + within;
        loop {
            let a = acme.post(authz_url, None).await.json();
            if a["status"] != "pending" {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "authorization still pending after {within:?}: {a}\n{}",
                lab.ca.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// The (only) challenge of `authz` that was tried.
fn tried(authz: &Value) -> Value {
    authz["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["status"] != "pending")
        .cloned()
        .unwrap_or_else(|| panic!("no challenge tried in {authz}"))
}

/// Asserts the authorization failed cleanly with a `connection` problem naming the
/// segment, and that nothing in it is left `processing`.
fn assert_failed_naming_segment(authz: &Value) {
    assert_eq!(authz["status"], "invalid", "{authz}");
    let chall = tried(authz);
    assert_eq!(chall["status"], "invalid", "{authz}");
    assert_eq!(chall["error"]["type"], CONNECTION, "{authz}");
    let detail = chall["error"]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!("segment \"{SEGMENT}\"")),
        "the problem does not name segment {SEGMENT}: {detail}"
    );
    assert!(
        !authz.to_string().contains("\"processing\""),
        "something stayed processing: {authz}"
    );
}

/// An http-01 responder inside the segment on the host address: the first request for a
/// token hangs (the agent that took the job is killed meanwhile), later ones answer.
#[derive(Clone, Default)]
struct SlowFirstResponder {
    answers: Arc<Mutex<std::collections::HashMap<String, String>>>,
    hits: Arc<AtomicUsize>,
}

impl SlowFirstResponder {
    fn start(seg: &Segment, port: u16) -> Self {
        let me = Self::default();
        let state = me.clone();
        let addr = SocketAddr::from((seg.host_addr, port));
        seg.spawn_in(move || async move {
            let app = axum::Router::new()
                .route(
                    "/.well-known/acme-challenge/{token}",
                    axum::routing::get(
                        |axum::extract::State(s): axum::extract::State<SlowFirstResponder>,
                         axum::extract::Path(token): axum::extract::Path<String>| async move {
                            let n = s.hits.fetch_add(1, Ordering::SeqCst);
                            if n == 0 {
                                tokio::time::sleep(Duration::from_secs(30)).await;
                            }
                            s.answers
                                .lock()
                                .unwrap()
                                .get(&token)
                                .cloned()
                                .unwrap_or_default()
                        },
                    ),
                )
                .with_state(state);
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        });
        me
    }
}

/// The certwright client library, run on the segment's namespace thread: its standalone
/// http-01 responder binds inside the segment. Returns the PEM chain.
fn certwright_issue(lab: &Lab, name: &str) -> String {
    use certwright_client::certinfo::CertKey;
    use certwright_client::client::NewAccountOptions;
    use certwright_client::issue::{issue, IssueRequest, KeySource};
    use certwright_client::solver::http01::Http01Standalone;
    use certwright_client::{Account, AcmeClient, ClientOptions};
    let directory = format!("{}/directory", lab.acme_base);
    let root = fs::read(lab.ca.root_path()).unwrap();
    let listen = SocketAddr::from((Ipv4Addr::UNSPECIFIED, lab.ca.http01_port));
    let name = name.to_owned();
    lab.seg
        .spawn_in(move || async move {
            let client = AcmeClient::new(ClientOptions::new(directory).trust_pem(root))
                .await
                .map_err(|e| format!("client: {e}"))?;
            let account = Account::create(
                client,
                certwright_proto::AccountKey::generate(certwright_proto::KeyType::EcP256).unwrap(),
                &NewAccountOptions {
                    terms_of_service_agreed: true,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| format!("account: {e}"))?;
            let solver = Http01Standalone::bind(listen)
                .await
                .map_err(|e| format!("bind {listen}: {e}"))?;
            let issued = issue(
                &account,
                &IssueRequest {
                    names: vec![name],
                    key: KeySource::Key(
                        CertKey::generate(certwright_proto::KeyType::EcP256).unwrap(),
                    ),
                    profile: None,
                    replaces: None,
                    preferred_chain: None,
                },
                &solver,
            )
            .await
            .map_err(|e| format!("issue: {e}"))?;
            Ok::<String, String>(issued.fullchain)
        })
        .unwrap_or_else(|e| panic!("certwright client in the segment: {e}\n{}", lab.ca.logs()))
}

fn assert_leaf_for(path: &Path, name: &str) {
    let leaf = leaf(path);
    assert_eq!(leaf.dns_names, vec![name.to_owned()], "{}", path.display());
    assert!(leaf.server_auth, "{}", path.display());
}

fn jobs_done(lab: &Lab, name: &str) -> u64 {
    lab.listed(name)
        .and_then(|a| a["jobs_done"].as_u64())
        .unwrap_or(0)
}

/// (b) without an agent, (a) certbot, lego and certwright through an agent, (d) MPIC with
/// split-horizon DNS, (c) an agent killed mid-job and then none left, and (e) a token
/// that works once.
#[test]
fn segment_names_are_validated_by_the_segments_agents() {
    let Some(mut lab) = Lab::new() else { return };
    let started = Instant::now();
    let acme = lab.acme();
    let http01 = lab.ca.http01_port;

    // (b) No agent has ever connected: the order fails with a connection problem naming
    // the segment, after the pickup time-outs (the CA's own DNS does not know the name,
    // so the CA could not have connected to the host itself).
    let (authz_url, chall) = order_challenge(&lab, &acme, &format!("early.{SUFFIX}"), "http-01");
    let authz = answer_and_wait(&lab, &acme, &authz_url, &chall, Duration::from_secs(30));
    assert_failed_naming_segment(&authz);
    eprintln!("(b) no agent: failed cleanly at {:?}", started.elapsed());

    // (e) A token works once.
    let token = lab.enrol_token("agent-1");
    let out = lab.agent_enroll(&token, &lab.agent_dir("agent-1"));
    assert!(
        out.status.success(),
        "enroll agent-1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = lab.agent_enroll(&token, &lab.agent_dir("agent-1-again"));
    let err = String::from_utf8_lossy(&again.stderr).to_lowercase();
    assert!(
        !again.status.success() && err.contains("token"),
        "a used token enrolled again ({}): {err}",
        again.status
    );
    lab.enrol("agent-2");
    lab.start_agent("agent-1");
    lab.wait_contact("agent-1");
    eprintln!("(e) enrolled, agent-1 polling at {:?}", started.elapsed());

    // (a) certbot, standalone http-01 inside the segment.
    let certbot_dir = lab.dir.path().join("certbot");
    let name = format!("certbot.{SUFFIX}");
    let mut cmd = certbot_command(&certbot_dir, &lab.ca, "certonly");
    cmd.args(["--standalone", "--agree-tos", "-m", CLIENT_EMAIL])
        .args(["-d", &name])
        .args(["--http-01-port", &http01.to_string()]);
    run_ok(
        "certbot in the segment",
        &mut lab.seg.wrap(&cmd),
        CLIENT_TIMEOUT,
        &format!("{}\n{}", lab.agent_log("agent-1"), lab.ca.logs()),
    );
    assert_leaf_for(
        &certbot_dir.join(format!("config/live/{name}/fullchain.pem")),
        &name,
    );
    eprintln!("(a) certbot done at {:?}", started.elapsed());

    // lego, tls-alpn-01 inside the segment.
    let lego_dir = lab.dir.path().join("lego");
    let name = format!("lego.{SUFFIX}");
    let mut cmd = lego_command(&lego_dir, &lab.ca, &[&name]);
    cmd.arg("--tls")
        .args(["--tls.port", &format!(":{TLSALPN01_PORT}")])
        .arg("run");
    run_ok(
        "lego in the segment",
        &mut lab.seg.wrap(&cmd),
        CLIENT_TIMEOUT,
        &format!("{}\n{}", lab.agent_log("agent-1"), lab.ca.logs()),
    );
    assert_leaf_for(&lego_dir.join(format!("certificates/{name}.crt")), &name);
    eprintln!("(a) lego done at {:?}", started.elapsed());

    // The certwright client, http-01 inside the segment.
    let name = format!("certwright.{SUFFIX}");
    let chain = certwright_issue(&lab, &name);
    let chain_path = lab.dir.path().join("certwright.pem");
    fs::write(&chain_path, &chain).unwrap();
    assert_leaf_for(&chain_path, &name);
    eprintln!("(a) certwright done at {:?}", started.elapsed());

    let listed = lab.listed("agent-1").expect("agent-1 listed");
    assert_eq!(listed["segment"], SEGMENT, "{listed}");
    assert!(
        listed["jobs_done"].as_u64().unwrap_or(0) >= 3,
        "agent-1 did the three validations: {listed}"
    );

    // (d) MPIC: the CA's own VA and the segment must agree. Split horizon: the segment's
    // DNS has another TXT value than the CA's -> the validation fails naming the
    // perspective that disagreed; with the same value in both, it passes.
    for (label, segment_agrees) in [("split", false), ("agreed", true)] {
        let name = format!("{label}.{MPIC_SUFFIX}");
        let (authz_url, chall) = order_challenge(&lab, &acme, &name, "dns-01");
        let token = chall["token"].as_str().unwrap();
        let good = dns01_txt_value(&key_authorization(token, &acme.key.jwk()));
        let txt_name = format!("_acme-challenge.{name}");
        lab.ca_dns.set_txt(&txt_name, &[&good]);
        let seg_value = if segment_agrees {
            good.clone()
        } else {
            dns01_txt_value("another key authorization")
        };
        lab.seg_dns.set_txt(&txt_name, &[&seg_value]);
        let authz = answer_and_wait(&lab, &acme, &authz_url, &chall, Duration::from_secs(30));
        if segment_agrees {
            assert_eq!(authz["status"], "valid", "{authz}\n{}", lab.ca.logs());
        } else {
            assert_eq!(authz["status"], "invalid", "{authz}");
            let chall = tried(&authz);
            let detail = chall["error"]["detail"].as_str().unwrap_or_default();
            assert_eq!(
                chall["error"]["type"], "urn:ietf:params:acme:error:incorrectResponse",
                "{chall}"
            );
            assert!(
                detail.contains("disagree") && detail.contains(&format!("\"{SEGMENT}\"")),
                "the problem does not name the perspective that disagreed ({SEGMENT}): {chall}"
            );
        }
    }
    eprintln!("(d) MPIC done at {:?}", started.elapsed());

    // (c) An agent killed while it holds a job: the job goes to the segment's second
    // agent and passes.
    let responder = SlowFirstResponder::start(&lab.seg, http01);
    let (authz_url, chall) = order_challenge(&lab, &acme, &format!("slow.{SUFFIX}"), "http-01");
    let token = chall["token"].as_str().unwrap().to_owned();
    responder
        .answers
        .lock()
        .unwrap()
        .insert(token.clone(), key_authorization(&token, &acme.key.jwk()));
    let r = lab
        .rt
        .block_on(acme.post(chall["url"].as_str().unwrap(), Some(&json!({}))));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let deadline = Instant::now() + Duration::from_secs(15);
    while responder.hits.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "agent-1 never fetched the challenge\n{}",
            lab.agent_log("agent-1")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // agent-1 holds the job (its request is hanging): start the second agent, kill the
    // first.
    lab.start_agent("agent-2");
    lab.agent("agent-1").signal(Signal::KILL);
    assert!(lab
        .agent("agent-1")
        .wait_timeout(Duration::from_secs(5))
        .is_some());
    let authz = lab.rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let a = acme.post(&authz_url, None).await.json();
            if a["status"] != "pending" {
                return a;
            }
            assert!(Instant::now() < deadline, "still pending: {a}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert_eq!(
        authz["status"],
        "valid",
        "the job was not retried on agent-2: {authz}\n{}\n{}",
        lab.agent_log("agent-2"),
        lab.ca.logs()
    );
    assert!(responder.hits.load(Ordering::SeqCst) >= 2);
    let record = &tried(&authz)["validationRecord"];
    assert_eq!(record["agent"], "agent-2", "{authz}");
    assert_eq!(record["perspective"], SEGMENT, "{authz}");
    assert!(
        jobs_done(&lab, "agent-2") >= 1,
        "agent-2 did not do the job: {:?}",
        lab.agent_list()
    );
    eprintln!("(c) retried on agent-2 at {:?}", started.elapsed());

    // ... and with no agent left, the validation fails cleanly after the time-outs.
    lab.agent("agent-2").signal(Signal::KILL);
    assert!(lab
        .agent("agent-2")
        .wait_timeout(Duration::from_secs(5))
        .is_some());
    let (authz_url, chall) = order_challenge(&lab, &acme, &format!("orphan.{SUFFIX}"), "http-01");
    let authz = answer_and_wait(&lab, &acme, &authz_url, &chall, Duration::from_secs(40));
    assert_failed_naming_segment(&authz);
    eprintln!(
        "(c) no agent left: failed cleanly at {:?}",
        started.elapsed()
    );
}

/// (e) An agent removed with `certwright-ca agent remove` stops at its next poll, with
/// the exit status that says "removed" (3); the listener refuses what an agent may not do.
#[test]
fn a_removed_agent_stops_at_its_next_poll() {
    let Some(mut lab) = Lab::new() else { return };
    let started = Instant::now();
    lab.enrol("doomed");
    lab.start_agent("doomed");
    lab.wait_contact("doomed");
    // The agent listener, spoken to directly: without a client certificate, for another
    // segment's jobs, or with a result for a job it never took, the CA refuses.
    let refusals = agent_listener_answers(&lab, "doomed");
    assert_eq!(
        refusals,
        [401, 403, 404],
        "no certificate / another segment / forged job id"
    );
    let out = lab.ca_command(&["agent", "remove", "doomed"]);
    assert!(
        out.status.success(),
        "agent remove: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lab.listed("doomed").is_none(), "{:?}", lab.agent_list());
    // The agent's long poll lasts at most remote::MAX_WAIT_MS (30 s).
    let status = lab
        .agent("doomed")
        .wait_timeout(Duration::from_secs(45))
        .unwrap_or_else(|| {
            panic!(
                "the removed agent still runs 45 s later\n{}",
                lab.agent_log("doomed")
            )
        });
    // 3 (the agent's EXIT_REMOVED): a service manager must not restart it.
    assert_eq!(
        status.code(),
        Some(3),
        "the removed agent exited with {status}"
    );
    // Its certificate no longer opens the door.
    assert_eq!(agent_listener_answers(&lab, "doomed")[1], 401);
    let log = lab.agent_log("doomed");
    assert!(
        log.contains("removed"),
        "the agent does not say why it stopped: {log}"
    );
    eprintln!("(e) removed agent stopped after {:?}", started.elapsed());
}

/// The agent listener's status codes for: a poll without a client certificate, a poll
/// with agent `name`'s certificate naming another segment, and a result with that
/// certificate for a job id that was never handed out. Each refusal is a problem document.
fn agent_listener_answers(lab: &Lab, name: &str) -> [u16; 3] {
    let dir = lab.agent_dir(name);
    let ca = fs::read(dir.join("ca.pem")).unwrap();
    let mut identity = fs::read(dir.join("key.pem")).unwrap();
    identity.extend(fs::read(dir.join("cert.pem")).unwrap());
    let client = |with_identity: bool| {
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()]);
        if with_identity {
            b = b.identity(reqwest::Identity::from_pem(&identity).unwrap());
        }
        b.build().unwrap()
    };
    let url = |path: &str| format!("{}{path}", lab.agent_url);
    lab.rt.block_on(async {
        let mut codes = [0u16; 3];
        let requests = [
            (client(false), url("/agent/v1/poll"), json!({"wait_ms": 10})),
            (
                client(true),
                url("/agent/v1/poll"),
                json!({"segment": "another-segment", "wait_ms": 10}),
            ),
            (
                client(true),
                url("/agent/v1/jobs/forged-job-id"),
                json!({"error": null, "record": {}, "diagnostic": {}}),
            ),
        ];
        for (i, (http, url, body)) in requests.into_iter().enumerate() {
            let r = http.post(&url).json(&body).send().await.unwrap();
            codes[i] = r.status().as_u16();
            if codes[i] >= 400 {
                let ct = r
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                assert_eq!(ct, "application/problem+json", "{url}");
            }
        }
        codes
    })
}
