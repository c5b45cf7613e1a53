//! From the configuration's sections to the components' own settings types. The
//! components never see [`Config`]: what needs parsing beyond the file (name patterns,
//! address ranges, key types, policy OIDs) is parsed here, once, by
//! [`Settings::from_config`]; a SIGHUP reload parses the policy again with [`policy`].

use std::collections::BTreeMap;
use std::time::Duration;

use crate::ca::{self, IssuancePolicy, Profile};
use crate::config::{self, Config, ConfigError, ProfileSection, RateLimitsSection};
use crate::ra::policy::{self, EabRule, Policy, PolicyError, PolicyHandle};
use crate::ra::ratelimit::{RateLimits, WindowLimit};
use crate::ra::RaPolicy;
use crate::secrets::PrivateFiles;
use crate::store::{SqliteSynchronous, Store, StoreOptions};
use crate::va::{DenyList, VaConfig};

/// Finalize's CAA re-check budget: 10 s less than the request time-out, so the client
/// gets the re-check's own answer rather than the time-out's 503.
const RECHECK_BUDGET: Duration = Duration::from_secs(crate::wfe::REQUEST_TIMEOUT.as_secs() - 10);

/// What the configuration says, parsed for the components.
#[derive(Debug)]
pub struct Settings {
    /// The naming, key and lifetime policy (`[policy]` and friends).
    pub policy: Policy,
    /// The addresses the VA refuses (`validation.deny_ranges`, `allow_loopback`).
    pub deny: DenyList,
    /// The certificate profiles in force, by name.
    pub profiles: BTreeMap<String, Profile>,
}

impl Settings {
    /// Validates `config` and parses what the components need from it; the error names
    /// the setting to fix.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        config.validate()?;
        let deny = DenyList::parse(&config.validation.deny_ranges)
            .map_err(|e| ConfigError::Invalid(format!("validation.deny_ranges: {e}")))?
            .allowing_loopback(config.validation.allow_loopback);
        let profiles = config
            .profiles()
            .iter()
            .map(|(name, p)| {
                let profile = profile(name, p)
                    .map_err(|e| ConfigError::Invalid(format!("profile {name:?}: {e}")))?;
                Ok((name.clone(), profile))
            })
            .collect::<Result<_, ConfigError>>()?;
        let policy = policy(config).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok(Self {
            policy,
            deny,
            profiles,
        })
    }

    /// The RA's rules; `live` holds the policy (`self.policy`, moved there by the caller).
    pub fn ra_policy(&self, config: &Config, live: PolicyHandle) -> RaPolicy {
        RaPolicy {
            order_lifetime_secs: i64::from(config.orders.order_lifetime_hours) * 3600,
            pending_authz_lifetime_secs: i64::from(config.orders.pending_authz_lifetime_hours)
                * 3600,
            valid_authz_lifetime_secs: i64::from(config.orders.valid_authz_lifetime_days) * 86400,
            live,
            terms_of_service: config.directory.terms_of_service.is_some(),
            external_account_required: config.directory.external_account_required,
            profiles: self.profiles.clone(),
            default_profile: config.default_profile(),
            crl_validity_secs: i64::from(config.crl.validity_hours) * 3600,
            lease_secs: lease_secs(config),
            rate_limits: rate_limits(&config.rate_limits),
            recheck_budget: RECHECK_BUDGET,
        }
    }

    /// The VA's settings.
    pub fn va_config(&self, config: &Config) -> VaConfig {
        let v = &config.validation;
        VaConfig {
            http01_port: v.http01_port,
            tlsalpn01_port: v.tlsalpn01_port,
            timeout: Duration::from_secs(v.timeout_secs),
            max_concurrent: v.max_concurrent,
            deny: self.deny.clone(),
            check_caa: v.check_caa,
            caa_identities: config.directory.caa_identities.clone(),
            account_uri_prefix: format!("{}/acme/acct/", config.base_url()),
            allow_ip_identifiers: v.allow_ip_identifiers,
            caa_recheck_after: Duration::from_secs(u64::from(v.caa_recheck_after_hours) * 3600),
        }
    }
}

