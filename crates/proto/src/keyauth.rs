//! Key authorizations (RFC 8555 §8.1) and the values each challenge type publishes.

use aws_lc_rs::digest;

use crate::b64;
use crate::jwk::Jwk;

/// `token || '.' || base64url(thumbprint(accountKey))`.
pub fn key_authorization(token: &str, account_key: &Jwk) -> String {
    format!("{token}.{}", account_key.thumbprint())
}

/// SHA-256 of a key authorization (tls-alpn-01's acmeIdentifier value).
pub fn key_authorization_digest(key_authorization: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, key_authorization.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The dns-01 TXT value: base64url(SHA-256(key authorization)) (§8.4).
pub fn dns01_txt_value(key_authorization: &str) -> String {
    b64::encode(key_authorization_digest(key_authorization))
}

/// A fresh random token of 128 bits, base64url (§8.1 asks for at least 128 bits).
pub fn new_token() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system RNG works");
    b64::encode(bytes)
}

/// A token is base64url with no padding and at least 22 characters (128 bits).
pub fn is_valid_token(token: &str) -> bool {
    token.len() >= 22
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns01_value_is_b64_sha256() {
        // SHA-256("abc") = ba7816bf…; its base64url form.
        assert_eq!(
            dns01_txt_value("abc"),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
        let t = new_token();
        assert!(is_valid_token(&t), "{t}");
        assert!(!is_valid_token("../etc/passwd-and-more-chars"));
    }
}
