//! Operators' passwords: argon2id (RFC 9106) PHC strings, salted from the system RNG; and
//! the random tokens of sessions and sign-in links, stored as their SHA-256.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// The shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 12;

/// The longest password accepted (argon2 takes any length; a bound keeps forms small).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Whether `password` may become an operator's password: 12 to 1024 characters.
pub fn check_new(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(format!(
            "The password must have at least {MIN_PASSWORD_LEN} characters."
        ));
    }
    if n > MAX_PASSWORD_LEN {
        return Err(format!(
            "The password must have at most {MAX_PASSWORD_LEN} characters."
        ));
    }
    Ok(())
}

/// The argon2id hash (PHC string) of `password`.
pub fn hash(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| "the system RNG failed".to_owned())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string `stored` (false if `stored` is malformed).
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash no password matches, verified when the name is unknown so that a sign-in
/// takes as long whether or not the operator exists.
pub(crate) fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash(&random_token()).unwrap_or_default())
}

/// 32 random bytes in base64url: session tokens, CSRF tokens, generated passwords.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system RNG works");
    certwright_proto::b64::encode(bytes)
}

/// The hex SHA-256 under which a session or sign-in link token is stored (never the token
/// itself).
pub fn token_hash(token: &str) -> String {
    crate::encoding::hex(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash("correct horse battery").unwrap();
        let b = hash("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(verify("correct horse battery", &a));
        assert!(!verify("correct horse batterz", &a));
        assert!(!verify("anything", "not a hash"));
        assert!(!verify("anything", dummy_hash()));
        assert_ne!(random_token(), random_token());
        assert!(check_new("eleven char").is_err());
        assert!(check_new("twelve chars").is_ok());
        assert!(check_new(&"x".repeat(MAX_PASSWORD_LEN + 1)).is_err());
    }
}
