//! What callers of `invoke_event` hold: the per-invocation options and the [`InvokeHandle`]
//! to wait on or cancel (B38–B40).

use crate::core::Core;
use crate::error::{Cancelled, Error, Result, TimeoutKind};
use crate::invocations::{InvokeResponse, InvokeResult};
use crate::protocol::Metadata;
use crate::waiter::{RecvError, SlotReceiver};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Options of [`invoke_event_with`](crate::WebPubSubClient::invoke_event_with) and
/// [`invoke_event_nowait`](crate::WebPubSubClient::invoke_event_nowait).
///
/// ```
/// use std::time::Duration;
/// use webpubsub_client::{protocol::Metadata, InvokeOptions};
/// let opts = InvokeOptions::new()
///     .timeout(Duration::from_secs(5))
///     .metadata(Metadata::new().with("trace-id", "4bf92f35"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvokeOptions {
    /// How long a wait for the response may take. When it passes, the client sends
    /// `cancelInvocation` and the wait fails with [`TimeoutKind::Invoke`]. Defaults to the
    /// client's [`ack_timeout`](crate::WebPubSubClientBuilder::ack_timeout) (30 s).
    pub timeout: Option<Duration>,
    /// Metadata the event handler gets with the request (B41), checked before sending as a
    /// request's ([`RequestOptions::metadata`](crate::RequestOptions::metadata)). Defaults
    /// to none.
    pub metadata: Metadata,
}

impl InvokeOptions {
    /// The defaults: the client's ack timeout, no metadata.
    pub fn new() -> InvokeOptions {
        InvokeOptions::default()
    }

    /// Sets [`timeout`](InvokeOptions::timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets [`metadata`](InvokeOptions::metadata).
    pub fn metadata(mut self, metadata: impl Into<Metadata>) -> Self {
        self.metadata = metadata.into();
        self
    }
}

/// An invocation in flight (B38, B39): wait for its response, or cancel it — from any
/// thread.
///
/// Returned by [`invoke_event_nowait`](crate::WebPubSubClient::invoke_event_nowait).
/// Clones share the invocation, so one can go to a GUI's cancel button while another
/// thread waits: [`cancel`](InvokeHandle::cancel) returns every waiter at once with
/// [`Error::Cancelled`], the client sends `cancelInvocation`, and a late response is
/// dropped. Every clone that waits gets the same outcome.
///
/// **Dropping the last clone of a pending invocation cancels it** (and sends
/// `cancelInvocation`): nobody can receive its answer any more, so the event handler's work
/// is wasted, and the service is told. To have the event handler run without waiting for it,
/// send an event ([`send_event`](crate::WebPubSubClient::send_event)) instead.
///
/// Invocations are never retried or resent (B40): a drop of the connection fails a pending
/// invocation with [`Error::InvocationLost`] (outcome unknown), even when the session is
/// then recovered.
#[derive(Clone)]
#[must_use = "dropping an InvokeHandle cancels the invocation"]
pub struct InvokeHandle {
    inner: Arc<Inner>,
}

struct Inner {
    core: Arc<Core>,
    invocation_id: u64,
    rx: SlotReceiver<InvokeResult>,
    timeout: Duration,
}

impl InvokeHandle {
    pub(crate) fn new(
        core: Arc<Core>,
        invocation_id: u64,
        rx: SlotReceiver<InvokeResult>,
        timeout: Duration,
    ) -> InvokeHandle {
        InvokeHandle {
            inner: Arc::new(Inner {
                core,
                invocation_id,
                rx,
                timeout,
            }),
        }
    }

    /// The invocation's id: unique within this client's life, never reused (B40); sent as
    /// its decimal string (`"1"`, `"2"`, …).
    pub fn invocation_id(&self) -> u64 {
        self.inner.invocation_id
    }

    /// Waits for the response, bounded by the invocation's timeout
    /// ([`InvokeOptions::timeout`], by default the client's ack timeout).
    ///
    /// Fails with [`Error::Invoke`] (the service's error name and message: the event handler
    /// failed), [`TimeoutKind::Invoke`], [`Error::Cancelled`], [`Error::InvocationLost`]
    /// (the connection dropped: outcome unknown) or [`Error::Stopped`]. None of these is
    /// retried by the client.
    pub fn wait(self) -> Result<InvokeResponse> {
        let timeout = self.inner.timeout;
        self.wait_timeout(timeout)
    }

    /// Like [`wait`](InvokeHandle::wait), with `timeout` instead of the invocation's own.
    /// When it passes, the invocation is cancelled for every clone (the client sends
    /// `cancelInvocation`) and the wait fails with [`TimeoutKind::Invoke`].
    pub fn wait_timeout(self, timeout: Duration) -> Result<InvokeResponse> {
        let inner = &self.inner;
        // The last clone takes the response; others get a copy.
        let last = Arc::strong_count(inner) == 1;
        match inner.rx.recv_shared(timeout, last) {
            Ok(r) => r,
            Err(RecvError::Timeout) => {
                let e = Error::Timeout(TimeoutKind::Invoke {
                    invocation_id: inner.invocation_id,
                });
                if inner.rx.settle(Err(e.clone())) {
                    inner.core.cancel_invocation(inner.invocation_id);
                    Err(e)
                } else {
                    // The response raced the deadline; prefer it.
                    inner
                        .rx
                        .recv_shared(Duration::ZERO, last)
                        .unwrap_or(Err(Error::Stopped))
                }
            }
            Err(RecvError::Disconnected) => Err(Error::Stopped),
        }
    }

    /// Cancels the invocation if it still waits for its response (B39): every wait returns
    /// [`Error::Cancelled`] at once, the client sends `cancelInvocation` (if the invocation
    /// had gone out; one still queued while the client recovers is simply not sent), and a
    /// late response is dropped. Whether the event handler stops is the service's and the
    /// handler's business: the outcome is unknown. A response that arrived first stays: the
    /// wait returns it. Idempotent; callable from any thread.
    pub fn cancel(&self) {
        self.inner.cancel();
    }

    /// Whether the outcome is known: a response arrived (perhaps already taken by a
    /// wait), or the invocation failed, timed out or was cancelled.
    pub fn is_finished(&self) -> bool {
        self.inner.rx.is_settled()
    }
}

impl Inner {
    fn cancel(&self) {
        let cancelled = Err(Error::Cancelled(Cancelled::Invocation {
            invocation_id: self.invocation_id,
        }));
        if self.rx.cancel(cancelled) {
            self.core.cancel_invocation(self.invocation_id);
        }
    }
}

impl Drop for Inner {
    /// The last clone went away while the invocation was pending: nobody can receive its
    /// answer, so it is cancelled (see [`InvokeHandle`]).
    fn drop(&mut self) {
        if !self.rx.is_settled() {
            log::debug!(
                "invocation {} dropped while pending: cancelled",
                self.invocation_id
            );
            self.cancel();
        }
    }
}

impl fmt::Debug for InvokeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvokeHandle")
            .field("invocation_id", &self.inner.invocation_id)
            .field("finished", &self.is_finished())
            .finish()
    }
}
