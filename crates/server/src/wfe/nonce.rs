//! Replay nonces (RFC 8555 §6.5): random, single use, expiring; kept in memory.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use certwright_proto::b64;

use crate::clock::Clock;

/// How long a nonce stays redeemable.
pub const NONCE_LIFETIME_SECS: i64 = 3600;
/// Most nonces outstanding; the oldest are forgotten beyond this (they then fail as
/// `badNonce` and the client retries with a fresh one).
pub const MAX_OUTSTANDING: usize = 200_000;

/// Issues and redeems nonces.
pub struct NonceStore {
    clock: Clock,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    outstanding: HashMap<String, i64>,
    order: VecDeque<String>,
}

impl NonceStore {
    /// An empty store.
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            state: Mutex::new(State::default()),
        }
    }

    /// A fresh nonce (128 random bits, base64url).
    pub fn issue(&self) -> String {
        let mut bytes = [0u8; 16];
        aws_lc_rs::rand::fill(&mut bytes).expect("the system RNG works");
        let nonce = b64::encode(bytes);
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
        let store = NonceStore::new(clock.clone());
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
