//! A small pool of fresh nonces: every answer's `Replay-Nonce` is kept for the next request.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Nonces handed out by the CA and not used yet (bounded; oldest dropped first).
#[derive(Debug, Default)]
pub struct NoncePool {
    nonces: Mutex<VecDeque<String>>,
}

/// How many unused nonces are kept.
const CAPACITY: usize = 16;

impl NoncePool {
    /// Takes the newest nonce, if any.
    pub fn take(&self) -> Option<String> {
        self.nonces.lock().expect("nonce pool").pop_back()
    }

    /// Keeps a nonce from a `Replay-Nonce` header (ignored when not base64url).
    pub fn put(&self, nonce: &str) {
        if nonce.is_empty()
            || !nonce
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return;
        }
        let mut q = self.nonces.lock().expect("nonce pool");
        if q.len() == CAPACITY {
            q.pop_front();
        }
        q.push_back(nonce.to_owned());
    }

    /// Number of nonces held.
    pub fn len(&self) -> usize {
        self.nonces.lock().expect("nonce pool").len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_first_bounded_and_checked() {
        let p = NoncePool::default();
        assert!(p.take().is_none());
        for i in 0..20 {
            p.put(&format!("n{i}"));
        }
        p.put("bad nonce!");
        assert_eq!(p.len(), CAPACITY);
        assert_eq!(p.take().as_deref(), Some("n19"));
    }
}
