//! Where each challenge type's answer lives, as RFC 8555 §8.3/§8.4 and RFC 8737 fix it:
//! defined once for the CA's validator and the client's solvers.

/// The path prefix of an http-01 answer (RFC 8555 §8.3); the token follows.
pub const HTTP01_PATH_PREFIX: &str = "/.well-known/acme-challenge/";

/// The label a dns-01 TXT record lives under (RFC 8555 §8.4).
pub const DNS01_LABEL: &str = "_acme-challenge";

/// The ALPN protocol a tls-alpn-01 responder negotiates (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// id-pe-acmeIdentifier (RFC 8737 §6.1), the critical extension holding the SHA-256 of
/// the key authorization, as arcs.
pub const ACME_IDENTIFIER_OID: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 31];

/// [`ACME_IDENTIFIER_OID`] in dotted form.
pub const ACME_IDENTIFIER_OID_DOTTED: &str = "1.3.6.1.5.5.7.1.31";

/// The path of the http-01 answer for `token`.
pub fn http01_path(token: &str) -> String {
    format!("{HTTP01_PATH_PREFIX}{token}")
}

/// The name the dns-01 TXT record for `name` lives at, without a trailing dot
/// (`_acme-challenge.example.com`; a wildcard's base name is given without `*.`).
pub fn dns01_name(name: &str) -> String {
    format!("{DNS01_LABEL}.{}", name.trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(http01_path("tok"), "/.well-known/acme-challenge/tok");
        assert_eq!(dns01_name("example.com"), "_acme-challenge.example.com");
        assert_eq!(dns01_name("example.com."), "_acme-challenge.example.com");
        let dotted: Vec<String> = ACME_IDENTIFIER_OID.iter().map(u64::to_string).collect();
        assert_eq!(dotted.join("."), ACME_IDENTIFIER_OID_DOTTED);
    }
}
