//! `certwright-ca revoke` and `renew-early`: operator actions on one certificate (and a
//! renew-early campaign over a filter).

use certwright_server::ca::crl::reason_name;
use certwright_server::store::campaigns::CampaignFilter;

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
    /// Serial number (hex, colons allowed): this one certificate.
    #[arg(long, required_unless_present_any = ["suffix", "profile", "issuer", "eab_label"],
          conflicts_with_all = ["suffix", "profile", "issuer", "eab_label"])]
    serial: Option<String>,
    /// A campaign: every valid certificate with a name under this suffix (`.example.com`) …
    #[arg(long)]
    suffix: Option<String>,
    /// … issued with this profile …
    #[arg(long)]
    profile: Option<String>,
    /// … by this issuer …
    #[arg(long)]
    issuer: Option<String>,
    /// … to an account bound with this EAB label (every condition given must hold).
    #[arg(long)]
    eab_label: Option<String>,
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

/// Moves the certificate's ARI window into the past; with a filter, starts a campaign
/// that does so for every valid certificate matching it (as the console does).
pub(crate) async fn renew_early(args: RenewEarlyArgs) -> anyhow::Result<()> {
    let server = args.ca.open().await?;
    let Some(serial) = args.serial else {
        let filter = CampaignFilter::new(
            args.issuer.as_deref(),
            args.profile.as_deref(),
            args.eab_label.as_deref(),
            args.suffix.as_deref(),
        )
        .ok_or_else(|| anyhow::anyhow!("give --serial, or at least one non-empty filter"))?;
        let now = certwright_server::clock::Clock::system().now();
        let campaign = server.store.start_renew_campaign(&filter, now).await?;
        println!(
            "campaign {} ({}): {} certificate(s) marked; ARI now tells their clients to renew immediately",
            campaign.id,
            filter.describe(),
            campaign.marked
        );
        return Ok(());
    };
    let serial = serial.replace(':', "").to_ascii_lowercase();
    if !server.store.mark_renew_early(&serial).await? {
        anyhow::bail!("no certificate with serial {serial}");
    }
    println!("certificate {serial} is marked: ARI now tells its client to renew immediately");
    Ok(())
}
