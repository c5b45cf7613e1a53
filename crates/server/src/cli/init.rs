//! `certwright-ca init`: creates the CA's hierarchy explicitly, refusing to touch an
//! existing one. Three forms:
//!
//! - `init [--key-type …] [--root-offline --root-key PATH|URI] …`: a root and an
//!   intermediate, as the flags say;
//! - `init --intermediate-csr FILE`: the intermediate's key and a CSR for another CA
//!   (an offline or corporate root) to sign;
//! - `init --import-intermediate CERT --chain CHAIN`: installs the certificate that CA
//!   signed, after checking it, its key and its chain.
//!
//! The PKCS#11 module and PIN for `pkcs11:` key locations come from the configuration
//! file's `[pkcs11]` section (`--config`), never from the command line.

use std::path::{Path, PathBuf};

use anyhow::Context;
use certwright_server::app::settings;
use certwright_server::ca::hierarchy::init::{self as ca_init, InitOptions};
use certwright_server::ca::keys::KeyLocation;
use certwright_server::ca::CaKeyType;

use super::ConfigArgs;

/// A key location flag: a file path, or an RFC 7512 `pkcs11:` URI.
fn key_location(value: &str) -> Result<KeyLocation, String> {
    KeyLocation::parse(value).map_err(|e| e.to_string())
}

#[derive(clap::Args)]
pub(crate) struct InitArgs {
    #[command(flatten)]
    ca: ConfigArgs,
    /// Key type of the intermediate (and of the root, unless --root-key-type): ec256,
    /// ec384, rsa2048, rsa3072 or rsa4096. Default: `[ca].key_type` (ec256).
    #[arg(long, value_name = "TYPE")]
    key_type: Option<CaKeyType>,
    /// Key type of the root. Default: --key-type.
    #[arg(long, value_name = "TYPE", conflicts_with_all = ["intermediate_csr", "import_intermediate"])]
    root_key_type: Option<CaKeyType>,
    /// Where the root's key is generated: a file, or a pkcs11: URI (generated in the
    /// token). Default: DATA/root.key. A file outside the data directory needs
    /// --root-offline.
    #[arg(long, value_name = "PATH|URI", value_parser = key_location,
          conflicts_with_all = ["intermediate_csr", "import_intermediate"])]
    root_key: Option<KeyLocation>,
    /// Where the intermediate's key is: default DATA/intermediate.key; a pkcs11: URI
    /// generates it in the token (recorded in DATA/intermediate.key-uri). With
    /// --import-intermediate: the key of the certificate (default: the one
    /// --intermediate-csr made; a file elsewhere is copied into the data directory).
    #[arg(long, value_name = "PATH|URI", value_parser = key_location)]
    intermediate_key: Option<KeyLocation>,
    /// Organization (O) of the CA certificates. Default: `[ca].organization`.
    #[arg(long, conflicts_with = "import_intermediate")]
    organization: Option<String>,
    /// Common name of the root. Default: "ORG Root CA" and six random hex digits.
    #[arg(long, value_name = "CN", conflicts_with_all = ["intermediate_csr", "import_intermediate"])]
    root_cn: Option<String>,
    /// Common name of the intermediate. Default: "ORG Intermediate CA" and six random
    /// hex digits.
    #[arg(long, value_name = "CN", conflicts_with = "import_intermediate")]
    intermediate_cn: Option<String>,
    /// Days the root is valid.
    #[arg(long, value_name = "DAYS", default_value_t = ca_init::DEFAULT_ROOT_DAYS,
          conflicts_with_all = ["intermediate_csr", "import_intermediate"])]
    root_days: u32,
    /// Days the intermediate is valid (at most the root's).
    #[arg(long, value_name = "DAYS", default_value_t = ca_init::DEFAULT_INTERMEDIATE_DAYS,
          conflicts_with_all = ["intermediate_csr", "import_intermediate"])]
    intermediate_days: u32,
    /// The intermediate's pathLenConstraint (0: it signs end-entity certificates only).
    /// With --intermediate-csr it is what the CSR asks for.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        conflicts_with = "import_intermediate"
    )]
    path_len: u8,
    /// Name constraints on the intermediate: a permitted DNS subtree (example.com: the
    /// name and its subdomains; .example.com: subdomains only). Repeatable.
    #[arg(long, value_name = "SUFFIX",
          conflicts_with_all = ["intermediate_csr", "import_intermediate"])]
    permitted_dns: Vec<String>,
    /// Keep the root's key out of the data directory: it is written to --root-key (a
    /// file outside the data directory, or a pkcs11: URI) and `serve` never needs it.
    #[arg(long, requires = "root_key")]
    root_offline: bool,
    /// Generate the intermediate's key and write a CSR (PEM) to FILE for another CA to
    /// sign; then import its certificate with --import-intermediate.
    #[arg(long, value_name = "FILE", conflicts_with = "import_intermediate")]
    intermediate_csr: Option<PathBuf>,
    /// Import the intermediate's certificate (PEM) signed by another CA; needs --chain.
    #[arg(long, value_name = "CERT", requires = "chain")]
    import_intermediate: Option<PathBuf>,
    /// With --import-intermediate: the CA certificates above it (PEM), ending with the
    /// self-signed root.
    #[arg(long, value_name = "CHAIN", requires = "import_intermediate")]
    chain: Option<PathBuf>,
}

