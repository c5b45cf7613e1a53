//! `[audit]`: the periodic verification of the audit chain (`crate::audit_check`).

use serde::Deserialize;

use super::{Config, ConfigError};

/// Longest interval accepted: a year.
const MAX_INTERVAL_SECS: u64 = 366 * 86_400;

/// `[audit]`: how often the CA verifies its own audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSection {
    /// Seconds between verifications of the whole chain (`audit verify`), the first one
    /// at start; a broken chain sends `audit.verification_failed`. 0: never.
    pub verify_interval_secs: u64,
}

impl Default for AuditSection {
    fn default() -> Self {
        Self {
            verify_interval_secs: 3600,
        }
    }
}

impl Config {
    /// Checks `[audit]`.
    pub(super) fn validate_audit(&self) -> Result<(), ConfigError> {
        if self.audit.verify_interval_secs > MAX_INTERVAL_SECS {
            return Err(ConfigError::Invalid(format!(
                "audit.verify_interval_secs must be at most {MAX_INTERVAL_SECS} (0 turns the verification off)"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_defaults_to_an_hour_and_zero_turns_it_off() {
        let parse = |text: &str| -> Config { toml::from_str(text).unwrap() };
        assert_eq!(parse("").audit.verify_interval_secs, 3600);
        let off = parse("[audit]\nverify_interval_secs = 0\n");
        assert_eq!(off.audit.verify_interval_secs, 0);
        off.validate_audit().unwrap();
        let huge = parse("[audit]\nverify_interval_secs = 99999999999\n");
        assert!(huge
            .validate_audit()
            .unwrap_err()
            .to_string()
            .contains("at most"));
        assert!(toml::from_str::<Config>("[audit]\nevery = 1\n").is_err());
    }
}
