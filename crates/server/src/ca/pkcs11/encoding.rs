//! The DER a token does not speak: ECDSA's raw `r||s` into X.509's `Ecdsa-Sig-Value`,
//! a DER `RSAPublicKey` from the modulus and exponent, and the bare EC point out of
//! `CKA_EC_POINT` (usually a DER OCTET STRING around it).

use der::asn1::{OctetStringRef, UintRef};
use der::{Decode, Encode, Sequence};

/// `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` (RFC 3279), and RFC 8017's
/// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`: both are two
/// unsigned integers.
#[derive(Sequence)]
struct TwoIntegers<'a> {
    first: UintRef<'a>,
    second: UintRef<'a>,
}

fn two_integers(first: &[u8], second: &[u8]) -> Result<Vec<u8>, String> {
    let value = TwoIntegers {
        first: UintRef::new(first).map_err(|e| e.to_string())?,
        second: UintRef::new(second).map_err(|e| e.to_string())?,
    };
    value.to_der().map_err(|e| e.to_string())
}

/// The DER `Ecdsa-Sig-Value` of a PKCS#11 ECDSA signature (`r||s`, each half the
/// curve's size, big-endian). Leading zero bytes are dropped and a zero byte is put in
/// front of a high bit, as DER INTEGERs want.
pub(crate) fn ecdsa_sig_value(raw: &[u8], field_len: usize) -> Result<Vec<u8>, String> {
    if raw.len() != 2 * field_len {
        return Err(format!(
            "the token's ECDSA signature is {} bytes; {} were expected (r||s)",
            raw.len(),
            2 * field_len
        ));
    }
    let (r, s) = raw.split_at(field_len);
    if r.iter().all(|&b| b == 0) || s.iter().all(|&b| b == 0) {
        return Err("the token's ECDSA signature has r or s zero".into());
    }
    two_integers(r, s)
}

/// A DER `RSAPublicKey` (what rcgen and aws-lc-rs call an RSA key's public key bytes).
pub(crate) fn rsa_public_key(modulus: &[u8], exponent: &[u8]) -> Result<Vec<u8>, String> {
    two_integers(modulus, exponent)
}

/// The uncompressed point `04||X||Y` from a `CKA_EC_POINT` value: a DER OCTET STRING
/// around it (what PKCS#11 specifies), or the bare point (what some modules return).
pub(crate) fn ec_point(value: &[u8], field_len: usize) -> Result<Vec<u8>, String> {
    let point_len = 1 + 2 * field_len;
    let point = if value.len() == point_len && value[0] == 0x04 {
        value
    } else {
        OctetStringRef::from_der(value)
            .map_err(|e| format!("CKA_EC_POINT is neither a point nor a DER OCTET STRING: {e}"))?
            .as_bytes()
    };
    if point.len() != point_len || point[0] != 0x04 {
        return Err(format!(
            "CKA_EC_POINT holds no uncompressed point of {point_len} bytes (it has {} bytes \
             starting {:#04x})",
            point.len(),
            point.first().copied().unwrap_or(0)
        ));
    }
    Ok(point.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_signatures_become_der_integers_with_the_right_padding() {
        // r has its high bit set (a 0x00 goes in front), s has leading zeros (dropped).
        let mut raw = vec![0x80; 32];
        raw.extend_from_slice(&[0; 31]);
        raw.push(0x05);
        let der = ecdsa_sig_value(&raw, 32).unwrap();
        let mut want = vec![0x30, 38, 0x02, 33, 0x00];
        want.extend_from_slice(&[0x80; 32]);
        want.extend_from_slice(&[0x02, 1, 0x05]);
        assert_eq!(der, want);
        // A plain case: both 0x01…, no padding.
        let raw = [[0x01; 48], [0x7f; 48]].concat();
        let der = ecdsa_sig_value(&raw, 48).unwrap();
        assert_eq!(&der[..4], &[0x30, 100, 0x02, 48]);
        assert_eq!(&der[52..54], &[0x02, 48]);
        // P-384 with both high bits: 2 * (2 + 49) = 102 bytes of content.
        let der = ecdsa_sig_value(&[0xff; 96], 48).unwrap();
        assert_eq!(&der[..5], &[0x30, 102, 0x02, 49, 0x00]);
        // A long-form length past 127 (2 * (2 + 67) = 138): the der crate writes it.
        assert!(ecdsa_sig_value(&[0xff; 132], 66)
            .unwrap()
            .starts_with(&[0x30, 0x81, 138, 0x02, 67, 0x00]));
        assert!(ecdsa_sig_value(&[1; 63], 32).is_err());
        assert!(ecdsa_sig_value(&[0; 64], 32).is_err());
    }

    #[test]
    fn rsa_public_keys_and_ec_points_are_what_rcgen_would_hold() {
        // 65537 and a modulus with its high bit set.
        let der = rsa_public_key(&[0xc0, 0x01], &[0x01, 0x00, 0x01]).unwrap();
        assert_eq!(
            der,
            [0x30, 0x0a, 0x02, 0x03, 0x00, 0xc0, 0x01, 0x02, 0x03, 0x01, 0x00, 0x01]
        );
        let point: Vec<u8> = std::iter::once(0x04).chain(1..=64).collect();
        let mut wrapped = vec![0x04, 65];
        wrapped.extend_from_slice(&point);
        assert_eq!(ec_point(&wrapped, 32).unwrap(), point);
        assert_eq!(ec_point(&point, 32).unwrap(), point);
        assert!(ec_point(&point[..64], 32).is_err());
        let mut compressed = vec![0x04, 33, 0x02];
        compressed.extend_from_slice(&[7; 32]);
        assert!(ec_point(&compressed, 32).is_err());
    }
}
