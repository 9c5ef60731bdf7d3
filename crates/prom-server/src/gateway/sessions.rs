//! Upstream MCP sessions (protocol 2025-11-25) bound to the key that opened them. A session id is
//! a bearer capability at the upstream; binding it to the authenticated key means another key —
//! even of the same tenant — cannot ride it. Unknown and foreign sessions both answer 404, which
//! MCP clients treat as "start a new session".

use std::time::{Duration, Instant};

use dashmap::DashMap;
use prom_core::id::KeyId;

/// Sessions idle longer than this are forgotten.
const IDLE: Duration = Duration::from_secs(24 * 3600);
/// Most sessions tracked at once.
const MAX_SESSIONS: usize = 100_000;

#[derive(Debug)]
struct Binding {
    key_id: KeyId,
    last_seen: Instant,
}

#[derive(Debug, Default)]
pub struct SessionBindings {
    map: DashMap<(String, String), Binding>,
}

impl SessionBindings {
    /// Records that `key` opened `session` on `service`.
    pub fn bind(&self, service: &str, session: &str, key: &KeyId) {
        if self.map.len() >= MAX_SESSIONS {
            self.map.retain(|_, binding| binding.last_seen.elapsed() < IDLE);
        }
        self.map.insert(
            (service.to_owned(), session.to_owned()),
            Binding { key_id: key.clone(), last_seen: Instant::now() },
        );
    }

    /// Whether `key` may use `session` on `service`.
    pub fn allows(&self, service: &str, session: &str, key: &KeyId) -> bool {
        let id = (service.to_owned(), session.to_owned());
        match self.map.get_mut(&id) {
            Some(mut binding) if binding.key_id == *key && binding.last_seen.elapsed() < IDLE => {
                binding.last_seen = Instant::now();
                true
            }
            _ => false,
        }
    }

    pub fn unbind(&self, service: &str, session: &str) {
        self.map.remove(&(service.to_owned(), session.to_owned()));
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_belong_to_their_key() {
        let sessions = SessionBindings::default();
        let (a, b) = (KeyId::new(), KeyId::new());
        sessions.bind("demo", "s1", &a);
        assert!(sessions.allows("demo", "s1", &a));
        assert!(!sessions.allows("demo", "s1", &b), "another key cannot ride the session");
        assert!(!sessions.allows("other", "s1", &a), "sessions are per service");
        assert!(!sessions.allows("demo", "s2", &a));
        sessions.unbind("demo", "s1");
        assert!(!sessions.allows("demo", "s1", &a));
    }
}
