//! The I/O thread's loop (`webpubsub-io`): one mio readiness loop over the sockets of every
//! client of a runtime — one client's for the default runtime, any number for a shared one.
//!
//! Each client's run is a [`Driver`] (the client's I/O state, in `io/`), kept in a slot whose
//! index is its socket's token. The loop steps a driver when its socket is ready, when a
//! request thread woke it ([`Wake`]), or when its deadline passed; one turn steps each
//! driver that needs it once, so a client flooded with messages gets one read budget per turn
//! like every other (a driver that has more to do asks to run again next turn). Deadlines
//! live in one heap; a driver's socket holds one file descriptor, the loop's epoll and
//! eventfd are shared.
//!
//! Request threads never touch the loop's state: they push the token to wake onto the inbox
//! and write the eventfd only when the inbox was empty (one write per batch of wake-ups).

use parking_lot::Mutex;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::ErrorKind;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The waker's token; drivers' tokens are slot indices.
const WAKER: mio::Token = mio::Token(usize::MAX);
/// The loop's read buffer, shared by its drivers: every read of every socket goes here first.
pub(crate) const READ_BUFFER: usize = 16 * 1024;
/// The read buffer of a one-client loop (the default runtime): one per client, so its pages
/// count per client once a large message has touched them all (B45: measured with 1,000
/// clients, 16 KiB left ~6 KiB more per client after a 256 KiB message each than 8 KiB).
const READ_BUFFER_ONE: usize = 8 * 1024;

/// One client's run, as the loop drives it.
pub(crate) trait Driver: Send {
    /// Does what can be done now without blocking, and says when to come back.
    fn step(&mut self, cx: &mut Cx<'_>) -> Next;
}

/// What a driver gets for a step.
pub(crate) struct Cx<'a> {
    /// Where the driver registers its socket, under `token`.
    pub(crate) registry: &'a mio::Registry,
    pub(crate) token: mio::Token,
    pub(crate) now: Instant,
    /// The socket became readable (or closed, or failed) since the last step.
    pub(crate) readable: bool,
    /// The loop cannot go on (its poll failed): the driver must end now.
    pub(crate) abort: bool,
    /// The loop's read buffer.
    pub(crate) buf: &'a mut [u8],
}

/// When a driver wants its next step.
pub(crate) enum Next {
    /// On the next event of its socket or wake-up, or at this deadline (a passed one: the
    /// next turn).
    Wait(Option<Instant>),
    /// The run is over: the slot is freed.
    Done,
}

/// What request threads and the runtime handle share with the loop.
pub(crate) struct LoopShared {
    waker: mio::Waker,
    inbox: Mutex<Inbox>,
}

#[derive(Default)]
struct Inbox {
    woken: Vec<usize>,
    added: Vec<(usize, Box<dyn Driver>)>,
    /// Tokens of slots that are free again.
    free: Vec<usize>,
    next: usize,
    /// The runtime's last handle is gone: end once no driver is left.
    closing: bool,
}

impl Inbox {
    fn is_empty(&self) -> bool {
        self.woken.is_empty() && self.added.is_empty()
    }
}

/// Wakes one driver of a loop: held by its run (the request threads' side).
#[derive(Clone)]
pub(crate) struct Wake {
    shared: Arc<LoopShared>,
    token: usize,
}

impl Wake {
    /// Has the driver stepped soon (at once if the loop sleeps).
    pub(crate) fn wake(&self) {
        self.shared.notify(|inbox| inbox.woken.push(self.token));
    }
}

impl LoopShared {
    /// A token for a driver to come, and the wake-up that will reach it: what the run's
    /// controls hold before the driver exists. [`insert`](Self::insert) it next.
    pub(crate) fn reserve(self: &Arc<Self>) -> Wake {
        let mut inbox = self.inbox.lock();
        let token = inbox.free.pop().unwrap_or_else(|| {
            inbox.next += 1;
            inbox.next - 1
        });
        Wake {
            shared: self.clone(),
            token,
        }
    }

    /// Hands the loop the driver of a reserved token; its first step comes at once.
    pub(crate) fn insert(&self, wake: &Wake, driver: Box<dyn Driver>) {
        self.notify(|inbox| inbox.added.push((wake.token, driver)));
    }

    /// The runtime's handle is gone: the loop ends once its drivers are done.
    pub(crate) fn close(&self) {
        self.notify(|inbox| inbox.closing = true);
    }

