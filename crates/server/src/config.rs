//! Configuration: a TOML file (see `certwright-ca.example.toml`), overridden by flags and
//! `CERTWRIGHT_*` environment variables.
//!
//! A leaf: the schema and its defaults, and the checks that need nothing but the file. It
//! imports no other module of this crate; the components define their own settings types
//! and `app::settings` turns these sections into them (parsing name patterns, address
//! ranges and policy OIDs there, once).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod agents;
pub use agents::{valid_segment_name, AgentsSection, ValidationRouteSection, LOCAL_PERSPECTIVE};
mod webhooks;
pub use webhooks::{WebhookSection, WEBHOOK_EVENT_TYPES};

/// The whole configuration file. Every key is optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the ACME listener binds.
    pub listen: SocketAddr,
    /// External base URL clients use (scheme, host, port, optional path prefix).
    /// Default: `https://localhost:<port>` (`http://` when `tls = false`).
    pub base_url: Option<String>,
    /// Directory holding the CA keys, certificates and the SQLite database.
    pub data_dir: PathBuf,
    /// Database URL. Default: `sqlite://<data_dir>/certwright.db`.
    pub database_url: Option<String>,
    /// File holding the key-encryption key of EAB keys (must exist; instances sharing a
    /// database need the same one). Default: `<data_dir>/eab-kek.key`, created on first
    /// start. `CERTWRIGHT_EAB_KEK` wins over both (see `secrets`).
    pub eab_kek_file: Option<PathBuf>,
    /// Serve HTTPS with a certificate issued by the CA's own root (false: plain HTTP,
    /// for running behind a TLS-terminating proxy).
    pub tls: bool,
    /// Log format: `text` or `json`.
    pub log_format: LogFormat,
    /// `[ca]`: the CA's own keys.
    pub ca: CaSection,
    /// `[issuance]`: end-entity certificates.
    pub issuance: IssuanceSection,
    /// `[orders]`: lifetimes of orders and authorizations.
    pub orders: OrdersSection,
    /// `[validation]`: how the VA reaches applicants.
    pub validation: ValidationSection,
    /// `[directory]`: the directory's `meta`.
    pub directory: DirectorySection,
    /// Certificate profiles (draft-ietf-acme-profiles), by name. Empty: the two built-in
    /// ones, `tls-server` (from `[issuance]`) and `shortlived` (7 days).
    pub profiles: BTreeMap<String, ProfileSection>,
    /// Profile used when an order names none. Default: `tls-server`.
    pub default_profile: Option<String>,
    /// `[crl]`: certificate revocation lists.
    pub crl: CrlSection,
    /// `[ocsp]`: the OCSP responder.
    pub ocsp: OcspSection,
    /// `[pkcs11]`: the module and PIN for CA keys in a PKCS#11 token (docs/keys.md).
    pub pkcs11: Pkcs11Section,
    /// `[database]`: connection settings.
    pub database: DatabaseSection,
    /// Address of the admin listener (`/metrics`, `/healthz`, `/readyz`), or `off`.
    pub admin_listen: AdminListen,
    /// Let `admin_listen` be an address other than loopback (an explicit opt-in: metrics
    /// and readiness are for the operator).
    pub admin_allow_non_loopback: bool,
    /// A file holding the bearer token the admin listener requires for `/metrics` and
    /// `/readyz` (`/healthz` stays open); keep it 0600.
    pub admin_token_file: Option<PathBuf>,
    /// The admin listener's TLS certificate chain (PEM, the leaf first). With
    /// `admin_tls_key`, the admin listener (`/metrics`, `/healthz`, `/readyz`, `/console`)
    /// speaks HTTPS; both or neither. Re-read on SIGHUP.
    pub admin_tls_cert: Option<PathBuf>,
    /// The private key of `admin_tls_cert` (PEM); keep it 0600.
    pub admin_tls_key: Option<PathBuf>,
    /// Address of the plain-HTTP listener that serves only the read-only PKI resources
    /// (CRL, OCSP, issuer certificate), or `off`. Default `127.0.0.1:14002`.
    pub pki_http_listen: PkiHttpListen,
    /// Public `http://` URL of those resources, put in the CRL Distribution Points and
    /// Authority Information Access of new certificates. Default: the host of `base_url`
    /// with the port of `pki_http_listen`; with the listener off, `base_url`.
    pub pki_base_url: Option<String>,
    /// Naming, key and lifetime policy; reloaded on SIGHUP (see `docs/policy.md`).
    pub policy: PolicySection,
    /// Rate limits (see `docs/rate-limits.md`); all off by default.
    pub rate_limits: RateLimitsSection,
    /// Backend CAs this CA forwards orders to, by name (`docs/upstream.md`). `local` (the
    /// CA's own issuers) is always there and cannot be redefined.
    pub backends: BTreeMap<String, BackendSection>,
    /// Which backend signs each order: rules, first match wins, else `default`.
    pub routing: RoutingSection,
    /// The listener remote validation agents connect to (`docs/remote-validation.md`).
    pub agents: AgentsSection,
    /// Endpoints that receive the CA's events, by name (`docs/console.md`, "Webhooks").
    pub webhooks: BTreeMap<String, WebhookSection>,
}

/// Where the admin listener binds: an address, or `off` (also the empty string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct AdminListen(pub Option<SocketAddr>);

impl Default for AdminListen {
    /// Loopback only: metrics and health are for the operator, not the world.
    fn default() -> Self {
        Self(Some(SocketAddr::from(([127, 0, 0, 1], 14001))))
    }
}

