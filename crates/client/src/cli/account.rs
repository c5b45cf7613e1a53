//! `certwright account …`: register, show, update, deactivate, key rollover.

use anyhow::{Context, Result};
use certwright_client::client::Eab;
use certwright_proto::{AccountKey, KeyType};
use clap::{Args, Subcommand};
use serde_json::json;

use super::Ctx;

#[derive(Debug, Args)]
pub(crate) struct EabArgs {
    /// External Account Binding key ID.
    #[arg(long, requires = "eab_hmac_key", env = "CERTWRIGHT_EAB_KID")]
    pub eab_kid: Option<String>,
    /// External Account Binding MAC key (base64url).
    #[arg(
        long,
        requires = "eab_kid",
        env = "CERTWRIGHT_EAB_HMAC_KEY",
        hide_env_values = true
    )]
    pub eab_hmac_key: Option<String>,
}

impl EabArgs {
    pub(crate) fn eab(&self) -> Result<Option<Eab>> {
        match (&self.eab_kid, &self.eab_hmac_key) {
            (Some(k), Some(m)) => Ok(Some(Eab::from_b64(k.clone(), m)?)),
            _ => Ok(None),
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum AccountCommand {
    /// Register a new account (agreeing to the CA's terms).
    Register {
        /// Contact e-mail; repeatable.
        #[arg(long)]
        email: Vec<String>,
        #[command(flatten)]
        eab: EabArgs,
        /// Account key type.
        #[arg(long, default_value = "ec256")]
        key_type: String,
    },
    /// Show the account.
    Show,
    /// Replace the contacts.
    Update {
        /// Contact e-mail; repeatable.
        #[arg(long, required = true)]
        email: Vec<String>,
    },
    /// Deactivate the account (irreversible).
    Deactivate,
    /// Roll the account over to a new key (RFC 8555 §7.3.5).
    Rollover {
        /// New key type.
        #[arg(long, default_value = "ec256")]
        key_type: String,
    },
}

fn key_type(name: &str) -> Result<KeyType> {
    KeyType::parse(name).with_context(|| {
        format!("unknown key type {name} (ec256, ec384, rsa2048, rsa3072, rsa4096, ed25519)")
    })
}

fn account_json(server: &str, a: &certwright_client::Account) -> serde_json::Value {
    json!({
        "server": server,
        "url": a.url(),
        "status": a.object().status.as_str(),
        "contact": a.object().contact,
        "key": a.key().jwk().describe(),
    })
}

fn human(v: &serde_json::Value) -> String {
    format!(
        "account {}\n  status:  {}\n  contact: {}\n  key:     {}\n  CA:      {}",
        v["url"].as_str().unwrap_or(""),
        v["status"].as_str().unwrap_or(""),
        v["contact"]
            .as_array()
            .map(|a| a
                .iter()
                .filter_map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default(),
        v["key"].as_str().unwrap_or(""),
        v["server"].as_str().unwrap_or(""),
    )
}

pub(crate) async fn run(ctx: &Ctx, cmd: AccountCommand) -> Result<()> {
    let server = ctx.server()?.to_owned();
    let manager = ctx.manager()?;
    let stored = || async {
        manager.stored_account(&server).await?.with_context(|| {
            format!("no account stored for {server}; run `certwright account register`")
        })
    };
    match cmd {
        AccountCommand::Register {
            email,
            eab,
            key_type: kt,
        } => {
            let _lock = manager.store().lock_account(&server)?;
            let account = manager
                .register(&server, &email, eab.eab()?.as_ref(), key_type(&kt)?)
                .await?;
            let v = account_json(&server, &account);
            ctx.print(&v, || format!("registered {}", human(&v)));
        }
        AccountCommand::Show => {
            let account = stored().await?;
            let v = account_json(&server, &account);
            ctx.print(&v, || human(&v));
        }
        AccountCommand::Update { email } => {
            let _lock = manager.store().lock_account(&server)?;
            let mut account = stored().await?;
            account.update_contact(&email).await?;
            manager.save_account(&server, &account)?;
            let v = account_json(&server, &account);
            ctx.print(&v, || format!("updated {}", human(&v)));
        }
        AccountCommand::Deactivate => {
            let _lock = manager.store().lock_account(&server)?;
            let mut account = stored().await?;
            account.deactivate().await?;
            manager.save_account(&server, &account)?;
            let v = account_json(&server, &account);
            ctx.print(&v, || format!("deactivated {}", human(&v)));
        }
        AccountCommand::Rollover { key_type: kt } => {
            let _lock = manager.store().lock_account(&server)?;
            let mut account = stored().await?;
            let old = account.key().jwk().thumbprint();
            account
                .change_key(AccountKey::generate(key_type(&kt)?)?)
                .await?;
            manager.save_account(&server, &account)?;
            let mut v = account_json(&server, &account);
            v["old_key_thumbprint"] = old.clone().into();
            v["new_key_thumbprint"] = account.key().jwk().thumbprint().into();
            ctx.print(&v, || format!("rolled over to a new key\n{}", human(&v)));
        }
    }
    Ok(())
}
