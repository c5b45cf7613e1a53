//! A full disk: a `certwright-ca` process (SQLite) whose data directory is a small tmpfs
//! the test mounts itself. Once the disk is full, requests that must write are refused
//! cleanly — `serverInternal` (500) with `Retry-After`, nothing half-written — reads go on
//! working, and when space returns the CA serves again without a restart. Needs root for
//! the mount (as CI and `scripts/test` run); without it the test fails saying so.

mod harness;
mod support;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use certwright_proto::{AccountKey, KeyType, ProblemType};
use certwright_server::store::{AuditVerdict, Store};
use harness::{Acme, Responder};
use support::{ca_bin, free_port, CaProcess, ProcessGuard};

/// Requests tried while the disk is full before a refusal must have come.
const MAX_ATTEMPTS: usize = 1500;

/// A tmpfs of `size` mounted at `dir`; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let out = certwright_testkit::process::run_bounded(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir),
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros to `path` until the filesystem is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if f.write_all(&chunk).and_then(|_| f.sync_all()).is_err() {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_refused_cleanly_and_survived() {
    std::env::remove_var("CERTWRIGHT_TEST_BACKEND");
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("ca");
    let mount = Tmpfs::mount(&data_dir, "24m");
    let responder = Responder::start().await;
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let base = format!("http://{listen}");
    let mut guard = ProcessGuard::default();
    let ca = tokio::task::block_in_place(|| {
        CaProcess::start_with_args(
            ca_bin(),
            &mut guard,
            &data_dir,
            listen,
            responder.port,
            &["--no-tls", "--base-url", &base],
        )
    });
    let mut acme = Acme::new(&base, AccountKey::generate(KeyType::EcP256).unwrap()).await;
    assert_eq!(acme.register().await.status, 201);
    acme.issue(&["before.example.test"], &responder).await;

    // Fill the disk, then keep asking for orders until the database cannot grow.
    let filler = data_dir.join("filler");
    fill(&filler);
    let mut created = 1; // the order of the issuance above
    let mut refusal = None;
    for i in 0..MAX_ATTEMPTS {
        let r = acme.new_order(&[&format!("full{i}.example.test")]).await;
        match r.status {
            201 => created += 1,
            _ => {
                refusal = Some(r);
                break;
            }
        }
    }
    let refusal = refusal.unwrap_or_else(|| {
        panic!(
            "{MAX_ATTEMPTS} orders succeeded on a full disk?\n{}",
            ca.logs()
        )
    });
    eprintln!(
        "{} orders were still accepted on the full disk (the WAL's room) before a refusal",
        created - 1
    );
    let p = refusal.assert_problem(ProblemType::ServerInternal, 500);
    assert!(
        refusal.header("retry-after").is_some(),
        "a refusal says when to retry: {p}"
    );
    // Reads still work.
    let kid = acme.kid.clone().unwrap();
    assert_eq!(acme.post(&kid, None).await.status, 200);

    // Space returns: the same process serves again, no restart.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = acme.new_order(&["after.example.test"]).await;
        if r.status == 201 {
            created += 1;
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still refused after space returned: {}\n{}",
            String::from_utf8_lossy(&r.body),
            ca.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    acme.issue(&["recovered.example.test"], &responder).await;
    created += 1;

    // Nothing half-written: exactly the orders that were answered 201 exist, the store's
    // invariants hold and the audit chain verifies.
    let db_url = format!("sqlite://{}", data_dir.join("certwright.db").display());
    let store = Store::open(&db_url).await.unwrap();
    let snapshot = store.snapshot().await.unwrap();
    let orders = snapshot
        .iter()
        .find_map(|t| t.strip_prefix("orders="))
        .unwrap();
    assert_eq!(
        orders.split(',').filter(|o| !o.is_empty()).count(),
        created,
        "orders in the store vs orders answered 201"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let violations = store.integrity_violations().await.unwrap();
        if violations.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "{violations:?}\n{}", ca.logs());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        matches!(
            store.verify_audit().await.unwrap(),
            AuditVerdict::Intact { .. }
        ),
        "the audit chain after a full disk"
    );
    drop(store);
    ca.stop(&mut guard);
    drop(mount);
}
