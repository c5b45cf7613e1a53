//! `certwright-ca operator add|list|remove|link|disable|enable`: the console's operators
//! (docs/console.md).

use std::io::Read;

use anyhow::Context;
use certwright_server::clock::{rfc3339, Clock};
use certwright_server::console::{account, password};
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
        #[arg(long, conflicts_with = "login_link")]
        generate_password: bool,
        /// Print a one-time sign-in link (valid 24 hours) with which the operator sets
        /// their password, instead of reading one from standard input.
        #[arg(long)]
        login_link: bool,
        #[command(flatten)]
        link: LinkArgs,
    },
    /// List operators.
    List,
    /// Remove an operator (their sessions end).
    Remove {
        /// The sign-in name.
        name: String,
    },
    /// Print a one-time sign-in link (valid 24 hours) with which an operator sets a new
    /// password, e.g. one who forgot theirs; it replaces their earlier link.
    Link {
        /// The sign-in name.
        name: String,
        #[command(flatten)]
        link: LinkArgs,
    },
    /// Disable an operator: they cannot sign in, and their sessions end at once.
    Disable {
        /// The sign-in name.
        name: String,
    },
    /// Enable a disabled operator again.
    Enable {
        /// The sign-in name.
        name: String,
    },
}

/// Where a sign-in link points.
#[derive(clap::Args)]
pub(crate) struct LinkArgs {
    /// The console's base URL as the operator reaches it (default: http(s)://ADMIN_LISTEN,
    /// https when the configuration sets admin_tls_cert), e.g. https://ca.internal:14001.
    #[arg(long)]
    console_url: Option<String>,
}

impl LinkArgs {
    /// The base URL links start with.
    fn base(&self, ca: &ConfigArgs) -> anyhow::Result<String> {
        if let Some(url) = &self.console_url {
            return Ok(url.trim_end_matches('/').to_owned());
        }
        let config = ca.load()?;
        let addr = config
            .admin_listen
            .0
            .context("the admin listener is off (admin_listen): pass --console-url")?;
        let scheme = if config.admin_tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        Ok(format!("{scheme}://{addr}"))
    }
}

/// Makes a sign-in link for `name` and prints it.
async fn print_link(
    store: &certwright_server::store::Store,
    name: &str,
    base: &str,
) -> anyhow::Result<()> {
    let token = account::issue_login_link(store, name, Clock::system().now())
        .await?
        .with_context(|| format!("no operator named {name}, or it is disabled"))?;
    println!("sign-in link for {name} (once, within 24 hours; it sets the password):");
    println!("{}", account::login_link_url(base, &token));
    Ok(())
}

/// `certwright-ca operator …`.
pub(crate) async fn run(action: OperatorAction, ca: ConfigArgs) -> anyhow::Result<()> {
    let store = ca.store(false).await?;
    match action {
        OperatorAction::Add {
            name,
            role,
            generate_password,
            login_link,
            link,
        } => {
            let role = OperatorRole::parse(&role).context("the role is viewer or admin")?;
            // Checked before the operator exists, so that a bad URL adds no one.
            let base = if login_link {
                Some(link.base(&ca)?)
            } else {
                None
            };
            let secret = if generate_password || login_link {
                password::random_token()
            } else {
                let mut text = String::new();
                std::io::stdin()
                    .take(4096)
                    .read_to_string(&mut text)
                    .context("reading the password from standard input")?;
                text.lines().next().unwrap_or_default().to_owned()
            };
            if let Err(e) = password::check_new(&secret) {
                anyhow::bail!("{e} Or use --generate-password or --login-link.");
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
            // With a link, the random password is never shown: the link sets one.
            if let Some(base) = base {
                print_link(&store, &name, &base).await?;
            }
        }
        OperatorAction::Link { name, link } => {
            let base = link.base(&ca)?;
            print_link(&store, &name, &base).await?;
        }
        OperatorAction::Disable { name } => {
            if !store.set_operator_disabled(&name, true).await? {
                anyhow::bail!("no operator named {name}");
            }
            println!("disabled operator {name} (their sessions have ended)");
        }
        OperatorAction::Enable { name } => {
            if !store.set_operator_disabled(&name, false).await? {
                anyhow::bail!("no operator named {name}");
            }
            println!("enabled operator {name}");
        }
        OperatorAction::List => {
            for op in store.operators().await? {
                println!(
                    "{}\t{}\t{}\t{}",
                    op.name,
                    op.role.as_str(),
                    rfc3339(op.created_at),
                    if op.disabled { "disabled" } else { "enabled" }
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
