//! The threads clients run on: an I/O thread (`reactor`: one readiness loop over the clients'
//! sockets) and a dispatcher thread (`dispatch`: the clients' callbacks, in order, fairly).
//!
//! By default each client has a runtime of its own, made for each run (`start()` to the end
//! of that run) and ended with it. A [`Runtime`] made by the application is shared: any
//! number of clients run on its two threads, which start with the first client's `start()`
//! and end when the last handle and the last client are gone.

use parking_lot::Mutex;
use std::cell::Cell;
use std::fmt;
use std::sync::Arc;
use std::thread::JoinHandle;

pub(crate) mod dispatch;
pub(crate) mod reactor;

pub(crate) use dispatch::{ClientQueue, DispatchShared, Item, Latch};
pub(crate) use reactor::{Cx, Driver, LoopShared, Next, Wake};

/// The I/O thread's stack unless an option says otherwise: it runs the loop, TLS handshakes,
/// name resolution and the credential provider, never a callback.
pub(crate) const DEFAULT_IO_STACK_SIZE: usize = 256 * 1024;
/// The dispatcher's stack unless an option says otherwise: callbacks run on it.
pub(crate) const DEFAULT_DISPATCHER_STACK_SIZE: usize = 1024 * 1024;

/// Names and stack sizes of a runtime's two threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ThreadConfig {
    /// `{name}-io` and `{name}-dispatch`.
    pub(crate) name: String,
    pub(crate) io_stack_size: usize,
    pub(crate) dispatcher_stack_size: usize,
}

impl Default for ThreadConfig {
    fn default() -> ThreadConfig {
        ThreadConfig {
            name: "webpubsub".into(),
            io_stack_size: DEFAULT_IO_STACK_SIZE,
            dispatcher_stack_size: DEFAULT_DISPATCHER_STACK_SIZE,
        }
    }
}

thread_local! {
    /// Whose thread this is: a client (its runtime of one, by the client's address) or a
    /// shared runtime (by its address); 0 elsewhere.
    static OWNER: Cell<usize> = const { Cell::new(0) };
}

/// Whose runtime thread the calling thread is (0: none).
pub(crate) fn current_owner() -> usize {
    OWNER.with(Cell::get)
}

/// A runtime's running threads, as a client's run reaches them.
#[derive(Clone)]
pub(crate) struct Threads {
    pub(crate) io: Arc<LoopShared>,
    pub(crate) dispatch: Arc<DispatchShared>,
}

/// Spawns the two threads of a runtime marked as `owner`'s. `exit_when_idle`: a runtime of
/// one run, whose threads end with it. `previous` are threads the new dispatcher joins
/// before its first event (a start from a callback of the run that is ending); they are
/// taken only on success.
pub(crate) fn spawn(
    config: &ThreadConfig,
    owner: usize,
    exit_when_idle: bool,
    previous: &mut Vec<JoinHandle<()>>,
) -> std::io::Result<(Threads, Vec<JoinHandle<()>>)> {
    let (reactor, io) = reactor::Reactor::new(exit_when_idle)?;
    let dispatch = DispatchShared::new();
    // The previous threads, handed over once both new threads exist.
    let (previous_tx, previous_rx) = crossbeam_channel::bounded::<Vec<JoinHandle<()>>>(1);
    let d = dispatch.clone();
    let dispatcher = std::thread::Builder::new()
        .name(format!("{}-dispatch", config.name))
        .stack_size(config.dispatcher_stack_size)
        .spawn(move || {
            OWNER.with(|o| o.set(owner));
            for t in previous_rx.recv().unwrap_or_default() {
                let _ = t.join();
            }
            d.run(exit_when_idle)
        })?;
    let d = dispatch.clone();
    let io_thread = std::thread::Builder::new()
        .name(format!("{}-io", config.name))
        .stack_size(config.io_stack_size)
        .spawn(move || {
            OWNER.with(|o| o.set(owner));
            // However the loop ends, the dispatcher learns that nothing more comes.
            struct Gone(Arc<DispatchShared>);
            impl Drop for Gone {
                fn drop(&mut self) {
                    self.0.loop_gone();
                }
            }
            let _gone = Gone(d);
            reactor.run()
        });
    match io_thread {
        Ok(io_thread) => {
            let _ = previous_tx.send(std::mem::take(previous));
            Ok((Threads { io, dispatch }, vec![io_thread, dispatcher]))
        }
        Err(e) => {
            drop(previous_tx);
            dispatch.loop_gone();
            let _ = dispatcher.join();
            Err(e)
        }
    }
}

