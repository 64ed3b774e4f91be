//! The dispatcher thread (`webpubsub-dispatch`): runs the clients' callbacks, each client's
//! in order (B12), the clients of a shared runtime fairly (B44).
//!
//! Each client has its own queue ([`ClientQueue`]), filled by the I/O thread. A queue with
//! events waits in a ring; the dispatcher serves the ring round-robin. While no other queue
//! waits it takes the whole queue at once (one lock per burst, the default runtime's case);
//! as soon as another client's queue waits, it puts the rest back and moves on after the
//! event in hand. So another client's event waits for at most one callback of each client
//! ahead of it, not for a slow client's whole backlog — which its own
//! [`max_event_backlog`](crate::WebPubSubClientBuilder::max_event_backlog) bounds: the I/O
//! thread stops reading that client's socket alone.

use crate::events::{Event, Registry};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Queues above this many slots are let go once empty (B45).
const KEEP_QUEUE: usize = 64;
/// The dispatcher's wait for the next event before it sleeps: spins of 2^step rounds up to
/// this step, then yields up to `YIELD_LIMIT` (crossbeam's `Backoff` takes the same steps).
const SPIN_LIMIT: u32 = 6;
const YIELD_LIMIT: u32 = 10;

/// What the dispatcher and the I/O thread share.
pub(crate) struct DispatchShared {
    ring: Mutex<Ring>,
    cv: Condvar,
    /// Queues in the ring, read without the lock between two events of a burst.
    waiting: AtomicUsize,
}

#[derive(Default)]
struct Ring {
    ready: VecDeque<Arc<ClientQueue>>,
    sleeping: bool,
    /// The I/O loop ended: nothing more will be queued.
    loop_gone: bool,
}

/// One item of a client's queue.
pub(crate) enum Item {
    Event(Event),
    /// The run's last item: its events are all delivered.
    End(Arc<Latch>),
}

/// One client's events, in order.
pub(crate) struct ClientQueue {
    dispatch: Arc<DispatchShared>,
    registry: Arc<Registry>,
    items: Mutex<Items>,
    /// Events queued or being delivered: the client's backlog.
    pending: AtomicUsize,
}

#[derive(Default)]
struct Items {
    queue: VecDeque<Item>,
    /// In the ring, or in the dispatcher's hands.
    scheduled: bool,
}

impl ClientQueue {
    /// A queue of `registry`'s events on `dispatch`.
    pub(crate) fn new(dispatch: Arc<DispatchShared>, registry: Arc<Registry>) -> Arc<ClientQueue> {
        Arc::new(ClientQueue {
            dispatch,
            registry,
            items: Mutex::new(Items::default()),
            pending: AtomicUsize::new(0),
        })
    }

    /// Queues an item (never blocks on a callback).
    pub(crate) fn push(self: &Arc<Self>, item: Item) {
        if matches!(item, Item::Event(_)) {
            self.pending.fetch_add(1, Ordering::SeqCst);
        }
        let schedule = {
            let mut items = self.items.lock();
            items.queue.push_back(item);
            !std::mem::replace(&mut items.scheduled, true)
        };
        if schedule {
            self.dispatch.schedule(self.clone());
        }
    }

    /// Queues the received messages of one read, in order: one lock and at most one wake-up
    /// of the dispatcher for all of them, where a push per event made the dispatcher take
    /// them one at a time, each a lock of the queue and of the ring shared with the I/O
    /// thread. Leaves `events` empty.
    pub(crate) fn push_events(self: &Arc<Self>, events: &mut Vec<Event>) {
        if events.is_empty() {
            return;
        }
        self.pending.fetch_add(events.len(), Ordering::SeqCst);
        let schedule = {
            let mut items = self.items.lock();
            items.queue.extend(events.drain(..).map(Item::Event));
            !std::mem::replace(&mut items.scheduled, true)
        };
        if schedule {
            self.dispatch.schedule(self.clone());
        }
    }

    /// Events waiting for (or in) the callbacks.
    pub(crate) fn backlog(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Whether this queue delivers on `dispatch`.
    pub(crate) fn is_on(&self, dispatch: &Arc<DispatchShared>) -> bool {
        Arc::ptr_eq(&self.dispatch, dispatch)
    }

    /// The slots the queue holds allocated (B45: a burst leaves none behind).
    #[cfg(test)]
    pub(crate) fn retained(&self) -> usize {
        self.items.lock().queue.capacity()
    }
}

impl DispatchShared {
    pub(crate) fn new() -> Arc<DispatchShared> {
        Arc::new(DispatchShared {
            ring: Mutex::new(Ring::default()),
            cv: Condvar::new(),
            waiting: AtomicUsize::new(0),
        })
    }