/// An optional listener address for the key `key`: `ADDR:PORT`, or `off` / empty.
fn optional_listen(key: &str, text: &str) -> Result<Option<SocketAddr>, String> {
    match text.trim() {
        "" | "off" => Ok(None),
        addr => addr
            .parse()
            .map(Some)
            .map_err(|_| format!("{key} {addr:?} is neither ADDR:PORT nor \"off\"")),
    }
}

impl std::str::FromStr for AdminListen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        optional_listen("admin_listen", s).map(Self)
    }
}

impl TryFrom<String> for AdminListen {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// Where the plain-HTTP PKI listener binds: an address, or `off` (also the empty string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PkiHttpListen(pub Option<SocketAddr>);

impl Default for PkiHttpListen {
    /// Loopback, like the other listeners: exposing it is the operator's decision (the
    /// URLs in certificates must reach it from wherever relying parties are).
    fn default() -> Self {
        Self(Some(SocketAddr::from(([127, 0, 0, 1], 14002))))
    }
}

impl std::str::FromStr for PkiHttpListen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        optional_listen("pki_http_listen", s).map(Self)
    }
}

impl TryFrom<String> for PkiHttpListen {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// `[policy]`: which identifiers, keys and lifetimes the CA accepts. Everything here, and
/// `[orders].max_identifiers`, `[issuance].rsa_max_bits` and `allow_ed25519`, is re-read on
/// SIGHUP. The rules are explained in `docs/policy.md`; they are evaluated in `ra::policy`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicySection {
    /// Name patterns an identifier must match (`host.example.com` exactly, `*.example.com`
    /// any name below). Empty: every name not denied.
    pub allowed_names: Vec<String>,
    /// Name patterns no identifier may touch (same syntax); checked before `allowed_names`.
    pub denied_names: Vec<String>,
    /// Issue wildcard names (`*.example.com`) at all.
    pub allow_wildcards: bool,
    /// CIDR ranges (or single addresses) IP identifiers must fall in. Unset: any address.
    pub allowed_ip_ranges: Option<Vec<String>>,
    /// CSR key types: any of `rsa`, `p256`, `p384`, `ed25519`. Unset: `rsa`, `p256`,
    /// `p384`, and `ed25519` when `[issuance].allow_ed25519` is set.
    pub key_types: Option<Vec<String>>,
    /// Smallest RSA key accepted in a CSR, in bits (the largest is `[issuance].rsa_max_bits`).
    pub rsa_min_bits: usize,
    /// Longest certificate lifetime in days, whatever the profile says. Unset: the profile's.
    pub max_lifetime_days: Option<u32>,
    /// Per EAB label: the only names and addresses accounts bound with that label may get.
    pub eab: BTreeMap<String, EabRuleSection>,
}

impl Default for PolicySection {
    fn default() -> Self {
        Self {
            allowed_names: Vec::new(),
            denied_names: Vec::new(),
            allow_wildcards: true,
            allowed_ip_ranges: None,
            key_types: None,
            rsa_min_bits: 2048,
            max_lifetime_days: None,
            eab: BTreeMap::new(),
        }
    }
}

/// `[policy.eab.LABEL]`: what accounts bound with an EAB key of this label may request.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EabRuleSection {
    /// Name patterns (as in `allowed_names`); names must match one of these too.
    pub allowed_names: Vec<String>,
    /// CIDR ranges for IP identifiers. Empty: no IP identifiers for this label.
    pub allowed_ip_ranges: Vec<String>,
}

/// `[database]`: connection settings (the URL is the top-level `database_url`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSection {
    /// Most connections to PostgreSQL per instance.
    pub max_connections: u32,
    /// Seconds a request waits for a connection before failing with serverInternal.
    pub acquire_timeout_secs: u64,
    /// Apply pending migrations at start. When false, `certwright-ca migrate` must be run
    /// first and the server refuses to start on an older schema.
    pub auto_migrate: bool,
    /// SQLite only: `full` (default, survives power loss) or `normal` (survives a process
    /// crash; the last commits may be lost on power loss).
    pub sqlite_synchronous: SqliteSynchronous,
}

/// `[database].sqlite_synchronous`: when a SQLite commit waits for the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    /// Every commit is fsynced before it is answered (survives power loss).
    #[default]
    Full,
    /// Fsynced only at WAL checkpoints (survives a process crash).
    Normal,
}

impl Default for DatabaseSection {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout_secs: 5,
            auto_migrate: true,
            sqlite_synchronous: SqliteSynchronous::Full,
        }
    }
}

/// `[profiles.NAME]`: one certificate profile.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileSection {
    /// Shown to clients in the directory's `meta.profiles`.
    pub description: String,
    /// Certificate lifetime in days.
    pub lifetime_days: u32,
    /// serverAuth extended key usage.
    pub server_auth: bool,
    /// clientAuth extended key usage.
    pub client_auth: bool,
    /// Put the first name (or the CSR's CN) in the subject common name (NOT RECOMMENDED
    /// by the Baseline Requirements; off by default).
    pub common_name: bool,
    /// Certificate Policies OIDs (dotted). Unset: `["2.23.140.1.2.1"]` (DV) when
    /// `server_auth`, none otherwise. An empty list leaves the extension out. Parsed
    /// (and the default applied) in `app::settings`.
    pub policy_oids: Option<Vec<String>>,
    /// Put a Subject Key Identifier in the certificates (NOT RECOMMENDED for subscriber
    /// certificates since CA/B Forum ballot SC-62; off by default).
    pub subject_key_identifier: bool,
    /// The issuer (by name, see `certwright-ca issuer list`) that signs this profile's
    /// certificates while it is active. Unset: chosen by the CSR's key type.
    pub issuer: Option<String>,
}

impl Default for ProfileSection {
    fn default() -> Self {
        Self {
            description: String::new(),
            lifetime_days: 90,
            server_auth: true,
            client_auth: false,
            common_name: false,
            policy_oids: None,
            subject_key_identifier: false,
            issuer: None,
        }
    }
}