    fn notify(&self, f: impl FnOnce(&mut Inbox)) {
        let mut inbox = self.inbox.lock();
        // Whoever made the inbox non-empty wakes the loop; the loop empties it every turn,
        // so later pushes before that turn need no wake-up of their own.
        let first = inbox.is_empty();
        f(&mut inbox);
        drop(inbox);
        if first {
            let _ = self.waker.wake();
        }
    }
}

struct Slot {
    driver: Box<dyn Driver>,
    /// Tells this slot's timers from those of an earlier driver in it.
    generation: u64,
    readable: bool,
    scheduled: bool,
    /// The earliest deadline of this slot in the heap.
    armed: Option<Instant>,
}

/// The loop: owned by the I/O thread.
pub(crate) struct Reactor {
    poll: mio::Poll,
    shared: Arc<LoopShared>,
    slots: Vec<Option<Slot>>,
    live: usize,
    generation: u64,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// Slots to step this turn.
    run: Vec<usize>,
    buf: Vec<u8>,
    /// A runtime of one client: the loop ends when its driver is done.
    exit_when_idle: bool,
}

impl Reactor {
    /// A loop and what its clients share with it.
    pub(crate) fn new(exit_when_idle: bool) -> std::io::Result<(Reactor, Arc<LoopShared>)> {
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKER)?;
        let shared = Arc::new(LoopShared {
            waker,
            inbox: Mutex::new(Inbox::default()),
        });
        let reactor = Reactor {
            poll,
            shared: shared.clone(),
            slots: Vec::new(),
            live: 0,
            generation: 0,
            timers: BinaryHeap::new(),
            run: Vec::new(),
            buf: vec![
                0;
                if exit_when_idle {
                    READ_BUFFER_ONE
                } else {
                    READ_BUFFER
                }
            ],
            exit_when_idle,
        };
        Ok((reactor, shared))
    }

    /// The I/O thread's body.
    pub(crate) fn run(mut self) {
        let mut events = mio::Events::with_capacity(256);
        let mut ever = false;
        loop {
            let closing = self.take_inbox(&mut ever);
            self.fire_timers(Instant::now());
            self.step_scheduled(false);
            if self.live == 0 && (closing || (self.exit_when_idle && ever)) {
                break;
            }
            let timeout = if self.run.is_empty() {
                self.timers
                    .peek()
                    .map(|Reverse((t, ..))| t.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                log::error!("poll failed: {e}; every client of this loop stops");
                self.abort_all();
                break;
            }
            for ev in events.iter() {
                let token = ev.token().0;
                if token == WAKER.0 {
                    continue;
                }
                if let Some(Some(slot)) = self.slots.get_mut(token) {
                    // A writable edge needs no flag: every step flushes what is pending.
                    if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                        slot.readable = true;
                    }
                    schedule(slot, token, &mut self.run);
                }
            }
        }
        log::debug!("I/O loop exits");
    }

    /// Takes new drivers and wake-ups; returns whether the runtime is closing.
    fn take_inbox(&mut self, ever: &mut bool) -> bool {
        let (woken, added, closing) = {
            let mut inbox = self.shared.inbox.lock();
            (
                std::mem::take(&mut inbox.woken),
                std::mem::take(&mut inbox.added),
                inbox.closing,
            )
        };
        for (token, driver) in added {
            *ever = true;
            if self.slots.len() <= token {
                self.slots.resize_with(token + 1, || None);
            }
            self.generation += 1;
            self.slots[token] = Some(Slot {
                driver,
                generation: self.generation,
                readable: false,
                scheduled: false,
                armed: None,
            });
            self.live += 1;
            if let Some(slot) = self.slots[token].as_mut() {
                schedule(slot, token, &mut self.run);
            }
        }
        for token in woken {
            // A late wake-up of a run that ended may reach a slot's next driver: a step
            // that finds nothing to do is harmless.
            if let Some(Some(slot)) = self.slots.get_mut(token) {
                schedule(slot, token, &mut self.run);
            }
        }
        closing
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(&Reverse((t, token, generation))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            if let Some(Some(slot)) = self.slots.get_mut(token) {
                if slot.generation == generation && slot.armed == Some(t) {
                    slot.armed = None;
                    schedule(slot, token, &mut self.run);
                }
            }
        }
    }

    /// Steps every scheduled driver once, in the order they were scheduled.
    fn step_scheduled(&mut self, abort: bool) {
        let mut run = std::mem::take(&mut self.run);
        for token in run.drain(..) {
            let Some(Some(slot)) = self.slots.get_mut(token) else {
                continue;
            };
            slot.scheduled = false;
            let now = Instant::now();
            let mut cx = Cx {
                registry: self.poll.registry(),
                token: mio::Token(token),
                now,
                readable: std::mem::take(&mut slot.readable),
                abort,
                buf: &mut self.buf,
            };
            match slot.driver.step(&mut cx) {
                Next::Done => {
                    self.slots[token] = None;
                    self.live -= 1;
                    self.shared.inbox.lock().free.push(token);
                }
                Next::Wait(Some(t)) if t <= now => schedule(slot, token, &mut self.run),
                Next::Wait(Some(t)) => {
                    if slot.armed.is_none_or(|a| t < a) {
                        slot.armed = Some(t);
                        self.timers.push(Reverse((t, token, slot.generation)));
                    }
                }
                Next::Wait(None) => {}
            }
        }
        // Keep the (empty) allocation unless drivers were scheduled meanwhile.
        if self.run.is_empty() {
            self.run = run;
        }
    }

    /// The poll failed: every driver ends now.
    fn abort_all(&mut self) {
        let mut ever = false;
        self.take_inbox(&mut ever);
        for (token, slot) in self.slots.iter_mut().enumerate() {
            if let Some(slot) = slot {
                schedule(slot, token, &mut self.run);
            }
        }
        self.step_scheduled(true);
    }
}

