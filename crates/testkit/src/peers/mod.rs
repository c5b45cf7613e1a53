//! Real peers, started on loopback ports of their own and stopped by their guards: Pebble
//! and pebble-challtestsrv, the ACME clients certbot and lego, BIND 9, PostgreSQL, and
//! openssl runs; backend CAs for the `exec` backend (an OpenSSL `ca` directory, an Easy-RSA
//! PKI); SoftHSM2 tokens in temp dirs of their own. Every peer binary must be installed (`scripts/test` installs them); a
//! missing one fails the test with a message saying so, it is never skipped.

pub mod acme_clients;
pub mod bind;
pub mod challtestsrv;
pub mod easyrsa;
pub mod openssl;
pub mod openssl_ca;
pub mod pebble;
pub mod postgres;
pub mod softhsm;