    fn schedule(&self, queue: Arc<ClientQueue>) {
        let mut ring = self.ring.lock();
        ring.ready.push_back(queue);
        self.waiting.store(ring.ready.len(), Ordering::SeqCst);
        if ring.sleeping {
            self.cv.notify_one();
        }
    }

    /// The I/O loop ended: the dispatcher ends once the ring is empty.
    pub(crate) fn loop_gone(&self) {
        let mut ring = self.ring.lock();
        ring.loop_gone = true;
        self.cv.notify_one();
    }

    /// The dispatcher thread's body. `exit_after_end`: a runtime of one client, whose run's
    /// end is the dispatcher's.
    pub(crate) fn run(&self, exit_after_end: bool) {
        let mut batch: VecDeque<Item> = VecDeque::new();
        while let Some(queue) = self.next() {
            {
                let mut items = queue.items.lock();
                if self.waiting.load(Ordering::SeqCst) > 0 {
                    batch.extend(items.queue.pop_front());
                } else {
                    std::mem::swap(&mut items.queue, &mut batch);
                }
            }
            let mut ended = false;
            while let Some(item) = batch.pop_front() {
                match item {
                    Item::Event(event) => {
                        queue.registry.deliver(event);
                        queue.pending.fetch_sub(1, Ordering::SeqCst);
                    }
                    Item::End(latch) => {
                        latch.open();
                        ended = exit_after_end;
                    }
                }
                // Another client waits: it goes first, this one after it.
                if self.waiting.load(Ordering::SeqCst) > 0 {
                    break;
                }
            }
            let again = {
                let mut items = queue.items.lock();
                while let Some(item) = batch.pop_back() {
                    items.queue.push_front(item);
                }
                if items.queue.is_empty() {
                    items.scheduled = false;
                    if items.queue.capacity() > KEEP_QUEUE {
                        items.queue = VecDeque::new();
                    }
                    false
                } else {
                    true
                }
            };
            if again {
                self.schedule(queue);
            }
            if batch.capacity() > KEEP_QUEUE {
                batch = VecDeque::new();
            }
            if ended {
                break;
            }
        }
        log::debug!("dispatcher thread exits");
    }

    /// The next queue to serve; `None` once the loop is gone and nothing is left.
    ///
    /// Events come in runs: before it sleeps, the dispatcher waits a few microseconds for the
    /// next one (spinning, then yielding, as crossbeam's receivers do), so that a stream of
    /// events costs the I/O thread a wake-up per lull, not one per event.
    fn next(&self) -> Option<Arc<ClientQueue>> {
        let mut step = 0;
        loop {
            {
                let mut ring = self.ring.lock();
                if let Some(q) = ring.ready.pop_front() {
                    self.waiting.store(ring.ready.len(), Ordering::SeqCst);
                    return Some(q);
                }
                if ring.loop_gone {
                    return None;
                }
                if step > YIELD_LIMIT {
                    ring.sleeping = true;
                    self.cv.wait(&mut ring);
                    ring.sleeping = false;
                    continue;
                }
            }
            while step <= YIELD_LIMIT && self.waiting.load(Ordering::SeqCst) == 0 {
                if step <= SPIN_LIMIT {
                    for _ in 0..1 << step {
                        std::hint::spin_loop();
                    }
                } else {
                    std::thread::yield_now();
                }
                step += 1;
            }
            step = step.max(YIELD_LIMIT + 1);
        }
    }
}

/// Opens once; waiters block until then.
#[derive(Default)]
pub(crate) struct Latch {
    open: Mutex<bool>,
    cv: Condvar,
}

impl Latch {
    pub(crate) fn open(&self) {
        *self.open.lock() = true;
        self.cv.notify_all();
    }

    pub(crate) fn is_open(&self) -> bool {
        *self.open.lock()
    }

