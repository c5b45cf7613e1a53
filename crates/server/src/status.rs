//! The status state machines of RFC 8555 §7.1.6, in one place.
//!
//! The store keeps the statuses that events set (a validation outcome, a finalize, a
//! deactivation): which status each event may start from and which it sets is the table
//! in [`transitions`], which the store's SQL is built from. What time and the
//! authorizations imply — expiry, an order becoming `ready` or `invalid` — is derived
//! here, on every read, so it can never be stale.

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

/// The status changes the store makes, as one table: the status each resource is created
/// with, and for each event the statuses it may start from and the one it sets.
///
/// The store splices these into its SQL (`store::statuses`): a guarded `UPDATE` changes a
/// row only while its status is in `from`, so two events racing for one resource cannot
/// both win. This module depends on nothing but the proto status enums, so the store can
/// use it without depending on the rest of the RA.
pub mod transitions {
    use certwright_proto::types::{
        AccountStatus as Acc, AuthorizationStatus as Authz, ChallengeStatus as Chall,
        OrderStatus as Order,
    };

    /// A status enum of a stored resource, by its wire name.
    pub trait StoredStatus: Copy + Eq + std::fmt::Debug + 'static {
        /// The lower-case wire name, as stored.
        fn name(self) -> &'static str;
        /// The status with this wire name.
        fn parse_name(name: &str) -> Option<Self>;
    }

    macro_rules! stored_status {
        ($($t:ty),*) => {$(
            impl StoredStatus for $t {
                fn name(self) -> &'static str {
                    self.as_str()
                }
                fn parse_name(name: &str) -> Option<Self> {
                    Self::parse(name)
                }
            }
        )*};
    }
    stored_status!(Acc, Order, Authz, Chall);

    /// Which statuses a transition may start from.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Guard<S: 'static> {
        /// Any status: the change is not guarded.
        Any,
        /// Only these.
        In(&'static [S]),
    }

    /// A status change: from the statuses of `from` to `to`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Transition<S: 'static> {
        /// The statuses the change starts from.
        pub from: Guard<S>,
        /// The status it leads to.
        pub to: S,
    }

    impl<S: StoredStatus> Transition<S> {
        /// A change to `to` from the statuses of `from` only.
        pub const fn only(from: &'static [S], to: S) -> Self {
            Self {
                from: Guard::In(from),
                to,
            }
        }

        /// The statuses this transition may start from (`None`: any).
        pub fn from_statuses(&self) -> Option<&'static [S]> {
            match self.from {
                Guard::Any => None,
                Guard::In(statuses) => Some(statuses),
            }
        }
    }

    /// A new account (§7.3).
    pub const ACCOUNT_CREATED: Acc = Acc::Valid;
    /// A new order (§7.4).
    pub const ORDER_CREATED: Order = Order::Pending;
    /// A new authorization of an order.
    pub const AUTHORIZATION_CREATED: Authz = Authz::Pending;
    /// A new challenge of an authorization.
    pub const CHALLENGE_CREATED: Chall = Chall::Pending;

    /// The account deactivates itself (§7.3.6). Not guarded: a deactivated account's
    /// requests are refused before they get here.
    pub const ACCOUNT_DEACTIVATE: Transition<Acc> = Transition {
        from: Guard::Any,
        to: Acc::Deactivated,
    };

    /// An authorization is deactivated (§7.5.2), alone or with its account (§7.3.6).
    pub const AUTHORIZATION_DEACTIVATE: Transition<Authz> =
        Transition::only(&[Authz::Pending, Authz::Valid], Authz::Deactivated);

    /// A challenge's validation starts (§7.5.1). Its authorization must still be able to
    /// take the outcome: in `AUTHORIZATION_VALIDATE.from`.
    pub const CHALLENGE_START: Transition<Chall> =
        Transition::only(&[Chall::Pending], Chall::Processing);
    /// The validation succeeded.
    pub const CHALLENGE_SUCCEED: Transition<Chall> =
        Transition::only(&[Chall::Processing], Chall::Valid);
    /// The validation failed.
    pub const CHALLENGE_FAIL: Transition<Chall> =
        Transition::only(&[Chall::Processing], Chall::Invalid);

    /// A challenge of the authorization succeeded.
    pub const AUTHORIZATION_VALIDATE: Transition<Authz> =
        Transition::only(&[Authz::Pending], Authz::Valid);
    /// A challenge of the authorization failed.
    pub const AUTHORIZATION_INVALIDATE: Transition<Authz> =
        Transition::only(&[Authz::Pending], Authz::Invalid);

    /// Finalize (§7.4) starts issuing. The order is stored `pending`: `ready` is derived
    /// from its authorizations, which the RA checks first.
    pub const ORDER_BEGIN_FINALIZE: Transition<Order> =
        Transition::only(&[Order::Pending], Order::Processing);
    /// The certificate was issued and stored.
    pub const ORDER_COMPLETE: Transition<Order> =
        Transition::only(&[Order::Processing], Order::Valid);
    /// Issuance failed. Only an order still being issued: a run whose lease ran out must
    /// not turn an order another run completed meanwhile invalid.
    pub const ORDER_FAIL: Transition<Order> =
        Transition::only(&[Order::Processing], Order::Invalid);
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

    /// The table is one state machine: each event starts where the one before it left
    /// off, and the work held under a lease is the status its start set.
    #[test]
    fn the_transition_table_chains() {
        use transitions::*;
        fn from<S: StoredStatus>(t: &Transition<S>) -> &'static [S] {
            t.from_statuses().unwrap()
        }
        assert_eq!(from(&CHALLENGE_START), [CHALLENGE_CREATED]);
        assert_eq!(from(&CHALLENGE_SUCCEED), [CHALLENGE_START.to]);
        assert_eq!(from(&CHALLENGE_FAIL), [CHALLENGE_START.to]);
        assert_eq!(from(&AUTHORIZATION_VALIDATE), [AUTHORIZATION_CREATED]);
        // One statement records either outcome, under one guard.
        assert_eq!(AUTHORIZATION_VALIDATE.from, AUTHORIZATION_INVALIDATE.from);
        assert_eq!(
            from(&AUTHORIZATION_DEACTIVATE),
            [AUTHORIZATION_CREATED, AUTHORIZATION_VALIDATE.to]
        );
        assert_eq!(from(&ORDER_BEGIN_FINALIZE), [ORDER_CREATED]);
        assert_eq!(from(&ORDER_COMPLETE), [ORDER_BEGIN_FINALIZE.to]);
        assert_eq!(ORDER_COMPLETE.from, ORDER_FAIL.from);
        assert_eq!(ACCOUNT_DEACTIVATE.from_statuses(), None);
        assert_eq!(ORDER_CREATED.name(), "pending");
        assert_eq!(O::parse_name("processing"), Some(O::Processing));
    }
}
