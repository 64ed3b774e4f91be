//! What a client's threads share: the [`Core`] (options, the session behind its mutex, the
//! handler registry, what the end of each run leaves to wait for) and the controls of one
//! run ([`RunCtl`]: stop request, wake-up, the start signal, the end's latch).
//!
//! Request threads, the I/O thread and the dispatcher hold the `Core`; the user-facing
//! handle in `client.rs` owns it and stops it when the last clone goes away.

use crate::ack_table::RequestKind;
use crate::error::Result;
use crate::events::Registry;
use crate::invocations::InvokeResult;
use crate::options::Options;
use crate::runtime::{ClientQueue, DispatchShared, Latch, Wake};
use crate::state::Session;
use crate::waiter::{AckResult, SlotReceiver, Waiter};
use crate::wire::WireFrame;
use parking_lot::{Condvar, Mutex};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// Everything a client's threads share.
///
/// Lock order: `lifecycle`, then `ends`, then `queue`, then `shared`. No lock is held while
/// user code runs; only `lifecycle` is held while a run's end is waited for or a start is
/// waited for, and only by threads that are not the client's own (a callback never takes it,
/// so a `stop()` that waits for the dispatcher cannot wait for a callback that waits for it).
pub(crate) struct Core {
    pub(crate) options: Options,
    pub(crate) shared: Mutex<Shared>,
    pub(crate) registry: Arc<Registry>,
    /// Serialises `start()` and `stop()` calls from threads that are not the client's own.
    pub(crate) lifecycle: Mutex<()>,
    /// What the current (or last) runs leave to wait for, waited by `stop()`, the next
    /// `start()`, or the next run's dispatcher (for a start from a callback).
    pub(crate) ends: Mutex<RunEnds>,
    /// The client's event queue on a shared runtime's dispatcher, kept across runs so that
    /// the events of one run are delivered before those of the next.
    queue: Mutex<Option<Arc<ClientQueue>>>,
    /// The shared runtime the client runs on (its threads' mark), if any.
    shared_runtime: Option<usize>,
    tls: Mutex<Option<native_tls::TlsConnector>>,
}

/// What the end of runs leaves to wait for: the threads of a runtime of the client's own,
/// or the latch a shared runtime's dispatcher opens after the run's last event.
#[derive(Default)]
pub(crate) struct RunEnds {
    pub(crate) threads: Vec<JoinHandle<()>>,
    latches: Vec<Arc<Latch>>,
}

impl RunEnds {
    /// Keeps a shared runtime's run to wait for (forgetting those already over).
    pub(crate) fn add_latch(&mut self, latch: Arc<Latch>) {
        self.latches.retain(|l| !l.is_open());
        self.latches.push(latch);
    }

