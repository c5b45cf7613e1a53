//! JWK parsing and RFC 7638 thumbprints: a key that parses serializes back to itself.
#![no_main]

use certwright_proto::Jwk;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(jwk) = Jwk::from_value(&value) {
        let again = Jwk::from_value(&jwk.to_value()).expect("a parsed JWK re-parses");
        assert_eq!(again.thumbprint(), jwk.thumbprint());
        let _ = jwk.describe();
        let _ = jwk.algorithm();
    }
});
