//! Micro-benchmarks of the CA's per-request hot paths (criterion):
//! JWS parse+verify per algorithm (with the key parsed per call, and parsed beforehand as
//! the server's key cache keeps it), CSR parse+verify per key type, certificate signing per
//! CA key type, and nonce issue+redeem.
//!
//! `cargo bench -p certwright-bench --bench hot_paths` (filter: `-- jws`, `-- csr`, …).

use std::hint::black_box;

use certwright_bench::run::{cert_key, csr};
use certwright_proto::jws::{sign, Signer};
use certwright_proto::types::Identifier;
use certwright_proto::{AccountKey, KeyType, ParsedJws, VerifyingKey};
use certwright_server::ca::{
    parse_csr, CaKeyType, CertificateAuthority, Hierarchy, IssuancePolicy, KeyPolicy, Profile,
};
use certwright_server::clock::Clock;
use certwright_server::wfe::nonce::MemoryNonces;
use criterion::{criterion_group, criterion_main, Criterion};

const URL: &str = "https://ca.example/acme/order/1234";

fn jws(c: &mut Criterion) {
    let mut group = c.benchmark_group("jws");
    for kind in [
        KeyType::EcP256,
        KeyType::EcP384,
        KeyType::Rsa2048,
        KeyType::Ed25519,
    ] {
        let key = AccountKey::generate(kind).unwrap();
        let jwk = key.jwk();
        let body = serde_json::to_vec(
            &sign(
                &key,
                &Signer::Kid("https://ca.example/acme/acct/1".into()),
                Some("bm9uY2Utbm9uY2Utbm9uY2U"),
                URL,
                b"",
            )
            .unwrap(),
        )
        .unwrap();
        let alg = key.algorithm().name();
        group.bench_function(format!("parse+verify/{alg}"), |b| {
            b.iter(|| {
                let parsed = ParsedJws::parse(black_box(&body)).unwrap();
                parsed.verify(&jwk).unwrap();
            })
        });
        // As the server verifies a `kid`-signed request: the account's key parsed once.
        let verifying = VerifyingKey::new(&jwk);
        group.bench_function(format!("parse+verify-parsed-key/{alg}"), |b| {
            b.iter(|| {
                let parsed = ParsedJws::parse(black_box(&body)).unwrap();
                parsed.verify_with(&verifying).unwrap();
            })
        });
        group.bench_function(format!("sign/{alg}"), |b| {
            b.iter(|| {
                sign(
                    &key,
                    &Signer::Kid("https://ca.example/acme/acct/1".into()),
                    Some("n"),
                    URL,
                    black_box(b""),
                )
                .unwrap()
            })
        });
    }
    group.finish();
}

fn names() -> Vec<String> {
    vec!["www.bench.example.test".into()]
}

fn csrs(c: &mut Criterion) {
    let mut group = c.benchmark_group("csr");
    let policy = KeyPolicy {
        allow_ed25519: true,
        ..KeyPolicy::default()
    };
    for kind in [
        KeyType::EcP256,
        KeyType::EcP384,
        KeyType::Rsa2048,
        KeyType::Ed25519,
    ] {
        let key = cert_key(kind).unwrap();
        let der = csr(&names(), &key).unwrap();
        group.bench_function(format!("parse+verify/{}", kind.name()), |b| {
            b.iter(|| parse_csr(black_box(&der), &policy).unwrap())
        });
    }
    group.finish();
}

fn signing(c: &mut Criterion) {
    let mut group = c.benchmark_group("issue");
    let profile = Profile::tls_server("tls-server", 90 * 86400);
    let leaf = parse_csr(
        &csr(&names(), &cert_key(KeyType::EcP256).unwrap()).unwrap(),
        &KeyPolicy::default(),
    )
    .unwrap();
    let ids = vec![Identifier::dns("www.bench.example.test")];
    let now = Clock::system().now();
    for ca_key in [
        CaKeyType::Ec256,
        CaKeyType::Ec384,
        CaKeyType::Rsa2048,
        CaKeyType::Rsa4096,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let hierarchy = Hierarchy::load_or_create(
            dir.path(),
            ca_key,
            "bench",
            &["localhost".into()],
            &Default::default(),
        )
        .unwrap();
        let ca = CertificateAuthority::new(
            hierarchy,
            IssuancePolicy {
                backdate_secs: 60,
                pki_base: Some("https://ca.example".into()),
                ocsp: true,
            },
        )
        .unwrap();
        group.bench_function(format!("ca-{ca_key:?}/leaf-ec256"), |b| {
            b.iter(|| ca.issue(black_box(&leaf), &ids, &profile, now).unwrap())
        });
    }
    group.finish();
}

fn nonces(c: &mut Criterion) {
    let nonces = MemoryNonces::new(Clock::system());
    // A realistic population: many nonces outstanding.
    for _ in 0..10_000 {
        nonces.issue();
    }
    c.bench_function("nonce/issue+redeem", |b| {
        b.iter(|| {
            let n = nonces.issue();
            assert!(nonces.redeem(black_box(&n)));
        })
    });
}

// In a module of its own: criterion_group! generates a `pub fn` that cannot carry a doc
// comment, and it is not part of any API.
mod group {
    use super::*;
    criterion_group!(benches, jws, csrs, signing, nonces);
}
criterion_main!(group::benches);
