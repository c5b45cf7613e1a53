//! `certwright-ca check`: the store's invariants (`Store::integrity_violations`), one
//! line per violation; fails when there is any.

use super::ConfigArgs;

/// Prints the violations (or that there are none); an error when there is one.
pub(crate) async fn run(ca: ConfigArgs) -> anyhow::Result<()> {
    let store = ca.store(false).await?;
    let violations = store.integrity_violations().await?;
    if violations.is_empty() {
        println!("the database is consistent: nothing left processing, every valid order has its certificate");
        return Ok(());
    }
    for v in &violations {
        println!("{v}");
    }
    anyhow::bail!(
        "{} invariant(s) violated (work still processing is resumed by a running CA: \
         check again once it has swept)",
        violations.len()
    )
}
