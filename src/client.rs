//! The client handle, its lifecycle (`start`/`stop`) and its blocking operations.

use crate::acks::{AckHandle, AckOutcome, AckReceiver, RequestOptions, Waiter};
use crate::error::{Error, InvalidInput, Result, StateError, TimeoutKind};
use crate::events::Registry;
use crate::options::{Credential, Options, WebPubSubClientBuilder};
use crate::protocol::{ClientMessage, Data, Metadata, MAX_GROUP_NAME_CHARS, MAX_MESSAGE_BYTES};
use crate::state::{ClientState, RequestKind, Session};
use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tungstenite::Utf8Bytes;

/// A Web PubSub client: cheap to clone (all clones share one connection), `Send + Sync`, and
/// blocking — every operation waits on the calling thread.
///
/// Dropping the last clone stops the client. See the [crate docs](crate) for a tour.
#[derive(Clone)]
pub struct WebPubSubClient {
    handle: Arc<Handle>,
}

/// Stops the client when the last user-facing clone goes away. Background threads hold the
/// `Core`, never a `Handle`, so they do not keep the client alive.
struct Handle {
    core: Arc<Core>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.core.stop();
    }
}

/// Everything a client's threads share.
///
/// Lock order: `lifecycle` before `shared`; no lock is held while user code runs or while a
/// thread is joined, except `lifecycle` (held only by threads that are not the client's own).
pub(crate) struct Core {
    pub(crate) options: Options,
    pub(crate) shared: Mutex<Shared>,
    pub(crate) registry: Arc<Registry>,
    lifecycle: Mutex<Vec<JoinHandle<()>>>,
    tls: Mutex<Option<native_tls::TlsConnector>>,
}

/// The state request threads and the I/O thread share, behind `Core::shared`.
pub(crate) struct Shared {
    pub(crate) session: Session<Waiter>,
    pub(crate) run: Option<Arc<RunCtl>>,
}

/// The controls of one run (one `start` to its stop).
pub(crate) struct RunCtl {
    pub(crate) waker: mio::Waker,
    stop_requested: AtomicBool,
    stop_tx: Mutex<Option<Sender<()>>>,
    /// Disconnected (never sent to) once a stop is requested: backoff waits select on it.
    pub(crate) stop_rx: Receiver<()>,
    pub(crate) start: StartSignal,
}

thread_local! {
    /// The `Core` (by address) whose I/O or dispatcher thread this is; 0 elsewhere.
    static OWN_CLIENT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl RunCtl {
    pub(crate) fn new(waker: mio::Waker) -> RunCtl {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
        RunCtl {
            waker,
            stop_requested: AtomicBool::new(false),
            stop_tx: Mutex::new(Some(stop_tx)),
            stop_rx,
            start: StartSignal::default(),
        }
    }

    pub(crate) fn request_stop(&self) {
        self.stop_requested.store(true, Ordering::SeqCst);
        self.stop_tx.lock().take();
        let _ = self.waker.wake();
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

    fn wait(&self, deadline: Instant) -> Option<Result<()>> {
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
    /// Whether the calling thread is one of this client's threads (of any run, even one
    /// that is ending): joining or waiting for them from there would deadlock.
    pub(crate) fn on_own_thread(&self) -> bool {
        OWN_CLIENT.with(|c| c.get() == self as *const Core as usize)
    }

    /// Marks the calling thread as one of this client's threads.
    pub(crate) fn mark_own_thread(&self) {
        OWN_CLIENT.with(|c| c.set(self as *const Core as usize));
    }

    fn run(&self) -> Option<Arc<RunCtl>> {
        self.shared.lock().run.clone()
    }

    /// Stops the current run (B5). From the client's own threads it only requests the stop.
    pub(crate) fn stop(&self) {
        let run = {
            let mut sh = self.shared.lock();
            let run = sh.run.clone();
            if run.is_some() && sh.session.state != ClientState::Stopped {
                sh.session.state = ClientState::Stopping;
            }
            run
        };
        if let Some(run) = &run {
            run.request_stop();
        }
        if self.on_own_thread() {
            log::debug!("stop() on a client thread: stopping asynchronously");
            return;
        }
        let mut threads = self.lifecycle.lock();
        for t in threads.drain(..) {
            let _ = t.join();
        }
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
        frame: Utf8Bytes,
    ) -> Result<AckReceiver> {
        let (tx, rx) = crate::acks::waiter();
        let wake = {
            let mut sh = self.shared.lock();
            let wake = sh.session.register(ack_id, kind, frame, tx)?;
            if wake {
                sh.run.clone()
            } else {
                None
            }
        };
        if let Some(run) = wake {
            let _ = run.waker.wake();
        }
        Ok(rx)
    }

    fn queue_frame(&self, frame: Utf8Bytes) -> Result<()> {
        let wake = {
            let mut sh = self.shared.lock();
            if sh.session.queue_frame(frame)? {
                sh.run.clone()
            } else {
                None
            }
        };
        if let Some(run) = wake {
            let _ = run.waker.wake();
        }
        Ok(())
    }

    pub(crate) fn abandon(&self, ack_id: u64) {
        self.shared.lock().session.abandon(ack_id);
    }

    /// Waits until `deadline`; `false` if the client stopped first (B5: backoff waits are
    /// interruptible).
    pub(crate) fn wait_unless_stopped(&self, deadline: Instant) -> bool {
        let Some(run) = self.run() else {
            return false;
        };
        if run.stop_requested() {
            return false;
        }
        matches!(
            run.stop_rx.recv_deadline(deadline),
            Err(crossbeam_channel::RecvTimeoutError::Timeout)
        )
    }
}

impl fmt::Debug for WebPubSubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebPubSubClient")
            .field("state", &self.state())
            .field("connection_id", &self.connection_id())
            .field("options", &self.handle.core.options)
            .finish()
    }
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Core { .. }")
    }
}

