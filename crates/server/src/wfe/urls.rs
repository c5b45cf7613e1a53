//! The URLs of ACME resources, built from the external base URL, and parsed back.

use crate::store::{AccountId, AuthzId, ChallengeId, OrderId};

/// Where the first issuer's CRL is served, under the base URL (and named in its
/// certificates under the PKI base URL); issuer NAME's is `/crl/NAME.crl`.
pub const CRL_PATH: &str = "/crl/intermediate.crl";

/// Resource URL builder.
#[derive(Debug, Clone)]
pub struct Urls {
    /// External base URL, no trailing slash.
    pub base: String,
}

macro_rules! url_fns {
    ($($name:ident($id:ty) => $prefix:literal),* $(,)?) => {
        impl Urls {$(
            #[doc = concat!("`<base>", $prefix, "<id>`")]
            pub fn $name(&self, id: $id) -> String {
                format!("{}{}{}", self.base, $prefix, id)
            }
        )*}
    };
}

url_fns! {
    account(AccountId) => "/acme/acct/",
    order(OrderId) => "/acme/order/",
    authorization(AuthzId) => "/acme/authz/",
}

impl Urls {
    /// A fixed endpoint such as `/directory` or `/acme/new-nonce`.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An account's orders list.
    pub fn account_orders(&self, id: AccountId) -> String {
        format!("{}/orders", self.account(id))
    }

    /// An order's finalize URL.
    pub fn finalize(&self, id: OrderId) -> String {
        format!("{}/finalize", self.order(id))
    }

    /// A challenge's URL (under its authorization).
    pub fn challenge(&self, authz: AuthzId, id: ChallengeId) -> String {
        format!("{}/acme/chall/{authz}/{id}", self.base)
    }

    /// A certificate's URL.
    pub fn certificate(&self, serial: &str) -> String {
        format!("{}/acme/cert/{serial}", self.base)
    }

    /// The account id inside an account URL (a JWS `kid`).
    pub fn parse_account(&self, kid: &str) -> Option<AccountId> {
        let id = kid.strip_prefix(&self.base)?.strip_prefix("/acme/acct/")?;
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let id = AccountId(id.parse().ok()?);
        // Only the account URL exactly as the CA gave it (`…/acct/06` is not account 6).
        (self.account(id) == kid).then_some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_urls_round_trip() {
        let u = Urls {
            base: "https://ca.example:14000".into(),
        };
        assert_eq!(
            u.parse_account(&u.account(AccountId(42))),
            Some(AccountId(42))
        );
        assert_eq!(u.parse_account("https://other/acme/acct/42"), None);
        assert_eq!(
            u.parse_account("https://ca.example:14000/acme/acct/4x"),
            None
        );
        assert_eq!(u.parse_account("https://ca.example:14000/acme/acct/"), None);
        // Only the exact URL: no leading zeros, no other spelling of the number.
        for other in [
            "06",
            "006",
            "042",
            "+42",
            "42/",
            "42?x",
            "99999999999999999999",
        ] {
            assert_eq!(
                u.parse_account(&format!("https://ca.example:14000/acme/acct/{other}")),
                None,
                "{other}"
            );
        }
        assert_eq!(
            u.parse_account("https://ca.example:14000/acme/acct/6"),
            Some(AccountId(6))
        );
        assert_eq!(
            u.challenge(AuthzId(3), ChallengeId(9)),
            "https://ca.example:14000/acme/chall/3/9"
        );
    }
}