/// `[crl]`: certificate revocation lists.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrlSection {
    /// Hours between a CRL's thisUpdate and nextUpdate; a new one is published on every
    /// revocation and when half of this has passed.
    pub validity_hours: u32,
}

impl Default for CrlSection {
    fn default() -> Self {
        Self { validity_hours: 24 }
    }
}

/// `[ocsp]`: the OCSP responder (RFC 6960).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OcspSection {
    /// Serve OCSP at `<base_url>/ocsp` and name it in issued certificates.
    pub enabled: bool,
    /// Hours between a response's thisUpdate and nextUpdate (also its HTTP max-age).
    pub validity_hours: u32,
}

impl Default for OcspSection {
    fn default() -> Self {
        Self {
            enabled: true,
            validity_hours: 24,
        }
    }
}

/// `[ca].key_type`: key algorithm of the CA's own keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaKeyType {
    /// ECDSA P-256 (`ec256`, the default).
    Ec256,
    /// ECDSA P-384 (`ec384`).
    Ec384,
    /// RSA, 2048 bits (`rsa2048`).
    Rsa2048,
    /// RSA, 3072 bits (`rsa3072`).
    Rsa3072,
    /// RSA, 4096 bits (`rsa4096`).
    Rsa4096,
}

/// `[ca]`: the CA's own keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaSection {
    /// Key type of the root and intermediate created on first start.
    pub key_type: CaKeyType,
    /// Organization name in the CA certificates.
    pub organization: String,
}

/// `[pkcs11]`: how to reach the token that holds CA keys named by `pkcs11:` URIs. The
/// PIN comes from a file or an environment variable, never from this file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pkcs11Section {
    /// The PKCS#11 module (e.g. `/usr/lib/softhsm/libsofthsm2.so`); a URI's
    /// `module-path` wins over it.
    pub module: Option<PathBuf>,
    /// A file (0600) holding the user PIN.
    pub pin_file: Option<PathBuf>,
    /// An environment variable holding the user PIN.
    pub pin_env: Option<String>,
}

/// `[issuance]`: what end-entity certificates look like.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IssuanceSection {
    /// Certificate lifetime in days.
    pub lifetime_days: u32,
    /// Seconds notBefore is backdated (clock skew allowance).
    pub backdate_secs: u32,
    /// Add the clientAuth EKU.
    pub client_auth: bool,
    /// Accept Ed25519 keys in CSRs.
    pub allow_ed25519: bool,
    /// Largest RSA key accepted in a CSR, in bits.
    pub rsa_max_bits: usize,
}

/// `[orders]`: lifetimes of pending objects.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrdersSection {
    /// Hours an order stays usable.
    pub order_lifetime_hours: u32,
    /// Hours a pending authorization stays usable.
    pub pending_authz_lifetime_hours: u32,
    /// Days a valid authorization stays usable (and reusable by new orders).
    pub valid_authz_lifetime_days: u32,
    /// Identifiers allowed in one order.
    pub max_identifiers: usize,
}

/// `[validation]`: how the VA reaches applicants (test knobs included).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidationSection {
    /// Port http-01 connects to (80 in production; tests use another).
    pub http01_port: u16,
    /// Port tls-alpn-01 connects to (443 in production).
    pub tlsalpn01_port: u16,
    /// DNS resolver (`ADDR:PORT`) for the VA; default: the system's.
    pub dns_resolver: Option<SocketAddr>,
    /// Seconds one validation may take in all.
    pub timeout_secs: u64,
    /// Validations run at once; more wait their turn.
    pub max_concurrent: usize,
    /// Address ranges (CIDR) the VA never connects to, on top of the addresses it never
    /// contacts whatever this says (unspecified, loopback, link-local, multicast,
    /// broadcast); IP identifiers inside them are refused at newOrder.
    pub deny_ranges: Vec<String>,
    /// TEST SWITCH: let the VA connect to loopback addresses (127.0.0.0/8, ::1), for
    /// challenge servers on the CA's own host. Off by default; never on a CA that others
    /// can reach, since any account could then make the CA read its own host's services.
    pub allow_loopback: bool,
    /// Accept `ip` identifiers (RFC 8738).
    pub allow_ip_identifiers: bool,
    /// Check CAA (RFC 8659/8657) before issuing.
    pub check_caa: bool,
    /// At finalize, CAA is checked again for names validated longer ago than this.
    pub caa_recheck_after_hours: u32,
    /// `[[validation.routes]]`: identifiers validated by remote agents or by several
    /// perspectives; the first that matches wins, the rest are validated locally.
    pub routes: Vec<ValidationRouteSection>,
}

/// One windowed rate limit: at most `count` events per sliding `window_secs`;
/// `count = 0` turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowLimit {
    /// Events allowed per window (0: the limit is off).
    pub count: u32,
    /// Length of the sliding window, in seconds.
    pub window_secs: i64,
}

impl WindowLimit {
    const fn off(window_secs: i64) -> Self {
        Self {
            count: 0,
            window_secs,
        }
    }

    /// Whether the limit applies.
    pub fn enabled(&self) -> bool {
        self.count > 0 && self.window_secs > 0
    }
}

/// `[rate_limits]`: Boulder's limits, each off until given a count.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitsSection {
    /// New accounts per client IP address.
    pub new_accounts_per_ip: WindowLimit,
    /// New orders per account.
    pub new_orders_per_account: WindowLimit,
    /// Certificates per registered domain (public suffix list), or per IP address.
    pub certificates_per_registered_domain: WindowLimit,
    /// Failed validations per account and identifier.
    pub failed_validations_per_account_identifier: WindowLimit,
    /// Certificates for exactly the same set of names.
    pub duplicate_certificates: WindowLimit,
    /// Pending authorizations an account may hold at once (0: no limit).
    pub pending_authorizations_per_account: u32,
    /// Take the client address from the last `X-Forwarded-For` entry (only behind a
    /// proxy of your own that sets it).
    pub trust_forwarded_for: bool,
}