/// Keeps the client started; dropping it stops the client (B6). Derefs to the client.
#[derive(Debug)]
#[must_use = "dropping the StartGuard stops the client at once"]
pub struct StartGuard {
    client: WebPubSubClient,
    detached: bool,
}

impl StartGuard {
    /// The client.
    pub fn client(&self) -> &WebPubSubClient {
        &self.client
    }

    /// Keeps the client running after the guard is gone (stop it with
    /// [`WebPubSubClient::stop`]).
    pub fn detach(mut self) -> WebPubSubClient {
        self.detached = true;
        self.client.clone()
    }
}

impl std::ops::Deref for StartGuard {
    type Target = WebPubSubClient;
    fn deref(&self) -> &WebPubSubClient {
        &self.client
    }
}

impl Drop for StartGuard {
    fn drop(&mut self) {
        if !self.detached {
            self.client.stop();
        }
    }
}

impl WebPubSubClient {
    /// A client for a client access URL, with default options. Fails with
    /// [`InvalidInput::Url`] for an unusable URL (B35).
    pub fn new(url: &str) -> Result<WebPubSubClient> {
        WebPubSubClient::builder(url).build()
    }

    /// A builder: a URL (`&str`, `String`) or a [`Credential`] provider, then options.
    pub fn builder(credential: impl Into<Credential>) -> WebPubSubClientBuilder {
        WebPubSubClientBuilder::new(credential.into())
    }

    pub(crate) fn from_options(options: Options) -> WebPubSubClient {
        let auto_rejoin = options.auto_rejoin_groups;
        WebPubSubClient {
            handle: Arc::new(Handle {
                core: Arc::new(Core {
                    options,
                    shared: Mutex::new(Shared {
                        session: Session::new(auto_rejoin),
                        run: None,
                    }),
                    registry: Arc::default(),
                    lifecycle: Mutex::new(Vec::new()),
                    tls: Mutex::new(None),
                }),
            }),
        }
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.handle.core
    }

    /// Connects and returns once the service's `connected` message arrived and the automatic
    /// rejoin settled (B3), or fails with the cause: [`Error::Connect`] (HTTP status of a
    /// refused upgrade, TLS, DNS/TCP, close code), or [`TimeoutKind::Start`]. A failed start
    /// leaves the client Stopped and fires no `stopped` (B4). Only allowed from Stopped (B2).
    ///
    /// Dropping the returned guard stops the client; [`StartGuard::detach`] keeps it running.
    pub fn start(&self) -> Result<StartGuard> {
        let core = self.core();
        if core.on_own_thread() {
            return Err(Error::State(StateError::OwnThread));
        }
        let mut threads = core.lifecycle.lock();
        core.shared.lock().session.begin_start()?;
        // Threads of a run that ended by itself (or stopped asynchronously) are joined here;
        // they are past their last event.
        for t in threads.drain(..) {
            let _ = t.join();
        }
        let run = match crate::io::spawn(core.clone()) {
            Ok((run, handles)) => {
                threads.extend(handles);
                run
            }
            Err(e) => {
                core.shared.lock().session.state = ClientState::Stopped;
                return Err(e);
            }
        };
        let deadline = Instant::now() + core.options.start_timeout;
        let outcome = run.start.wait(deadline);
        drop(threads);
        match outcome {
            Some(Ok(())) => Ok(StartGuard {
                client: self.clone(),
                detached: false,
            }),
            Some(Err(e)) => {
                core.stop();
                Err(e)
            }
            None => {
                core.stop();
                Err(Error::Timeout(TimeoutKind::Start(
                    core.options.start_timeout,
                )))
            }
        }
    }

