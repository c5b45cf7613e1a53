//! ACME JSON objects (RFC 8555 §7.1) built from the RA's views.

use certwright_proto::types::{Account, Authorization, Challenge, Order};

use super::urls::Urls;
use crate::clock::rfc3339;
use crate::ra::{AuthzView, OrderView};
use crate::store::{AccountRecord, AuthzId, ChallengeRecord};

/// The account object.
pub fn account(urls: &Urls, a: &AccountRecord) -> Account {
    Account {
        status: a.status,
        contact: a.contact.clone(),
        terms_of_service_agreed: Some(a.tos_agreed),
        orders: Some(urls.account_orders(a.id)),
        key: Some(a.jwk.to_value()),
        created_at: Some(rfc3339(a.created_at)),
    }
}

/// The order object.
pub fn order(urls: &Urls, view: &OrderView) -> Order {
    let r = &view.record;
    Order {
        status: view.status,
        expires: Some(rfc3339(r.expires)),
        identifiers: r.identifiers.clone(),
        not_before: r.not_before.map(rfc3339),
        not_after: r.not_after.map(rfc3339),
        error: r.error.clone(),
        authorizations: r
            .authorization_ids
            .iter()
            .map(|id| urls.authorization(*id))
            .collect(),
        finalize: urls.finalize(r.id),
        certificate: r.certificate_serial.as_deref().map(|s| urls.certificate(s)),
        profile: r.profile.clone(),
        replaces: r.replaces.clone(),
    }
}

/// The challenge object.
pub fn challenge(urls: &Urls, authz: AuthzId, c: &ChallengeRecord) -> Challenge {
    Challenge {
        kind: c.kind.clone(),
        url: urls.challenge(authz, c.id),
        status: c.status,
        token: Some(c.token.clone()),
        validated: c.validated.map(rfc3339),
        error: c.error.clone(),
        validation_record: c.record.clone().filter(|r| !r.is_null()),
    }
}

/// The authorization object.
pub fn authorization(urls: &Urls, view: &AuthzView) -> Authorization {
    let r = &view.record;
    Authorization {
        identifier: r.identifier.clone(),
        status: view.status,
        expires: Some(rfc3339(r.expires)),
        challenges: r
            .challenges
            .iter()
            .map(|c| challenge(urls, r.id, c))
            .collect(),
        wildcard: r.wildcard.then_some(true),
    }
}
