//! A connection's wake-up: how other threads tell a socket's thread that its session has
//! frames to write or a command for it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A connection thread's wake-up: a mio waker plus a flag that coalesces wake-ups, so a
/// burst of queued frames costs one system call. Its identity (the `Arc`) also says which
/// socket owns a session.
pub(crate) struct Link {
    waker: mio::Waker,
    wake_pending: AtomicBool,
}

impl Link {
    pub fn new(waker: mio::Waker) -> Link {
        Link {
            waker,
            wake_pending: AtomicBool::new(false),
        }
    }

    pub fn wake(self: &Arc<Self>) {
        // Already pending: a wake-up is on its way (or deferred and on its way).
        if self.wake_pending.swap(true, Ordering::AcqRel) {
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

    /// Called by the woken thread once it is awake: later wake-ups need a system call again.
    pub fn woken(&self) {
        self.wake_pending.store(false, Ordering::Release);
    }

    fn wake_now(&self) {
        if let Err(e) = self.waker.wake() {
            log::warn!("emulator: cannot wake a connection thread: {e}");
        }
    }
}

thread_local! {
    /// Wake-ups a connection thread holds back while it handles a batch of frames.
    static DEFERRED: std::cell::RefCell<Option<Vec<Arc<Link>>>> = const { std::cell::RefCell::new(None) };
}

/// While alive, wake-ups made on this thread are deferred and done once, when it drops:
/// a sender handling a burst wakes each receiver once per burst, not once per message.
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
        let links = DEFERRED.with(|d| d.borrow_mut().take()).unwrap_or_default();
        for l in links {
            l.wake_now();
        }
    }
}