/// The policy a configuration describes (`[policy]`, `[orders].max_identifiers`,
/// `[issuance].rsa_max_bits` and `allow_ed25519`).
pub fn policy(config: &Config) -> Result<Policy, PolicyError> {
    let p = &config.policy;
    let key_policy = policy::key_policy(
        p.key_types.as_deref(),
        p.rsa_min_bits,
        config.issuance.rsa_max_bits,
        config.issuance.allow_ed25519,
    )?;
    if config.orders.max_identifiers == 0 {
        return Err(PolicyError(
            "orders.max_identifiers must be positive".into(),
        ));
    }
    if p.max_lifetime_days == Some(0) {
        return Err(PolicyError("max_lifetime_days must be at least 1".into()));
    }
    let eab = p
        .eab
        .iter()
        .map(|(label, rule)| {
            Ok((
                label.clone(),
                EabRule {
                    allowed_names: policy::parse_patterns(&rule.allowed_names)?,
                    allowed_ip_ranges: policy::parse_ranges(&rule.allowed_ip_ranges)?,
                },
            ))
        })
        .collect::<Result<_, PolicyError>>()?;
    Ok(Policy {
        allowed_names: policy::parse_patterns(&p.allowed_names)?,
        denied_names: policy::parse_patterns(&p.denied_names)?,
        allow_wildcards: p.allow_wildcards,
        allowed_ip_ranges: p
            .allowed_ip_ranges
            .as_deref()
            .map(policy::parse_ranges)
            .transpose()?,
        eab,
        max_names: config.orders.max_identifiers,
        key_policy,
        max_lifetime_secs: p.max_lifetime_days.map(|d| i64::from(d) * 86400),
    })
}

/// One `[profiles.NAME]`: its policy OIDs parsed (unset: the DV OID when `server_auth`,
/// none otherwise); the error names the bad OID.
pub fn profile(name: &str, p: &ProfileSection) -> Result<Profile, String> {
    if let Some(issuer) = &p.issuer {
        if !ca::files::valid_issuer_name(issuer) {
            return Err(format!(
                "issuer: {issuer:?} is not an issuer name (1-32 of a-z, 0-9 and '-')"
            ));
        }
    }
    let policy_oids = match &p.policy_oids {
        None if p.server_auth => vec![ca::DV_POLICY_OID],
        None => Vec::new(),
        Some(texts) => {
            let mut out: Vec<der::asn1::ObjectIdentifier> = Vec::new();
            for text in texts {
                let oid = der::asn1::ObjectIdentifier::new(text.trim()).map_err(|e| {
                    format!("policy_oids: {text:?} is not a dotted object identifier ({e})")
                })?;
                if out.contains(&oid) {
                    return Err(format!("policy_oids: {text:?} is listed twice"));
                }
                out.push(oid);
            }
            out
        }
    };
    Ok(Profile {
        name: name.to_owned(),
        lifetime_secs: i64::from(p.lifetime_days) * 86400,
        issuer: p.issuer.clone(),
        server_auth: p.server_auth,
        client_auth: p.client_auth,
        common_name: p.common_name,
        policy_oids,
        subject_key_identifier: p.subject_key_identifier,
    })
}

/// `[rate_limits]` as the RA enforces them.
pub fn rate_limits(section: &RateLimitsSection) -> RateLimits {
    let window = |w: config::WindowLimit| WindowLimit {
        count: w.count,
        window_secs: w.window_secs,
    };
    RateLimits {
        new_accounts_per_ip: window(section.new_accounts_per_ip),
        new_orders_per_account: window(section.new_orders_per_account),
        certificates_per_registered_domain: window(section.certificates_per_registered_domain),
        failed_validations_per_account_identifier: window(
            section.failed_validations_per_account_identifier,
        ),
        duplicate_certificates: window(section.duplicate_certificates),
        pending_authorizations_per_account: section.pending_authorizations_per_account,
        trust_forwarded_for: section.trust_forwarded_for,
    }
}

/// How the store opens the database (`[database]`).
pub fn store_options(config: &Config) -> StoreOptions {
    let d = &config.database;
    StoreOptions {
        auto_migrate: d.auto_migrate,
        max_connections: d.max_connections,
        acquire_timeout: Duration::from_secs(d.acquire_timeout_secs),
        sqlite_synchronous: match d.sqlite_synchronous {
            config::SqliteSynchronous::Full => SqliteSynchronous::Full,
            config::SqliteSynchronous::Normal => SqliteSynchronous::Normal,
        },
    }
}