    /// Stops the client (B5): idempotent; interrupts any recovery, reconnect or backoff at
    /// once; fails waiting requests with [`Error::Stopped`]; fires `disconnected` (if connected)
    /// then `stopped`; returns after the background threads ended. Called from a callback (or
    /// the client's own thread), it stops asynchronously instead, without deadlock.
    pub fn stop(&self) {
        self.core().stop();
    }

    /// The current state (B1).
    pub fn state(&self) -> ClientState {
        self.core().shared.lock().session.state
    }

    /// The connection id of the current session, if connected (or recovering).
    pub fn connection_id(&self) -> Option<String> {
        self.core().shared.lock().session.connection_id.clone()
    }

    /// The user id the service reported for the current connection.
    pub fn user_id(&self) -> Option<String> {
        self.core().shared.lock().session.user_id.clone()
    }

    /// The groups the client joined and would rejoin after a new connection (B23).
    pub fn joined_groups(&self) -> Vec<String> {
        self.core()
            .shared
            .lock()
            .session
            .groups()
            .cloned()
            .collect()
    }

    // ----- requests -----

    /// Queues a request; the common path of every operation.
    fn request(
        &self,
        kind: RequestKind,
        mut msg: ClientMessage,
        opts: &RequestOptions,
    ) -> Result<AckHandle> {
        let core = self.core();
        let timeout = opts.timeout.unwrap_or(core.options.ack_timeout);
        if opts.fire_and_forget {
            if opts.ack_id.is_some() {
                return Err(Error::InvalidInput(InvalidInput::Options(
                    "a fire-and-forget request carries no ack id".into(),
                )));
            }
            let frame = encode_checked(&msg)?;
            core.queue_frame(frame.clone())?;
            return Ok(AckHandle::new(core.clone(), 0, kind, frame, None, timeout));
        }
        let ack_id = match opts.ack_id {
            Some(id) => id,
            None => {
                let mut sh = core.shared.lock();
                if matches!(
                    sh.session.state,
                    ClientState::Stopped | ClientState::Stopping
                ) {
                    return Err(Error::Stopped);
                }
                sh.session.next_id()
            }
        };
        set_ack_id(&mut msg, ack_id);
        let frame = encode_checked(&msg)?;
        let rx = core.register(ack_id, kind.clone(), frame.clone())?;
        Ok(AckHandle::new(
            core.clone(),
            ack_id,
            kind,
            frame,
            Some(rx),
            timeout,
        ))
    }

    /// Joins `group` and waits for the ack. Remembered for rejoin after a new connection.
    pub fn join_group(&self, group: &str) -> Result<AckOutcome> {
        self.join_group_with(group, &RequestOptions::default())
    }

    /// [`join_group`](Self::join_group) with options.
    pub fn join_group_with(&self, group: &str, opts: &RequestOptions) -> Result<AckOutcome> {
        self.join_group_nowait(group, opts)?.wait()
    }

    /// Sends a `joinGroup` and returns a handle to wait on (B29).
    pub fn join_group_nowait(&self, group: &str, opts: &RequestOptions) -> Result<AckHandle> {
        check_group(group)?;
        let msg = ClientMessage::JoinGroup {
            group: group.to_owned(),
            ack_id: None,
        };
        self.request(RequestKind::Join(group.to_owned()), msg, opts)
    }

    /// Leaves `group` and waits for the ack; the group is then no longer rejoined.
    pub fn leave_group(&self, group: &str) -> Result<AckOutcome> {
        self.leave_group_with(group, &RequestOptions::default())
    }

    /// [`leave_group`](Self::leave_group) with options.
    pub fn leave_group_with(&self, group: &str, opts: &RequestOptions) -> Result<AckOutcome> {
        self.leave_group_nowait(group, opts)?.wait()
    }

    /// Sends a `leaveGroup` and returns a handle to wait on (B29).
    pub fn leave_group_nowait(&self, group: &str, opts: &RequestOptions) -> Result<AckHandle> {
        check_group(group)?;
        let msg = ClientMessage::LeaveGroup {
            group: group.to_owned(),
            ack_id: None,
        };
        self.request(RequestKind::Leave(group.to_owned()), msg, opts)
    }

