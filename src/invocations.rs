//! The invocation table: invocations waiting for their `invokeResponse`, by invocation id
//! (B38–B40), and [`InvokeResponse`], what a successful one returns.
//!
//! Plain data inside the session (`state/`), like the ack table; the handle a caller waits
//! on is in `invoke.rs`.

use crate::ack_table::IdMap;
use crate::error::Result;
use crate::protocol::{Data, DataType, Metadata};
use crate::wire::WireFrame;

/// What the I/O thread sends the waiter of an invocation.
pub(crate) type InvokeResult = Result<InvokeResponse>;

/// The event handler's answer to a successful invocation (B38).
///
/// ```
/// # use webpubsub_client::{InvokeResponse, Data, DataType};
/// # fn show(r: InvokeResponse) {
/// match r.data_type() {
///     Some(DataType::Json) => println!("json: {:?}", r.data),
///     Some(other) => println!("{other}: {:?}", r.data),
///     None => println!("no data"),
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct InvokeResponse {
    /// The invocation's id: the one [`InvokeHandle::invocation_id`](crate::InvokeHandle::invocation_id)
    /// reported (sent as its decimal string).
    pub invocation_id: u64,
    /// The handler's response payload, with its data type; `None` when it answered without
    /// data.
    pub data: Option<Data>,
    /// The metadata the event handler answered with (empty: none; B41).
    pub metadata: Metadata,
}

impl InvokeResponse {
    /// The data type of the response's payload, `None` without data.
    pub fn data_type(&self) -> Option<DataType> {
        self.data.as_ref().map(Data::data_type)
    }
}

/// One invocation waiting for its response.
#[derive(Debug)]
pub(crate) struct PendingInvocation<W> {
    pub frame: WireFrame,
    /// Written to the current connection: a drop now leaves its outcome unknown (B40).
    pub sent: bool,
    pub waiter: W,
}

/// Invocation id → pending invocation.
#[derive(Debug)]
pub(crate) struct InvocationTable<W> {
    map: IdMap<PendingInvocation<W>>,
}

impl<W> Default for InvocationTable<W> {
    fn default() -> Self {
        InvocationTable {
            map: IdMap::default(),
        }
    }
}

impl<W> InvocationTable<W> {
    pub(crate) fn insert(&mut self, id: u64, frame: WireFrame, waiter: W) {
        self.map.insert(
            id,
            PendingInvocation {
                frame,
                sent: false,
                waiter,
            },
        );
    }

    pub(crate) fn remove(&mut self, id: u64) -> Option<PendingInvocation<W>> {
        self.map.remove(&id)
    }

    /// The frame of an invocation not yet written, marking it written.
    pub(crate) fn mark_sent(&mut self, id: u64) -> Option<&WireFrame> {
        match self.map.get_mut(&id) {
            Some(p) if !p.sent => {
                p.sent = true;
                Some(&p.frame)
            }
            _ => None,
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Removes every invocation written to the connection that ended; in id order.
    pub(crate) fn take_sent(&mut self) -> Vec<(u64, W)> {
        let mut ids: Vec<u64> = self
            .map
            .iter()
            .filter(|(_, p)| p.sent)
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return Vec::new();
        }
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(|id| self.map.remove(&id).map(|p| (id, p.waiter)))
            .collect()
    }

    /// Removes every invocation; in id order.
    pub(crate) fn take_all(&mut self) -> Vec<(u64, W)> {
        let mut all: Vec<(u64, W)> = self.map.drain().map(|(id, p)| (id, p.waiter)).collect();
        all.sort_unstable_by_key(|(id, _)| *id);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> WireFrame {
        WireFrame::Text("f".to_owned().into())
    }

    #[test]
    fn only_written_invocations_are_lost_with_a_connection() {
        // B40
        let mut t = InvocationTable::default();
        for id in [3, 1, 2] {
            t.insert(id, frame(), id);
        }
        assert!(t.mark_sent(3).is_some());
        assert!(t.mark_sent(3).is_none(), "written once");
        assert!(t.mark_sent(1).is_some());
        assert!(t.mark_sent(9).is_none());
        assert_eq!(t.take_sent(), [(1, 1), (3, 3)]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.take_all(), [(2, 2)]);
    }

    #[test]
    fn a_response_without_data_has_no_data_type() {
        let r = InvokeResponse {
            invocation_id: 1,
            data: None,
            metadata: Metadata::new(),
        };
        assert_eq!(r.data_type(), None);
        let r = InvokeResponse {
            data: Some(Data::from("x")),
            ..r
        };
        assert_eq!(r.data_type(), Some(DataType::Text));
    }
}
