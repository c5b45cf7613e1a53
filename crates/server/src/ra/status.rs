//! The status state machines of RFC 8555 §7.1.6, in one place.
//!
//! The store keeps the statuses that events set (a validation outcome, a finalize, a
//! deactivation). What time and the authorizations imply — expiry, an order becoming
//! `ready` or `invalid` — is derived here, on every read, so it can never be stale.

use certwright_proto::types::{AuthorizationStatus, OrderStatus};

/// An authorization's status at `now`: `pending` and `valid` ones expire.
pub fn authorization_status(
    stored: AuthorizationStatus,
    expires: i64,
    now: i64,
) -> AuthorizationStatus {
    match stored {
        AuthorizationStatus::Pending | AuthorizationStatus::Valid if now >= expires => {
            AuthorizationStatus::Expired
        }
        other => other,
    }
}

/// An order's status at `now`, from its stored status, its expiry and its authorizations
/// (`(stored status, expires)` each).
///
/// - stored `pending`: `invalid` once the order expired or any authorization is
///   invalid/deactivated/expired/revoked; `ready` once all are valid; else `pending`.
/// - stored `processing`, `valid`, `invalid`: as stored (finalize and its outcome).
pub fn order_status(
    stored: OrderStatus,
    expires: i64,
    authorizations: &[(AuthorizationStatus, i64)],
    now: i64,
) -> OrderStatus {
    if stored != OrderStatus::Pending {
        return stored;
    }
    if now >= expires {
        return OrderStatus::Invalid;
    }
    let mut all_valid = true;
    for (status, authz_expires) in authorizations {
        match authorization_status(*status, *authz_expires, now) {
            AuthorizationStatus::Valid => {}
            AuthorizationStatus::Pending => all_valid = false,
            _ => return OrderStatus::Invalid,
        }
    }
    if all_valid && !authorizations.is_empty() {
        OrderStatus::Ready
    } else {
        OrderStatus::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AuthorizationStatus as A;
    use OrderStatus as O;

    #[test]
    fn authorizations_expire() {
        assert_eq!(authorization_status(A::Pending, 10, 9), A::Pending);
        assert_eq!(authorization_status(A::Pending, 10, 10), A::Expired);
        assert_eq!(authorization_status(A::Valid, 10, 11), A::Expired);
        assert_eq!(authorization_status(A::Invalid, 10, 11), A::Invalid);
        assert_eq!(authorization_status(A::Deactivated, 10, 11), A::Deactivated);
    }

    #[test]
    fn order_follows_its_authorizations() {
        type Case<'a> = (&'a [(A, i64)], i64, O);
        let cases: &[Case] = &[
            (&[(A::Pending, 100), (A::Valid, 100)], 5, O::Pending),
            (&[(A::Valid, 100), (A::Valid, 100)], 5, O::Ready),
            (&[(A::Valid, 100), (A::Invalid, 100)], 5, O::Invalid),
            (&[(A::Valid, 100), (A::Deactivated, 100)], 5, O::Invalid),
            (&[(A::Valid, 100), (A::Valid, 4)], 5, O::Invalid),
            (&[(A::Valid, 100)], 50, O::Invalid),
            (&[], 5, O::Pending),
        ];
        for (authzs, now, want) in cases {
            assert_eq!(
                order_status(O::Pending, 50, authzs, *now),
                *want,
                "{authzs:?} at {now}"
            );
        }
        for stored in [O::Processing, O::Valid, O::Invalid] {
            assert_eq!(order_status(stored, 50, &[(A::Invalid, 1)], 99), stored);
        }
    }
}