    /// Waits until every run's events were delivered and its threads ended.
    pub(crate) fn wait(self) {
        for l in self.latches {
            l.wait();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// What waits for an ack.
pub(crate) type AckWaiter = Waiter<AckResult>;
/// What waits for an invocation's response.
pub(crate) type InvokeWaiter = Waiter<InvokeResult>;

/// The state request threads and the I/O thread share, behind `Core::shared`.
pub(crate) struct Shared {
    pub(crate) session: Session<AckWaiter, InvokeWaiter>,
    pub(crate) run: Option<Arc<RunCtl>>,
}

impl Shared {
    /// Forgets `run` if it is the current one (it ended).
    pub(crate) fn detach_run(&mut self, run: &Arc<RunCtl>) {
        if self.run.as_ref().is_some_and(|r| Arc::ptr_eq(r, run)) {
            self.run = None;
        }
    }
}

/// The controls of one run (one `start` to its stop).
pub(crate) struct RunCtl {
    pub(crate) wake: Wake,
    stop_requested: AtomicBool,
    pub(crate) start: StartSignal,
    /// Opened by the dispatcher once the run's last event was delivered.
    pub(crate) done: Arc<Latch>,
}

impl RunCtl {
    pub(crate) fn new(wake: Wake) -> RunCtl {
        RunCtl {
            wake,
            stop_requested: AtomicBool::new(false),
            start: StartSignal::default(),
            done: Arc::default(),
        }
    }

    pub(crate) fn request_stop(&self) {
        self.stop_requested.store(true, Ordering::SeqCst);
        self.wake.wake();
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.stop_requested.load(Ordering::SeqCst)
    }
}

/// How `start()` learns the outcome of the first connection.
#[derive(Default)]
pub(crate) struct StartSignal {
    state: Mutex<StartState>,
    cv: Condvar,
}

#[derive(Default)]
enum StartState {
    #[default]
    Waiting,
    Done(Result<()>),
    Taken,
    Abandoned,
}

impl StartSignal {
    /// Delivers the outcome; `false` if `start()` already gave up (timeout), in which case
    /// the run must end without events.
    pub(crate) fn complete(&self, result: Result<()>) -> bool {
        let mut s = self.state.lock();
        match *s {
            StartState::Waiting => {
                *s = StartState::Done(result);
                self.cv.notify_all();
                true
            }
            _ => false,
        }
    }

    /// The outcome, or `None` when `deadline` passed first (the signal is then abandoned).
    pub(crate) fn wait(&self, deadline: Instant) -> Option<Result<()>> {
        let mut s = self.state.lock();
        loop {
            match std::mem::replace(&mut *s, StartState::Taken) {
                StartState::Done(r) => return Some(r),
                StartState::Waiting => *s = StartState::Waiting,
                other => {
                    *s = other;
                    return None;
                }
            }
            if self.cv.wait_until(&mut s, deadline).timed_out() {
                if let StartState::Done(r) = std::mem::replace(&mut *s, StartState::Abandoned) {
                    return Some(r);
                }
                return None;
            }
        }
    }
}

impl Core {
    /// A client's core; `shared_runtime` marks the threads of the shared runtime it runs on.
    pub(crate) fn new(options: Options, shared_runtime: Option<usize>) -> Core {
        let auto_rejoin = options.auto_rejoin_groups;
        let subprotocol = options.protocol.subprotocol();
        Core {
            options,
            shared: Mutex::new(Shared {
                session: Session::new(auto_rejoin, subprotocol),
                run: None,
            }),
            registry: Arc::default(),
            lifecycle: Mutex::new(()),
            ends: Mutex::new(RunEnds::default()),
            queue: Mutex::new(None),
            shared_runtime,
            tls: Mutex::new(None),
        }
    }

    /// Whether the calling thread is one of this client's threads (of any run, even one
    /// that is ending) or of the shared runtime it runs on: waiting for them from there
    /// would deadlock.
    pub(crate) fn on_own_thread(&self) -> bool {
        let owner = crate::runtime::current_owner();
        owner != 0 && (owner == self.owner() || Some(owner) == self.shared_runtime)
    }

    /// What marks the threads of this client's own runtimes.
    pub(crate) fn owner(&self) -> usize {
        self as *const Core as usize
    }

    /// The client's queue on `dispatch`: the same for every run on a shared runtime.
    pub(crate) fn queue_on(&self, dispatch: &Arc<DispatchShared>) -> Arc<ClientQueue> {
        let mut queue = self.queue.lock();
        match &*queue {
            Some(q) if q.is_on(dispatch) => q.clone(),
            _ => {
                let q = ClientQueue::new(dispatch.clone(), self.registry.clone());
                *queue = Some(q.clone());
                q
            }
        }
    }

    /// Makes `run` the current run. A stop requested since `begin_start` (before the run
    /// existed to be told) is passed on at once.
    pub(crate) fn attach_run(&self, run: Arc<RunCtl>) {
        let mut sh = self.shared.lock();
        if sh.session.is_stopping() {
            run.request_stop();
        }
        sh.run = Some(run);
    }

    /// Stops the current run (B5) and waits for its end: its threads, or on a shared runtime
    /// the delivery of its last event. From the client's own threads (or the shared
    /// runtime's) it only requests the stop.
    pub(crate) fn stop(&self) {
        let waits = !self.on_own_thread();
        let run = {
            let mut sh = self.shared.lock();
            sh.session.request_stop(waits);
            sh.run.clone()
        };
        if let Some(run) = &run {
            run.request_stop();
        }
        if !waits {
            log::debug!("stop() on a client thread: stopping asynchronously");
            return;
        }
        {
            let _serial = self.lifecycle.lock();
            let ends = std::mem::take(&mut *self.ends.lock());
            ends.wait();
        }
        self.shared.lock().session.stop_returned();
    }

    /// A TLS connector, built once.
    pub(crate) fn tls_connector(&self) -> Result<native_tls::TlsConnector> {
        let mut tls = self.tls.lock();
        if let Some(c) = &*tls {
            return Ok(c.clone());
        }
        let c = crate::transport::tls_connector(&self.options)?;
        *tls = Some(c.clone());
        Ok(c)
    }

    /// Registers a request and queues its frame; the returned receiver gets the ack.
    pub(crate) fn register(
        &self,
        ack_id: u64,
        kind: RequestKind,
        frame: WireFrame,
    ) -> Result<SlotReceiver<AckResult>> {
        let (tx, rx) = crate::waiter::waiter();
        self.with_session_wake(|sh| sh.session.register(ack_id, kind, frame, tx))?;
        Ok(rx)
    }

    /// Parks a request between two attempts (see [`Session::park`]).
    pub(crate) fn park(
        &self,
        ack_id: u64,
        kind: RequestKind,
        frame: WireFrame,
        waiter: AckWaiter,
    ) -> Result<()> {
        self.shared.lock().session.park(ack_id, kind, frame, waiter)
    }

    /// The backoff of a parked request is over: it goes out again.
    pub(crate) fn unpark(&self, ack_id: u64) {
        let _ = self.with_session_wake(|sh| Ok(sh.session.unpark(ack_id)));
    }

    /// Queues a fire-and-forget frame (B28).
    pub(crate) fn queue_frame(&self, frame: WireFrame) -> Result<()> {
        self.with_session_wake(|sh| sh.session.queue_frame(frame))
    }

    /// The next invocation id (B40).
    pub(crate) fn new_invocation_id(&self) -> Result<u64> {
        self.shared.lock().session.new_invocation_id()
    }

    /// Registers an invocation and queues its frame; the returned receiver gets the response.
    pub(crate) fn register_invocation(
        &self,
        invocation_id: u64,
        frame: WireFrame,
    ) -> Result<SlotReceiver<InvokeResult>> {
        let (tx, rx) = crate::waiter::waiter();
        self.with_session_wake(|sh| sh.session.register_invocation(invocation_id, frame, tx))?;
        Ok(rx)
    }

    /// Forgets a cancelled invocation and sends `cancelInvocation` if it went out (B39).
    pub(crate) fn cancel_invocation(&self, invocation_id: u64) {
        let _ = self.with_session_wake(|sh| Ok(sh.session.cancel_invocation(invocation_id)));
    }

    /// Runs `f` on the session; wakes the I/O thread (outside the lock) if it says so.
    fn with_session_wake(&self, f: impl FnOnce(&mut Shared) -> Result<bool>) -> Result<()> {
        let wake = {
            let mut sh = self.shared.lock();
            if f(&mut sh)? {
                sh.run.clone()
            } else {
                None
            }
        };
        if let Some(run) = wake {
            run.wake.wake();
        }
        Ok(())
    }

    pub(crate) fn abandon(&self, ack_id: u64) {
        self.shared.lock().session.abandon(ack_id);
    }
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Core { .. }")
    }
}
