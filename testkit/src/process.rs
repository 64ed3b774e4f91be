//! This process and its children: the threads, file descriptors and memory of the test
//! process (from `/proc/self`) or of a child (`/proc/PID`), and child processes whose every
//! wait is bounded.
//!
//! ```
//! use std::time::Duration;
//! use webpubsub_testkit::process;
//!
//! let mut echo = std::process::Command::new("echo");
//! echo.arg("hi");
//! let (code, stdout, _stderr) = process::run_bounded(echo, Duration::from_secs(10));
//! assert_eq!((code, stdout.as_str()), (Some(0), "hi\n"));
//! assert!(process::threads().iter().any(|t| t.tid == std::process::id().to_string()));
//! ```

use crossbeam_channel::{Receiver, RecvTimeoutError};
use parking_lot::Mutex;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// This process

/// One thread of this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thread {
    /// The kernel's thread id.
    pub tid: String,
    /// The thread's name as the kernel keeps it: at most 15 bytes. A thread that has not
    /// named itself (yet) carries its creator's name.
    pub name: String,
}

/// Every thread of this process now (`/proc/self/task`). Empty where there is no `/proc`.
pub fn threads() -> Vec<Thread> {
    threads_in("self")
}

/// Every thread of process `pid` now (`/proc/PID/task`), e.g. of a [`Spawned`] child.
pub fn threads_of(pid: u32) -> Vec<Thread> {
    threads_in(&pid.to_string())
}

fn threads_in(proc: &str) -> Vec<Thread> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{proc}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|e| {
            let tid = e.ok()?.file_name().into_string().ok()?;
            // A thread may end between the listing and this read: it is then not counted.
            let comm = std::fs::read_to_string(format!("/proc/{proc}/task/{tid}/comm")).ok()?;
            Some(Thread {
                tid,
                name: comm.trim_end().to_owned(),
            })
        })
        .collect()
}

/// How many threads of this process have a name starting with one of `prefixes` (compare
/// with the kernel's 15-byte names: `webpubsub-dispatch` is `webpubsub-dispa`).
pub fn count_threads(prefixes: &[&str]) -> usize {
    threads()
        .iter()
        .filter(|t| prefixes.iter().any(|p| t.name.starts_with(p)))
        .count()
}

/// The open file descriptors of this process (`/proc/self/fd`).
pub fn open_fds() -> usize {
    open_fds_in("self")
}

/// The open file descriptors of process `pid` (`/proc/PID/fd`).
pub fn open_fds_of(pid: u32) -> usize {
    open_fds_in(&pid.to_string())
}

fn open_fds_in(proc: &str) -> usize {
    std::fs::read_dir(format!("/proc/{proc}/fd")).map_or(0, |d| d.count())
}

/// The resident memory of this process, in KiB (`VmRSS` of `/proc/self/status`).
pub fn rss_kib() -> u64 {
    rss_kib_in("self")
}

/// The resident memory of process `pid`, in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib_of(pid: u32) -> u64 {
    rss_kib_in(&pid.to_string())
}

fn rss_kib_in(proc: &str) -> u64 {
    let path = format!("/proc/{proc}/status");
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("VmRSS in {path}"))
}

// ---------------------------------------------------------------------------------------
// Children

/// Runs a child to completion within `timeout`, killing it otherwise (and then panicking
/// with what it printed). Returns (exit code, stdout, stderr).
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> (Option<i32>, String, String) {
    let mut child: Child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let (tx, rx) = crossbeam_channel::bounded(2);
    let tx2 = tx.clone();
    let t1 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        let _ = tx.send(());
        s
    });
    let t2 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        let _ = tx2.send(());
        s
    });
    // Both pipes reach EOF when the child exits (or when it is killed).
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        if rx.recv_timeout(left).is_err() {
            timed_out = true;
            let _ = child.kill();
            break;
        }
    }
    let status = child.wait().expect("wait");
    let (stdout, stderr) = (t1.join().unwrap(), t2.join().unwrap());
    if timed_out {
        panic!("{cmd:?} timed out after {timeout:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    }
    (status.code(), stdout, stderr)
}

/// Why [`Spawned::next_line`] returned no line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoLine {
    /// The deadline passed first.
    Timeout,
    /// Standard output ended: the child exited (or closed it).
    Eof,
}

/// A child process to talk to: its standard output as lines on a channel, its standard error
/// kept for failure messages, its standard input open. Killed and reaped when dropped, so a
/// failing test never leaves it behind.
pub struct Spawned {
    child: Child,
    /// The child's standard input; drop it (`take()`) to send EOF.
    pub stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Spawned {
    /// Spawns `cmd` with its three standard streams piped.
    pub fn spawn(mut cmd: Command) -> std::io::Result<Spawned> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = crossbeam_channel::unbounded();
        // Both reader threads end at EOF, i.e. when the child exits or is killed.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let err_text = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&err_text);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Ok(Spawned {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr: err_text,
        })
    }

    /// The next line of standard output (without its line ending), waiting until `deadline`.
    pub fn next_line(&self, deadline: Instant) -> Result<String, NoLine> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.lines.recv_timeout(left).map_err(|e| match e {
            RecvTimeoutError::Timeout => NoLine::Timeout,
            RecvTimeoutError::Disconnected => NoLine::Eof,
        })
    }

    /// Another receiver of the lines of standard output: a line goes to whichever receiver
    /// (this one or [`next_line`](Self::next_line)) takes it first. It disconnects when the
    /// child's standard output ends; for a reader thread that keeps every line.
    pub fn lines(&self) -> Receiver<String> {
        self.lines.clone()
    }

    /// The child's process id (for [`threads_of`], [`rss_kib_of`], [`open_fds_of`]).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// What the child wrote to standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().clone()
    }

    /// Waits for the child to exit. Call it once its standard output ended
    /// ([`NoLine::Eof`]), when the wait is a formality.
    pub fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
