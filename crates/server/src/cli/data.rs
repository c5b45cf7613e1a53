//! `certwright-ca migrate`, `export` and `import`: the database as a whole.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use certwright_server::app::eab_kek::attach_eab_kek;
use certwright_server::app::settings::private_files;
use certwright_server::secrets::{KekSource, KEK_ENV};

use super::ConfigArgs;

#[derive(clap::Args)]
pub(crate) struct ExportArgs {
    /// Output file.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    ca: ConfigArgs,
}

#[derive(clap::Args)]
pub(crate) struct ImportArgs {
    /// File written by `certwright-ca export`.
    #[arg(long = "in")]
    input: PathBuf,
    #[command(flatten)]
    ca: ConfigArgs,
}

/// Applies pending migrations and seals plaintext EAB keys.
pub(crate) async fn migrate(ca: ConfigArgs) -> anyhow::Result<()> {
    let store = ca.store(true).await?;
    // A schema migration has no key: plaintext EAB keys are sealed here.
    attach_eab_kek(&private_files(&ca.load()?), store, false).await?;
    println!("the database schema is up to date; EAB keys are encrypted at rest");
    Ok(())
}

/// Writes every row as JSON lines (0600: sealed EAB keys are in it).
pub(crate) async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let ExportArgs { out, ca } = args;
    let rows = ca.store(false).await?.export().await?;
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    certwright_server::fsutil::write_atomic(&out, text.as_bytes(), 0o600)
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "exported {} rows to {} (EAB keys in it are encrypted with the data directory's \
         key-encryption key; importing needs that KEK)",
        rows.len(),
        out.display()
    );
    Ok(())
}

/// Loads an export into an empty database.
pub(crate) async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let ImportArgs { input, ca } = args;
    let text =
        std::fs::read_to_string(&input).with_context(|| format!("reading {}", input.display()))?;
    let rows = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<Vec<serde_json::Value>, _>>()
        .context("the export is not JSON lines")?;
    // Sealed EAB keys need the KEK they were sealed with; without any, a data
    // directory's KEK may be created here.
    let sealed = rows
        .iter()
        .any(|r| r["table"] == "eab_keys" && r["row"]["kek_id"].is_string());
    let source = KekSource::from_environment(&private_files(&ca.load()?));
    let kek = source.load(!sealed).with_context(|| {
        format!(
            "the export holds encrypted EAB keys: this CA needs the source CA's \
             key-encryption key at {} (or in {KEK_ENV})",
            source.describe(),
        )
    })?;
    let store = ca.store(true).await?.with_eab_kek(Arc::new(kek));
    let n = store.import(&rows).await?;
    // An export of an older version carries plaintext keys: sealed now.
    let sealed = store.seal_legacy_eab_keys().await?;
    println!("imported {n} rows ({sealed} plaintext EAB keys encrypted)");
    Ok(())
}
