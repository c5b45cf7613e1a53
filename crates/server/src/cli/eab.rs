//! `certwright-ca eab create|list|revoke`: External Account Binding keys.

use certwright_proto::b64;
use certwright_server::clock::{rfc3339, Clock};
use clap::Subcommand;
use serde_json::json;

use super::ConfigArgs;

#[derive(Subcommand)]
pub(crate) enum EabAction {
    /// Create a key: prints the key id and the HMAC key (shown only once).
    Create {
        /// A label kept on accounts bound with this key (for audit and policy).
        #[arg(long)]
        label: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List keys and what they are bound to.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: it can no longer bind a new account.
    Revoke {
        /// The key id.
        kid: String,
    },
}

/// `len` random bytes in base64url, never starting with `-`: the value is pasted into
/// client command lines (`certbot --eab-kid …`), where a leading dash reads as an option.
fn random_b64(len: usize) -> String {
    let mut b = vec![0u8; len];
    loop {
        aws_lc_rs::rand::fill(&mut b).expect("the system RNG works");
        let text = b64::encode(&b);
        if !text.starts_with('-') {
            return text;
        }
    }
}

/// `certwright-ca eab …`.
pub(crate) async fn run(action: EabAction, ca: ConfigArgs) -> anyhow::Result<()> {
    let server = ca.open().await?;
    let store = &server.store;
    let now = Clock::system().now();
    match action {
        EabAction::Create { label, json } => {
            let kid = random_b64(12);
            let key = random_b64(32);
            store
                .create_eab_key(&kid, &label, &b64::decode(&key)?, now)
                .await?;
            if json {
                println!("{}", json!({"kid": kid, "hmac_key": key, "label": label}));
            } else {
                println!("kid:      {kid}");
                println!("hmac_key: {key}");
                println!("label:    {label}");
                println!();
                println!("The HMAC key is shown only now. Give both to the account holder:");
                println!("  certbot … --eab-kid {kid} --eab-hmac-key {key}");
                println!("  lego --eab --kid {kid} --hmac {key} …");
            }
        }
        EabAction::List { json } => {
            let rows: Vec<serde_json::Value> = store
                .eab_keys()
                .await?
                .iter()
                .map(|k| {
                    let state = match (k.revoked_at, k.account_id) {
                        (Some(_), _) => "revoked".to_owned(),
                        (None, Some(a)) => format!("bound to account {a}"),
                        (None, None) => "unused".to_owned(),
                    };
                    json!({"kid": k.kid, "label": k.label, "created": rfc3339(k.created_at), "state": state})
                })
                .collect();
            if json {
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!("{:<18} {:<24} {:<22} STATE", "KID", "LABEL", "CREATED");
                for r in rows {
                    let col = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
                    println!(
                        "{:<18} {:<24} {:<22} {}",
                        col("kid"),
                        col("label"),
                        col("created"),
                        col("state")
                    );
                }
            }
        }
        EabAction::Revoke { kid } => {
            if !store.revoke_eab_key(&kid, now).await? {
                anyhow::bail!("no unrevoked EAB key with id {kid:?}");
            }
            println!("revoked EAB key {kid}");
        }
    }
    Ok(())
}
