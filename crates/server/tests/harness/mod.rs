//! In-process test fixture: a certwright-ca on a loopback port (plain HTTP), with the
//! http-01 responder it validates against. What needs no server type (the ACME test
//! client, the responder, certificate reading, PostgreSQL, openssl) comes from
//! certwright-testkit and is re-exported here.

#![allow(dead_code)]

// Each test binary uses a part of what is re-exported.
#[allow(unused_imports)]
pub(crate) use certwright_testkit::{
    acme::{http01_challenge, quiet_cut_requests, Acme, Answer, Received, Resp, Responder},
    peers::openssl::{ocsp_query_args, openssl_async as openssl},
    peers::postgres as pg,
    x509::{self, ari_id, csr, leaf_serial, pem_chain, san_strings},
};

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use certwright_proto::{AccountKey, KeyType};
use certwright_server::app::{CaServer, Options};
use certwright_server::clock::Clock;
use certwright_server::config::{Config, PkiHttpListen};
use certwright_server::store::Store;
use certwright_server::va::NameResolver;
use tokio::net::TcpListener;

/// A running CA.
pub(crate) struct TestCa {
    pub(crate) base: String,
    pub(crate) addr: SocketAddr,
    pub(crate) store: Store,
    pub(crate) clock: Clock,
    pub(crate) data_dir: PathBuf,
    pub(crate) responder: Responder,
    pub(crate) root_pem: String,
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`), e.g. `http://127.0.0.1:PORT`.
    pub(crate) admin_base: String,
    /// The admin endpoints' state (for requests that must look remote).
    pub(crate) admin: Arc<certwright_server::admin::Admin>,
    /// The plain-HTTP PKI listener as named in certificates (`pki_base_url`), e.g.
    /// `http://127.0.0.1:PORT`; the base URL itself when a test turned the listener off.
    pub(crate) pki_base: String,
    /// Reloads the policy in force from a file, as a SIGHUP does.
    pub(crate) policy: certwright_server::app::PolicyReloader,
    _tmp: Option<tempfile::TempDir>,
    pki_shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Every name is 127.0.0.1, except `refused.test`, which is 127.0.0.2 where nothing
/// listens, and names that resolve to addresses the VA must never contact:
/// `zero.test` (0.0.0.0), `metadata.test` (169.254.169.254) and `mapped-metadata.test`
/// (::ffff:169.254.169.254).
fn resolver() -> NameResolver {
    let mut table = HashMap::new();
    table.insert(
        "refused.test".to_string(),
        vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))],
    );
    table.insert(
        "zero.test".to_string(),
        vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
    );
    table.insert(
        "metadata.test".to_string(),
        vec![IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254))],
    );
    table.insert(
        "mapped-metadata.test".to_string(),
        vec!["::ffff:169.254.169.254".parse().unwrap()],
    );
    NameResolver::Static {
        table: Arc::new(table),
        default: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    }
}

