//! The client handle: its lifecycle (`start`/`stop`), its blocking operations (requests and
//! invocations); the registration of event handlers and streams is in `handlers.rs`.

use crate::ack_table::{AckOutcome, RequestKind};
use crate::acks::{AckHandle, RequestOptions};
use crate::core::{Core, RunCtl, RunEnds};
use crate::error::{Error, InvalidInput, Result, TimeoutKind};
use crate::invocations::InvokeResponse;
use crate::invoke::{InvokeHandle, InvokeOptions};
use crate::options::{Credential, Options, WebPubSubClientBuilder};
use crate::protocol::{check_message_size, check_protobuf_payload, ClientMessage, Data};
use crate::runtime::Runtime;
use crate::state::ClientState;
use crate::wire::WireFrame;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod handlers;

/// A Web PubSub client: cheap to clone (all clones share one connection), `Send + Sync`, and
/// blocking — every operation waits on the calling thread.
///
/// Dropping the last clone stops the client. See the [crate docs](crate) for a tour.
#[derive(Clone)]
pub struct WebPubSubClient {
    handle: Arc<Handle>,
}

/// Stops the client when the last user-facing clone goes away. Background threads hold the
/// `Core`, never a `Handle`, so they do not keep the client alive. The shared runtime is
/// held here, not by the `Core`: the last client (or runtime handle) to go ends its threads
/// on the user's side, after the client stopped.
struct Handle {
    core: Arc<Core>,
    runtime: Option<Runtime>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.core.stop();
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

impl WebPubSubClientBuilder {
    /// Checks the options and builds the client (stopped; call
    /// [`start`](WebPubSubClient::start)). Fails with [`InvalidInput::Url`] for an unusable
    /// fixed URL.
    pub fn build(self) -> Result<WebPubSubClient> {
        let (options, runtime) = self.into_parts()?;
        Ok(WebPubSubClient::from_options(options, runtime))
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

    fn from_options(options: Options, runtime: Option<Runtime>) -> WebPubSubClient {
        let shared = runtime.as_ref().map(Runtime::owner);
        WebPubSubClient {
            handle: Arc::new(Handle {
                core: Arc::new(Core::new(options, shared)),
                runtime,
            }),
        }
    }

    fn core(&self) -> &Arc<Core> {
        &self.handle.core
    }

    /// Connects and returns once the service's `connected` message arrived and the automatic
    /// rejoin settled (B3), or fails with the cause: [`Error::Connect`] (HTTP status of a
    /// refused upgrade, TLS, DNS/TCP, close code), or [`TimeoutKind::Start`]. A failed start
    /// leaves the client Stopped and fires no `stopped` (B4). Only allowed from Stopped (B2):
    /// [`StateError::AlreadyStarted`](crate::StateError::AlreadyStarted) otherwise, or [`StateError::Stopping`](crate::StateError::Stopping) while a stop is
    /// in progress.
    ///
    /// Dropping the returned guard stops the client; [`StartGuard::detach`] keeps it running.
    ///
    /// # From a callback
    ///
    /// `start()` may be called from a callback — above all from
    /// [`on_stopped`](Self::on_stopped), to restart a client that stopped by itself (as the
    /// Python guide does in its `stopped` handler). It behaves as anywhere else: it blocks that
    /// callback until the new connection is ready and returns the guard, or the error. The new
    /// connection's callbacks begin once that callback returned, so callbacks still run one at
    /// a time. Keep the guard (or [`detach`](StartGuard::detach) it): dropping it at the end of
    /// the callback stops the client again. A `stop()` that waits for the threads (a call from
    /// another thread, or a dropped guard there) is final: a start from the `stopped` callback
    /// it fires fails with [`StateError::Stopping`](crate::StateError::Stopping).
    pub fn start(&self) -> Result<StartGuard> {
        let core = self.core();
        let deadline = Instant::now() + core.options.start_timeout;
        let outcome = if core.on_own_thread() {
            // This thread is one of the previous run's (or the shared runtime's): the new
            // dispatcher joins the previous threads, or the shared one delivers the previous
            // run's last events first.
            let run = {
                let mut ends = core.ends.lock();
                core.shared.lock().session.begin_start()?;
                self.launch(&mut ends)?
            };
            run.start.wait(deadline)
        } else {
            let _serial = core.lifecycle.lock();
            core.shared.lock().session.begin_start()?;
            // A run that ended by itself (or stopped asynchronously) is waited for here; it
            // is past its last event.
            std::mem::take(&mut *core.ends.lock()).wait();
            let run = self.launch(&mut core.ends.lock())?;
            run.start.wait(deadline)
        };
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

    /// Begins the run that `begin_start` admitted: on the shared runtime, or on two new
    /// threads of the client's own, whose dispatcher first joins the previous run's threads
    /// left in `ends` (see [`crate::runtime::spawn`]).
    fn launch(&self, ends: &mut RunEnds) -> Result<Arc<RunCtl>> {
        let core = self.core();
        let launched = match &self.handle.runtime {
            Some(runtime) => runtime.threads().map(|threads| {
                let run = crate::io::launch(core, &threads, core.queue_on(&threads.dispatch));
                ends.add_latch(run.done.clone());
                run
            }),
            None => {
                crate::runtime::spawn(&core.options.threads, core.owner(), true, &mut ends.threads)
                    .map(|(threads, handles)| {
                        let run =
                            crate::io::launch(core, &threads, core.queue_on(&threads.dispatch));
                        ends.threads.extend(handles);
                        run
                    })
            }
        };
        launched.map_err(Error::io).inspect_err(|_| {
            core.shared.lock().session.abort_start();
        })
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
        self.core().shared.lock().session.state()
    }

    /// The connection id of the current session, if connected (or recovering).
    pub fn connection_id(&self) -> Option<String> {
        self.core()
            .shared
            .lock()
            .session
            .connection_id()
            .map(str::to_owned)
    }

    /// The user id the service reported for the current connection.
    pub fn user_id(&self) -> Option<String> {
        self.core()
            .shared
            .lock()
            .session
            .user_id()
            .map(str::to_owned)
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

    /// Queues a request; the common path of every operation. The message is checked
    /// against the wire's rules first (B35, B41): nothing is sent if it is refused.
    fn request(
        &self,
        kind: RequestKind,
        mut msg: ClientMessage,
        opts: &RequestOptions,
    ) -> Result<AckHandle> {
        let core = self.core();
        msg.check()?;
        let timeout = opts.timeout.unwrap_or(core.options.ack_timeout);
        if opts.fire_and_forget {
            if opts.ack_id.is_some() {
                return Err(Error::InvalidInput(InvalidInput::Options(
                    "a fire-and-forget request carries no ack id".into(),
                )));
            }
            let frame = self.encode_checked(&msg)?;
            core.queue_frame(frame.clone())?;
            return Ok(AckHandle::new(core.clone(), 0, kind, frame, None, timeout));
        }
        let ack_id = match opts.ack_id {
            Some(id) => id,
            None => core.shared.lock().session.new_ack_id()?,
        };
        set_ack_id(&mut msg, ack_id);
        let frame = self.encode_checked(&msg)?;
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

    /// Encodes a message in the client's subprotocol; B35: refuses messages over the
    /// service's limit, measured on the encoded frame (base64 and escapes count in JSON),
    /// and `protobuf` payloads that are not a serialised `Any` (a protobuf receiver could
    /// not read the frame).
    fn encode_checked(&self, msg: &ClientMessage) -> Result<WireFrame> {
        if let ClientMessage::SendToGroup {
            data: Data::Protobuf(bytes),
            ..
        }
        | ClientMessage::Event {
            data: Data::Protobuf(bytes),
            ..
        }
        | ClientMessage::Invoke {
            data: Some(Data::Protobuf(bytes)),
            ..
        } = msg
        {
            check_protobuf_payload(bytes)?;
        }
        let frame = WireFrame::encode(msg, self.core().options.protocol.subprotocol());
        check_message_size(frame.len())?;
        Ok(frame)
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
        no_message_options(opts, "join_group")?;
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
        no_message_options(opts, "leave_group")?;
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
    /// fire-and-forget, timeout, metadata, time to live).
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
        let msg = ClientMessage::SendToGroup {
            group: group.to_owned(),
            ack_id: None,
            no_echo: opts.no_echo,
            data: data.into(),
            ttl_seconds: opts.ttl_seconds,
            metadata: opts.metadata.clone(),
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

    /// [`send_event`](Self::send_event) with options (ack id, fire-and-forget, timeout,
    /// metadata; a time to live is refused: it is for `send_to_group`).
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
        if opts.ttl_seconds.is_some() {
            return Err(Error::InvalidInput(InvalidInput::Options(
                "a time to live is for send_to_group only".into(),
            )));
        }
        let msg = ClientMessage::Event {
            event: event.to_owned(),
            ack_id: None,
            data: data.into(),
            metadata: opts.metadata.clone(),
        };
        self.request(RequestKind::Other, msg, opts)
    }

    // ----- invocations (B38-B40) -----

    /// Invokes the event handler with the event `event` and waits for its response (B38):
    /// request/response with your application server, bounded by the ack timeout.
    ///
    /// `data` is the payload, as for [`send_event`](Self::send_event). Fails with [`Error::Invoke`] when the event handler failed (the service's error
    /// name, e.g. `InvocationFailed`, and message), [`TimeoutKind::Invoke`] when no response
    /// came in time, and [`Error::InvocationLost`] when the connection dropped meanwhile
    /// (outcome unknown). Invocations are never retried (B40). An invocation made while the
    /// client recovers waits for the connection (B30).
    ///
    /// ```no_run
    /// # use webpubsub_client::{Data, WebPubSubClient};
    /// # fn main() -> Result<(), webpubsub_client::Error> {
    /// # let client = WebPubSubClient::new("wss://h/client/hubs/chat?access_token=t")?;
    /// let answer = client.invoke_event("lookup", serde_json::json!({"id": 7}))?;
    /// match answer.data {
    ///     Some(Data::Json(v)) => println!("found {v}"),
    ///     other => println!("unexpected answer {other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn invoke_event(&self, event: &str, data: impl Into<Data>) -> Result<InvokeResponse> {
        self.invoke_event_with(event, data, &InvokeOptions::default())
    }

    /// [`invoke_event`](Self::invoke_event) with options (timeout, metadata).
    pub fn invoke_event_with(
        &self,
        event: &str,
        data: impl Into<Data>,
        opts: &InvokeOptions,
    ) -> Result<InvokeResponse> {
        self.invoke_event_nowait(event, data, opts)?.wait()
    }

    /// Sends an `invoke` and returns a handle to wait on or cancel — from any thread
    /// ([`InvokeHandle`], B39). Dropping the last clone of the handle while the invocation
    /// is pending cancels it.
    pub fn invoke_event_nowait(
        &self,
        event: &str,
        data: impl Into<Data>,
        opts: &InvokeOptions,
    ) -> Result<InvokeHandle> {
        let core = self.core();
        let mut msg = ClientMessage::Invoke {
            invocation_id: String::new(),
            event: event.to_owned(),
            data: Some(data.into()),
            metadata: opts.metadata.clone(),
        };
        msg.check()?;
        let invocation_id = core.new_invocation_id()?;
        if let ClientMessage::Invoke {
            invocation_id: id, ..
        } = &mut msg
        {
            *id = invocation_id.to_string();
        }
        let frame = self.encode_checked(&msg)?;
        let rx = core.register_invocation(invocation_id, frame)?;
        let timeout = opts.timeout.unwrap_or(core.options.ack_timeout);
        Ok(InvokeHandle::new(core.clone(), invocation_id, rx, timeout))
    }
}

/// Joins and leaves carry no message options (B41): refused rather than silently dropped.
fn no_message_options(opts: &RequestOptions, operation: &str) -> Result<()> {
    if !opts.metadata.is_empty() || opts.ttl_seconds.is_some() {
        return Err(Error::InvalidInput(InvalidInput::Options(format!(
            "{operation} carries no metadata and no time to live"
        ))));
    }
    Ok(())
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