impl Default for RateLimitsSection {
    fn default() -> Self {
        Self {
            new_accounts_per_ip: WindowLimit::off(3 * 3600),
            new_orders_per_account: WindowLimit::off(3 * 3600),
            certificates_per_registered_domain: WindowLimit::off(7 * 86400),
            failed_validations_per_account_identifier: WindowLimit::off(3600),
            duplicate_certificates: WindowLimit::off(7 * 86400),
            pending_authorizations_per_account: 0,
            trust_forwarded_for: false,
        }
    }
}

/// `[directory]`: the directory's `meta`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectorySection {
    /// URL of the terms of service (`meta.termsOfService`); when set, new accounts must
    /// agree to it.
    pub terms_of_service: Option<String>,
    /// URL of the CA's website (`meta.website`).
    pub website: Option<String>,
    /// This CA's issuer domain names for CAA (also `meta.caaIdentities`). Empty: any CAA
    /// `issue` record forbids issuance by this CA.
    pub caa_identities: Vec<String>,
    /// Require External Account Binding for new accounts (`meta.externalAccountRequired`).
    pub external_account_required: bool,
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 14000)),
            base_url: None,
            data_dir: PathBuf::from("certwright-ca-data"),
            database_url: None,
            eab_kek_file: None,
            tls: true,
            log_format: LogFormat::Text,
            ca: CaSection::default(),
            issuance: IssuanceSection::default(),
            orders: OrdersSection::default(),
            validation: ValidationSection::default(),
            directory: DirectorySection::default(),
            profiles: BTreeMap::new(),
            default_profile: None,
            crl: CrlSection::default(),
            ocsp: OcspSection::default(),
            pkcs11: Pkcs11Section::default(),
            database: DatabaseSection::default(),
            admin_listen: AdminListen::default(),
            admin_allow_non_loopback: false,
            admin_token_file: None,
            admin_tls_cert: None,
            admin_tls_key: None,
            pki_http_listen: PkiHttpListen::default(),
            pki_base_url: None,
            policy: PolicySection::default(),
            rate_limits: RateLimitsSection::default(),
            backends: BTreeMap::new(),
            routing: RoutingSection::default(),
            agents: AgentsSection::default(),
            webhooks: BTreeMap::new(),
        }
    }
}

impl Default for CaSection {
    fn default() -> Self {
        Self {
            key_type: CaKeyType::Ec256,
            organization: "certwright".into(),
        }
    }
}

impl Default for IssuanceSection {
    fn default() -> Self {
        Self {
            lifetime_days: 90,
            backdate_secs: 300,
            client_auth: false,
            allow_ed25519: false,
            rsa_max_bits: 4096,
        }
    }
}

impl Default for OrdersSection {
    fn default() -> Self {
        Self {
            order_lifetime_hours: 7 * 24,
            pending_authz_lifetime_hours: 7 * 24,
            valid_authz_lifetime_days: 30,
            max_identifiers: 100,
        }
    }
}

impl Default for ValidationSection {
    fn default() -> Self {
        Self {
            http01_port: 80,
            tlsalpn01_port: 443,
            dns_resolver: None,
            timeout_secs: 10,
            max_concurrent: 64,
            deny_ranges: Vec::new(),
            allow_loopback: false,
            allow_ip_identifiers: true,
            check_caa: true,
            caa_recheck_after_hours: 8,
            routes: Vec::new(),
        }
    }
}

