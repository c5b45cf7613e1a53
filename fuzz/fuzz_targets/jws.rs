//! A request body as the WFE receives it: flattened JWS parsing, then verification with
//! the embedded key when there is one. Must never panic.
#![no_main]

use certwright_proto::jws::Signer;
use certwright_proto::ParsedJws;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(jws) = ParsedJws::parse(data) {
        let _ = jws.is_post_as_get();
        if let Signer::Jwk(jwk) = &jws.header.signer {
            let _ = jws.verify(jwk);
            let _ = jwk.thumbprint();
        }
        let _ = jws.verify_hmac(b"fuzz-mac-key");
    }
});
