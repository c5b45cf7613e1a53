//! certwright-testkit: the one test kit of the certwright workspace (dev-only, never
//! published). The server's and the client's tests take from it everything that does not
//! need their own types; what does (an in-process CA built from the server's `Config`,
//! the `certwright` command line) stays in a thin module of their `tests/` directories.
//!
//! The loopback TCP balancer of the scale-out tests is not here: it is
//! `certwright_bench::balance`, which the `certwright-bench balance` command serves with.
//!
//! It depends on `certwright-proto` and external crates only, never on
//! `certwright-server` or `certwright-client`: their unit tests use it too, and a
//! dependency on them would put a second copy of their types in those tests.
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`process`] | child processes, one way: [`process::spawn`] (dies with its thread), [`process::ChildGuard`] / [`process::ProcessGuard`] (SIGTERM, then SIGKILL, and reap on drop), bounded runs ([`process::run_bounded`], [`process::run_ok`]) |
//! | [`port`] | [`port::free_port`] and [`port::wait_for_port`] |
//! | [`peers`] | real peers: Pebble, pebble-challtestsrv, certbot and lego, BIND 9, PostgreSQL, openssl, and backend CAs (an OpenSSL `ca` directory, Easy-RSA) |
//! | [`netns`] | [`netns::Segment`]: a network namespace with a host address the root namespace cannot reach, servers and programs run inside it |
//! | [`ca_process`] | the `certwright-ca` binary as a process on its own ports ([`ca_process::CaProcess`]) |
//! | [`testdns`] | [`testdns::TestDns`], an authoritative DNS server on loopback with records set per test |
//! | [`testalpn`] | [`testalpn::TlsAlpnResponder`], a tls-alpn-01 responder serving correct or flawed challenge certificates |
//! | [`acme`] | [`acme::Acme`], a small ACME test client over certwright-proto, and [`acme::Responder`], its http-01 responder |
//! | [`x509`] | reading issued certificates, CSRs, a TLS identity for a test listener |

pub mod acme;
pub mod ca_process;
pub mod netns;
pub mod peers;
pub mod port;
pub mod process;
pub mod testalpn;
pub mod testdns;
pub mod x509;