/// Configuration errors, each naming what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the schema.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error.
        source: toml::de::Error,
    },
    /// A setting's value is not allowed (the message names it).
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads a TOML configuration file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// The external base URL without a trailing slash.
    pub fn base_url(&self) -> String {
        match &self.base_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let scheme = if self.tls { "https" } else { "http" };
                format!("{scheme}://localhost:{}", self.listen.port())
            }
        }
    }

    /// The public base URL of the PKI resources (CRL, OCSP, issuer certificate) named in
    /// new certificates, without a trailing slash: `pki_base_url`, else `http://` + the
    /// host of `base_url` + the port of `pki_http_listen`, else (listener off) `base_url`.
    pub fn pki_base_url(&self) -> String {
        if let Some(url) = &self.pki_base_url {
            return url.trim_end_matches('/').to_owned();
        }
        let Some(listen) = self.pki_http_listen.0 else {
            return self.base_url();
        };
        let host = url::Url::parse(&self.base_url())
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| "localhost".to_owned());
        match listen.port() {
            80 => format!("http://{host}"),
            port => format!("http://{host}:{port}"),
        }
    }

    /// The database URL.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!("sqlite://{}", self.data_dir.join("certwright.db").display())
        })
    }

    /// Checks values that parse but make no sense, as far as the file alone tells
    /// (`app::settings::Settings::from_config` parses the rest: name patterns, address
    /// ranges, key types, policy OIDs).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let base = url::Url::parse(&self.base_url())
            .map_err(|e| ConfigError::Invalid(format!("base_url {:?}: {e}", self.base_url())))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(ConfigError::Invalid(format!(
                "base_url {:?} must be an http(s) URL with a host",
                self.base_url()
            )));
        }
        if self.issuance.lifetime_days == 0 {
            return Err(ConfigError::Invalid(
                "issuance.lifetime_days must be at least 1".into(),
            ));
        }
        if self.validation.max_concurrent == 0 || self.validation.timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "validation.max_concurrent and validation.timeout_secs must be positive".into(),
            ));
        }
        if self.orders.max_identifiers == 0 {
            return Err(ConfigError::Invalid(
                "orders.max_identifiers must be positive".into(),
            ));
        }
        let profiles = self.profiles();
        for (name, p) in &profiles {
            if p.lifetime_days == 0 || !(p.server_auth || p.client_auth) {
                return Err(ConfigError::Invalid(format!(
                    "profile {name:?} needs lifetime_days >= 1 and serverAuth or clientAuth"
                )));
            }
        }
        if !profiles.contains_key(&self.default_profile()) {
            return Err(ConfigError::Invalid(format!(
                "default_profile {:?} is not one of the profiles {:?}",
                self.default_profile(),
                profiles.keys().collect::<Vec<_>>()
            )));
        }
        if self.crl.validity_hours == 0 {
            return Err(ConfigError::Invalid(
                "crl.validity_hours must be at least 1".into(),
            ));
        }
        if self.pkcs11.pin_file.is_some() && self.pkcs11.pin_env.is_some() {
            return Err(ConfigError::Invalid(
                "pkcs11: set pin_file or pin_env, not both".into(),
            ));
        }
        if !(1..=168).contains(&self.ocsp.validity_hours) {
            return Err(ConfigError::Invalid(
                "ocsp.validity_hours must be 1..=168".into(),
            ));
        }
        if !self.base_url().is_ascii() {
            return Err(ConfigError::Invalid(format!(
                "base_url {:?} must be ASCII (punycode and percent-encode it): it goes into certificates",
                self.base_url()
            )));
        }
        if !(2048..=8192).contains(&self.issuance.rsa_max_bits) {
            return Err(ConfigError::Invalid(
                "issuance.rsa_max_bits must be 2048..=8192".into(),
            ));
        }
        if self.admin_listen.0 == Some(self.listen) {
            return Err(ConfigError::Invalid(
                "admin_listen must differ from listen (or be \"off\")".into(),
            ));
        }
        if let Some(addr) = self.admin_listen.0 {
            if !addr.ip().to_canonical().is_loopback() && !self.admin_allow_non_loopback {
                return Err(ConfigError::Invalid(format!(
                    "admin_listen {addr} is not a loopback address: metrics and readiness would be open to the network; set admin_allow_non_loopback = true (--admin-allow-non-loopback) to mean it, with admin_token_file to require a bearer token"
                )));
            }
        }
        if self.admin_tls_cert.is_some() != self.admin_tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "admin_tls_cert and admin_tls_key go together: set both, or neither".into(),
            ));
        }
        self.validate_pki()?;
        self.validate_agents()?;
        self.validate_webhooks()?;
        self.validate_backends()
    }

    /// `[backends.*]` and `[routing]`: names, one type section each, and rules that name a
    /// backend that exists.
    fn validate_backends(&self) -> Result<(), ConfigError> {
        let bad = |why: String| Err(ConfigError::Invalid(why));
        for (name, b) in &self.backends {
            if name == LOCAL_BACKEND {
                return bad(format!(
                    "backends.{name}: \"{LOCAL_BACKEND}\" is the CA's own issuers and cannot be redefined"
                ));
            }
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            {
                return bad(format!(
                    "backends.{name}: a backend name is lowercase letters, digits and '-'"
                ));
            }
            let (exec, acme) = (b.exec.is_some(), b.acme.is_some());
            match b.r#type {
                BackendType::Exec if !exec || acme => {
                    return bad(format!(
                        "backends.{name}: type \"exec\" needs a [backends.{name}.exec] section (and no other)"
                    ))
                }
                BackendType::Acme if !acme || exec => {
                    return bad(format!(
                        "backends.{name}: type \"acme\" needs a [backends.{name}.acme] section (and no other)"
                    ))
                }
                _ => {}
            }
            if b.timeout_secs == 0 || b.deadline_secs < b.timeout_secs {
                return bad(format!(
                    "backends.{name}: timeout_secs must be positive and deadline_secs at least timeout_secs"
                ));
            }
        }
        let exists = |n: &str| n == LOCAL_BACKEND || self.backends.contains_key(n);
        if !exists(&self.routing.default) {
            return bad(format!(
                "routing.default {:?} is not \"{LOCAL_BACKEND}\" or a [backends.NAME]",
                self.routing.default
            ));
        }
        for (i, rule) in self.routing.rules.iter().enumerate() {
            if !exists(&rule.backend) {
                return bad(format!(
                    "routing.rules[{i}]: backend {:?} is not \"{LOCAL_BACKEND}\" or a [backends.NAME]",
                    rule.backend
                ));
            }
            if rule.eab_label.is_none() && rule.profile.is_none() && rule.suffix.is_none() {
                return bad(format!(
                    "routing.rules[{i}]: give at least one of eab_label, profile, suffix (routing.default catches the rest)"
                ));
            }
        }
        Ok(())
    }

    /// The plain-HTTP PKI listener and the URL certificates name for it.
    fn validate_pki(&self) -> Result<(), ConfigError> {
        if let Some(addr) = self.pki_http_listen.0 {
            if addr == self.listen || self.admin_listen.0 == Some(addr) {
                return Err(ConfigError::Invalid(
                    "pki_http_listen must differ from listen and admin_listen (or be \"off\")"
                        .into(),
                ));
            }
        }
        let Some(text) = &self.pki_base_url else {
            return Ok(());
        };
        let bad = |why: &str| ConfigError::Invalid(format!("pki_base_url {text:?} {why}"));
        let url = url::Url::parse(text).map_err(|e| bad(&format!("is not a URL: {e}")))?;
        if url.scheme() != "http" {
            return Err(bad(
                "must be an http:// URL: relying parties fetch CRLs, OCSP responses and issuer \
                 certificates over plain HTTP (Baseline Requirements §7.1.2.7); to keep \
                 base_url's https URLs, leave pki_base_url unset and set pki_http_listen = \"off\"",
            ));
        }
        if url.host_str().is_none() || url.query().is_some() || url.fragment().is_some() {
            return Err(bad("needs a host and no query or fragment"));
        }
        if !text.is_ascii() {
            return Err(bad(
                "must be ASCII (punycode and percent-encode it): it goes into certificates",
            ));
        }
        Ok(())
    }

    /// The profiles in force: the configured ones, or the two built-in defaults.
    pub fn profiles(&self) -> BTreeMap<String, ProfileSection> {
        if !self.profiles.is_empty() {
            return self.profiles.clone();
        }
        let mut out = BTreeMap::new();
        out.insert(
            "tls-server".to_owned(),
            ProfileSection {
                description: format!(
                    "TLS server certificate, {} days",
                    self.issuance.lifetime_days
                ),
                lifetime_days: self.issuance.lifetime_days,
                server_auth: true,
                client_auth: self.issuance.client_auth,
                common_name: false,
                policy_oids: None,
                subject_key_identifier: false,
                issuer: None,
            },
        );
        out.insert(
            "shortlived".to_owned(),
            ProfileSection {
                description: "Short-lived TLS server certificate, 7 days, no common name"
                    .to_owned(),
                lifetime_days: 7,
                server_auth: true,
                client_auth: self.issuance.client_auth,
                common_name: false,
                policy_oids: None,
                subject_key_identifier: false,
                issuer: None,
            },
        );
        out
    }

    /// The profile used when an order names none.
    pub fn default_profile(&self) -> String {
        match &self.default_profile {
            Some(name) => name.clone(),
            None => {
                let profiles = self.profiles();
                if profiles.contains_key("tls-server") {
                    "tls-server".to_owned()
                } else {
                    profiles.keys().next().cloned().unwrap_or_default()
                }
            }
        }
    }

    /// Names (and IPs) the listener's TLS certificate must cover.
    pub fn tls_names(&self) -> Vec<String> {
        let mut names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        if let Ok(url) = url::Url::parse(&self.base_url()) {
            if let Some(host) = url.host_str() {
                let host = host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned();
                if !names.contains(&host) {
                    names.push(host);
                }
            }
        }
        names
    }
}

