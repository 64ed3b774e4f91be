//! The request worker: the one thread of the program that blocks on the client, so that the
//! UI thread never does.
//!
//! The UI thread sends a request with a `*_nowait` operation, which only queues the frame, and
//! hands the returned [`AckHandle`] to this worker. The worker waits on the handles one after
//! the other (each wait is bounded by the client's ack timeout and retry policy), posts each
//! outcome into the UI's channel, and only then wakes the UI, whose next frame takes it.
//! Waiting in order keeps the outcomes in the order the requests were made, which is the
//! order the service acknowledges them in.

use crossbeam_channel::{Receiver, Sender};
use std::thread::JoinHandle;
use webpubsub_client::{AckHandle, AckOutcome, Error, StartGuard, WebPubSubClient};

/// The UI's name for one request, to match its outcome with what it was.
pub type RequestId = u64;

/// Work for the worker.
pub enum Job {
    /// `start()` the client: it returns once the service said `connected` (or fails after
    /// the start timeout), which must not freeze the window either.
    Start,
    /// Wait for a request's ack.
    Wait(RequestId, AckHandle),
}

/// An outcome, posted to the UI.
pub enum Done {
    /// The outcome of [`Job::Start`]; the guard stops the client when the UI drops it.
    Started(Result<StartGuard, Error>),
    /// The outcome of [`Job::Wait`].
    Answered(RequestId, Result<AckOutcome, Error>),
}

/// The worker thread and the sending end of its queue.
pub struct Worker {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts the worker; outcomes go to `done`, each followed by a call of `wake`.
    pub fn spawn(
        client: WebPubSubClient,
        done: Sender<Done>,
        wake: impl Fn() + Send + 'static,
    ) -> std::io::Result<Worker> {
        let (jobs, queue) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("chat-requests".into())
            .spawn(move || run(client, queue, done, wake))?;
        Ok(Worker {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Queues a job; never blocks.
    pub fn submit(&self, job: Job) {
        if let Some(jobs) = &self.jobs {
            // The worker only ends after `finish`, so the queue is open here.
            let _ = jobs.send(job);
        }
    }

    /// Closes the queue and joins the worker. Call it after stopping the client: every wait
    /// then ends at once with `Error::Stopped`, so this returns promptly.
    pub fn finish(mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(client: WebPubSubClient, queue: Receiver<Job>, done: Sender<Done>, wake: impl Fn()) {
    for job in queue {
        let outcome = match job {
            Job::Start => Done::Started(client.start()),
            Job::Wait(id, handle) => Done::Answered(id, handle.wait()),
        };
        if done.send(outcome).is_err() {
            return; // the window is gone
        }
        // After the send: a frame that runs now finds the outcome in the channel.
        wake();
    }
}