/// The key type of the CA's own keys (`[ca].key_type`).
pub fn ca_key_type(key_type: config::CaKeyType) -> ca::CaKeyType {
    match key_type {
        config::CaKeyType::Ec256 => ca::CaKeyType::Ec256,
        config::CaKeyType::Ec384 => ca::CaKeyType::Ec384,
        config::CaKeyType::Rsa2048 => ca::CaKeyType::Rsa2048,
        config::CaKeyType::Rsa3072 => ca::CaKeyType::Rsa3072,
        config::CaKeyType::Rsa4096 => ca::CaKeyType::Rsa4096,
    }
}

/// The private files `secrets` checks and loads the KEK from.
pub fn private_files(config: &Config) -> PrivateFiles {
    PrivateFiles {
        data_dir: config.data_dir.clone(),
        eab_kek_file: config.eab_kek_file.clone(),
        admin_token_file: config.admin_token_file.clone(),
        admin_tls_key: config.admin_tls_key.clone(),
        sqlite_file: Store::sqlite_file(&config.database_url()),
    }
}

/// `[pkcs11]` as the CA's key settings.
pub fn pkcs11(config: &Config) -> ca::keys::Pkcs11Settings {
    use ca::keys::PinSource;
    let section = &config.pkcs11;
    ca::keys::Pkcs11Settings {
        module: section.module.clone(),
        pin: match (&section.pin_file, &section.pin_env) {
            (Some(file), _) => Some(PinSource::File(file.clone())),
            (None, Some(var)) => Some(PinSource::Env(var.clone())),
            (None, None) => None,
        },
    }
}

/// What every issued certificate carries beside its profile: backdating and the URLs of
/// the PKI resources under `pki_base` (OCSP only when `ocsp`).
pub fn issuance_policy(config: &Config, pki_base: &str, ocsp: bool) -> IssuancePolicy {
    IssuancePolicy {
        backdate_secs: i64::from(config.issuance.backdate_secs),
        pki_base: Some(pki_base.to_owned()),
        ocsp,
    }
}