    /// Publishes `data` to `group` and waits for the ack.
    ///
    /// `data` is text (`&str`, `String`), JSON (`serde_json::Value`, or [`Data::json`]), or
    /// bytes (`Vec<u8>`, `&[u8]`).
    pub fn send_to_group(&self, group: &str, data: impl Into<Data>) -> Result<AckOutcome> {
        self.send_to_group_with(group, data, &RequestOptions::default())
    }

    /// [`send_to_group`](Self::send_to_group) with `timeout` bounding each attempt.
    pub fn send_to_group_timeout(
        &self,
        group: &str,
        data: impl Into<Data>,
        timeout: Duration,
    ) -> Result<AckOutcome> {
        self.send_to_group_with(group, data, &RequestOptions::new().timeout(timeout))
    }

    /// [`send_to_group`](Self::send_to_group) with options (ack id, no echo,
    /// fire-and-forget, timeout).
    pub fn send_to_group_with(
        &self,
        group: &str,
        data: impl Into<Data>,
        opts: &RequestOptions,
    ) -> Result<AckOutcome> {
        self.send_to_group_nowait(group, data, opts)?.wait()
    }

    /// Sends a `sendToGroup` and returns a handle to wait on later, so one thread can keep
    /// many requests in flight (B29).
    pub fn send_to_group_nowait(
        &self,
        group: &str,
        data: impl Into<Data>,
        opts: &RequestOptions,
    ) -> Result<AckHandle> {
        check_group(group)?;
        let msg = ClientMessage::SendToGroup {
            group: group.to_owned(),
            ack_id: None,
            no_echo: opts.no_echo,
            data: data.into(),
            ttl_seconds: None,
            metadata: Metadata::default(),
        };
        self.request(RequestKind::Other, msg, opts)
    }

    /// Sends an event to the upstream event handler and waits for the ack.
    pub fn send_event(&self, event: &str, data: impl Into<Data>) -> Result<AckOutcome> {
        self.send_event_with(event, data, &RequestOptions::default())
    }

    /// [`send_event`](Self::send_event) with `timeout` bounding each attempt.
    pub fn send_event_timeout(
        &self,
        event: &str,
        data: impl Into<Data>,
        timeout: Duration,
    ) -> Result<AckOutcome> {
        self.send_event_with(event, data, &RequestOptions::new().timeout(timeout))
    }

    /// [`send_event`](Self::send_event) with options.
    pub fn send_event_with(
        &self,
        event: &str,
        data: impl Into<Data>,
        opts: &RequestOptions,
    ) -> Result<AckOutcome> {
        self.send_event_nowait(event, data, opts)?.wait()
    }

    /// Sends an `event` and returns a handle to wait on (B29).
    pub fn send_event_nowait(
        &self,
        event: &str,
        data: impl Into<Data>,
        opts: &RequestOptions,
    ) -> Result<AckHandle> {
        if event.is_empty() {
            return Err(Error::InvalidInput(InvalidInput::EventName));
        }
        let msg = ClientMessage::Event {
            event: event.to_owned(),
            ack_id: None,
            data: data.into(),
            metadata: Metadata::default(),
        };
        self.request(RequestKind::Other, msg, opts)
    }
}

/// B35: group names are 1..=1024 characters.
fn check_group(group: &str) -> Result<()> {
    if group.is_empty() {
        return Err(Error::InvalidInput(InvalidInput::GroupName("empty".into())));
    }
    let chars = group.chars().count();
    if chars > MAX_GROUP_NAME_CHARS {
        return Err(Error::InvalidInput(InvalidInput::GroupName(format!(
            "{chars} characters, more than {MAX_GROUP_NAME_CHARS}"
        ))));
    }
    Ok(())
}

/// Encodes a request; B35: refuses messages over the service's 1 MB limit.
fn encode_checked(msg: &ClientMessage) -> Result<Utf8Bytes> {
    let frame = msg.encode();
    if frame.len() > MAX_MESSAGE_BYTES {
        return Err(Error::InvalidInput(InvalidInput::PayloadTooLarge {
            size: frame.len(),
            max: MAX_MESSAGE_BYTES,
        }));
    }
    Ok(frame.into())
}

fn set_ack_id(msg: &mut ClientMessage, id: u64) {
    match msg {
        ClientMessage::JoinGroup { ack_id, .. }
        | ClientMessage::LeaveGroup { ack_id, .. }
        | ClientMessage::SendToGroup { ack_id, .. }
        | ClientMessage::Event { ack_id, .. } => *ack_id = Some(id),
        _ => {}
    }
}
