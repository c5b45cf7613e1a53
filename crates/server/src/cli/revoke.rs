//! `certwright-ca revoke` and `renew-early`: operator actions on one certificate.

use certwright_server::ca::crl::reason_name;

use super::ConfigArgs;

#[derive(clap::Args)]
pub(crate) struct RevokeArgs {
    /// Serial number (hex, colons allowed).
    #[arg(long)]
    serial: String,
    /// RFC 5280 reason: a code or a name (keyCompromise, superseded, …).
    #[arg(long, default_value = "unspecified")]
    reason: String,
    #[command(flatten)]
    ca: ConfigArgs,
}

#[derive(clap::Args)]
pub(crate) struct RenewEarlyArgs {
    /// Serial number (hex, colons allowed).
    #[arg(long)]
    serial: String,
    #[command(flatten)]
    ca: ConfigArgs,
}

/// A reason code, or its RFC 5280 name (any case).
fn parse_reason(text: &str) -> anyhow::Result<u8> {
    if let Ok(code) = text.parse::<u8>() {
        return Ok(code);
    }
    (0u8..=10)
        .find(|c| reason_name(*c).eq_ignore_ascii_case(text))
        .ok_or_else(|| anyhow::anyhow!("unknown revocation reason {text:?}"))
}

/// Revokes through the RA (audited, a new CRL published).
pub(crate) async fn revoke(args: RevokeArgs) -> anyhow::Result<()> {
    let reason = parse_reason(&args.reason)?;
    let server = args.ca.open().await?;
    let cert = server
        .state
        .ra
        .revoke_by_operator(&args.serial, reason)
        .await?;
    println!(
        "revoked {} ({}); a new CRL is published",
        cert.serial,
        reason_name(reason)
    );
    Ok(())
}

/// Moves the certificate's ARI window into the past.
pub(crate) async fn renew_early(args: RenewEarlyArgs) -> anyhow::Result<()> {
    let server = args.ca.open().await?;
    let serial = args.serial.replace(':', "").to_ascii_lowercase();
    if !server.store.mark_renew_early(&serial).await? {
        anyhow::bail!("no certificate with serial {serial}");
    }
    println!("certificate {serial} is marked: ARI now tells its client to renew immediately");
    Ok(())
}
