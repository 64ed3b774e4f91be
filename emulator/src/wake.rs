//! Wake-ups: how other threads tell an I/O loop that a connection it owns has work (frames
//! queued in its session, a command, a completion it waits for), and how the loop learns
//! which connections.
//!
//! Each loop has one [`Notify`]: a mio waker plus a ready list of connection tokens. Each
//! connection has one [`Link`], which puts its token on that list. Both coalesce: a
//! connection is listed once however many frames are queued for it until its loop takes
//! the list, and a loop gets one system call per burst, not one per connection — none at
//! all for wake-ups made on the loop's own thread (it reads its list before it waits), and
//! one per other loop per read while a loop handles the frames of one read ([`DeferWakes`]).
//!
//! [`completion`] pairs a [`Completer`] (for the thread that finishes some work: an
//! upstream call) with the [`Awaited`] its connection keeps: completing or abandoning it
//! wakes the connection's loop.

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use parking_lot::Mutex;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// One loop's wake-up: the tokens of its connections that have work, and the waker that
/// ends its wait.
pub(crate) struct Notify {
    waker: mio::Waker,
    ready: Mutex<Vec<usize>>,
    /// Set by the first wake-up after the loop last took its list: later ones need no
    /// system call.
    notified: AtomicBool,
    /// Unique among the loops of the process (never 0), to recognise the loop's own thread.
    id: usize,
}

static NEXT_NOTIFY: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// The `Notify::id` of the loop that runs on this thread, 0 elsewhere.
    static CURRENT_LOOP: Cell<usize> = const { Cell::new(0) };
    /// Loop wake-ups held back while this thread handles a batch of frames.
    static DEFERRED: RefCell<Option<Vec<Arc<Notify>>>> = const { RefCell::new(None) };
}

impl Notify {
    pub fn new(waker: mio::Waker) -> Arc<Notify> {
        Arc::new(Notify {
            waker,
            ready: Mutex::new(Vec::new()),
            notified: AtomicBool::new(false),
            id: NEXT_NOTIFY.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Marks the calling thread as this loop's own.
    pub fn enter(&self) {
        CURRENT_LOOP.with(|c| c.set(self.id));
    }

    /// Lists `token` as having work and makes sure the loop will look.
    pub fn push(self: &Arc<Self>, token: usize) {
        self.ready.lock().push(token);
        // The loop's own thread: it takes its list again before it waits.
        if CURRENT_LOOP.with(Cell::get) == self.id {
            return;
        }
        self.signal();
    }

    /// Ends the loop's wait (once per burst).
    fn signal(self: &Arc<Self>) {
        if self.notified.swap(true, Ordering::SeqCst) {
            return;
        }
        let deferred = DEFERRED.with(|d| match d.borrow_mut().as_mut() {
            Some(v) => {
                v.push(self.clone());
                true
            }
            None => false,
        });
        if !deferred {
            self.wake_now();
        }
    }

    /// Ends the loop's wait now, whatever is listed (to look at a flag: stopping).
    pub fn wake_now(&self) {
        if let Err(e) = self.waker.wake() {
            log::warn!("emulator: cannot wake an I/O loop: {e}");
        }
    }

    /// Called by the loop: moves the listed tokens to `into`. Wake-ups from now on signal
    /// again.
    pub fn take(&self, into: &mut Vec<usize>) {
        // Before the list is taken: a token pushed after the take then signals anew.
        self.notified.store(false, Ordering::SeqCst);
        into.append(&mut self.ready.lock());
    }
}

/// A connection's wake-up: lists its token with its loop, at most once until the loop
/// handles it. Its identity (the `Arc`) also says which socket owns a session.
pub(crate) struct Link {
    notify: Arc<Notify>,
    token: usize,
    pending: AtomicBool,
}

impl Link {
    pub fn new(notify: Arc<Notify>, token: usize) -> Link {
        Link {
            notify,
            token,
            pending: AtomicBool::new(false),
        }
    }

    pub fn wake(&self) {
        // Already pending: the token is listed and the loop will look.
        if self.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        self.notify.push(self.token);
    }

    /// Called by the loop before it handles the connection: later wake-ups list it again.
    pub fn woken(&self) {
        self.pending.store(false, Ordering::Release);
    }
}

/// While alive, loop wake-ups made on this thread are deferred and done once, when it
/// drops: a loop handling the frames of one read wakes each other loop once for them all,
/// and only after them — so that the receivers' loop finds a batch to write, not a frame.
pub(crate) struct DeferWakes(());

impl DeferWakes {
    pub fn begin() -> DeferWakes {
        DEFERRED.with(|d| {
            d.borrow_mut().get_or_insert_with(Vec::new);
        });
        DeferWakes(())
    }
}

impl Drop for DeferWakes {
    fn drop(&mut self) {
        let loops = DEFERRED.with(|d| d.borrow_mut().take()).unwrap_or_default();
        for l in loops {
            l.wake_now();
        }
    }
}

/// Creates the two ends of something a connection waits for: the [`Completer`] goes to
/// the thread that finishes it, the [`Awaited`] stays with the connection.
pub(crate) fn completion<T>(link: &Arc<Link>) -> (Completer<T>, Awaited<T>) {
    let (tx, rx) = crossbeam_channel::bounded(1);
    (
        Completer {
            tx: Some(tx),
            link: link.clone(),
        },
        Awaited { rx },
    )
}

/// Finishes what a connection waits for, from any thread, without blocking: the value is
/// handed over and the connection's loop woken. Dropped without a value, it wakes the loop
/// too, and the connection sees [`Completion::Abandoned`].
pub(crate) struct Completer<T> {
    /// Taken in `drop`, before the wake-up.
    tx: Option<Sender<T>>,
    link: Arc<Link>,
}

impl<T> Completer<T> {
    pub fn complete(self, value: T) {
        // A connection that stopped waiting dropped its end: nothing to do.
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(value);
        }
        // The wake-up follows in `drop`, after the value is in place.
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        // The channel closes before the wake-up: a loop woken by an abandoned completion
        // must see it abandoned, not still waiting.
        drop(self.tx.take());
        self.link.wake();
    }
}

/// A connection's end of a [`completion`].
pub(crate) struct Awaited<T> {
    rx: Receiver<T>,
}

/// Where an [`Awaited`] stands.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Completion<T> {
    Done(T),
    /// The completer was dropped without a value.
    Abandoned,
    Waiting,
}

impl<T> Awaited<T> {
    pub fn poll(&self) -> Completion<T> {
        match self.rx.try_recv() {
            Ok(v) => Completion::Done(v),
            Err(TryRecvError::Empty) => Completion::Waiting,
            Err(TryRecvError::Disconnected) => Completion::Abandoned,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn loop_parts() -> (mio::Poll, Arc<Notify>) {
        let poll = mio::Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(1)).unwrap();
        (poll, Notify::new(waker))
    }

    /// Whether the loop's wait ends within a short bound (it must, when woken).
    fn woken(poll: &mut mio::Poll) -> bool {
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_millis(200)))
            .unwrap();
        !events.is_empty()
    }

