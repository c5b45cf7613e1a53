//! base64url without padding (RFC 7515 §2), the only base64 ACME uses on the wire.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Encodes bytes as base64url without padding.
pub fn encode(data: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Decodes base64url without padding; padding, `+` and `/` are rejected.
pub fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_NO_PAD.decode(text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip_and_strictness() {
        assert_eq!(super::encode([0xfb, 0xff]), "-_8");
        assert_eq!(super::decode("-_8").unwrap(), vec![0xfb, 0xff]);
        assert!(super::decode("+/8=").is_err());
    }
}
