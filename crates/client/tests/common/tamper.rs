//! A man in the middle in front of Pebble: it passes every ACME request through, rewriting
//! Pebble's URLs to its own, and can replace the certificate chain Pebble hands out with a
//! broken one, as a faulty or compromised CA would.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;

use certwright_testkit::peers::pebble::Pebble;
use certwright_testkit::x509::tls_identity;

/// What the proxy does to a certificate download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tamper {
    /// Passes it through.
    Nothing,
    /// Puts a leaf for the same names but another key in front of the real chain.
    ForeignKey,
    /// Keeps the leaf and replaces its issuer with an unrelated CA certificate.
    BrokenChain,
    /// Cuts the PEM off in the middle of the leaf.
    Truncated,
}

struct Shared {
    upstream: String,
    own: String,
    http: reqwest::Client,
    mode: Mutex<Tamper>,
    tampered: Mutex<u32>,
}

/// The running proxy; it lives as long as the test process.
pub(crate) struct TamperingProxy {
    /// The directory URL to give the client.
    pub(crate) directory_url: String,
    /// The root the client must trust for the proxy's listener.
    pub(crate) listener_root: PathBuf,
    shared: Arc<Shared>,
    _tmp: tempfile::TempDir,
}

impl TamperingProxy {
    /// Starts a proxy for `pebble` on a free loopback port.
    pub(crate) fn start(pebble: &Pebble) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let (listener_root, cert, key) = tls_identity(tmp.path());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream = pebble.directory_url.trim_end_matches("/dir").to_owned();
        let pebble_root =
            reqwest::Certificate::from_pem(&std::fs::read(&pebble.listener_root).unwrap()).unwrap();
        let http = reqwest::Client::builder()
            .tls_certs_only([pebble_root])
            .http1_only()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap();
        let shared = Arc::new(Shared {
            upstream,
            own: format!("https://localhost:{port}"),
            http,
            mode: Mutex::new(Tamper::Nothing),
            tampered: Mutex::new(0),
        });
        let acceptor = acceptor(&cert, &key);
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (acceptor, app) = (acceptor.clone(), app.clone());
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(stream).await else {
                            return;
                        };
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                            .await;
                    });
                }
            });
        });
        Self {
            directory_url: format!("https://localhost:{port}/dir"),
            listener_root,
            shared,
            _tmp: tmp,
        }
    }

    /// Sets what happens to the next certificate downloads.
    pub(crate) fn set(&self, mode: Tamper) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// How many certificate downloads were tampered with so far.
    pub(crate) fn tampered(&self) -> u32 {
        *self.shared.tampered.lock().unwrap()
    }
}

fn acceptor(cert: &Path, key: &Path) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Sends the request on to Pebble and its answer back, with Pebble's URLs made ours.
async fn forward(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut upstream = s
        .http
        .request(parts.method.clone(), format!("{}{path}", s.upstream))
        .body(body.to_vec())
        // Pebble checks each JWS `url` against the Host it was asked under.
        .header("host", s.own.trim_start_matches("https://"));
    if let Some(ct) = parts.headers.get("content-type") {
        upstream = upstream.header("content-type", ct);
    }
    let answer = match upstream.send().await {
        Ok(a) => a,
        Err(e) => {
            return Response::builder()
                .status(502)
                .body(Body::from(e.to_string()))
                .unwrap()
        }
    };
    let status = answer.status();
    let mut out = Response::builder().status(status);
    for (name, value) in answer.headers() {
        if matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            continue;
        }
        let value = value
            .to_str()
            .unwrap_or_default()
            .replace(&s.upstream, &s.own);
        out = out.header(name, value);
    }
    let is_chain = answer.headers().get("content-type").is_some_and(|v| {
        v.as_bytes()
            .starts_with(b"application/pem-certificate-chain")
    });
    let text = answer.text().await.unwrap_or_default();
    let mode = *s.mode.lock().unwrap();
    let text = if is_chain && mode != Tamper::Nothing {
        *s.tampered.lock().unwrap() += 1;
        tamper(&text, mode)
    } else {
        text.replace(&s.upstream, &s.own)
    };
    out.body(Body::from(text)).unwrap()
}

/// The chain `pem` spoiled as `mode` says.
fn tamper(pem: &str, mode: Tamper) -> String {
    let blocks = certwright_client::certinfo::split_pem_chain(pem);
    match mode {
        Tamper::Nothing => pem.to_owned(),
        Tamper::ForeignKey => {
            let names = certwright_client::certinfo::CertInfo::from_chain_pem(pem)
                .unwrap()
                .names;
            let key = rcgen::KeyPair::generate().unwrap();
            let foreign = rcgen::CertificateParams::new(names)
                .unwrap()
                .self_signed(&key)
                .unwrap();
            format!("{}{}", foreign.pem(), blocks[1..].concat())
        }
        Tamper::BrokenChain => {
            let (_, _, unrelated) =
                certwright_testkit::x509::self_signed_ca("unrelated intermediate");
            format!("{}{}", blocks[0], unrelated.pem())
        }
        Tamper::Truncated => blocks[0][..blocks[0].len() / 2].to_owned(),
    }
}
