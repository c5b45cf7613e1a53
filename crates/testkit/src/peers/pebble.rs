//! Pebble, Let's Encrypt's ACME test server, with a challtestsrv of its own as its DNS.

use std::path::PathBuf;
use std::process::Command;

use super::challtestsrv::ChallTestSrv;
use crate::port::{free_port, wait_for_port};
use crate::process::{require_binary, spawn, ChildGuard};
use crate::x509::tls_identity;

/// A running Pebble instance with its own challtestsrv; both stop when dropped.
pub struct Pebble {
    /// Its configuration, log (`pebble.log`) and listener certificate.
    pub dir: PathBuf,
    /// Its ACME directory (`https://localhost:PORT/dir`).
    pub directory_url: String,
    /// Its management interface (roots, intermediates).
    pub mgmt_port: u16,
    /// The port Pebble's VA connects to for http-01.
    pub http_port: u16,
    /// The port Pebble's VA connects to for tls-alpn-01.
    pub tls_port: u16,
    /// Trust this to talk to Pebble's listener.
    pub listener_root: PathBuf,
    /// Its DNS server (unless started with another one, see [`Pebble::start_with`]).
    pub dns: ChallTestSrv,
    _child: ChildGuard,
    _tmp: tempfile::TempDir,
}

impl Pebble {
    /// Starts Pebble; `eab` uses the EAB example config's MAC keys and requires EAB.
    pub fn start(eab: bool) -> Self {
        Self::start_with(eab, None)
    }

    /// Like [`Pebble::start`], with Pebble's DNS queries going to `dns_port` instead of
    /// its challtestsrv.
    pub fn start_with(eab: bool, dns_port: Option<u16>) -> Self {
        require_binary("pebble");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let (listener_root, cert, key) = tls_identity(&dir);
        let dns = ChallTestSrv::start();
        let (port, mgmt_port, http_port, tls_port) =
            (free_port(), free_port(), free_port(), free_port());
        let example = if eab {
            "/usr/share/doc/pebble/examples/pebble-config-external-account-bindings.json"
        } else {
            "/usr/share/doc/pebble/examples/pebble-config.json"
        };
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(example).expect(example)).unwrap();
        let p = &mut config["pebble"];
        p["listenAddress"] = format!("127.0.0.1:{port}").into();
        p["managementListenAddress"] = format!("127.0.0.1:{mgmt_port}").into();
        p["certificate"] = cert.display().to_string().into();
        p["privateKey"] = key.display().to_string().into();
        p["httpPort"] = http_port.into();
        p["tlsPort"] = tls_port.into();
        let config_path = dir.join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = std::fs::File::create(dir.join("pebble.log")).unwrap();
        let child = spawn(
            Command::new("pebble")
                .arg("-config")
                .arg(&config_path)
                .args([
                    "-dnsserver",
                    &format!("127.0.0.1:{}", dns_port.unwrap_or(dns.dns_port)),
                ])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_ALTERNATE_ROOTS", "1")
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        );
        wait_for_port(port, "pebble");
        wait_for_port(mgmt_port, "pebble management");
        Self {
            dir,
            directory_url: format!("https://localhost:{port}/dir"),
            mgmt_port,
            http_port,
            tls_port,
            listener_root,
            dns,
            _child: child,
            _tmp: tmp,
        }
    }

    /// Pebble's issuing root number `n` (PEM), from the management interface.
    pub fn root_pem(&self, n: u32) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let root = reqwest::Certificate::from_pem(&std::fs::read(&self.listener_root).unwrap())
                .unwrap();
            let http = reqwest::Client::builder()
                .tls_certs_only([root])
                .build()
                .unwrap();
            http.get(format!("https://localhost:{}/roots/{n}", self.mgmt_port))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    }
}
