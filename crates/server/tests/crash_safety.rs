//! Crash safety: a `certwright-ca` process on SQLite (its durable defaults) under issuance
//! and revocation load is killed with SIGKILL at random moments, several times, and
//! restarted on the same data directory each time. Afterwards the whole store must hold
//! up: every certificate a client received is stored with the chain it was served, no
//! serial twice, nothing stuck `processing`, no `valid` order without its certificate,
//! the CRL number never went back, and the audit chain verifies.
//!
//! The kill moments come from a seeded generator; the seed is printed, and
//! `CRASH_SAFETY_SEED=N` replays a run.

mod harness;
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certwright_proto::{b64, AccountKey, KeyType};
use certwright_server::ra::lifecycle::CRL_ISSUER;
use certwright_server::store::{AuditVerdict, Store};
use harness::{Acme, Responder};
use serde_json::json;
use support::{ca_bin, free_port, CaProcess, ProcessGuard};

/// Kills (and restarts) per run: bounded so the test fits CI.
const KILLS: usize = 8;
/// Concurrent clients.
const WORKERS: usize = 3;

/// A small deterministic generator (xorshift64*), seeded per run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_and_corrupts_nothing() {
    // This suite runs on SQLite: the embedded default whose durability is at stake.
    std::env::remove_var("CERTWRIGHT_TEST_BACKEND");
    let seed: u64 = std::env::var("CRASH_SAFETY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash-safety seed: {seed} (replay with CRASH_SAFETY_SEED={seed})");
    support::quiet_cut_requests();
    let mut rng = Rng(seed);

    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("ca");
    let responder = Responder::start().await;
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let base = format!("http://{listen}");
    let args = ["--no-tls", "--base-url", &base];
    let mut guard = ProcessGuard::default();
    let start = |guard: &mut ProcessGuard| {
        tokio::task::block_in_place(|| {
            CaProcess::start_with_args(ca_bin(), guard, &data_dir, listen, responder.port, &args)
        })
    };
    let mut ca = start(&mut guard);
    let db_url = format!("sqlite://{}", data_dir.join("certwright.db").display());

    let mut accounts = Vec::new();
    for _ in 0..WORKERS {
        let mut acme = Acme::new(&base, AccountKey::generate(KeyType::EcP256).unwrap()).await;
        assert_eq!(acme.register().await.status, 201);
        accounts.push(Arc::new(acme));
    }

    // Load: each worker issues, and revokes every third certificate it gets (so CRLs are
    // published under load too). A flow cut by a kill fails on the client's side.
    let received: Arc<Mutex<Vec<harness::Received>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sequence = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for (worker, acme) in accounts.iter().enumerate() {
        let (acme, responder) = (acme.clone(), responder.clone());
        let (received, stop, sequence, failed) = (
            received.clone(),
            stop.clone(),
            sequence.clone(),
            failed.clone(),
        );
        workers.spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(240);
            let mut mine = 0;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let n = sequence.fetch_add(1, Ordering::Relaxed);
                let name = format!("crash{n}.example.test");
                let (a, r) = (acme.clone(), responder.clone());
                let flow = tokio::spawn(async move { a.issue(&[name.as_str()], &r).await });
                match flow.await {
                    Ok((_, order, chain)) => {
                        let url = order["certificate"].as_str().unwrap().to_owned();
                        received.lock().unwrap().push((worker, url, chain.clone()));
                        mine += 1;
                        if mine % 3 == 0 {
                            let der = harness::pem_chain(&chain).remove(0);
                            let a = acme.clone();
                            let _ = tokio::spawn(async move {
                                let revoke = a.dir.revoke_cert.clone();
                                a.post(
                                    &revoke,
                                    Some(&json!({"certificate": b64::encode(&der), "reason": 4})),
                                )
                                .await
                            })
                            .await;
                        }
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        // The CA may be down: let it come back.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }

    // Kill at random moments, restart each time; the CRL number must never go back.
    let mut crl_numbers = Vec::new();
    for kill in 0..KILLS {
        let issued_before = received.lock().unwrap().len();
        let deadline = Instant::now() + Duration::from_secs(60);
        // Let some work happen first, then wait a random 50–800 ms.
        while received.lock().unwrap().len() < issued_before + 2 {
            assert!(
                Instant::now() < deadline,
                "no issuance after restart {kill}\n{}",
                ca.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.between(50, 800))).await;
        ca.kill(&mut guard);
        ca = start(&mut guard);
        let store = Store::open(&db_url).await.unwrap();
        if let Some(crl) = store.latest_crl(CRL_ISSUER).await.unwrap() {
            crl_numbers.push(crl.number);
        }
        drop(store);
    }
    // A last stretch of load on the final instance, then stop the clients.
    let settled = received.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.lock().unwrap().len() < settled + 3 {
        assert!(
            Instant::now() < deadline,
            "no issuance after the last restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    while workers.join_next().await.is_some() {}

    // The invariants, over the whole store. The restarted CA resumed what was in flight
    // when it was killed; give it a bounded time to finish.
    let store = Store::open(&db_url).await.unwrap();
    harness::wait_for_integrity(&store, Duration::from_secs(60), || {
        format!("seed {seed}\n{}", ca.logs())
    })
    .await;
    let received = received.lock().unwrap().clone();
    let total = received.len();
    harness::assert_received_are_stored(&store, &accounts, &received, &format!("seed {seed}"))
        .await;
    assert!(
        crl_numbers.windows(2).all(|w| w[0] <= w[1]),
        "seed {seed}: the CRL number went back: {crl_numbers:?}"
    );
    match store.verify_audit().await.unwrap() {
        AuditVerdict::Intact { entries, .. } => {
            assert!(
                entries as usize >= total,
                "seed {seed}: {entries} audit entries"
            )
        }
        broken => panic!("seed {seed}: audit trail after {KILLS} kills: {broken:?}"),
    }
    eprintln!(
        "{KILLS} kills: {total} certificates received, {} flows cut, CRL numbers {crl_numbers:?}",
        failed.load(Ordering::Relaxed)
    );
    ca.stop(&mut guard);
}