/// Two threads shared by any number of clients: one I/O thread (one readiness loop over
/// all their sockets) and one dispatcher thread (their callbacks) — for programs that hold
/// many connections (load generators, bots, gateways, device simulators).
///
/// Make one, and give it to each client's builder
/// ([`WebPubSubClientBuilder::runtime`](crate::WebPubSubClientBuilder::runtime)). Each
/// client keeps its own callback order, backpressure, recovery, reconnect and lifecycle;
/// stopping one touches no other. A client without a runtime has two threads of its own
/// (the default). `Runtime` is cheap to clone (clones share the threads) and
/// `Send + Sync`. The threads start with the first client's `start()` and end when the
/// last clone of the runtime and the last client built with it are dropped (the drop that
/// ends them waits for them, unless it happens on one of them).
///
/// The dispatcher serves the clients fairly: while one client's callback is slow, another
/// client's event waits for at most that one callback, and the slow client's own events
/// wait in its own queue, bounded by its
/// [`max_event_backlog`](crate::WebPubSubClientBuilder::max_event_backlog) (then the I/O
/// thread pauses reading that client's socket alone). A callback that blocks still holds
/// the dispatcher meanwhile: on a shared runtime, keep callbacks short and hand long work to
/// other threads.
///
/// ```no_run
/// use webpubsub_client::{Runtime, WebPubSubClient};
///
/// # fn main() -> Result<(), webpubsub_client::Error> {
/// # let urls = vec!["wss://example.com/client/hubs/chat?access_token=t".to_owned()];
/// let runtime = Runtime::new();
/// let mut clients = Vec::new();
/// for url in &urls {
///     let client = WebPubSubClient::builder(url).runtime(&runtime).build()?;
///     client.on_server_message(|m| println!("{:?}", m.data));
///     client.start()?.detach();
///     clients.push(client);
/// }
/// // Two threads in all, however many clients.
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    config: ThreadConfig,
    running: Mutex<Option<Running>>,
}

struct Running {
    threads: Threads,
    handles: Vec<JoinHandle<()>>,
}

impl Runtime {
    /// A runtime with the default thread names (`webpubsub-io`, `webpubsub-dispatch`) and
    /// stack sizes (see [`RuntimeBuilder`]). Its threads start with the first client.
    pub fn new() -> Runtime {
        Runtime::builder().build()
    }

    /// A builder for the threads' names and stack sizes.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder {
            config: ThreadConfig::default(),
        }
    }

    /// The running threads, started on first use.
    pub(crate) fn threads(&self) -> std::io::Result<Threads> {
        let mut running = self.inner.running.lock();
        // The loop ends before the runtime only if its poll failed, which ended every client
        // of it: later clients get new threads, whose dispatcher joins the old ones first.
        let (old, mut previous) = match running.take() {
            Some(r) if !r.handles[0].is_finished() => {
                let threads = r.threads.clone();
                *running = Some(r);
                return Ok(threads);
            }
            Some(r) => (Some(r.threads), r.handles),
            None => (None, Vec::new()),
        };
        match spawn(&self.inner.config, self.owner(), false, &mut previous) {
            Ok((threads, handles)) => {
                *running = Some(Running {
                    threads: threads.clone(),
                    handles,
                });
                Ok(threads)
            }
            Err(e) => {
                // Nothing was spawned and `previous` is untouched: the old threads stay to be
                // joined by the next start or the drop.
                if let Some(threads) = old {
                    *running = Some(Running {
                        threads,
                        handles: previous,
                    });
                }
                Err(e)
            }
        }
    }

    /// What marks this runtime's threads (see [`current_owner`]).
    pub(crate) fn owner(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }
}

impl Default for Runtime {
    fn default() -> Runtime {
        Runtime::new()
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("name", &self.inner.config.name)
            .field("started", &self.inner.running.lock().is_some())
            .finish()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let Some(running) = self.running.get_mut().take() else {
            return;
        };
        // Every client built with this runtime held a clone: all of them are stopped or
        // stopping. The loop ends once their last drivers are done, the dispatcher after it.
        running.threads.io.close();
        if current_owner() == self as *const Inner as usize {
            // The last clone went away in a callback: joining would wait for this very
            // thread. The threads end by themselves.
            return;
        }
        for h in running.handles {
            let _ = h.join();
        }
    }
}

/// Builds a [`Runtime`]; see [`Runtime::builder`].
#[derive(Debug, Clone)]
pub struct RuntimeBuilder {
    config: ThreadConfig,
}

impl RuntimeBuilder {
    /// The threads' names: `{name}-io` and `{name}-dispatch` (Linux shows the first 15
    /// bytes). Defaults to `webpubsub`.
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// The I/O thread's stack size in bytes. It runs the readiness loop, TLS handshakes,
    /// name resolution and the [credential provider](crate::Credential::from_fn) — never a
    /// callback. Defaults to 256 KiB.
    pub fn io_stack_size(mut self, bytes: usize) -> Self {
        self.config.io_stack_size = bytes;
        self
    }

    /// The dispatcher thread's stack size in bytes: **your callbacks run on it**. Raise it
    /// for callbacks that recurse deeply or keep large values on the stack. Defaults to
    /// 1 MiB (Rust's spawned threads get 2 MiB; only the pages a thread touches count in
    /// its memory, whatever the size).
    pub fn dispatcher_stack_size(mut self, bytes: usize) -> Self {
        self.config.dispatcher_stack_size = bytes;
        self
    }

    /// The runtime (its threads start with the first client).
    pub fn build(self) -> Runtime {
        Runtime {
            inner: Arc::new(Inner {
                config: self.config,
                running: Mutex::new(None),
            }),
        }
    }
}
