//! Smoke test: certwright-bench runs a few full issuance flows against an in-process
//! certwright-ca (plain HTTP, SQLite in a temporary directory) and every flow succeeds.
//! No timing assertions: benchmarks measure, tests assert behaviour.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use certwright_bench::{run_with_responder, Options, Responder, Trust};
use certwright_proto::KeyType;
use certwright_server::app::{CaServer, Options as CaOptions};
use certwright_server::clock::Clock;
use certwright_server::config::Config;
use certwright_server::va::NameResolver;
use tokio::net::TcpListener;

/// A CA validating http-01 against `http01_port`, every name resolving to 127.0.0.1.
async fn start_ca(
    dir: &std::path::Path,
    http01_port: u16,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = Config {
        listen: addr,
        tls: false,
        data_dir: dir.to_owned(),
        base_url: Some(format!("http://{addr}")),
        ..Config::default()
    };
    config.validation.http01_port = http01_port;
    config.validation.timeout_secs = 5;
    config.validation.allow_loopback = true;
    let resolver = NameResolver::Static {
        table: Arc::new(HashMap::new()),
        default: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    };
    let server = CaServer::open(
        config,
        CaOptions {
            resolver: Some(resolver),
            clock: Clock::system(),
            admin: false,
            ..CaOptions::default()
        },
    )
    .await
    .unwrap();
    let directory = server.directory_url();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        server
            .serve(listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (directory, tx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flow_against_certwright_ca_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let responder = Responder::start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let (directory, stop, task) = start_ca(dir.path(), responder.addr.port()).await;

    let mut options = Options::new(directory);
    options.trust = Trust::System;
    options.concurrency = 3;
    options.count = Some(8);
    options.warmup = 2;
    options.accounts = 2;
    options.names = 2;
    options.label = "certwright-ca".into();
    let report = tokio::time::timeout(
        Duration::from_secs(120),
        run_with_responder(options.clone(), responder),
    )
    .await
    .expect("the bench finishes")
    .unwrap();
    assert_eq!(report.flows_failed, 0, "{}", report.to_text());
    assert_eq!(report.flows_ok, 8, "{}", report.to_text());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    for step in [
        "newNonce",
        "newAccount",
        "newOrder",
        "challenge",
        "finalize",
        "certificate",
        "flow",
        "request",
    ] {
        assert!(report.steps.contains_key(step), "no samples for {step}");
    }
    assert_eq!(report.steps["flow"].count, 8);
    assert_eq!(report.steps["challenge"].count, 16, "two names per order");

    // A new account per flow, another key type, and the JSON round trip.
    let responder = Responder::start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let (directory2, stop2, task2) =
        start_ca(&dir.path().join("second"), responder.addr.port()).await;
    let mut options = Options::new(directory2);
    options.concurrency = 2;
    options.count = Some(3);
    options.accounts = 0;
    options.account_key = KeyType::Ed25519;
    options.cert_key = KeyType::EcP384;
    options.fresh_cert_keys = true;
    let report2 = run_with_responder(options, responder).await.unwrap();
    assert_eq!(
        (report2.flows_ok, report2.flows_failed),
        (3, 0),
        "{}",
        report2.to_text()
    );
    assert_eq!(report2.steps["newAccount"].count, 3);
    let json = serde_json::to_string(&report2).unwrap();
    let back: certwright_bench::Report = serde_json::from_str(&json).unwrap();
    assert_eq!((back.flows_ok, back.flows_failed), (3, 0));
    assert_eq!(
        back.steps.keys().collect::<Vec<_>>(),
        report2.steps.keys().collect::<Vec<_>>()
    );
    assert!(certwright_bench::compare(&report, &report2).contains("issuances/s"));

    let _ = stop.send(());
    let _ = stop2.send(());
    task.await.unwrap();
    task2.await.unwrap();
}
