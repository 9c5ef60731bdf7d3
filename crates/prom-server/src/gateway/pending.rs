//! The request ids pending in each MCP session. A request that reuses an id still pending in its
//! session is refused (`-32600`): the upstream could not tell the two apart, and a paid call's
//! response must never be mistaken for another request's.

use std::collections::HashSet;
use std::sync::Arc;

use dashmap::DashMap;

use super::ids::RpcId;

/// Sessions with pending ids, each keyed by (service, session id).
#[derive(Debug, Default, Clone)]
pub struct PendingIds {
    sessions: Arc<DashMap<(String, String), HashSet<RpcId>>>,
}

/// An id claimed in a session; dropping it frees the id.
#[derive(Debug)]
pub struct PendingId {
    sessions: Arc<DashMap<(String, String), HashSet<RpcId>>>,
    session: (String, String),
    id: RpcId,
}

impl PendingIds {
    /// Claims `id` in `session` of `service`; `None` when it is pending there already.
    pub fn claim(&self, service: &str, session: &str, id: RpcId) -> Option<PendingId> {
        let key = (service.to_owned(), session.to_owned());
        let mut ids = self.sessions.entry(key.clone()).or_default();
        if !ids.insert(id.clone()) {
            return None;
        }
        Some(PendingId { sessions: self.sessions.clone(), session: key, id })
    }

    /// Sessions with at least one pending id.
    #[cfg(test)]
    fn sessions(&self) -> usize {
        self.sessions.len()
    }
}

impl Drop for PendingId {
    fn drop(&mut self) {
        self.sessions.remove_if_mut(&self.session, |_, ids| {
            ids.remove(&self.id);
            ids.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_id_is_pending_until_its_claim_is_dropped() {
        let pending = PendingIds::default();
        let one = |v| RpcId::of(&v).unwrap();
        let first = pending.claim("svc", "s1", one(json!(1))).unwrap();
        assert!(pending.claim("svc", "s1", one(json!(1.0))).is_none(), "1.0 is the same id as 1");
        assert!(pending.claim("svc", "s2", one(json!(1))).is_some(), "other sessions have their own ids");
        let other = pending.claim("svc", "s1", one(json!("1"))).unwrap();
        drop(first);
        assert!(pending.claim("svc", "s1", one(json!(1))).is_some());
        drop(other);
        assert_eq!(pending.sessions(), 0, "empty sessions are forgotten");
    }
}
