//! Certificate revocation lists (RFC 5280 §5): a full CRL per issuer, signed by it.

use rcgen::{
    CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber,
};
use time::OffsetDateTime;

use super::{IssueError, IssuingCa};

/// One revoked certificate as a CRL lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrlEntry<'a> {
    /// The serial number, lower-case hex.
    pub serial: &'a str,
    /// When it was revoked (Unix seconds).
    pub revoked_at: i64,
    /// The RFC 5280 reason code.
    pub reason: u8,
}

/// Reason codes of RFC 5280 §5.3.1 a subscriber or operator may give. Excluded:
/// 2 (cACompromise) and 10 (aACompromise) do not apply to an end-entity certificate,
/// 6 (certificateHold) is not supported (revocation here is final), 7 is unassigned,
/// 8 (removeFromCRL) belongs to delta CRLs only.
pub const ALLOWED_REASONS: [u8; 6] = [0, 1, 3, 4, 5, 9];

/// The RFC 5280 name of a reason code.
pub fn reason_name(code: u8) -> &'static str {
    match code {
        0 => "unspecified",
        1 => "keyCompromise",
        2 => "cACompromise",
        3 => "affiliationChanged",
        4 => "superseded",
        5 => "cessationOfOperation",
        6 => "certificateHold",
        8 => "removeFromCRL",
        9 => "privilegeWithdrawn",
        10 => "aACompromise",
        _ => "unassigned",
    }
}

fn reason(code: u8) -> Option<RevocationReason> {
    Some(match code {
        1 => RevocationReason::KeyCompromise,
        2 => RevocationReason::CaCompromise,
        3 => RevocationReason::AffiliationChanged,
        4 => RevocationReason::Superseded,
        5 => RevocationReason::CessationOfOperation,
        6 => RevocationReason::CertificateHold,
        8 => RevocationReason::RemoveFromCrl,
        9 => RevocationReason::PrivilegeWithdrawn,
        10 => RevocationReason::AaCompromise,
        // unspecified (0) is expressed by leaving the reason out (RFC 5280 §5.3.1).
        _ => return None,
    })
}

fn time(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn serial_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect()
}

impl IssuingCa {
    /// Signs this issuer's CRL with `number`, listing `entries`.
    pub fn build_crl(
        &self,
        number: i64,
        entries: &[CrlEntry<'_>],
        this_update: i64,
        next_update: i64,
    ) -> Result<Vec<u8>, IssueError> {
        let params = CertificateRevocationListParams {
            this_update: time(this_update),
            next_update: time(next_update),
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: entries
                .iter()
                .map(|e| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&serial_bytes(e.serial)),
                    revocation_time: time(e.revoked_at),
                    reason_code: reason(e.reason),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(self.signer())?.der().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{CertificateAuthority, IssuancePolicy};
    use x509_parser::prelude::*;

    #[test]
    fn crl_lists_entries_with_reasons_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let h = crate::ca::test_hierarchy(dir.path());
        let inter = h.intermediate_der.clone();
        let ca = CertificateAuthority::new(h, IssuancePolicy::default()).unwrap();
        let ca = ca.issuer_named("intermediate").unwrap();
        let entries = vec![
            CrlEntry {
                serial: "7f01",
                revoked_at: 1_800_000_000,
                reason: 1,
            },
            CrlEntry {
                serial: "0a0b0c",
                revoked_at: 1_800_000_100,
                reason: 0,
            },
        ];
        let der = ca
            .build_crl(42, &entries, 1_800_000_200, 1_800_086_600)
            .unwrap();
        let (_, crl) = CertificateRevocationList::from_der(&der).unwrap();
        let (_, issuer) = X509Certificate::from_der(&inter).unwrap();
        crl.verify_signature(issuer.public_key()).unwrap();
        assert_eq!(crl.crl_number().unwrap().to_u64_digits(), vec![42]);
        let revoked: Vec<_> = crl.iter_revoked_certificates().collect();
        assert_eq!(revoked.len(), 2);
        assert_eq!(revoked[0].raw_serial(), &[0x7f, 0x01]);
        assert_eq!(revoked[0].reason_code().unwrap().1 .0, 1);
        assert!(
            revoked[1].reason_code().is_none(),
            "unspecified is left out"
        );
        assert_eq!(crl.last_update().timestamp(), 1_800_000_200);
        assert_eq!(crl.next_update().unwrap().timestamp(), 1_800_086_600);
    }
}
