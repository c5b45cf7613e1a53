//! `certwright-ca agent enroll|list|remove`: remote validation agents
//! (docs/remote-validation.md).

use certwright_server::agents::pki::AgentCa;
use certwright_server::clock::{rfc3339, Clock};
use certwright_server::config::valid_segment_name;
use certwright_server::store::agents::NewAgentToken;
use certwright_server::store::StoreError;
use certwright_server::va::remote::EnrolmentToken;
use clap::Subcommand;
use serde_json::json;

use super::ConfigArgs;

#[derive(Subcommand)]
pub(crate) enum AgentAction {
    /// Make a one-time enrolment token for agent NAME of a segment: prints the token
    /// (shown only once) and the `certwright-va-agent enroll` command that uses it.
    Enroll {
        /// The agent's name (a-z, 0-9, -).
        name: String,
        /// The network segment it validates in (a-z, 0-9, -).
        #[arg(long)]
        segment: String,
        /// Allow a token for a name already enrolled: redeeming it replaces that agent.
        #[arg(long)]
        replace: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the enrolled agents: segment, last contact, jobs, certificate expiry.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove an agent: its certificate stops working at once.
    Remove {
        /// The agent's name.
        name: String,
    },
}

/// `certwright-ca agent …`.
pub(crate) async fn run(action: AgentAction, ca: ConfigArgs) -> anyhow::Result<()> {
    let server = ca.open().await?;
    let store = &server.store;
    let now = Clock::system().now();
    match action {
        AgentAction::Enroll {
            name,
            segment,
            replace,
            json,
        } => {
            for (what, value) in [("name", &name), ("segment", &segment)] {
                if !valid_segment_name(value) {
                    anyhow::bail!("the agent's {what} {value:?} must be 1-63 of a-z, 0-9 and -, not starting with -");
                }
            }
            let agent_ca = AgentCa::load_or_create(store, now).await?;
            let token = EnrolmentToken::generate(agent_ca.sha256());
            let hours = server.config.agents.token_ttl_hours;
            let expires_at = now + i64::from(hours) * 3600;
            let created = store
                .create_agent_token(&NewAgentToken {
                    id: &token.id,
                    agent: &name,
                    segment: &segment,
                    secret_sha256: &token.secret_hash(),
                    now,
                    expires_at,
                    replace,
                })
                .await;
            match created {
                Err(StoreError::Conflict) => anyhow::bail!(
                    "an agent named {name:?} is already enrolled (use --replace to enrol a new one in its place, or `agent remove {name}`)"
                ),
                other => other?,
            }
            let server_url = match (
                server.config.agents.server_names.first(),
                server.config.agents.listen,
            ) {
                (Some(host), Some(listen)) => format!("https://{host}:{}", listen.port()),
                (None, Some(listen)) if !listen.ip().is_unspecified() => {
                    format!("https://{listen}")
                }
                (_, Some(listen)) => format!("https://HOST:{}", listen.port()),
                (_, None) => "https://HOST:PORT".to_owned(),
            };
            let command =
                format!("certwright-va-agent enroll --server {server_url} --token {token}");
            if json {
                println!(
                    "{}",
                    json!({"name": name, "segment": segment, "token": token.to_string(),
                        "expires": rfc3339(expires_at), "command": command})
                );
            } else {
                println!("agent:   {name}");
                println!("segment: {segment}");
                println!("token:   {token}");
                println!("expires: {}", rfc3339(expires_at));
                println!();
                println!("The token is shown only now and works once. On the agent's host:");
                println!("  {command}");
                if server.config.agents.listen.is_none() {
                    println!();
                    println!(
                        "Note: [agents] listen is not set; agents cannot connect until it is."
                    );
                }
            }
        }
        AgentAction::List { json } => {
            let agents = store.agents().await?;
            let rows: Vec<serde_json::Value> = agents
                .iter()
                .map(|a| {
                    json!({
                        "name": a.name,
                        "segment": a.segment,
                        "last_contact": a.last_contact.map(rfc3339),
                        "jobs_done": a.jobs_done,
                        "jobs_failed": a.jobs_failed,
                        "certificate_expires": rfc3339(a.not_after),
                        "enrolled": rfc3339(a.enrolled_at),
                    })
                })
                .collect();
            if json {
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!(
                    "{:<20} {:<16} {:<22} {:>6} {:>6}  CERT EXPIRES",
                    "NAME", "SEGMENT", "LAST CONTACT", "DONE", "FAILED"
                );
                for a in &agents {
                    println!(
                        "{:<20} {:<16} {:<22} {:>6} {:>6}  {}",
                        a.name,
                        a.segment,
                        a.last_contact.map_or_else(|| "never".to_owned(), rfc3339),
                        a.jobs_done,
                        a.jobs_failed,
                        rfc3339(a.not_after)
                    );
                }
            }
        }
        AgentAction::Remove { name } => {
            if !store.remove_agent(&name).await? {
                anyhow::bail!("no agent named {name:?}");
            }
            println!("removed agent {name}: its certificate no longer works");
        }
    }
    Ok(())
}