/// How long work in flight is leased before another run may resume it: longer than a
/// validation can take, through remote agents too (a routed validation looks the name up
/// and may try `attempts` agents, each with its pickup and job time-outs), so that a
/// validation still under way is never started a second time.
fn lease_secs(config: &Config) -> i64 {
    let local = 3 * config.validation.timeout_secs as i64 + 30;
    if config.validation.routes.is_empty() {
        return local;
    }
    let a = &config.agents;
    let per_attempt = a.pickup_timeout_secs + config.agent_job_timeout_secs();
    let remote =
        i64::from(a.attempts) * per_attempt as i64 + config.validation.timeout_secs as i64 + 30;
    local.max(remote)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PolicySection;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// An empty configuration means the RA's default policy.
    #[test]
    fn the_default_configuration_is_the_default_policy() {
        let settings = Settings::from_config(&Config::default()).unwrap();
        assert_eq!(
            format!("{:?}", settings.policy),
            format!("{:?}", Policy::default())
        );
        assert_eq!(
            rate_limits(&RateLimitsSection::default()),
            RateLimits {
                new_accounts_per_ip: WindowLimit {
                    count: 0,
                    window_secs: 3 * 3600
                },
                new_orders_per_account: WindowLimit {
                    count: 0,
                    window_secs: 3 * 3600
                },
                certificates_per_registered_domain: WindowLimit {
                    count: 0,
                    window_secs: 7 * 86400
                },
                failed_validations_per_account_identifier: WindowLimit {
                    count: 0,
                    window_secs: 3600
                },
                duplicate_certificates: WindowLimit {
                    count: 0,
                    window_secs: 7 * 86400
                },
                pending_authorizations_per_account: 0,
                trust_forwarded_for: false,
            }
        );
    }

    #[test]
    fn profiles_default_to_the_dv_subscriber_profile() {
        let dv = [ca::DV_POLICY_OID];
        assert_eq!(ca::DV_POLICY_OID.to_string(), "2.23.140.1.2.1");
        let settings = Settings::from_config(&Config::default()).unwrap();
        for (name, p) in &settings.profiles {
            assert!(!p.common_name, "{name}");
            assert!(!p.subject_key_identifier, "{name}");
            assert_eq!(p.policy_oids, dv, "{name}");
        }
        // A configured profile: the DV OID when it is for TLS servers, none otherwise;
        // an explicit list as written, [] for none.
        let cfg: Config = toml::from_str(
            "[profiles.web]\n\
             [profiles.mtls]\nserver_auth = false\nclient_auth = true\n\
             [profiles.custom]\npolicy_oids = [\"2.23.140.1.2.2\", \"1.3.6.1.4.1.99999.7\"]\n\
             common_name = true\nsubject_key_identifier = true\n\
             [profiles.none]\npolicy_oids = []\n",
        )
        .unwrap();
        let p = Settings::from_config(&cfg).unwrap().profiles;
        assert_eq!(p["web"].policy_oids, dv);
        assert!(!p["web"].common_name && !p["web"].subject_key_identifier);
        assert!(p["mtls"].policy_oids.is_empty());
        assert_eq!(
            p["custom"].policy_oids,
            [
                der::asn1::ObjectIdentifier::new_unwrap("2.23.140.1.2.2"),
                der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.7")
            ]
        );
        assert!(p["custom"].common_name && p["custom"].subject_key_identifier);
        assert!(p["none"].policy_oids.is_empty());
    }

    #[test]
    fn bad_policy_oids_are_refused_at_load_naming_the_profile() {
        for (oids, says) in [
            ("[\"dv\"]", "\"dv\" is not a dotted object identifier"),
            ("[\"2.23.140.1.2.1.\"]", "is not a dotted object identifier"),
            ("[\"\"]", "is not a dotted object identifier"),
            ("[\"2.23.140.1.2.1\", \"2.23.140.1.2.1\"]", "listed twice"),
        ] {
            let cfg: Config =
                toml::from_str(&format!("[profiles.web]\npolicy_oids = {oids}\n")).unwrap();
            let err = Settings::from_config(&cfg).unwrap_err().to_string();
            assert!(
                err.contains("profile \"web\": policy_oids: ") && err.contains(says),
                "{oids}: {err}"
            );
        }
    }

    #[test]
    fn bad_deny_ranges_are_refused_at_load() {
        let mut cfg = Config::default();
        cfg.validation.deny_ranges = strings(&["10.0.0.0/33"]);
        let err = Settings::from_config(&cfg).unwrap_err().to_string();
        assert!(err.contains("validation.deny_ranges"), "{err}");
    }

    #[test]
    fn bad_policy_values_are_errors() {
        let bad = [
            PolicySection {
                denied_names: strings(&["not a name"]),
                ..PolicySection::default()
            },
            PolicySection {
                allowed_ip_ranges: Some(strings(&["10.0.0.0/33"])),
                ..PolicySection::default()
            },
            PolicySection {
                key_types: Some(strings(&["dsa"])),
                ..PolicySection::default()
            },
            PolicySection {
                rsa_min_bits: 1024,
                ..PolicySection::default()
            },
            PolicySection {
                max_lifetime_days: Some(0),
                ..PolicySection::default()
            },
        ];
        for section in bad {
            let config = Config {
                policy: section.clone(),
                ..Config::default()
            };
            assert!(policy(&config).is_err(), "{section:?}");
            assert!(Settings::from_config(&config).is_err(), "{section:?}");
        }
    }

    #[test]
    fn sqlite_synchronous_maps_to_the_store_setting() {
        for (text, want) in [
            ("full", SqliteSynchronous::Full),
            ("normal", SqliteSynchronous::Normal),
        ] {
            let toml = format!("[database]\nsqlite_synchronous = \"{text}\"\n");
            let cfg: Config = toml::from_str(&toml).unwrap();
            assert_eq!(store_options(&cfg).sqlite_synchronous, want, "{text}");
        }
    }

    #[test]
    fn the_lease_outlasts_a_routed_validation() {
        let plain: Config = toml::from_str("").unwrap();
        assert_eq!(lease_secs(&plain), 60);
        let routed: Config = toml::from_str(
            "[agents]\nlisten = \"127.0.0.1:9555\"\nattempts = 3\npickup_timeout_secs = 30\n[[validation.routes]]\nsuffixes = [\"lab.test\"]\nperspectives = [\"lab\"]\n",
        )
        .unwrap();
        // 3 attempts of (30 s pickup + 15 s job) + 10 s + 30 s.
        assert_eq!(lease_secs(&routed), 3 * 45 + 40);
    }
}
