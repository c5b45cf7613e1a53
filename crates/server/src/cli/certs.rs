//! `certwright-ca certs list`: the inventory of issued certificates, streamed.

use certwright_server::ca::crl::reason_name;
use certwright_server::clock::{rfc3339, Clock};
use clap::Subcommand;
use serde_json::json;

use super::ConfigArgs;

#[derive(Subcommand)]
pub(crate) enum CertsAction {
    /// List certificates, newest first.
    List {
        /// A name the certificate covers, exactly (`www.example.com`, `*.example.com`), or
        /// every name under a domain when it starts with a dot (`.example.com`).
        #[arg(long)]
        name: Option<String>,
        /// The requesting account's id.
        #[arg(long)]
        account: Option<i64>,
        /// The EAB label of the requesting account.
        #[arg(long)]
        eab_label: Option<String>,
        /// Unexpired certificates that expire within this many days.
        #[arg(long)]
        expiring_within: Option<u32>,
        /// Only revoked certificates.
        #[arg(long, conflicts_with = "not_revoked")]
        revoked: bool,
        /// Only certificates that are not revoked.
        #[arg(long)]
        not_revoked: bool,
        /// Only certificates this issuer signed (see `certwright-ca issuer list`).
        #[arg(long)]
        issuer: Option<String>,
        /// At most this many certificates (the newest).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Standard output for a long listing: buffered, and the first write error kept (the
/// rest of the listing is then skipped).
struct Output<W: std::io::Write> {
    out: std::io::BufWriter<W>,
    failed: Option<std::io::Error>,
}

impl<W: std::io::Write> Output<W> {
    fn write(&mut self, text: std::fmt::Arguments) {
        if self.failed.is_none() {
            if let Err(e) = std::io::Write::write_fmt(&mut self.out, text) {
                self.failed = Some(e);
            }
        }
    }

    /// Flushes; the first error met, if any.
    fn finish(mut self) -> std::io::Result<()> {
        match self.failed.take() {
            Some(e) => Err(e),
            None => std::io::Write::flush(&mut self.out),
        }
    }
}

/// `certwright-ca certs list`.
pub(crate) async fn run(action: CertsAction, ca: ConfigArgs) -> anyhow::Result<()> {
    use certwright_server::store::inventory::{CertificateFilter, CertificateSummary};
    let CertsAction::List {
        name,
        account,
        eab_label,
        expiring_within,
        revoked,
        not_revoked,
        issuer,
        limit,
        json,
    } = action;
    let store = ca.store(false).await?;
    let now = Clock::system().now();
    let filter = CertificateFilter {
        name,
        account,
        eab_label,
        expiring_within: expiring_within.map(|d| i64::from(d) * 86_400),
        revoked: match (revoked, not_revoked) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        issuer,
        now,
    };
    let status = |c: &CertificateSummary| match (c.revoked_at, c.revocation_reason) {
        (Some(_), reason) => format!("revoked ({})", reason_name(reason.unwrap_or(0))),
        (None, _) if c.not_after <= now => "expired".to_owned(),
        (None, _) => "valid".to_owned(),
    };
    // Rows are printed as they are read. A reader that goes away (`| head`) ends the
    // listing quietly; any other write error is reported.
    let mut out = Output {
        out: std::io::BufWriter::new(std::io::stdout().lock()),
        failed: None,
    };
    if json {
        out.write(format_args!("["));
    } else {
        out.write(format_args!(
            "{:<34} {:<21} {:<26} {:>7} {:<11} {:<16} NAMES\n",
            "SERIAL", "NOT AFTER", "STATUS", "ACCOUNT", "PROFILE", "ISSUER"
        ));
    }
    let mut count: u64 = 0;
    store
        .each_certificate(&filter, |c| {
            if json {
                let mut v = serde_json::to_value(&c).expect("summaries serialize");
                v["status"] = json!(status(&c));
                v["not_after_time"] = json!(rfc3339(c.not_after));
                let comma = if count == 0 { "" } else { "," };
                out.write(format_args!("{comma}\n{v}"));
            } else {
                out.write(format_args!(
                    "{:<34} {:<21} {:<26} {:>7} {:<11} {:<16} {}\n",
                    c.serial,
                    rfc3339(c.not_after),
                    status(&c),
                    c.account_id,
                    c.profile.as_deref().unwrap_or("-"),
                    c.issuer,
                    c.names.join(",")
                ));
            }
            count += 1;
            if out.failed.is_some() || limit == Some(count) {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        })
        .await?;
    if json {
        out.write(format_args!("\n]\n"));
    }
    match out.finish() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => return Err(anyhow::Error::new(e).context("writing the listing")),
        Ok(()) => {}
    }
    if limit == Some(count) {
        eprintln!("{count} certificate(s): the newest {count} (--limit); more may match");
    } else {
        eprintln!("{count} certificate(s)");
    }
    Ok(())
}