/// `certwright-ca init …`.
pub(crate) fn run(args: InitArgs) -> anyhow::Result<()> {
    let config = args.ca.load()?;
    let pkcs11 = settings::pkcs11(&config);
    let data_dir = config.data_dir.clone();
    let created_dir = !data_dir.exists();
    certwright_server::fsutil::create_private_dir(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let key_type = args
        .key_type
        .unwrap_or_else(|| settings::ca_key_type(config.ca.key_type));
    let organization = args
        .organization
        .clone()
        .unwrap_or_else(|| config.ca.organization.clone());
    let mut opts = InitOptions::new(key_type, &organization);
    opts.root_key_type = args.root_key_type.unwrap_or(key_type);
    opts.root_key = args.root_key.clone();
    opts.intermediate_key = args.intermediate_key.clone();
    opts.root_cn = args.root_cn.clone();
    opts.intermediate_cn = args.intermediate_cn.clone();
    opts.root_days = args.root_days;
    opts.intermediate_days = args.intermediate_days;
    opts.path_len = args.path_len;
    opts.permitted_dns = args.permitted_dns.clone();
    opts.root_offline = args.root_offline;

    let result = if let Some(csr) = &args.intermediate_csr {
        csr_step(&data_dir, &opts, csr, &pkcs11)
    } else if let (Some(cert), Some(chain)) = (&args.import_intermediate, &args.chain) {
        import_step(
            &data_dir,
            cert,
            chain,
            args.intermediate_key.as_ref(),
            &pkcs11,
        )
    } else {
        create(&data_dir, &opts, &pkcs11)
    };
    if result.is_err() && created_dir {
        // Empty again: it was made for this run.
        let _ = std::fs::remove_dir(&data_dir);
    }
    result
}

fn create(
    data_dir: &Path,
    opts: &InitOptions,
    pkcs11: &certwright_server::ca::keys::Pkcs11Settings,
) -> anyhow::Result<()> {
    let created = ca_init::create(data_dir, opts, pkcs11)?;
    println!("Created a CA in {}", data_dir.display());
    println!(
        "  root certificate:         {}",
        created.root_cert.display()
    );
    println!("  root SHA-256:             {}", created.root_fingerprint);
    println!("  root key:                 {}", created.root_key);
    println!(
        "  intermediate certificate: {}",
        created.intermediate_cert.display()
    );
    println!("  intermediate key:         {}", created.intermediate_key);
    if created.root_offline {
        println!();
        println!(
            "The root key is at {}, outside the data directory: `certwright-ca serve` does \
             not need it.",
            created.root_key
        );
        println!("Keep it offline (and backed up); it is needed only to sign a new intermediate.");
    }
    println!();
    println!(
        "Start the CA with `certwright-ca serve --data-dir {}`; clients trust {}.",
        data_dir.display(),
        created.root_cert.display()
    );
    Ok(())
}

fn csr_step(
    data_dir: &Path,
    opts: &InitOptions,
    csr: &Path,
    pkcs11: &certwright_server::ca::keys::Pkcs11Settings,
) -> anyhow::Result<()> {
    let written = ca_init::write_intermediate_csr(data_dir, opts, csr, pkcs11)?;
    println!("Generated the intermediate's key: {}", written.key);
    println!(
        "Wrote its certificate signing request: {}",
        written.csr.display()
    );
    println!();
    println!(
        "Next: have the root CA sign it as a CA certificate (basicConstraints critical \
         CA:TRUE, pathlen:{}; keyUsage critical keyCertSign, cRLSign), e.g. with openssl:",
        opts.path_len
    );
    println!(
        "  openssl x509 -req -in {} -CA root.pem -CAkey root.key -days 1825 -sha256 \\",
        written.csr.display()
    );
    println!("    -extfile intermediate.ext -out intermediate.crt");
    println!("Then import the certificate with the chain up to the root (the root last):");
    println!(
        "  certwright-ca init --data-dir {} --import-intermediate intermediate.crt \
         --chain chain.pem",
        data_dir.display()
    );
    println!("See docs/keys.md, \"Your own intermediate\".");
    Ok(())
}

fn import_step(
    data_dir: &Path,
    cert: &Path,
    chain: &Path,
    key: Option<&KeyLocation>,
    pkcs11: &certwright_server::ca::keys::Pkcs11Settings,
) -> anyhow::Result<()> {
    let imported = ca_init::import_intermediate(data_dir, cert, chain, key, pkcs11)?;
    println!(
        "Imported the intermediate into {}; it chains to {}",
        data_dir.display(),
        imported.root_subject
    );
    println!(
        "  intermediate certificate: {}",
        imported.intermediate_cert.display()
    );
    println!("  intermediate key:         {}", imported.intermediate_key);
    println!(
        "  root certificate:         {}",
        imported.root_cert.display()
    );
    println!("  root SHA-256:             {}", imported.root_fingerprint);
    println!();
    println!(
        "Start the CA with `certwright-ca serve --data-dir {}`; the root key is not needed.",
        data_dir.display()
    );
    Ok(())
}
