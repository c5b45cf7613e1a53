//! Text encodings shared by the store and the CA (a leaf: it imports nothing of the crate).

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn lower_case_pairs() {
        assert_eq!(super::hex(&[0x00, 0x7f, 0xab]), "007fab");
        assert_eq!(super::hex(&[]), "");
    }
}
