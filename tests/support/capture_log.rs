//! A `log::Log` that keeps every record (all levels) in memory, for tests that assert what
//! was logged — or that something (a token) never was.
//!
//! ```ignore
//! #[path = "support/capture_log.rs"]
//! mod capture_log;
//! let log = capture_log::install();
//! log.clear();
//! // ...
//! assert!(log.contains(log::Level::Warn, "skipping a malformed frame"));
//! ```
#![allow(dead_code)]

use parking_lot::Mutex;
use std::sync::OnceLock;

/// One captured record.
#[derive(Debug, Clone)]
pub struct Line {
    pub level: log::Level,
    pub target: String,
    pub thread: String,
    pub message: String,
}

/// The installed logger.
#[derive(Default)]
pub struct Capture {
    lines: Mutex<Vec<Line>>,
}

static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();

/// Installs the capturing logger at trace level (once per test binary) and returns it.
pub fn install() -> &'static Capture {
    CAPTURE.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::default());
        log::set_logger(c).expect("another logger is installed in this test binary");
        log::set_max_level(log::LevelFilter::Trace);
        c
    })
}

impl Capture {
    pub fn clear(&self) {
        self.lines.lock().clear();
    }

    pub fn lines(&self) -> Vec<Line> {
        self.lines.lock().clone()
    }

    /// Whether a record at `level` contains `text`.
    pub fn contains(&self, level: log::Level, text: &str) -> bool {
        self.lines
            .lock()
            .iter()
            .any(|l| l.level == level && l.message.contains(text))
    }

    /// The records containing `text`, any level.
    pub fn matching(&self, text: &str) -> Vec<Line> {
        self.lines
            .lock()
            .iter()
            .filter(|l| l.message.contains(text))
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.lines.lock().len()
    }
}

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        let line = Line {
            level: record.level(),
            target: record.target().to_owned(),
            thread: std::thread::current().name().unwrap_or("?").to_owned(),
            message: record.args().to_string(),
        };
        if std::env::var_os("CAPTURE_LOG_ECHO").is_some() {
            eprintln!(
                "[{} {} {}] {}",
                line.level, line.thread, line.target, line.message
            );
        }
        self.lines.lock().push(line);
    }

    fn flush(&self) {}
}
