//! The ack table: the requests waiting for their ack, by ack id (B21, B24, B27).
//!
//! The table is plain data inside the session (`state/`); what a caller waits on is in
//! `waiter.rs`, and the handle with the retry loop in `acks.rs`.

use crate::wire::WireFrame;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A request the service acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckOutcome {
    /// The request's ack id; `0` for a fire-and-forget request, which carries none.
    pub ack_id: u64,
    /// `true` when the service answered `Duplicate`: an earlier try with this ack id was
    /// executed, this one was not (B25).
    pub duplicate: bool,
}

/// What a request does, for the group bookkeeping of B23.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestKind {
    Join(String),
    Leave(String),
    Other,
}

/// One request waiting for its ack.
#[derive(Debug)]
pub(crate) struct Pending<W> {
    /// The encoded frame, kept for a resend after recovery (B21).
    pub frame: WireFrame,
    pub kind: RequestKind,
    /// Written to the current connection session.
    pub sent: bool,
    /// `None` for the client's own requests (automatic rejoin).
    pub waiter: Option<W>,
}

/// Hashes ack ids, which the caller picks (or a counter does): no attacker to resist, so a
/// multiply instead of SipHash.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

/// A map keyed by ack ids or invocation ids, hashed with [`IdHasher`].
pub(crate) type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: consecutive ids spread over both the low bits (bucket) and the
        // high bits (hashbrown's tag).
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The ack table: ack id → pending request. A hash map, so that registering and resolving a
/// request costs no tree walk; the rare whole-table operations (resend after recovery, session
/// loss, stop) sort by ack id so that resends keep the original order.
#[derive(Debug)]
pub(crate) struct AckTable<W> {
    map: IdMap<Pending<W>>,
}

impl<W> Default for AckTable<W> {
    fn default() -> Self {
        AckTable {
            map: HashMap::default(),
        }
    }
}

impl<W> AckTable<W> {
    pub(crate) fn contains(&self, ack_id: u64) -> bool {
        self.map.contains_key(&ack_id)
    }

    pub(crate) fn insert(&mut self, ack_id: u64, pending: Pending<W>) {
        self.map.insert(ack_id, pending);
    }

    /// Inserts unless the ack id is in use; `false` (and nothing changed) if it is.
    pub(crate) fn insert_new(&mut self, ack_id: u64, pending: Pending<W>) -> bool {
        match self.map.entry(ack_id) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(pending);
                true
            }
        }
    }

    pub(crate) fn remove(&mut self, ack_id: u64) -> Option<Pending<W>> {
        self.map.remove(&ack_id)
    }

    pub(crate) fn get_mut(&mut self, ack_id: u64) -> Option<&mut Pending<W>> {
        self.map.get_mut(&ack_id)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Frames already written to the session, in ack id order (for a resend after recovery).
    pub(crate) fn sent_frames(&self) -> impl Iterator<Item = &WireFrame> {
        let mut sent: Vec<(u64, &WireFrame)> = self
            .map
            .iter()
            .filter(|(_, p)| p.sent)
            .map(|(id, p)| (*id, &p.frame))
            .collect();
        sent.sort_unstable_by_key(|(id, _)| *id);
        sent.into_iter().map(|(_, f)| f)
    }

    /// Removes every request written to the lost session; returns them in ack id order.
    pub(crate) fn take_sent(&mut self) -> Vec<(u64, Pending<W>)> {
        let mut ids: Vec<u64> = self
            .map
            .iter()
            .filter(|(_, p)| p.sent)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(|id| self.map.remove(&id).map(|p| (id, p)))
            .collect()
    }

    /// Removes every request; returns them in ack id order.
    pub(crate) fn take_all(&mut self) -> Vec<(u64, Pending<W>)> {
        let mut all: Vec<(u64, Pending<W>)> = self.map.drain().collect();
        all.sort_unstable_by_key(|(id, _)| *id);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> WireFrame {
        WireFrame::Text(s.to_owned().into())
    }

    fn pending(sent: bool) -> Pending<u8> {
        Pending {
            frame: text("f"),
            kind: RequestKind::Other,
            sent,
            waiter: Some(0),
        }
    }

    #[test]
    fn session_loss_takes_only_sent_requests() {
        let mut t = AckTable::default();
        t.insert(3, pending(true));
        t.insert(1, pending(false));
        t.insert(2, pending(true));
        let lost: Vec<u64> = t.take_sent().into_iter().map(|(id, _)| id).collect();
        assert_eq!(lost, [2, 3]);
        assert!(t.contains(1));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn resend_keeps_ack_id_order() {
        let mut t = AckTable::default();
        for id in [5, 1, 3] {
            let mut p = pending(true);
            p.frame = text(&id.to_string());
            t.insert(id, p);
        }
        let order: Vec<&str> = t.sent_frames().filter_map(WireFrame::as_text).collect();
        assert_eq!(order, ["1", "3", "5"]);
    }

    #[test]
    fn ack_ids_in_use_are_refused_and_sent_frames_come_in_id_order() {
        let mut t = AckTable::default();
        for id in (1..=100u64).rev() {
            assert!(t.insert_new(id, pending(id % 3 != 0)));
        }
        assert!(!t.insert_new(50, pending(false)));
        let frames = t.sent_frames().count();
        assert_eq!(frames, 67);
        let all: Vec<u64> = t.take_all().into_iter().map(|(id, _)| id).collect();
        assert_eq!(all, (1..=100).collect::<Vec<_>>());
    }
}