/// The name of the CA's own issuers as a backend.
pub const LOCAL_BACKEND: &str = "local";

/// `[backends.NAME]`: a CA this one forwards orders to (`docs/upstream.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSection {
    /// `exec` (a command-line CA) or `acme` (an upstream RFC 8555 CA).
    pub r#type: BackendType,
    /// Longest one attempt may take (the command's run, or one pass through the upstream
    /// ACME flow), in seconds. Default 60.
    #[serde(default = "default_backend_timeout")]
    pub timeout_secs: u64,
    /// How long after finalize transient failures are retried before the order fails, in
    /// seconds. Default 3600.
    #[serde(default = "default_backend_deadline")]
    pub deadline_secs: u64,
    /// The backend's root certificate(s), PEM: a certificate it returns must chain to one
    /// of them, else the order fails. Unset: the chain must link, up to whatever it ends at.
    pub trust_anchor: Option<PathBuf>,
    /// `[backends.NAME.exec]`, for `type = "exec"`.
    pub exec: Option<ExecSection>,
    /// `[backends.NAME.acme]`, for `type = "acme"`.
    pub acme: Option<AcmeSection>,
}

fn default_backend_timeout() -> u64 {
    60
}

fn default_backend_deadline() -> u64 {
    3600
}

/// The kind of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendType {
    /// A command-line CA (`[backends.NAME.exec]`).
    Exec,
    /// An upstream ACME CA (`[backends.NAME.acme]`).
    Acme,
}

/// `[backends.NAME.exec]`: a CA driven by a command (an OpenSSL `ca` directory, Easy-RSA,
/// a vendor CLI). The command gets the CSR and the order's facts; it prints the
/// certificate (PEM, DER or PKCS#7).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecSection {
    /// The program and its arguments (no shell).
    pub command: Vec<String>,
    /// The program that revokes (gets the serial and reason), and its arguments. Unset:
    /// revocations are recorded here only.
    #[serde(default)]
    pub revoke_command: Option<Vec<String>>,
    /// The command returns the same certificate when run again with the same
    /// `CERTWRIGHT_REQUEST_ID`, so an interrupted run (a time-out, a crash) may be re-run.
    /// Default true; false fails such an order rather than risk a second certificate.
    #[serde(default = "default_true")]
    pub idempotent: bool,
    /// Exit codes that mean "try again later" (default: 75, EX_TEMPFAIL). Any other
    /// non-zero exit is a refusal.
    #[serde(default = "default_tempfail")]
    pub temporary_exit_codes: Vec<i32>,
    /// Extra environment variables for the command.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn default_true() -> bool {
    true
}

fn default_tempfail() -> Vec<i32> {
    vec![75]
}