    /// Blocks until the latch is open. (Unbounded, like joining a thread: what it waits for
    /// is the end of a callback.)
    pub(crate) fn wait(&self) {
        let mut open = self.open.lock();
        while !*open {
            self.cv.wait(&mut open);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::ServerMessage;
    use crate::protocol::{Data, Metadata};
    use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
    use std::time::Duration;

    const WAIT: Duration = Duration::from_secs(5);

    fn message(n: u64) -> Event {
        Event::ServerMessage(ServerMessage {
            data: Data::Text(n.to_string()),
            sequence_id: Some(n),
            metadata: Metadata::new(),
        })
    }

    /// A client whose handler reports `(client, n)` for message `n`, after taking a token
    /// from `gate` if it has one.
    fn client(
        dispatch: &Arc<DispatchShared>,
        id: u32,
        seen: Sender<(u32, u64)>,
        gate: Option<Receiver<()>>,
    ) -> Arc<ClientQueue> {
        let registry = Arc::new(Registry::default());
        registry.add(Box::new(move |e| {
            if let Event::ServerMessage(m) = e {
                if let Some(g) = &gate {
                    g.recv_timeout(WAIT).expect("the gate opened");
                }
                let _ = seen.send((id, m.sequence_id.unwrap()));
            }
        }));
        ClientQueue::new(dispatch.clone(), registry)
    }

    fn start(dispatch: &Arc<DispatchShared>) -> std::thread::JoinHandle<()> {
        let d = dispatch.clone();
        std::thread::spawn(move || d.run(false))
    }

    #[test]
    fn each_clients_events_arrive_in_order() {
        let dispatch = DispatchShared::new();
        let (tx, rx) = unbounded();
        let queues: Vec<_> = (0..3)
            .map(|i| client(&dispatch, i, tx.clone(), None))
            .collect();
        for n in 1..=100 {
            for q in &queues {
                q.push(Item::Event(message(n)));
            }
        }
        let t = start(&dispatch);
        let mut next = [1u64; 3];
        for _ in 0..300 {
            let (id, n) = rx.recv_timeout(WAIT).unwrap();
            assert_eq!(n, next[id as usize], "client {id}");
            next[id as usize] += 1;
        }
        dispatch.loop_gone();
        t.join().unwrap();
        for q in &queues {
            assert_eq!(q.backlog(), 0);
        }
    }

    #[test]
    fn a_batch_of_events_is_delivered_in_order_between_single_events() {
        let dispatch = DispatchShared::new();
        let (tx, rx) = unbounded();
        let q = client(&dispatch, 0, tx, None);
        let t = start(&dispatch);
        q.push(Item::Event(message(1)));
        let mut batch: Vec<Event> = (2..=100).map(message).collect();
        q.push_events(&mut batch);
        assert!(batch.is_empty(), "the batch is handed over whole");
        q.push_events(&mut batch); // an empty batch queues nothing
        q.push(Item::Event(message(101)));
        for n in 1..=101 {
            assert_eq!(rx.recv_timeout(WAIT).unwrap(), (0, n));
        }
        dispatch.loop_gone();
        t.join().unwrap();
        assert!(rx.try_recv().is_err(), "nothing more");
        assert_eq!(q.backlog(), 0);
    }

    #[test]
    fn a_slow_client_delays_another_by_at_most_one_callback() {
        // B44: A's handler blocks on its gate; its backlog waits. B's event, queued while A's
        // first callback runs, is delivered after at most one more of A's callbacks.
        let dispatch = DispatchShared::new();
        let (tx, rx) = unbounded();
        let (gate_tx, gate_rx) = bounded::<()>(0);
        let a = client(&dispatch, 0, tx.clone(), Some(gate_rx));
        let b = client(&dispatch, 1, tx.clone(), None);
        for n in 1..=50 {
            a.push(Item::Event(message(n)));
        }
        let t = start(&dispatch);
        // A's first callback is blocked in the gate (the rendezvous channel proves it).
        b.push(Item::Event(message(1)));
        gate_tx.send_timeout((), WAIT).unwrap();
        let mut a_before_b = 0;
        loop {
            match rx.recv_timeout(WAIT).unwrap() {
                (0, _) => {
                    a_before_b += 1;
                    gate_tx.send_timeout((), WAIT).unwrap();
                }
                (1, n) => {
                    assert_eq!(n, 1);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        // The callback that was running when B's event came, and nothing more.
        assert!(
            a_before_b <= 1,
            "{a_before_b} of A's callbacks ran before B's"
        );
        for _ in 0..50 - 1 - a_before_b {
            let _ = gate_tx.send_timeout((), WAIT);
        }
        dispatch.loop_gone();
        t.join().unwrap();
        assert_eq!(a.backlog(), 0);
    }

    #[test]
    fn the_end_of_a_run_opens_its_latch_after_its_events_and_a_burst_leaves_no_queue() {
        let dispatch = DispatchShared::new();
        let (tx, rx) = unbounded();
        let q = client(&dispatch, 0, tx, None);
        for n in 1..=1000 {
            q.push(Item::Event(message(n)));
        }
        let latch = Arc::new(Latch::default());
        q.push(Item::End(latch.clone()));
        let d = dispatch.clone();
        let t = std::thread::spawn(move || d.run(true));
        latch.wait();
        assert_eq!(rx.len(), 1000, "every event before the end");
        t.join().unwrap(); // a one-client dispatcher ends with its run
        assert!(q.retained() <= KEEP_QUEUE);
        assert_eq!(q.backlog(), 0);
    }
}