    #[test]
    fn a_burst_of_wake_ups_lists_each_connection_once_and_wakes_the_loop_once() {
        let (mut poll, notify) = loop_parts();
        let (a, b) = (
            Arc::new(Link::new(notify.clone(), 7)),
            Arc::new(Link::new(notify.clone(), 8)),
        );
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..100 {
                    a.wake();
                    b.wake();
                }
            });
        });
        assert!(woken(&mut poll));
        let mut tokens = Vec::new();
        notify.take(&mut tokens);
        assert_eq!(tokens, [7, 8]);
        assert!(!woken(&mut poll), "one system call for the burst");
        // Handled: the next wake-up lists it again.
        a.woken();
        std::thread::scope(|s| {
            s.spawn(|| a.wake());
        });
        assert!(woken(&mut poll));
        tokens.clear();
        notify.take(&mut tokens);
        assert_eq!(tokens, [7]);
    }

    #[test]
    fn wake_ups_on_the_loops_own_thread_need_no_system_call() {
        let (mut poll, notify) = loop_parts();
        notify.enter();
        Link::new(notify.clone(), 3).wake();
        CURRENT_LOOP.with(|c| c.set(0));
        assert!(!woken(&mut poll));
        let mut tokens = Vec::new();
        notify.take(&mut tokens);
        assert_eq!(tokens, [3]);
    }

    #[test]
    fn deferred_wake_ups_happen_when_the_batch_ends() {
        let (mut poll, notify) = loop_parts();
        let link = Link::new(notify.clone(), 5);
        let defer = DeferWakes::begin();
        link.wake();
        assert!(!woken(&mut poll), "held back during the batch");
        drop(defer);
        assert!(woken(&mut poll));
    }

    #[test]
    fn a_completion_wakes_the_connection_with_its_value_or_as_abandoned() {
        let (mut poll, notify) = loop_parts();
        let link = Arc::new(Link::new(notify.clone(), 9));
        let (done, awaited) = completion::<u32>(&link);
        assert_eq!(awaited.poll(), Completion::Waiting);
        std::thread::spawn(move || done.complete(42))
            .join()
            .unwrap();
        assert!(woken(&mut poll));
        assert_eq!(awaited.poll(), Completion::Done(42));
        // The loop takes its list and handles the connection.
        notify.take(&mut Vec::new());
        link.woken();
        let (dropped, awaited) = completion::<u32>(&link);
        std::thread::spawn(move || drop(dropped)).join().unwrap();
        assert!(woken(&mut poll));
        assert_eq!(awaited.poll(), Completion::Abandoned);
    }
}