impl TestCa {
    /// A fresh CA in a new temporary directory.
    pub(crate) async fn start() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let responder = Responder::start().await;
        let mut ca = Self::start_in(dir, None, responder, Clock::system(), |_| {}).await;
        ca._tmp = Some(tmp);
        ca
    }

    /// A fresh CA with a configuration tweak.
    pub(crate) async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let responder = Responder::start().await;
        let mut ca = Self::start_in(dir, None, responder, Clock::system(), tweak).await;
        ca._tmp = Some(tmp);
        ca
    }

    /// A CA on `data_dir` (reusing `addr` if given).
    pub(crate) async fn start_in(
        data_dir: PathBuf,
        addr: Option<SocketAddr>,
        responder: Responder,
        clock: Clock,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let listener = TcpListener::bind(addr.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = Config {
            listen: addr,
            tls: false,
            data_dir: data_dir.clone(),
            database_url: database_url_for(&data_dir).await,
            base_url: Some(format!("http://{addr}")),
            ..Config::default()
        };
        config.validation.http01_port = responder.port;
        config.validation.timeout_secs = 5;
        // The challenge servers listen on loopback (the test switch).
        config.validation.allow_loopback = true;
        // The plain-HTTP PKI listener on a port of its own (a test may turn it off).
        let pki_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pki_addr = pki_listener.local_addr().unwrap();
        config.pki_http_listen = PkiHttpListen(Some(pki_addr));
        tweak(&mut config);
        let pki_listener = (config.pki_http_listen.0 == Some(pki_addr)).then_some(pki_listener);
        // A test that names a DNS server (validation.dns_resolver) gets real lookups.
        let resolver = config.validation.dns_resolver.is_none().then(resolver);
        let server = CaServer::open(
            config,
            Options {
                resolver,
                clock: clock.clone(),
                admin: false,
                ..Options::default()
            },
        )
        .await
        .unwrap();
        let base = server.state.urls.base.clone();
        let pki_base = server.config.pki_base_url();
        let (pki_tx, pki_rx) = tokio::sync::oneshot::channel::<()>();
        if let Some(listener) = pki_listener {
            tokio::spawn(certwright_server::app::serve_pki_http(
                server.state.clone(),
                listener,
                async {
                    let _ = pki_rx.await;
                },
            ));
        }
        let store = server.store.clone();
        let root_pem = server.root_pem.clone();
        let policy =
            certwright_server::app::PolicyReloader::new(server.state.ra.policy_handle().clone());
        let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin_base = format!("http://{}", admin_listener.local_addr().unwrap());
        let admin = server.admin.clone();
        let admin_state = admin.clone();
        tokio::spawn(async move {
            let _ = certwright_server::admin::serve_admin(
                admin_listener,
                admin,
                std::future::pending(),
            )
            .await;
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            server
                .serve(listener, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            base,
            addr,
            store,
            clock,
            data_dir,
            responder,
            root_pem,
            admin_base,
            admin: admin_state,
            pki_base,
            policy,
            _tmp: None,
            pki_shutdown: Some(pki_tx),
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Takes ownership of the temporary data directory (and the test database with it).
    pub(crate) fn adopt(&mut self, tmp: Option<tempfile::TempDir>) {
        self._tmp = tmp;
    }

    /// Stops serving and returns the pieces to start again on the same data.
    pub(crate) async fn stop(
        mut self,
    ) -> (Option<tempfile::TempDir>, PathBuf, SocketAddr, Responder) {
        if let Some(tx) = self.pki_shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .unwrap()
                .unwrap();
        }
        (
            self._tmp.take(),
            self.data_dir.clone(),
            self.addr,
            self.responder.clone(),
        )
    }

    /// A client with a fresh key of `kind` (not yet registered).
    pub(crate) async fn client(&self, kind: KeyType) -> Acme {
        Acme::new(&self.base, AccountKey::generate(kind).unwrap()).await
    }

    /// A registered client (ES256).
    pub(crate) async fn account(&self) -> Acme {
        let mut c = self.client(KeyType::EcP256).await;
        c.register().await;
        c
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        // The owner of the data directory also removes the test's PostgreSQL database.
        if self._tmp.is_none() {
            return;
        }
        let Ok(url) = std::fs::read_to_string(self.data_dir.join(DATABASE_MARKER)) else {
            return;
        };
        let name = url.rsplit('/').next().unwrap_or_default().to_owned();
        let admin = pg::admin_url();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::postgres::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

/// Marker file in a test data directory holding its PostgreSQL database URL.
const DATABASE_MARKER: &str = "test-database-url";

/// Whether the suite runs on PostgreSQL (`CERTWRIGHT_TEST_BACKEND=postgres`).
pub(crate) fn on_postgres() -> bool {
    std::env::var("CERTWRIGHT_TEST_BACKEND").as_deref() == Ok("postgres")
}

/// `certwright-ca ARGS --data-dir … [--database-url …]` against the test CA's database
/// (bounded to 60 s).
pub(crate) async fn cli(ca: &TestCa, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_certwright-ca"));
    cmd.args(args).arg("--data-dir").arg(&ca.data_dir);
    if let Some(url) = database_url_for(&ca.data_dir).await {
        cmd.args(["--database-url", &url]);
    }
    tokio::task::spawn_blocking(move || {
        certwright_testkit::process::run_bounded(&mut cmd, Duration::from_secs(60))
    })
    .await
    .unwrap()
}

/// A command's status and output, for assertion messages.
pub(crate) fn text(out: &std::process::Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs one statement on the CA's database directly, as someone with database access
/// (not the CA) would: the tampering the trail must reveal.
pub(crate) async fn tamper(ca: &TestCa, sql: &str) {
    use sqlx::Connection;
    match database_url_for(&ca.data_dir).await {
        Some(url) => {
            let mut c = sqlx::postgres::PgConnection::connect(&url).await.unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
        None => {
            let url = format!("sqlite://{}", ca.data_dir.join("certwright.db").display());
            let mut c = sqlx::sqlite::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
    }
}

/// The database for a test CA: SQLite in its data directory (None: the default), or a
/// fresh PostgreSQL database of its own, created on first use and reused on restarts.
pub(crate) async fn database_url_for(data_dir: &std::path::Path) -> Option<String> {
    if !on_postgres() {
        return None;
    }
    let marker = data_dir.join(DATABASE_MARKER);
    if let Ok(url) = std::fs::read_to_string(&marker) {
        return Some(url);
    }
    let url = pg::create_database().await;
    std::fs::write(&marker, &url).unwrap();
    Some(url)
}

/// Waits (polling, at most `within`) until `store` has no integrity violations, i.e. a
/// (re)started CA has settled what was in flight; fails with them and `logs()` otherwise.
pub(crate) async fn wait_for_integrity(store: &Store, within: Duration, logs: impl Fn() -> String) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let violations = store.integrity_violations().await.unwrap();
        if violations.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after {within:?}: {violations:?}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every certificate the clients received is in `store` under its own serial (none
/// twice), with the exact chain served, and still downloads. `context` prefixes failures.
pub(crate) async fn assert_received_are_stored(
    store: &Store,
    clients: &[Arc<Acme>],
    received: &[Received],
    context: &str,
) {
    let mut serials: Vec<String> = received.iter().map(|(_, _, c)| leaf_serial(c)).collect();
    serials.sort();
    let total = serials.len();
    serials.dedup();
    assert_eq!(serials.len(), total, "{context}: a serial was served twice");
    for (client, url, chain) in received {
        let serial = leaf_serial(chain);
        let stored = store
            .certificate(&serial)
            .await
            .unwrap_or_else(|e| panic!("{context}: received {serial} is not stored: {e}"));
        assert_eq!(
            stored.chain_pem, *chain,
            "{context}: stored chain of {serial}"
        );
        let again = clients[*client].post(url, None).await;
        assert_eq!(again.status, 200, "{context}: {url}");
        assert_eq!(
            String::from_utf8(again.body).unwrap(),
            *chain,
            "{context}: {url}"
        );
    }
}
