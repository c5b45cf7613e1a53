//! Replay nonces (RFC 8555 §6.5): random, single use, expiring. Kept in memory for a
//! single instance, or in the database when several instances share it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use certwright_proto::b64;

use crate::clock::Clock;
use crate::store::{AccountId, Prefetch, Redeemed, StoreReader, NONCE_BATCH};

/// How long a nonce stays redeemable.
pub const NONCE_LIFETIME_SECS: i64 = 3600;
/// Most nonces outstanding; the oldest are forgotten beyond this (they then fail as
/// `badNonce` and the client retries with a fresh one).
pub const MAX_OUTSTANDING: usize = 200_000;

/// Issues and redeems nonces.
pub enum NonceStore {
    /// In this process only (one instance).
    Memory(MemoryNonces),
    /// In the database: issued by one instance, redeemable once by any.
    Shared {
        /// The database holding the nonces (the front end's read-only view, which keeps
        /// the shared nonces).
        store: StoreReader,
        /// The time source for nonce expiry.
        clock: Clock,
        /// Nonces already recorded in the database and not handed out yet, with the time
        /// they were recorded: they are recorded [`NONCE_BATCH`] at a time, one statement
        /// instead of one per response.
        ready: Mutex<Vec<(String, i64)>>,
    },
}

/// How long a recorded nonce may wait in `ready` before it is dropped unused (it then
/// expires in the database): a nonce handed out keeps nearly its whole lifetime.
const READY_MAX_AGE_SECS: i64 = 60;

fn fresh_nonce() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system RNG works");
    b64::encode(bytes)
}

impl NonceStore {
    /// Nonces kept in memory.
    pub fn new(clock: Clock) -> Self {
        Self::Memory(MemoryNonces::new(clock))
    }

    /// Nonces kept in the store, shared by every instance on it.
    pub fn shared(store: StoreReader, clock: Clock) -> Self {
        Self::Shared {
            store,
            clock,
            ready: Mutex::new(Vec::new()),
        }
    }

    /// A fresh nonce (128 random bits, base64url).
    pub async fn issue(&self) -> String {
        match self {
            Self::Memory(m) => m.issue(),
            Self::Shared {
                store,
                clock,
                ready,
            } => {
                let now = clock.now();
                {
                    let mut ready = ready.lock().unwrap_or_else(|e| e.into_inner());
                    while let Some((nonce, recorded)) = ready.pop() {
                        if now - recorded <= READY_MAX_AGE_SECS {
                            return nonce;
                        }
                    }
                }
                // None ready: record a batch, hand out one and keep the rest.
                let mut batch: [String; NONCE_BATCH] = std::array::from_fn(|_| fresh_nonce());
                if let Err(e) = store.insert_nonces(&batch, now + NONCE_LIFETIME_SECS).await {
                    // The client gets badNonce for it later and retries; say why here.
                    tracing::error!(error = %e, "could not record nonces");
                    return std::mem::take(&mut batch[0]);
                }
                let [first, rest @ ..] = batch;
                ready
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(rest.into_iter().map(|n| (n, now)));
                first
            }
        }
    }

    /// Redeems `nonce`: Ok(true) exactly once for a nonce that was issued and has not
    /// expired; Err when the database cannot tell.
    pub async fn redeem(&self, nonce: &str) -> Result<bool, crate::store::StoreError> {
        match self {
            Self::Memory(m) => Ok(m.redeem(nonce)),
            Self::Shared { store, clock, .. } => store.redeem_nonce(nonce, clock.now()).await,
        }
    }

    /// With shared nonces: redeems `nonce` and reads account `id`, and on PostgreSQL the
    /// record `prefetch` names, in one statement (the first of a `kid`-signed request).
    /// `None` for nonces in memory, which cost no statement.
    pub async fn redeem_reading_account(
        &self,
        nonce: &str,
        id: AccountId,
        prefetch: Option<&Prefetch>,
    ) -> Result<Option<Redeemed>, crate::store::StoreError> {
        match self {
            Self::Memory(_) => Ok(None),
            Self::Shared { store, clock, .. } => store
                .account_redeeming_nonce(id, nonce, clock.now(), prefetch)
                .await
                .map(Some),
        }
    }

    /// Nonces outstanding in memory (0 for shared nonces).
    pub fn outstanding(&self) -> usize {
        match self {
            Self::Memory(m) => m.outstanding(),
            Self::Shared { .. } => 0,
        }
    }
}

/// The in-memory nonce set.
pub struct MemoryNonces {
    clock: Clock,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    outstanding: HashMap<String, i64>,
    order: VecDeque<String>,
}

impl MemoryNonces {
    /// An empty set.
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            state: Mutex::new(State::default()),
        }
    }

    /// A fresh nonce (128 random bits, base64url).
    pub fn issue(&self) -> String {
        let nonce = fresh_nonce();
        let expires = self.clock.now() + NONCE_LIFETIME_SECS;
        let mut state = self.state.lock().expect("nonce lock poisoned");
        while state.order.len() >= MAX_OUTSTANDING {
            if let Some(old) = state.order.pop_front() {
                state.outstanding.remove(&old);
            }
        }
        state.outstanding.insert(nonce.clone(), expires);
        state.order.push_back(nonce.clone());
        nonce
    }

    /// Redeems `nonce`: true exactly once for a nonce this store issued and that has not
    /// expired.
    pub fn redeem(&self, nonce: &str) -> bool {
        let now = self.clock.now();
        let mut state = self.state.lock().expect("nonce lock poisoned");
        let ok = matches!(state.outstanding.remove(nonce), Some(expires) if expires > now);
        // Drop expired entries at the front so memory follows the live set.
        while let Some(front) = state.order.front() {
            match state.outstanding.get(front) {
                Some(exp) if *exp > now => break,
                _ => {
                    let f = state.order.pop_front().expect("front exists");
                    state.outstanding.remove(&f);
                }
            }
        }
        ok
    }

    /// Nonces outstanding (for metrics).
    pub fn outstanding(&self) -> usize {
        self.state
            .lock()
            .expect("nonce lock poisoned")
            .outstanding
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_use_and_expiring() {
        let clock = Clock::system();
        let store = MemoryNonces::new(clock.clone());
        let a = store.issue();
        assert!(store.redeem(&a));
        assert!(!store.redeem(&a), "replay must fail");
        assert!(!store.redeem("never-issued"));
        let b = store.issue();
        clock.advance(NONCE_LIFETIME_SECS + 1);
        assert!(!store.redeem(&b), "expired nonce must fail");
        assert_eq!(store.outstanding(), 0);
    }
}
