//! `certwright-ca backends`: the backend CAs of the configuration, the routing rules, and
//! the orders forwarded to them that are still in flight (`docs/upstream.md`).

use certwright_server::clock::rfc3339;
use certwright_server::config::BackendType;

use super::ConfigArgs;

/// Prints the backends, the rules and the jobs in flight.
pub(crate) async fn list(ca: &ConfigArgs) -> anyhow::Result<()> {
    let config = ca.load()?;
    println!("BACKEND\tTYPE\tTIMEOUT\tDEADLINE\tTRUST ANCHOR");
    println!("local\tissuers\t-\t-\t-");
    for (name, b) in &config.backends {
        let kind = match b.r#type {
            BackendType::Exec => "exec",
            BackendType::Acme => "acme",
        };
        let anchor = b
            .trust_anchor
            .as_ref()
            .map_or_else(|| "-".to_owned(), |p| p.display().to_string());
        println!(
            "{name}\t{kind}\t{}s\t{}s\t{anchor}",
            b.timeout_secs, b.deadline_secs
        );
    }
    println!();
    println!("ROUTING (first match wins)");
    for (i, rule) in config.routing.rules.iter().enumerate() {
        let mut when = Vec::new();
        if let Some(l) = &rule.eab_label {
            when.push(format!("eab_label={l}"));
        }
        if let Some(p) = &rule.profile {
            when.push(format!("profile={p}"));
        }
        if let Some(s) = &rule.suffix {
            when.push(format!("suffix={s}"));
        }
        println!("{}\t{}\t-> {}", i + 1, when.join(" "), rule.backend);
    }
    println!("default\t\t-> {}", config.routing.default);
    let jobs = ca.store(false).await?.backend_jobs().await?;
    println!();
    println!("IN FLIGHT ({})", jobs.len());
    if !jobs.is_empty() {
        println!("ORDER\tBACKEND\tATTEMPTS\tSENT\tSINCE\tDEADLINE\tLAST ERROR");
    }
    for job in jobs {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            job.order_id,
            job.backend,
            job.attempts,
            if job.in_flight { "yes" } else { "no" },
            rfc3339(job.created_at),
            rfc3339(job.deadline),
            job.last_error.as_deref().unwrap_or("-"),
        );
    }
    Ok(())
}
