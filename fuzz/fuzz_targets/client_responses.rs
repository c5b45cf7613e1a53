//! What the client parses from a CA: PEM chains (splitting, DER extraction, certificate
//! facts) and CSRs it is given. Never panics.
#![no_main]

use certwright_client::certinfo::{chain_ders, read_csr, split_pem_chain, CertInfo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = read_csr(data);
    let Ok(text) = std::str::from_utf8(data) else {
        let _ = CertInfo::from_der(data);
        return;
    };
    let _ = split_pem_chain(text);
    if let Ok(ders) = chain_ders(text) {
        for der in ders {
            if let Ok(info) = CertInfo::from_der(&der) {
                let _ = info.lifetime();
            }
        }
    }
    let _ = CertInfo::from_chain_pem(text);
});
