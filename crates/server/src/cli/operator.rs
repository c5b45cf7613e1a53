//! `certwright-ca operator add|list|remove`: the console's operators (docs/console.md).

use std::io::Read;

use anyhow::Context;
use certwright_server::clock::{rfc3339, Clock};
use certwright_server::console::password;
use certwright_server::store::operators::OperatorRole;
use clap::Subcommand;

use super::ConfigArgs;

#[derive(Subcommand)]
pub(crate) enum OperatorAction {
    /// Add an operator. The password is read from standard input (its first line); with
    /// --generate-password one is generated and printed once.
    Add {
        /// The sign-in name (letters, digits, '.', '_', '-', '@').
        name: String,
        /// viewer (reads) or admin (reads and acts).
        #[arg(long, value_parser = ["viewer", "admin"])]
        role: String,
        /// Generate a password and print it (instead of reading standard input).
        #[arg(long)]
        generate_password: bool,
    },
    /// List operators.
    List,
    /// Remove an operator (their sessions end).
    Remove {
        /// The sign-in name.
        name: String,
    },
}

/// `certwright-ca operator …`.
pub(crate) async fn run(action: OperatorAction, ca: ConfigArgs) -> anyhow::Result<()> {
    let store = ca.store(false).await?;
    match action {
        OperatorAction::Add {
            name,
            role,
            generate_password,
        } => {
            let role = OperatorRole::parse(&role).context("the role is viewer or admin")?;
            let secret = if generate_password {
                password::random_token()
            } else {
                let mut text = String::new();
                std::io::stdin()
                    .take(4096)
                    .read_to_string(&mut text)
                    .context("reading the password from standard input")?;
                text.lines().next().unwrap_or_default().to_owned()
            };
            if secret.chars().count() < password::MIN_PASSWORD_LEN {
                anyhow::bail!(
                    "the password must have at least {} characters (or use --generate-password)",
                    password::MIN_PASSWORD_LEN
                );
            }
            let hash = password::hash(&secret).map_err(anyhow::Error::msg)?;
            store
                .add_operator(&name, role, &hash, Clock::system().now())
                .await
                .with_context(|| format!("adding operator {name}"))?;
            println!("added operator {name} ({})", role.as_str());
            if generate_password {
                println!("password: {secret}");
                println!("The password is shown only now.");
            }
        }
        OperatorAction::List => {
            for op in store.operators().await? {
                println!(
                    "{}\t{}\t{}{}",
                    op.name,
                    op.role.as_str(),
                    rfc3339(op.created_at),
                    if op.disabled { "\tdisabled" } else { "" }
                );
            }
        }
        OperatorAction::Remove { name } => {
            if !store.remove_operator(&name).await? {
                anyhow::bail!("no operator named {name}");
            }
            println!("removed operator {name}");
        }
    }
    Ok(())
}
