//! ACME Renewal Information (RFC 9773): certificate identifiers and the renewalInfo object.

use serde::{Deserialize, Serialize};

use crate::b64;

/// The ARI certificate identifier: `base64url(AKI keyIdentifier) "." base64url(serial)`,
/// where the serial is the DER INTEGER's content octets.
pub fn cert_id(authority_key_id: &[u8], serial: &[u8]) -> String {
    format!("{}.{}", b64::encode(authority_key_id), b64::encode(serial))
}

/// Splits a certificate identifier into (AKI keyIdentifier, serial bytes).
pub fn parse_cert_id(id: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let (aki, serial) = id.split_once('.')?;
    let aki = b64::decode(aki).ok()?;
    let serial = b64::decode(serial).ok()?;
    if aki.is_empty() || serial.is_empty() {
        return None;
    }
    Some((aki, serial))
}

/// The suggested renewal window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuggestedWindow {
    /// RFC 3339.
    pub start: String,
    /// RFC 3339.
    pub end: String,
}

/// The renewalInfo object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenewalInfo {
    /// When the CA suggests renewing.
    pub suggested_window: SuggestedWindow,
    /// A page that may explain why the window is what it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "explanationURL")]
    pub explanation_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9773 §4.1's example: AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4
    /// and serial 00:87:65:43:21.
    #[test]
    fn rfc9773_example() {
        let aki = [
            0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0,
            0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4,
        ];
        let serial = [0x00, 0x87, 0x65, 0x43, 0x21];
        let id = cert_id(&aki, &serial);
        assert_eq!(id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
        assert_eq!(parse_cert_id(&id), Some((aki.to_vec(), serial.to_vec())));
        assert_eq!(parse_cert_id("nodot"), None);
        assert_eq!(parse_cert_id(".AIdlQyE"), None);
    }
}
