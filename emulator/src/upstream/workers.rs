//! A bounded pool of worker threads that runs jobs in lanes: a lane's jobs run one at a
//! time, in the order they were submitted; different lanes run in parallel.
//!
//! A lane with jobs is *scheduled*: it sits once in the ready queue, or is held by the one
//! worker running its current job. After each job the worker puts the lane back at the end
//! of the queue if it has more, so a busy lane cannot starve the others. When more lanes
//! are ready than workers are free, a worker is started, up to the limit; a worker idle for
//! [`IDLE_EXIT`] ends.
//!
//! Lock order: `Lane::queue` → `Shared::state`. Workers never hold the state while they
//! take a lane's lock.

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a worker without work stays.
pub(crate) const IDLE_EXIT: Duration = Duration::from_secs(30);

pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// One ordered line of jobs (one connection's events).
#[derive(Default)]
pub(crate) struct Lane {
    queue: Mutex<LaneQueue>,
}

#[derive(Default)]
struct LaneQueue {
    jobs: VecDeque<Job>,
    scheduled: bool,
}

pub(crate) struct Pool {
    shared: Arc<Shared>,
    exited: Receiver<()>,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    max_workers: usize,
    name: &'static str,
}

struct State {
    ready: VecDeque<Arc<Lane>>,
    workers: usize,
    busy: usize,
    /// No new jobs are taken (after [`Pool::shutdown`] ended).
    closed: bool,
    /// Workers end once the ready queue is empty; no new jobs are taken.
    draining: bool,
    /// Cloned into every worker and dropped when it ends: `exited` disconnects when the
    /// last one is gone and this one has been dropped too.
    exit_token: Option<Sender<()>>,
    handles: Vec<JoinHandle<()>>,
    started: u64,
}

impl Pool {
    pub fn new(max_workers: usize, name: &'static str) -> Pool {
        let (tx, rx) = crossbeam_channel::bounded(0);
        Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    ready: VecDeque::new(),
                    workers: 0,
                    busy: 0,
                    closed: false,
                    draining: false,
                    exit_token: Some(tx),
                    handles: Vec::new(),
                    started: 0,
                }),
                work: Condvar::new(),
                max_workers: max_workers.max(1),
                name,
            }),
            exited: rx,
        }
    }

    /// Queues `job` at the end of `lane`. Gives the job back once [`shutdown`](Self::shutdown)
    /// has begun and the lane is not already being worked on: the caller runs it itself
    /// (it then finds the engine stopping).
    pub fn submit(&self, lane: &Arc<Lane>, job: Job) -> Result<(), Job> {
        let mut q = lane.queue.lock();
        if q.scheduled {
            // A worker holds the lane or will take it from the ready queue, even when
            // draining: workers end only once the ready queue is empty.
            q.jobs.push_back(job);
            return Ok(());
        }
        let mut st = self.shared.state.lock();
        if st.draining || st.closed {
            return Err(job);
        }
        q.jobs.push_back(job);
        q.scheduled = true;
        drop(q);
        st.ready.push_back(lane.clone());
        let free = st.workers - st.busy;
        if st.ready.len() > free && st.workers < self.shared.max_workers {
            self.spawn(&mut st);
        }
        drop(st);
        self.shared.work.notify_one();
        Ok(())
    }

    fn spawn(&self, st: &mut State) {
        let Some(token) = st.exit_token.clone() else {
            return;
        };
        st.started += 1;
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("{}-{}", self.shared.name, st.started))
            .spawn(move || {
                work(&shared);
                drop(token);
            });
        match spawned {
            Ok(h) => {
                st.workers += 1;
                st.handles.retain(|h| !h.is_finished());
                st.handles.push(h);
            }
            // The lane stays ready; a running or later worker takes it.
            Err(e) => log::error!("upstream: cannot start a worker thread: {e}"),
        }
    }

    /// Worker threads alive now.
    pub fn workers(&self) -> usize {
        self.shared.state.lock().workers
    }

    /// Lets the workers finish what is queued, then end; `interrupt` is called if they are
    /// not done by `deadline`, and they get `grace` more. Joins the workers that ended;
    /// returns how many were still running (they end with their current call).
    pub fn shutdown(&self, deadline: Instant, grace: Duration, interrupt: impl FnOnce()) -> usize {
        {
            let mut st = self.shared.state.lock();
            if st.exit_token.is_none() {
                return 0;
            }
            st.draining = true;
            st.exit_token = None;
        }
        self.shared.work.notify_all();
        let mut done = matches!(
            self.exited.recv_deadline(deadline),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        );
        if !done {
            interrupt();
            done = matches!(
                self.exited.recv_timeout(grace),
                Err(RecvTimeoutError::Disconnected)
            );
        }
        let handles = {
            let mut st = self.shared.state.lock();
            st.closed = true;
            std::mem::take(&mut st.handles)
        };
        let mut running = 0;
        for h in handles {
            if done || h.is_finished() {
                let _ = h.join();
            } else {
                running += 1;
            }
        }
        running
    }
}

