//! `certwright-ca audit verify|export`: the audit trail's hash chain, and its entries.

use std::path::PathBuf;

use anyhow::Context;
use certwright_server::clock::rfc3339;
use clap::Subcommand;
use serde_json::json;

use super::ConfigArgs;

#[derive(Subcommand)]
pub(crate) enum AuditAction {
    /// Walk the whole chain; fail, naming the first bad entry, if any entry was altered,
    /// inserted or deleted.
    Verify,
    /// Write entries as JSON lines, oldest first.
    Export {
        /// Only entries from this time (RFC 3339) or after this sequence number.
        #[arg(long)]
        since: Option<String>,
        /// Output format (one JSON object per line).
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// Write to this file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    Jsonl,
}

/// `--since`: an RFC 3339 time, or a sequence number. Returns (after seq, from time).
fn parse_since(since: Option<&str>) -> anyhow::Result<(i64, i64)> {
    let Some(since) = since else {
        return Ok((0, i64::MIN));
    };
    if let Ok(seq) = since.parse::<i64>() {
        return Ok((seq.saturating_sub(1).max(0), i64::MIN));
    }
    let t = time::OffsetDateTime::parse(since, &time::format_description::well_known::Rfc3339)
        .with_context(|| {
            format!("--since {since:?} is neither a sequence number nor an RFC 3339 time")
        })?;
    Ok((0, t.unix_timestamp()))
}

/// `certwright-ca audit …`.
pub(crate) async fn run(action: AuditAction, ca: ConfigArgs) -> anyhow::Result<()> {
    use certwright_server::store::AuditVerdict;
    use std::io::Write as _;
    let store = ca.store(false).await?;
    match action {
        AuditAction::Verify => match store.verify_audit().await? {
            AuditVerdict::Intact { entries, head } => {
                println!("audit trail intact: {entries} entries, head {head}");
                Ok(())
            }
            AuditVerdict::Broken { seq, reason } => {
                anyhow::bail!("audit trail broken at entry {seq}: {reason}")
            }
        },
        AuditAction::Export {
            since,
            format: ExportFormat::Jsonl,
            output,
        } => {
            let (mut after, from) = parse_since(since.as_deref())?;
            let mut out: Box<dyn std::io::Write> = match &output {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let mut count = 0u64;
            loop {
                let page = store
                    .audit_entries(after, from, certwright_server::store::audit::PAGE)
                    .await?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                for e in &page {
                    let mut line = serde_json::to_value(e)?;
                    line["time"] = json!(rfc3339(e.at));
                    line["details"] = serde_json::from_str(&e.details).unwrap_or(json!(e.details));
                    writeln!(out, "{line}")?;
                    count += 1;
                }
            }
            out.flush()?;
            if let Some(path) = output {
                eprintln!("exported {count} audit entries to {}", path.display());
            }
            Ok(())
        }
    }
}
