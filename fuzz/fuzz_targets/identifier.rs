//! Identifier normalization (IDN to A-labels, case, wildcards, IP forms): never panics,
//! and normalizing a normalized identifier changes nothing.
#![no_main]

use certwright_proto::identifier::{normalize, normalize_dns_name, normalize_ip};
use certwright_proto::types::Identifier;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(n) = normalize_dns_name(text) {
        let again = normalize(&n.identifier).expect("a normalized name normalizes again");
        assert_eq!(again.identifier, n.identifier);
        let _ = n.authorization_identifier();
    }
    if let Ok(n) = normalize_ip(text) {
        let again = normalize(&n.identifier).expect("a normalized address normalizes again");
        assert_eq!(again.identifier, n.identifier);
    }
    let _ = normalize(&Identifier::dns(text));
});