fn work(shared: &Shared) {
    let mut st = shared.state.lock();
    loop {
        if let Some(lane) = st.ready.pop_front() {
            st.busy += 1;
            drop(st);
            let job = lane.queue.lock().jobs.pop_front();
            if let Some(job) = job {
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                    log::error!("upstream: a job panicked; its connection's later events go on");
                }
            }
            let more = {
                let mut q = lane.queue.lock();
                q.scheduled = !q.jobs.is_empty();
                q.scheduled
            };
            st = shared.state.lock();
            st.busy -= 1;
            if more {
                st.ready.push_back(lane);
            }
            continue;
        }
        if st.draining {
            break;
        }
        let idle = shared.work.wait_for(&mut st, IDLE_EXIT).timed_out();
        if idle && st.ready.is_empty() {
            break;
        }
    }
    st.workers -= 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::unbounded;

    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn a_lanes_jobs_run_in_order_one_at_a_time() {
        let pool = Pool::new(8, "test-worker");
        let lane = Arc::new(Lane::default());
        let (tx, rx) = unbounded();
        let running = Arc::new(Mutex::new(0));
        for i in 0..50 {
            let (tx, running) = (tx.clone(), running.clone());
            pool.submit(
                &lane,
                Box::new(move || {
                    *running.lock() += 1;
                    let at_once = *running.lock();
                    tx.send((i, at_once)).unwrap();
                    *running.lock() -= 1;
                }),
            )
            .ok()
            .unwrap();
        }
        let got: Vec<_> = (0..50).map(|_| rx.recv_timeout(WAIT).unwrap()).collect();
        assert_eq!(
            got.iter().map(|g| g.0).collect::<Vec<_>>(),
            (0..50).collect::<Vec<_>>()
        );
        assert!(
            got.iter().all(|g| g.1 == 1),
            "two jobs of one lane ran at once"
        );
        assert_eq!(pool.shutdown(Instant::now() + WAIT, WAIT, || {}), 0);
    }

    #[test]
    fn a_blocked_lane_does_not_hold_up_another() {
        let pool = Pool::new(4, "test-worker");
        let (a, b) = (Arc::new(Lane::default()), Arc::new(Lane::default()));
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
        let (done_tx, done_rx) = unbounded();
        pool.submit(
            &a,
            Box::new(move || {
                let _ = release_rx.recv_timeout(WAIT);
            }),
        )
        .ok()
        .unwrap();
        let d = done_tx.clone();
        pool.submit(&a, Box::new(move || d.send("a2").unwrap()))
            .ok()
            .unwrap();
        pool.submit(&b, Box::new(move || done_tx.send("b1").unwrap()))
            .ok()
            .unwrap();
        // b's job runs while a's first job is blocked; a's second waits for it.
        assert_eq!(done_rx.recv_timeout(WAIT).unwrap(), "b1");
        assert!(done_rx.try_recv().is_err());
        release_tx.send(()).unwrap();
        assert_eq!(done_rx.recv_timeout(WAIT).unwrap(), "a2");
        assert!(pool.workers() <= 4);
        pool.shutdown(Instant::now() + WAIT, WAIT, || {});
    }

    #[test]
    fn workers_never_exceed_the_limit() {
        let pool = Pool::new(2, "test-worker");
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
        let (started_tx, started_rx) = unbounded();
        let lanes: Vec<_> = (0..5).map(|_| Arc::new(Lane::default())).collect();
        for lane in &lanes {
            let (r, s) = (release_rx.clone(), started_tx.clone());
            pool.submit(
                lane,
                Box::new(move || {
                    s.send(()).unwrap();
                    let _ = r.recv_timeout(WAIT);
                }),
            )
            .ok()
            .unwrap();
        }
        started_rx.recv_timeout(WAIT).unwrap();
        started_rx.recv_timeout(WAIT).unwrap();
        assert_eq!(pool.workers(), 2);
        assert!(
            started_rx.try_recv().is_err(),
            "a third job started with two workers"
        );
        for _ in 0..5 {
            release_tx.send_timeout((), WAIT).unwrap();
        }
        pool.shutdown(Instant::now() + WAIT, WAIT, || {});
    }

    #[test]
    fn shutdown_drains_then_refuses_and_interrupts_what_overruns() {
        let pool = Pool::new(2, "test-worker");
        let lane = Arc::new(Lane::default());
        let (tx, rx) = unbounded();
        let t = tx.clone();
        pool.submit(&lane, Box::new(move || t.send(1).unwrap()))
            .ok()
            .unwrap();
        assert_eq!(pool.shutdown(Instant::now() + WAIT, WAIT, || {}), 0);
        assert_eq!(rx.try_recv(), Ok(1));
        assert!(pool.submit(&lane, Box::new(|| {})).is_err());

        let pool = Pool::new(1, "test-worker");
        let (stuck_tx, stuck_rx) = crossbeam_channel::bounded::<()>(0);
        let (started_tx, started_rx) = unbounded();
        pool.submit(
            &lane,
            Box::new(move || {
                started_tx.send(()).unwrap();
                let _ = stuck_rx.recv_timeout(WAIT);
            }),
        )
        .ok()
        .unwrap();
        started_rx.recv_timeout(WAIT).unwrap();
        let interrupted = Arc::new(Mutex::new(false));
        let i = interrupted.clone();
        let running = pool.shutdown(Instant::now(), Duration::from_secs(5), move || {
            *i.lock() = true;
            drop(stuck_tx);
        });
        assert!(*interrupted.lock());
        assert_eq!(running, 0);
        drop(tx);
    }
}
