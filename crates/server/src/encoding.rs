//! Text encodings shared by the store and the CA (a leaf: it imports nothing of the crate).

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `der` as a PEM `CERTIFICATE` block (64-character lines, a final newline).
pub fn pem_certificate(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 60);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn lower_case_pairs() {
        assert_eq!(super::hex(&[0x00, 0x7f, 0xab]), "007fab");
        assert_eq!(super::hex(&[]), "");
    }
}