/// `[backends.NAME.acme]`: an upstream RFC 8555 CA. This CA holds its own account there
/// and answers the upstream's challenges with a solver of the `certwright-client` library.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeSection {
    /// The upstream's directory URL.
    pub directory: String,
    /// PEM bundle trusted for the upstream's HTTPS (a private upstream); unset: the
    /// system's roots.
    #[serde(default)]
    pub ca_bundle: Option<PathBuf>,
    /// Contact URLs of the upstream account (`mailto:…`).
    #[serde(default)]
    pub contact: Vec<String>,
    /// EAB key id, when the upstream requires external account binding.
    #[serde(default)]
    pub eab_kid: Option<String>,
    /// File holding the EAB HMAC key (base64url), 0600.
    #[serde(default)]
    pub eab_hmac_key_file: Option<PathBuf>,
    /// The profile to ask the upstream for (draft-ietf-acme-profiles); unset: none.
    #[serde(default)]
    pub profile: Option<String>,
    /// The challenge to answer: `dns-01` (default) or `http-01`.
    #[serde(default = "default_upstream_challenge")]
    pub challenge: String,
    /// dns-01 through an exec hook: the program (and arguments) called with `present` or
    /// `cleanup`, the record name and value, as certwright's `dns01-exec` solver does.
    #[serde(default)]
    pub dns_hook: Option<Vec<String>>,
    /// dns-01: the servers asked (recursively) for the TXT record before the upstream is
    /// told to validate, `ip:port`. Empty: the zone's authoritative servers (found through
    /// the system resolver) for `dns_hook`, the update server for RFC 2136.
    #[serde(default)]
    pub dns_check_servers: Vec<SocketAddr>,
    /// dns-01 through RFC 2136 dynamic updates: the primary server `host:port`.
    #[serde(default)]
    pub rfc2136_server: Option<String>,
    /// TSIG key file for RFC 2136 (`name`, `algorithm`, `secret`), 0600.
    #[serde(default)]
    pub rfc2136_tsig_file: Option<PathBuf>,
    /// http-01 from a webroot: the directory served as `/.well-known/acme-challenge/`.
    #[serde(default)]
    pub http_webroot: Option<PathBuf>,
    /// http-01 from a listener of this process bound here (the operator points the
    /// upstream's validation at it).
    #[serde(default)]
    pub http_listen: Option<SocketAddr>,
    /// Pass the upstream's ARI windows on to clients (default true).
    #[serde(default = "default_true")]
    pub ari_passthrough: bool,
}

fn default_upstream_challenge() -> String {
    "dns-01".into()
}

/// `[routing]`: which backend signs an order.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingSection {
    /// The backend of orders no rule matches. Default `local`.
    pub default: String,
    /// `[[routing.rules]]`, in order; the first that matches wins.
    pub rules: Vec<RouteRuleSection>,
}

impl Default for RoutingSection {
    fn default() -> Self {
        Self {
            default: LOCAL_BACKEND.into(),
            rules: Vec::new(),
        }
    }
}

