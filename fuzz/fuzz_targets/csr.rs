//! CSR parsing, signature check and key policy, as finalize runs them.
#![no_main]

use certwright_server::ca::csr::{parse_csr, KeyPolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let policy = KeyPolicy::default();
    if let Ok(csr) = parse_csr(data, &policy) {
        assert!(!csr.spki_der.is_empty());
        let _ = csr.key.thumbprint();
    }
});
