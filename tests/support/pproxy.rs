//! pproxy (PyPI, pinned in `testkit/python/requirements.lock`): a real HTTP proxy server, run as
//! a child process on 127.0.0.1 for the proxy tests (B43). Its verbose log has one line per
//! tunnel (`http 127.0.0.1:50312 -> 127.0.0.1:8080`) and one per refused authentication
//! (`Unauthorized HTTP from 127.0.0.1`): the tests read it to prove that traffic went through
//! the proxy, or did not.
//!
//! ```ignore
//! use support::pproxy;
//! let Some(python) = pproxy::python("my_test") else { return };
//! let mut proxy = pproxy::Pproxy::start(&python, 0, None);
//! // ... connect through proxy.url() ...
//! proxy.wait_tunnels_to("127.0.0.1:8080", 1);
//! ```
use crossbeam_channel::{Receiver, Sender};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bound of every wait on the proxy (its start included: a Python start under load).
pub const WAIT: Duration = Duration::from_secs(20);

/// The venv's python with pproxy, or `None` (SKIPPED printed) without python3.
pub fn python(test: &str) -> Option<String> {
    webpubsub_testkit::python::venv_python(test)
}

/// A running pproxy; killed when dropped.
pub struct Pproxy {
    child: Child,
    pub port: u16,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Pproxy {
    /// Starts pproxy on `127.0.0.1:port` (0: a free port it picks). With `auth`
    /// (`user:password`), every connection must authenticate: `--auth 0` turns off pproxy's
    /// habit of trusting an address for 30 days after one success.
    pub fn start(python: &str, port: u16, auth: Option<&str>) -> Pproxy {
        let mut listen = format!("http://127.0.0.1:{port}");
        let mut cmd = Command::new(python);
        cmd.args(["-u", "-m", "pproxy", "-v"]);
        if let Some(a) = auth {
            listen.push('#');
            listen.push_str(a);
            cmd.args(["--auth", "0"]);
        }
        cmd.args(["-l", &listen]);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pproxy");
        let (tx, lines) = crossbeam_channel::unbounded();
        forward(child.stdout.take().unwrap(), tx.clone(), "");
        forward(child.stderr.take().unwrap(), tx, "stderr: ");
        let mut p = Pproxy {
            child,
            port,
            lines,
            seen: Vec::new(),
        };
        let serving = p.wait_line(|l| l.starts_with("Serving on"));
        p.port = serving
            .rsplit("127.0.0.1:")
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no port in {serving:?}"));
        assert!(port == 0 || p.port == port, "{serving}");
        p
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://userinfo@127.0.0.1:port`.
    pub fn url_with(&self, userinfo: &str) -> String {
        format!("http://{userinfo}@127.0.0.1:{}", self.port)
    }

    /// Every line so far.
    pub fn lines(&mut self) -> Vec<String> {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        self.seen.clone()
    }

    /// Waits (bounded) for a line matching `pred`, among those seen or still to come.
    pub fn wait_line(&mut self, mut pred: impl FnMut(&str) -> bool) -> String {
        if let Some(l) = self.lines().into_iter().find(|l| pred(l)) {
            return l;
        }
        let deadline = Instant::now() + WAIT;
        loop {
            match self.lines.recv_deadline(deadline) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if pred(&l) {
                        return l;
                    }
                }
                Err(e) => panic!(
                    "pproxy printed no matching line within {WAIT:?} ({e}); its output:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Lines of tunnels to `target` (`host:port`) so far.
    pub fn tunnels_to(&mut self, target: &str) -> usize {
        let suffix = format!(" -> {target}");
        self.lines().iter().filter(|l| l.ends_with(&suffix)).count()
    }

    /// Waits (bounded) until at least `n` tunnels to `target` were logged; returns the count.
    pub fn wait_tunnels_to(&mut self, target: &str, n: usize) -> usize {
        let suffix = format!(" -> {target}");
        let mut count = self.tunnels_to(target);
        while count < n {
            self.wait_line(|l| l.ends_with(&suffix));
            count = self.tunnels_to(target);
        }
        count
    }

    /// Refused authentications so far.
    pub fn refusals(&mut self) -> usize {
        self.lines()
            .iter()
            .filter(|l| l.starts_with("Unauthorized"))
            .count()
    }

    /// Makes one tunnel of our own to the distinct target `fence.invalid:<n>` and waits for
    /// its log line: lines of connections that ended before it are in the log by then (pproxy
    /// logs a connection's outcome before it closes it).
    pub fn fence(&mut self, n: u16, userinfo: Option<&str>) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to pproxy");
        s.set_read_timeout(Some(WAIT)).unwrap();
        let auth = userinfo
            .map(|u| {
                use base64::Engine as _;
                format!(
                    "Proxy-Authorization: Basic {}\r\n",
                    base64::engine::general_purpose::STANDARD.encode(u)
                )
            })
            .unwrap_or_default();
        let target = format!("fence.invalid:{n}");
        write!(
            s,
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n"
        )
        .unwrap();
        let mut buf = [0u8; 256];
        let _ = s.read(&mut buf);
        self.wait_line(|l| l.ends_with(&format!(" -> {target}")));
    }

    /// Kills the proxy (SIGKILL: its connections die with it) and waits for it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Pproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn forward(pipe: impl Read + Send + 'static, tx: Sender<String>, prefix: &'static str) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(format!("{prefix}{}", line.trim_end())).is_err() {
                break;
            }
        }
    });
}