/// `[[routing.rules]]`: the conditions given must all hold.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRuleSection {
    /// The backend that signs matching orders (`local` or a `[backends.NAME]`).
    pub backend: String,
    /// The account's EAB label is this.
    #[serde(default)]
    pub eab_label: Option<String>,
    /// The order's profile is this.
    #[serde(default)]
    pub profile: Option<String>,
    /// Every identifier of the order is this domain or below it (`example.com` matches
    /// `example.com` and `a.example.com`, not `badexample.com`).
    #[serde(default)]
    pub suffix: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parser's error for `text`, which must not parse.
    fn parse_error(text: &str) -> String {
        toml::from_str::<Config>(text).unwrap_err().to_string()
    }

    #[test]
    fn the_example_file_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../certwright-ca.example.toml");
        let cfg = Config::from_file(&path).unwrap();
        cfg.validate().unwrap();
        // The documented rate limits are the built-in defaults (all off).
        assert_eq!(cfg.rate_limits, RateLimitsSection::default());
        // The documented durability is the built-in default (FULL).
        assert_eq!(
            cfg.database.sqlite_synchronous,
            DatabaseSection::default().sqlite_synchronous
        );
    }

    /// The backends of docs/upstream.md parse and validate; each mistake is refused with
    /// a message that names it.
    #[test]
    fn backends_and_routing_are_checked() {
        let docs = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/upstream.md"),
        )
        .unwrap();
        let start = docs.find("```toml\n").unwrap() + "```toml\n".len();
        let example = &docs[start..start + docs[start..].find("```").unwrap()];
        let cfg: Config = toml::from_str(example).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.backends["corp"].r#type, BackendType::Exec);
        assert_eq!(cfg.backends["public"].timeout_secs, 60);
        assert_eq!(cfg.routing.rules.len(), 3);

        let invalid = |text: &str| {
            toml::from_str::<Config>(text)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string()
        };
        let exec = "[backends.x]\ntype = \"exec\"\n[backends.x.exec]\ncommand = [\"/bin/true\"]\n";
        for (text, says) in [
            (
                exec.replace("backends.x", "backends.local"),
                "cannot be redefined",
            ),
            (exec.replace("backends.x", "backends.Big"), "lowercase"),
            (
                "[backends.x]\ntype = \"exec\"\n".to_owned(),
                "needs a [backends.x.exec]",
            ),
            (
                format!("{exec}[backends.x.acme]\ndirectory = \"https://a.test/dir\"\n"),
                "and no other",
            ),
            (
                exec.replace(
                    "type = \"exec\"",
                    "type = \"exec\"\ntimeout_secs = 100\ndeadline_secs = 10",
                ),
                "deadline_secs",
            ),
            (
                format!("{exec}[routing]\ndefault = \"nowhere\"\n"),
                "routing.default",
            ),
            (
                format!("{exec}[[routing.rules]]\nbackend = \"nowhere\"\nsuffix = \"a.test\"\n"),
                "routing.rules[0]",
            ),
            (
                format!("{exec}[[routing.rules]]\nbackend = \"x\"\n"),
                "at least one of",
            ),
        ] {
            let error = invalid(&text);
            assert!(error.contains(says), "{text}\n=> {error}");
        }
        assert!(parse_error("[backends.x]\ntype = \"smtp\"\n").contains("unknown variant"));
        assert!(parse_error(&format!("{exec}colour = 1\n")).contains("unknown field"));
    }

    /// An admin listener off loopback needs the explicit opt-in; loopback (v4 or v6)
    /// and "off" need nothing.
    #[test]
    fn the_admin_tls_files_come_in_pairs() {
        for (text, ok) in [
            ("", true),
            (
                "admin_tls_cert = \"a.pem\"\nadmin_tls_key = \"a.key\"\n",
                true,
            ),
            ("admin_tls_cert = \"a.pem\"\n", false),
            ("admin_tls_key = \"a.key\"\n", false),
        ] {
            let cfg: Config = toml::from_str(text).unwrap();
            assert_eq!(cfg.validate().is_ok(), ok, "{text}");
        }
    }

    #[test]
    fn a_non_loopback_admin_listener_must_be_asked_for() {
        for addr in ["0.0.0.0:14001", "10.1.2.3:14001", "[::]:14001"] {
            let cfg: Config = toml::from_str(&format!("admin_listen = \"{addr}\"\n")).unwrap();
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains("admin_allow_non_loopback"), "{addr}: {err}");
            let cfg: Config = toml::from_str(&format!(
                "admin_listen = \"{addr}\"\nadmin_allow_non_loopback = true\n"
            ))
            .unwrap();
            cfg.validate().unwrap();
        }
        for addr in ["127.0.0.1:14001", "127.0.0.9:9", "[::1]:14001", "off"] {
            let cfg: Config = toml::from_str(&format!("admin_listen = \"{addr}\"\n")).unwrap();
            cfg.validate().unwrap();
        }
    }

    #[test]
    fn sqlite_synchronous_is_full_or_normal() {
        let cfg: Config = toml::from_str("[database]\nsqlite_synchronous = \"normal\"\n").unwrap();
        assert_eq!(cfg.database.sqlite_synchronous, SqliteSynchronous::Normal);
        assert_eq!(
            Config::default().database.sqlite_synchronous,
            SqliteSynchronous::Full
        );
        let err = parse_error("[database]\nsqlite_synchronous = \"off\"\n");
        assert!(err.contains("off"), "{err}");
    }

    /// `policy_oids` must be a list of strings (what they say is checked in
    /// `app::settings`).
    #[test]
    fn policy_oids_are_a_list() {
        let err = parse_error("[profiles.web]\npolicy_oids = \"2.23.140.1.2.1\"\n");
        assert!(err.contains("policy_oids"), "{err}");
    }

    #[test]
    fn profiles_replace_the_built_in_ones() {
        let cfg: Config = toml::from_str(
            "default_profile = \"mtls\"\n[profiles.mtls]\ndescription = \"m\"\nlifetime_days = 30\nclient_auth = true\n",
        )
        .unwrap();
        cfg.validate().unwrap();
        let profiles = cfg.profiles();
        assert_eq!(profiles.keys().collect::<Vec<_>>(), vec!["mtls"]);
        assert!(profiles["mtls"].client_auth && profiles["mtls"].server_auth);
    }

    #[test]
    fn the_pki_listener_and_its_url() {
        // Default: on, loopback 14002; the URL takes base_url's host.
        let cfg = Config::default();
        assert_eq!(
            cfg.pki_http_listen.0,
            Some(SocketAddr::from(([127, 0, 0, 1], 14002)))
        );
        assert_eq!(cfg.pki_base_url(), "http://localhost:14002");
        let cfg = Config {
            base_url: Some("https://ca.example.internal:8443/acme-ca/".into()),
            pki_http_listen: "0.0.0.0:80".parse().unwrap(),
            ..Config::default()
        };
        cfg.validate().unwrap();
        assert_eq!(cfg.pki_base_url(), "http://ca.example.internal");
        let cfg = Config {
            base_url: Some("https://[::1]:14000".into()),
            ..Config::default()
        };
        assert_eq!(cfg.pki_base_url(), "http://[::1]:14002");
        // Set explicitly (trailing slash dropped).
        let cfg: Config =
            toml::from_str("pki_base_url = \"http://pki.example.internal/certwright/\"\n").unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.pki_base_url(), "http://pki.example.internal/certwright");
        // Off: base_url's URLs, unless pki_base_url says otherwise.
        let cfg: Config = toml::from_str("pki_http_listen = \"off\"\n").unwrap();
        assert_eq!(cfg.pki_http_listen.0, None);
        assert_eq!(cfg.pki_base_url(), "https://localhost:14000");
        // Refused: https, no host, a query, non-ASCII, clashing listeners, garbage.
        for bad in [
            "pki_base_url = \"https://pki.example.internal\"",
            "pki_base_url = \"http://\"",
            "pki_base_url = \"http://pki.example.internal/?x=1\"",
            "pki_base_url = \"http://pkï.example.internal\"",
            "pki_base_url = \"pki.example.internal\"",
            "pki_http_listen = \"127.0.0.1:14000\"",
            "pki_http_listen = \"127.0.0.1:14001\"",
        ] {
            let cfg: Config = toml::from_str(bad).unwrap();
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains("pki_"), "{bad}: {err}");
        }
        let err = parse_error("pki_http_listen = \"everywhere\"");
        assert!(err.contains("neither ADDR:PORT nor \"off\""), "{err}");
    }

    #[test]
    fn defaults_and_errors() {
        let cfg = Config::default();
        assert_eq!(cfg.base_url(), "https://localhost:14000");
        assert!(cfg
            .database_url()
            .ends_with("certwright-ca-data/certwright.db"));
        let err = parse_error("listn = \"x\"");
        assert!(err.contains("listn"), "{err}");
        let bad = Config {
            base_url: Some("ftp://x".into()),
            ..Config::default()
        };
        assert!(bad.validate().is_err());
    }
}