fn schedule(slot: &mut Slot, token: usize, run: &mut Vec<usize>) {
    if !slot.scheduled {
        slot.scheduled = true;
        run.push(token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{unbounded, Sender};

    /// A driver that reports its steps and ends after `steps`, asking for a deadline `after`
    /// each step.
    struct Counting {
        id: usize,
        steps: usize,
        after: Option<Duration>,
        seen: Sender<usize>,
    }

    impl Driver for Counting {
        fn step(&mut self, cx: &mut Cx<'_>) -> Next {
            let _ = self.seen.send(self.id);
            if self.steps <= 1 {
                return Next::Done;
            }
            self.steps -= 1;
            Next::Wait(self.after.map(|d| cx.now + d))
        }
    }

    fn spawn(reactor: Reactor) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || reactor.run())
    }

    #[test]
    fn drivers_are_stepped_on_wake_ups_and_deadlines_and_the_loop_ends_when_idle() {
        let (reactor, shared) = Reactor::new(true).unwrap();
        let (tx, rx) = unbounded();
        let wake = shared.reserve();
        shared.insert(
            &wake,
            Box::new(Counting {
                id: 1,
                steps: 3,
                after: None,
                seen: tx.clone(),
            }),
        );
        let t = spawn(reactor);
        let wait = Duration::from_secs(5);
        assert_eq!(rx.recv_timeout(wait), Ok(1)); // added: stepped once
        wake.wake();
        assert_eq!(rx.recv_timeout(wait), Ok(1));
        wake.wake();
        assert_eq!(rx.recv_timeout(wait), Ok(1)); // its last step: done
        t.join().unwrap(); // one client's loop ends with its driver
                           // A late wake-up of an ended run goes nowhere.
        wake.wake();
    }

    #[test]
    fn a_driver_that_is_not_done_is_stepped_again_at_its_deadline() {
        let (reactor, shared) = Reactor::new(true).unwrap();
        let (tx, rx) = unbounded();
        shared.insert(
            &shared.reserve(),
            Box::new(Counting {
                id: 7,
                steps: 4,
                after: Some(Duration::from_millis(1)),
                seen: tx.clone(),
            }),
        );
        let t = spawn(reactor);
        for _ in 0..4 {
            assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(7));
        }
        t.join().unwrap();
    }

    #[test]
    fn a_shared_loop_lives_until_it_is_closed_and_its_drivers_are_done() {
        let (reactor, shared) = Reactor::new(false).unwrap();
        let (tx, rx) = unbounded();
        let t = spawn(reactor);
        for id in 0..3 {
            shared.insert(
                &shared.reserve(),
                Box::new(Counting {
                    id,
                    steps: 1,
                    after: None,
                    seen: tx.clone(),
                }),
            );
        }
        let mut got: Vec<usize> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        got.sort();
        assert_eq!(got, [0, 1, 2]);
        assert!(!t.is_finished());
        shared.close();
        t.join().unwrap();
    }
}
