//! Two `certwright-ca` processes on one PostgreSQL database behind a small loopback load
//! balancer: clients issue certificates through it while one instance is killed with
//! SIGKILL. The survivor takes over the dead instance's leased work (validations and
//! issuances), so nothing stays `processing`; every certificate a client received is in
//! the database and downloadable from the survivor.
//!
//! Needs PostgreSQL (scripts/test makes sure one runs on 127.0.0.1:5432).

mod harness;
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certwright_proto::AccountKey;
use certwright_proto::KeyType;
use certwright_server::store::Store;
use harness::{Acme, Answer, Responder};
use support::{ca_bin, free_port, CaProcess, ProcessGuard};
use tokio::net::TcpListener;

/// Accounts, each with one worker issuing certificates one after the other.
const WORKERS: usize = 4;
/// Certificates issued before the kill, then after it.
const BEFORE_KILL: usize = 8;
const AFTER_KILL: usize = 8;
/// How long the survivor may take to settle the dead instance's work: its lease
/// (3 × the 1 s validation timeout + 30 s) plus a few sweeps.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The load balancer in front of both instances: `certwright-bench balance`'s TCP
/// round robin, which skips a backend that refuses connections.
async fn balancer(backends: Vec<SocketAddr>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(certwright_bench::balance::serve(listener, backends));
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_under_load_leaves_nothing_behind() {
    std::env::set_var("CERTWRIGHT_TEST_BACKEND", "postgres");
    support::quiet_cut_requests();
    let tmp = tempfile::tempdir().unwrap();
    let first_dir = tmp.path().join("first");
    std::fs::create_dir_all(&first_dir).unwrap();
    let url = harness::database_url_for(&first_dir).await.unwrap();
    let responder = Responder::start().await;

    // Short validations make the leases short: the takeover happens within the test.
    let config = tmp.path().join("ca.toml");
    std::fs::write(&config, "[validation]\ntimeout_secs = 1\n").unwrap();
    let config = config.to_string_lossy().into_owned();

    // Both instances listen on their own ports; clients only know the balancer's URL.
    let listen = |_: ()| -> SocketAddr { format!("127.0.0.1:{}", free_port()).parse().unwrap() };
    let (first_addr, second_addr) = (listen(()), listen(()));
    let lb = balancer(vec![first_addr, second_addr]).await;
    let base = format!("http://127.0.0.1:{}", lb.port());
    let args = [
        "--no-tls",
        "--base-url",
        &base,
        "--database-url",
        &url,
        "--config",
        &config,
    ];
    let mut guard = ProcessGuard::default();
    // CaProcess waits for readiness on a runtime of its own: off this one's threads.
    let first = tokio::task::block_in_place(|| {
        CaProcess::start_with_args(
            ca_bin(),
            &mut guard,
            &first_dir,
            first_addr,
            responder.port,
            &args,
        )
    });
    // The second instance shares the CA keys (copied, as an operator deploys them).
    let second_dir = tmp.path().join("second");
    std::fs::create_dir_all(&second_dir).unwrap();
    for entry in std::fs::read_dir(&first_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_file() && !name.starts_with("ca-std") && !name.starts_with("certwright.db") {
            std::fs::copy(&path, second_dir.join(&name)).unwrap();
        }
    }
    let second = tokio::task::block_in_place(|| {
        CaProcess::start_with_args(
            ca_bin(),
            &mut guard,
            &second_dir,
            second_addr,
            responder.port,
            &args,
        )
    });
    assert_eq!(
        std::fs::read(first.root_path()).unwrap(),
        std::fs::read(second.root_path()).unwrap(),
        "one CA behind two instances"
    );

    // Clients: no connection reuse, so consecutive requests land on alternate instances.
    let mut accounts = Vec::new();
    for _ in 0..WORKERS {
        let mut acme = Acme::new(&base, AccountKey::generate(KeyType::EcP256).unwrap()).await;
        acme.http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .pool_max_idle_per_host(0)
            .no_proxy()
            .build()
            .unwrap();
        let r = acme.register().await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        accounts.push(Arc::new(acme));
    }

    // (worker, certificate URL, PEM chain) of every certificate a client received.
    let received: Arc<Mutex<Vec<harness::Received>>> = Arc::default();
    let failed = Arc::new(AtomicUsize::new(0));
    let issued = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sequence = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for (worker, acme) in accounts.iter().enumerate() {
        let (acme, responder) = (acme.clone(), responder.clone());
        let (received, failed, issued, stop, sequence) = (
            received.clone(),
            failed.clone(),
            issued.clone(),
            stop.clone(),
            sequence.clone(),
        );
        workers.spawn(async move {
            // Bounded: at most this many attempts per worker, whatever happens.
            for _ in 0..(BEFORE_KILL + AFTER_KILL) * 2 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let n = sequence.fetch_add(1, Ordering::Relaxed);
                let name = format!("kill{n}.example.test");
                let (acme, responder) = (acme.clone(), responder.clone());
                // A request cut by the kill panics inside the test client: that flow
                // failed, from the client's side, and the next one starts.
                let flow =
                    tokio::spawn(async move { acme.issue(&[name.as_str()], &responder).await });
                match flow.await {
                    Ok((_, order, chain)) => {
                        let url = order["certificate"].as_str().unwrap().to_owned();
                        received.lock().unwrap().push((worker, url, chain));
                        issued.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }

    // Kill the first instance in the middle of the load.
    let deadline = Instant::now() + Duration::from_secs(120);
    while issued.load(Ordering::Relaxed) < BEFORE_KILL {
        assert!(Instant::now() < deadline, "no progress before the kill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A validation the first instance is doing when it dies: its client talks to it
    // directly, and the challenge server answers after 500 ms (the 1 s validation timeout
    // allows 800 ms per request); the kill comes 150 ms after the challenge was posted.
    let mut victim = Acme::new(&base, AccountKey::generate(KeyType::EcP256).unwrap()).await;
    victim.routes = Some((base.clone(), vec![format!("http://{first_addr}")]));
    assert_eq!(victim.register().await.status, 201);
    let order = victim.new_order(&["victim.example.test"]).await;
    assert_eq!(order.status, 201);
    let order_url = order.location();
    let order = order.json();
    let authz_url = order["authorizations"][0].as_str().unwrap().to_owned();
    let authz = victim.post(&authz_url, None).await.json();
    let chall = harness::http01_challenge(&authz);
    let token = chall["token"].as_str().unwrap();
    let key_auth = format!("{token}.{}", victim.key.jwk().thumbprint());
    responder.set(token, Answer::Delayed(Duration::from_millis(500), key_auth));
    let posted = victim
        .post(chall["url"].as_str().unwrap(), Some(&serde_json::json!({})))
        .await;
    assert_eq!(posted.status, 200);
    tokio::time::sleep(Duration::from_millis(150)).await;
    first.kill(&mut guard);
    // From now on the victim's requests reach the survivor.
    victim.routes = Some((base.clone(), vec![format!("http://{second_addr}")]));
    let killed_at = issued.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(180);
    while issued.load(Ordering::Relaxed) < killed_at + AFTER_KILL {
        assert!(
            Instant::now() < deadline,
            "the survivor did not keep issuing\n{}",
            second.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    while workers.join_next().await.is_some() {}

    // The survivor settles what the dead instance held: nothing stays processing, no
    // order is valid without its certificate.
    let store = Store::open(&url).await.unwrap();
    harness::wait_for_integrity(&store, SETTLE_TIMEOUT, || second.logs()).await;

    // The survivor took the victim's validation over once its lease ran out, and the
    // order completes there.
    let settled = victim.post(&authz_url, None).await.json();
    assert_eq!(settled["status"], "valid", "{settled}\n{}", second.logs());
    assert!(
        second
            .logs()
            .contains("resuming a validation left in flight"),
        "the survivor resumed the dead instance's validation\n{}",
        second.logs()
    );
    let ready = victim.wait_order(&order_url).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let finalized = victim
        .finalize(&ready, &harness::csr(&["victim.example.test"], &key))
        .await;
    assert_eq!(finalized.status, 200);
    let done = victim.wait_order(&order_url).await;
    assert_eq!(done["status"], "valid", "{done}");

    // Every certificate a client received is in the database, under its own serial, and
    // the survivor serves it.
    let received = received.lock().unwrap().clone();
    harness::assert_received_are_stored(&store, &accounts, &received, "after the kill").await;
    // The audit trail, appended by two instances and cut by a kill, still verifies.
    match store.verify_audit().await.unwrap() {
        certwright_server::store::AuditVerdict::Intact { entries, .. } => {
            assert!(entries as usize >= received.len(), "{entries} entries")
        }
        broken => panic!("audit trail after the kill: {broken:?}"),
    }
    eprintln!(
        "issued {} certificates ({} flows failed from the client's side around the kill)",
        received.len(),
        failed.load(Ordering::Relaxed)
    );
    second.stop(&mut guard);
}
