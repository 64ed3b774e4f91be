//! The log capture of the tests: a `log::Log` that keeps every record (all levels) in memory,
//! for tests that assert what was logged — or that something (a token) never was. It is the
//! process's logger, so a test binary that uses it installs no other, and tests of one binary
//! that read it run one at a time. `CAPTURE_LOG_ECHO=1` also prints every record.
//!
//! ```
//! use webpubsub_testkit::log_capture;
//!
//! let log = log_capture::install();
//! log.clear();
//! log::warn!("skipping a malformed frame");
//! assert!(log.contains(log::Level::Warn, "skipping a malformed frame"));
//! ```

use parking_lot::Mutex;
use std::sync::OnceLock;

/// One captured record.
#[derive(Debug, Clone)]
pub struct Line {
    /// The record's level.
    pub level: log::Level,
    /// Its target (the module path of the logging code, unless it gave another).
    pub target: String,
    /// The name of the thread that logged it (`?` for an unnamed thread).
    pub thread: String,
    /// The formatted message.
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
    /// Forgets every record kept so far.
    pub fn clear(&self) {
        self.lines.lock().clear();
    }

    /// Every record kept, in the order they were logged.
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

    /// How many records are kept.
    pub fn len(&self) -> usize {
        self.lines.lock().len()
    }

    /// Whether no record is kept.
    pub fn is_empty(&self) -> bool {
        self.lines.lock().is_empty()
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
