//! Which event handler gets which event (UPSTREAM.md §1), and the three ways to say it: the
//! builder, `--event-handler HUB=URL[;user=…][;system=…]`, and a JSON settings file in the
//! shape of Microsoft's emulator (`WebPubSub:Hubs:<hub>:EventHandlers`).
//!
//! Pure: text in, settings or a [`ConfigError`] naming the key out.

use serde_json::{Map, Value};
use std::fmt;
use std::time::Duration;

/// The default bound of a blocking event (connect, user event, invoke), retries included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The default number of retries after a first attempt that may be retried (§6).
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// The default wait before the first retry; each later one waits twice as long.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(1);
/// The default most worker threads making calls at once.
pub const DEFAULT_MAX_WORKERS: usize = 64;

/// A system event an event handler can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemEvent {
    /// `connect`: blocking, before the upgrade completes; the response shapes the connection.
    Connect,
    /// `connected`: after the connection is established; fire-and-forget.
    Connected,
    /// `disconnected`: once, when the session ends for good; fire-and-forget.
    Disconnected,
}

impl SystemEvent {
    /// All three, in the order of a connection's life.
    pub const ALL: [SystemEvent; 3] = [
        SystemEvent::Connect,
        SystemEvent::Connected,
        SystemEvent::Disconnected,
    ];

    /// `connect`, `connected` or `disconnected`.
    pub fn as_str(self) -> &'static str {
        match self {
            SystemEvent::Connect => "connect",
            SystemEvent::Connected => "connected",
            SystemEvent::Disconnected => "disconnected",
        }
    }

    /// Parses a name, ignoring ASCII case and surrounding spaces.
    pub fn parse(name: &str) -> Option<SystemEvent> {
        let name = name.trim();
        SystemEvent::ALL
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for SystemEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event as the routing sees it: a system event or a user event's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerEvent<'a> {
    /// `connect`, `connected` or `disconnected`.
    System(SystemEvent),
    /// A user event (from an `event` or `invoke` message, or `message` from a simple client).
    User(&'a str),
}

impl HandlerEvent<'_> {
    /// The value of `{event}` in a URL template and of `ce-eventName`.
    pub fn name(&self) -> &str {
        match self {
            HandlerEvent::System(e) => e.as_str(),
            HandlerEvent::User(name) => name,
        }
    }
}

/// Which user events a handler takes (`userEventPattern`, Microsoft's `EventPattern`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum UserEventPattern {
    /// None (an empty pattern).
    #[default]
    None,
    /// `*`: every user event.
    All,
    /// `a,b`: these names, compared ignoring ASCII case.
    Names(Vec<String>),
}

impl UserEventPattern {
    /// Parses `*`, `a,b` or `a`; empty (or only commas and spaces) is [`UserEventPattern::None`].
    /// Spaces around names are trimmed; a `*` among names makes the pattern `*`.
    pub fn parse(pattern: &str) -> UserEventPattern {
        let names: Vec<String> = pattern
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        if names.iter().any(|n| n == "*") {
            UserEventPattern::All
        } else if names.is_empty() {
            UserEventPattern::None
        } else {
            UserEventPattern::Names(names)
        }
    }

    /// Whether the user event `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            UserEventPattern::None => false,
            UserEventPattern::All => true,
            UserEventPattern::Names(names) => names.iter().any(|n| n.eq_ignore_ascii_case(name)),
        }
    }
}

impl fmt::Display for UserEventPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserEventPattern::None => Ok(()),
            UserEventPattern::All => f.write_str("*"),
            UserEventPattern::Names(names) => f.write_str(&names.join(",")),
        }
    }
}

/// Settings that cannot be used, naming what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The settings file is not JSON.
    Json {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the JSON parser said.
        message: String,
    },
    /// A value is invalid. `key` is the setting's path (`WebPubSub:Hubs:chat:EventHandlers:0:UrlTemplate`)
    /// or the command-line option (`--event-handler`).
    Invalid {
        /// Where the value is.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Json {
                line,
                column,
                message,
            } => write!(
                f,
                "not valid JSON at line {line}, column {column}: {message}"
            ),
            ConfigError::Invalid { key, reason } => write!(f, "{key}: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// One event handler of a hub: where its events go and which events it takes.
///
/// ```
/// use webpubsub_emulator::upstream::{EventHandlerConfig, SystemEvent, UserEventPattern};
///
/// let h = EventHandlerConfig::new("http://localhost:3000/api/{hub}/{event}")?
///     .user_events(UserEventPattern::parse("message,echo"))
///     .system_events([SystemEvent::Connect]);
/// assert_eq!(h.url_template(), "http://localhost:3000/api/{hub}/{event}");
/// # Ok::<(), webpubsub_emulator::upstream::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct EventHandlerConfig {
    url_template: String,
    user_events: UserEventPattern,
    system_events: Vec<SystemEvent>,
}

// The URL template may carry a secret in its query (a function key): hidden as in logs.
impl fmt::Debug for EventHandlerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventHandlerConfig")
            .field(
                "url_template",
                &webpubsub_protocol::redact_query(&self.url_template),
            )
            .field("user_events", &self.user_events)
            .field("system_events", &self.system_events)
            .finish()
    }
}

impl EventHandlerConfig {
    /// A handler at `url_template` (an absolute `http://` or `https://` URL; `{hub}` and
    /// `{event}` are replaced, URL-escaped) for every user event and all three system
    /// events. Narrow it with [`user_events`](Self::user_events) and
    /// [`system_events`](Self::system_events).
    pub fn new(url_template: impl Into<String>) -> Result<EventHandlerConfig, ConfigError> {
        let url_template = url_template.into();
        check_url_template(&url_template).map_err(|r| ConfigError::invalid("urlTemplate", r))?;
        Ok(EventHandlerConfig {
            url_template,
            user_events: UserEventPattern::All,
            system_events: SystemEvent::ALL.to_vec(),
        })
    }

    /// The user events it takes. Defaults to all ([`UserEventPattern::All`]).
    pub fn user_events(mut self, pattern: UserEventPattern) -> Self {
        self.user_events = pattern;
        self
    }

    /// The system events it takes. Defaults to all three.
    pub fn system_events(mut self, events: impl IntoIterator<Item = SystemEvent>) -> Self {
        let mut v = Vec::new();
        for e in events {
            if !v.contains(&e) {
                v.push(e);
            }
        }
        self.system_events = v;
        self
    }

    /// The URL template, as given.
    pub fn url_template(&self) -> &str {
        &self.url_template
    }

    /// Its user event pattern.
    pub fn user_event_pattern(&self) -> &UserEventPattern {
        &self.user_events
    }

    /// Its system events.
    pub fn subscribed_system_events(&self) -> &[SystemEvent] {
        &self.system_events
    }

    /// Whether it takes `event`.
    pub fn takes(&self, event: HandlerEvent<'_>) -> bool {
        match event {
            HandlerEvent::System(e) => self.system_events.contains(&e),
            HandlerEvent::User(name) => self.user_events.matches(name),
        }
    }

    /// The URL for `event` of `hub`: the template with `{hub}` and `{event}` (any ASCII case)
    /// replaced by their URL-escaped values.
    pub fn url_for(&self, hub: &str, event: &str) -> String {
        resolve_template(&self.url_template, hub, event)
    }

    /// Parses the value of `--event-handler`: `HUB=URL_TEMPLATE`, optionally followed by
    /// `;user=PATTERN` and `;system=connect,connected,disconnected` (either may be empty:
    /// none). What is not given defaults to all user events and all system events.
    ///
    /// ```
    /// use webpubsub_emulator::upstream::{EventHandlerConfig, HandlerEvent, SystemEvent};
    ///
    /// let (hub, h) = EventHandlerConfig::parse_cli(
    ///     "chat=http://localhost:3000/eventhandler/{event};user=message;system=connect",
    /// )?;
    /// assert_eq!(hub, "chat");
    /// assert!(h.takes(HandlerEvent::User("Message")));
    /// assert!(!h.takes(HandlerEvent::System(SystemEvent::Connected)));
    /// # Ok::<(), webpubsub_emulator::upstream::ConfigError>(())
    /// ```
    pub fn parse_cli(spec: &str) -> Result<(String, EventHandlerConfig), ConfigError> {
        const KEY: &str = "--event-handler";
        let mut parts = spec.split(';');
        let head = parts.next().unwrap_or_default();
        let Some((hub, url)) = head.split_once('=') else {
            return Err(ConfigError::invalid(
                KEY,
                format!("`{spec}` is not HUB=URL_TEMPLATE[;user=PATTERN][;system=EVENTS]"),
            ));
        };
        let hub = hub.trim();
        check_hub_name(hub).map_err(|r| ConfigError::invalid(KEY, r))?;
        let url = url.trim();
        check_url_template(url).map_err(|r| ConfigError::invalid(KEY, r))?;
        let mut handler = EventHandlerConfig {
            url_template: url.to_owned(),
            user_events: UserEventPattern::All,
            system_events: SystemEvent::ALL.to_vec(),
        };
        let (mut seen_user, mut seen_system) = (false, false);
        for part in parts {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            match name.trim().to_ascii_lowercase().as_str() {
                "user" if !seen_user => {
                    seen_user = true;
                    handler.user_events = UserEventPattern::parse(value);
                }
                "system" if !seen_system => {
                    seen_system = true;
                    handler.system_events =
                        parse_system_list(value).map_err(|r| ConfigError::invalid(KEY, r))?;
                }
                "user" | "system" => {
                    return Err(ConfigError::invalid(
                        KEY,
                        format!("`{}=` is given twice in `{spec}`", name.trim()),
                    ))
                }
                _ => {
                    return Err(ConfigError::invalid(
                        KEY,
                        format!(
                        "unknown option `{}` in `{spec}` (expected user=PATTERN or system=EVENTS)",
                        part.trim()
                    ),
                    ))
                }
            }
        }
        Ok((hub.to_owned(), handler))
    }
}

/// Every setting of the emulator's calls to event handlers: the handlers of each hub, in
/// order (the first that takes an event gets it), and how calls are bounded and retried.
///
/// ```
/// use webpubsub_emulator::upstream::{EventHandlerConfig, HandlerEvent, UpstreamConfig};
/// use std::time::Duration;
///
/// let cfg = UpstreamConfig::new()
///     .handler("chat", EventHandlerConfig::new("http://localhost:3000/{event}")?)
///     .timeout(Duration::from_secs(5));
/// assert!(cfg.route("Chat", HandlerEvent::User("message")).is_some());
/// assert!(cfg.route("other", HandlerEvent::User("message")).is_none());
/// # Ok::<(), webpubsub_emulator::upstream::ConfigError>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct UpstreamConfig {
    hubs: Vec<(String, Vec<EventHandlerConfig>)>,
    timeout: Duration,
    max_retries: u32,
    retry_backoff: Duration,
    max_workers: usize,
    root_certificates: Vec<Vec<u8>>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            hubs: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            retry_backoff: DEFAULT_RETRY_BACKOFF,
            max_workers: DEFAULT_MAX_WORKERS,
            root_certificates: Vec::new(),
        }
    }
}

impl fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("hubs", &self.hubs)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_backoff", &self.retry_backoff)
            .field("max_workers", &self.max_workers)
            .field("root_certificates", &self.root_certificates.len())
            .finish()
    }
}

/// What a settings file gave besides the handlers: settings the emulator applies elsewhere,
/// and warnings about keys that were ignored. Its `Debug` hides the access key.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct LoadedConfig {
    /// The handlers and the timeout (`WebPubSub:EventHandlerTimeout`).
    pub upstream: UpstreamConfig,
    /// `WebPubSub:AccessKey`, if the file sets it.
    pub access_key: Option<String>,
    /// One line per key that was ignored, naming it.
    pub warnings: Vec<String>,
}

impl fmt::Debug for LoadedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedConfig")
            .field("upstream", &self.upstream)
            .field(
                "access_key",
                &self
                    .access_key
                    .as_ref()
                    .map(|_| webpubsub_protocol::REDACTED),
            )
            .field("warnings", &self.warnings)
            .finish()
    }
}

impl UpstreamConfig {
    /// No handlers; a timeout of 30 s, 3 retries from 1 s, at most 64 workers.
    pub fn new() -> UpstreamConfig {
        UpstreamConfig::default()
    }

    /// Appends `handler` to `hub`'s list (hub names compare ignoring ASCII case).
    pub fn handler(mut self, hub: &str, handler: EventHandlerConfig) -> Self {
        self.push(hub, handler);
        self
    }

    fn push(&mut self, hub: &str, handler: EventHandlerConfig) {
        match self
            .hubs
            .iter_mut()
            .find(|(h, _)| h.eq_ignore_ascii_case(hub))
        {
            Some((_, list)) => list.push(handler),
            None => self.hubs.push((hub.to_owned(), vec![handler])),
        }
    }

    /// Appends every handler of `other` after this one's, hub by hub. Other settings stay
    /// this one's.
    pub fn merge(mut self, other: UpstreamConfig) -> Self {
        for (hub, list) in other.hubs {
            for h in list {
                self.push(&hub, h);
            }
        }
        self
    }

    /// The bound of one blocking event (connect, user event, invoke), validation and
    /// retries included; past it the event fails. Defaults to 30 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many times a call that failed before any response, or got 408 or 5xx, is tried
    /// again. Defaults to 3.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// The wait before the first retry; each later retry waits twice as long as the one
    /// before. Defaults to 1 s.
    pub fn retry_backoff(mut self, backoff: Duration) -> Self {
        self.retry_backoff = backoff;
        self
    }

    /// The most calls in flight at once (one worker thread each, started when needed).
    /// Connections beyond it wait for a free worker. Defaults to 64; at least 1.
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = n.max(1);
        self
    }

    /// Trusts this DER-encoded root certificate for `https://` handlers (an app server
    /// with a self-signed certificate). Once one is added, only the added ones are trusted,
    /// not the platform's. Defaults to the platform's roots.
    pub fn add_root_certificate(mut self, der: Vec<u8>) -> Self {
        self.root_certificates.push(der);
        self
    }

    /// The handler `event` of `hub` goes to: the first of the hub's list that takes it.
    pub fn route(&self, hub: &str, event: HandlerEvent<'_>) -> Option<&EventHandlerConfig> {
        self.hubs
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(hub))
            .and_then(|(_, list)| list.iter().find(|h| h.takes(event)))
    }

    /// Whether `hub` (compared ignoring ASCII case) has at least one handler.
    pub fn serves(&self, hub: &str) -> bool {
        self.hubs
            .iter()
            .any(|(h, l)| h.eq_ignore_ascii_case(hub) && !l.is_empty())
    }

    /// Whether no hub has a handler.
    pub fn is_empty(&self) -> bool {
        self.hubs.iter().all(|(_, l)| l.is_empty())
    }

    /// The hubs and their handlers, in order.
    pub fn hubs(&self) -> impl Iterator<Item = (&str, &[EventHandlerConfig])> {
        self.hubs.iter().map(|(h, l)| (h.as_str(), l.as_slice()))
    }

    /// See [`timeout`](Self::timeout).
    pub fn timeout_value(&self) -> Duration {
        self.timeout
    }

    pub(crate) fn retry_settings(&self) -> (u32, Duration) {
        (self.max_retries, self.retry_backoff)
    }

    pub(crate) fn worker_limit(&self) -> usize {
        self.max_workers
    }

    pub(crate) fn root_certificates(&self) -> &[Vec<u8>] {
        &self.root_certificates
    }

    /// Reads a settings file in the shape of Microsoft's emulator:
    /// `{"WebPubSub":{"Hubs":{"<hub>":{"EventHandlers":[{"UrlTemplate":…,"SystemEvents":[…],"EventPattern":…}]}}}}`,
    /// plus `WebPubSub:AccessKey` and `WebPubSub:EventHandlerTimeout` (`hh:mm:ss`). Keys
    /// compare ignoring ASCII case, as ASP.NET's configuration does. Unknown keys are
    /// ignored with a warning; an invalid value is an error naming its key.
    ///
    /// ```
    /// use webpubsub_emulator::upstream::{HandlerEvent, UpstreamConfig};
    ///
    /// let loaded = UpstreamConfig::from_json(r#"{"WebPubSub":{"Hubs":{"chat":{"EventHandlers":[
    ///     {"UrlTemplate":"http://localhost:7071/events/{hub}/{event}",
    ///      "SystemEvents":["connect","connected","disconnected"],"EventPattern":"*"}]}}}}"#)?;
    /// assert!(loaded.upstream.route("chat", HandlerEvent::User("message")).is_some());
    /// assert!(loaded.warnings.is_empty());
    /// # Ok::<(), webpubsub_emulator::upstream::ConfigError>(())
    /// ```
    pub fn from_json(text: &str) -> Result<LoadedConfig, ConfigError> {
        let root: Value = serde_json::from_str(text).map_err(|e| ConfigError::Json {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        let mut out = LoadedConfig {
            upstream: UpstreamConfig::new(),
            access_key: None,
            warnings: Vec::new(),
        };
        let root = object(&root, "(the file)")?;
        for (key, value) in root {
            if !key.eq_ignore_ascii_case("WebPubSub") {
                out.warnings
                    .push(format!("{key}: not a setting of this emulator, ignored"));
                continue;
            }
            read_webpubsub(value, &mut out)?;
        }
        Ok(out)
    }
}

fn read_webpubsub(value: &Value, out: &mut LoadedConfig) -> Result<(), ConfigError> {
    let section = object(value, "WebPubSub")?;
    for (key, value) in section {
        let path = format!("WebPubSub:{key}");
        match key.to_ascii_lowercase().as_str() {
            "hubs" => {
                let mut seen: Vec<&str> = Vec::new();
                for (hub, settings) in object(value, &path)? {
                    let hub_path = format!("{path}:{hub}");
                    check_hub_name(hub).map_err(|r| ConfigError::invalid(&hub_path, r))?;
                    if seen.iter().any(|h| h.eq_ignore_ascii_case(hub)) {
                        return Err(ConfigError::invalid(
                            hub_path,
                            "the hub is given twice (hub names ignore case)",
                        ));
                    }
                    seen.push(hub);
                    read_hub(hub, settings, &hub_path, out)?;
                }
            }
            "accesskey" => {
                let key = string(value, &path)?;
                if key.is_empty() {
                    return Err(ConfigError::invalid(path, "must not be empty"));
                }
                out.access_key = Some(key.to_owned());
            }
            "eventhandlertimeout" => {
                let t = parse_timespan(string(value, &path)?)
                    .map_err(|r| ConfigError::invalid(&path, r))?;
                out.upstream.timeout = t;
            }
            _ => out
                .warnings
                .push(format!("{path}: not supported by this emulator, ignored")),
        }
    }
    Ok(())
}

fn read_hub(
    hub: &str,
    value: &Value,
    path: &str,
    out: &mut LoadedConfig,
) -> Result<(), ConfigError> {
    for (key, value) in object(value, path)? {
        let key_path = format!("{path}:{key}");
        if !key.eq_ignore_ascii_case("EventHandlers") {
            out.warnings.push(format!(
                "{key_path}: not supported by this emulator, ignored"
            ));
            continue;
        }
        let Value::Array(handlers) = value else {
            return Err(ConfigError::invalid(
                key_path,
                "must be an array of handlers",
            ));
        };
        for (i, h) in handlers.iter().enumerate() {
            let handler = read_handler(h, &format!("{key_path}:{i}"), &mut out.warnings)?;
            out.upstream.push(hub, handler);
        }
    }
    Ok(())
}

fn read_handler(
    value: &Value,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<EventHandlerConfig, ConfigError> {
    let mut url = None;
    let mut user_events = UserEventPattern::None;
    let mut system_events = Vec::new();
    for (key, value) in object(value, path)? {
        let key_path = format!("{path}:{key}");
        match key.to_ascii_lowercase().as_str() {
            "urltemplate" => {
                let u = string(value, &key_path)?;
                check_url_template(u).map_err(|r| ConfigError::invalid(&key_path, r))?;
                url = Some(u.to_owned());
            }
            // `UserEventPattern` is the service's own name (ARM templates, the portal).
            "eventpattern" | "usereventpattern" => {
                user_events = UserEventPattern::parse(string(value, &key_path)?);
            }
            "systemevents" => {
                system_events = read_system_events(value, &key_path)?;
            }
            "auth" => return Err(ConfigError::invalid(
                key_path,
                "outbound authentication of event handler calls is not supported; remove `Auth`",
            )),
            _ => warnings.push(format!(
                "{key_path}: not supported by this emulator, ignored"
            )),
        }
    }
    let Some(url_template) = url else {
        return Err(ConfigError::invalid(
            format!("{path}:UrlTemplate"),
            "is required",
        ));
    };
    Ok(EventHandlerConfig {
        url_template,
        user_events,
        system_events,
    })
}

fn read_system_events(value: &Value, path: &str) -> Result<Vec<SystemEvent>, ConfigError> {
    let Value::Array(items) = value else {
        return Err(ConfigError::invalid(
            path,
            "must be an array of \"connect\", \"connected\", \"disconnected\"",
        ));
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}:{i}");
        let name = string(item, &item_path)?;
        let e = SystemEvent::parse(name).ok_or_else(|| {
            ConfigError::invalid(
                &item_path,
                format!("`{name}` is not a system event (connect, connected or disconnected)"),
            )
        })?;
        if !out.contains(&e) {
            out.push(e);
        }
    }
    Ok(out)
}

fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, ConfigError> {
    value.as_object().ok_or_else(|| {
        ConfigError::invalid(path, format!("must be an object, not {}", kind(value)))
    })
}

fn string<'a>(value: &'a Value, path: &str) -> Result<&'a str, ConfigError> {
    value
        .as_str()
        .ok_or_else(|| ConfigError::invalid(path, format!("must be a string, not {}", kind(value))))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_system_list(value: &str) -> Result<Vec<SystemEvent>, String> {
    let mut out = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let e = SystemEvent::parse(name).ok_or_else(|| {
            format!("`{name}` is not a system event (connect, connected or disconnected)")
        })?;
        if !out.contains(&e) {
            out.push(e);
        }
    }
    Ok(out)
}

fn check_hub_name(hub: &str) -> Result<(), String> {
    if hub.is_empty() {
        return Err("the hub name is empty".into());
    }
    if let Some(c) = hub
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "/?#;=".contains(*c))
    {
        return Err(format!(
            "hub name `{hub}` has {c:?}; hub names have no spaces and none of / ? # ; ="
        ));
    }
    Ok(())
}

/// An absolute http(s) URL once `{hub}` and `{event}` are filled in; nothing the service
/// resolves that the emulator cannot (Key Vault references, `tunnel://`).
fn check_url_template(template: &str) -> Result<(), String> {
    let shown = webpubsub_protocol::redact_query(template);
    if template.trim().is_empty() {
        return Err("the URL template is empty".into());
    }
    if template.contains("{@") {
        return Err(format!(
            "`{shown}`: Key Vault references are not supported; put the value in the URL"
        ));
    }
    let resolved = resolve_template(template, "hub", "event");
    let url = url::Url::parse(&resolved)
        .map_err(|e| format!("`{shown}` is not an absolute URL ({e})"))?;
    match url.scheme() {
        "http" | "https" => {}
        "tunnel" => {
            return Err(format!(
                "`{shown}`: tunnel:// URLs are not supported; give the app server's http(s) URL"
            ))
        }
        other => {
            return Err(format!(
                "`{shown}` is a {other}:// URL; event handlers are http:// or https://"
            ))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{shown}` has no host"));
    }
    Ok(())
}

/// Replaces `{hub}` and `{event}`, in any ASCII case, with their URL-escaped values.
fn resolve_template(template: &str, hub: &str, event: &str) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let value = if starts_with_ignore_case(tail, "{hub}") {
            Some((hub, 5))
        } else if starts_with_ignore_case(tail, "{event}") {
            Some((event, 7))
        } else {
            None
        };
        match value {
            Some((v, len)) => {
                escape_into(v, &mut out);
                rest = &tail[len..];
            }
            None => {
                out.push('{');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// Percent-encodes all but RFC 3986's unreserved characters (as .NET's `EscapeDataString`).
fn escape_into(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// A .NET `TimeSpan` as configuration files write it: `[d.]hh:mm[:ss[.fffffff]]`.
fn parse_timespan(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not a duration like 00:00:30 ([d.]hh:mm:ss[.fff])");
    let t = text.trim();
    let (days, clock) = match t.split_once(':') {
        Some((head, _)) => match head.split_once('.') {
            Some((d, _)) => (d.parse::<u64>().map_err(|_| bad())?, &t[d.len() + 1..]),
            None => (0, t),
        },
        None => return Err(bad()),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return Err(bad());
    }
    let num = |s: &str, max: u64| -> Result<u64, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = s.parse().map_err(|_| bad())?;
        if n > max {
            return Err(bad());
        }
        Ok(n)
    };
    let hours = num(parts[0], 23)?;
    let minutes = num(parts[1], 59)?;
    let (secs, nanos) = match parts.get(2) {
        None => (0, 0),
        Some(s) => match s.split_once('.') {
            None => (num(s, 59)?, 0),
            Some((whole, frac)) => {
                if frac.is_empty() || frac.len() > 7 || !frac.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                let nanos = format!("{frac:0<9}").parse::<u32>().map_err(|_| bad())?;
                (num(whole, 59)?, nanos)
            }
        },
    };
    let total = Duration::new(days * 86_400 + hours * 3_600 + minutes * 60 + secs, nanos);
    if total.is_zero() {
        return Err(format!("`{text}`: the timeout must be more than zero"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<impl fmt::Debug, ConfigError>) -> String {
        r.expect_err("an error").to_string()
    }

    #[test]
    fn user_event_patterns_trim_ignore_case_and_know_star_and_empty() {
        assert_eq!(UserEventPattern::parse(""), UserEventPattern::None);
        assert_eq!(UserEventPattern::parse(" , "), UserEventPattern::None);
        assert_eq!(UserEventPattern::parse("*"), UserEventPattern::All);
        assert_eq!(UserEventPattern::parse("a, *"), UserEventPattern::All);
        let p = UserEventPattern::parse(" message , Echo ");
        assert!(p.matches("MESSAGE") && p.matches("echo"));
        assert!(!p.matches("mess") && !p.matches(""));
        assert!(!UserEventPattern::None.matches("message"));
        assert_eq!(p.to_string(), "message,Echo");
    }

    #[test]
    fn templates_replace_hub_and_event_escaped_in_any_case() {
        let h = EventHandlerConfig::new("http://h:1/api/{Hub}/{EVENT}?e={event}").unwrap();
        assert_eq!(
            h.url_for("chat", "a b/c"),
            "http://h:1/api/chat/a%20b%2Fc?e=a%20b%2Fc"
        );
        let h = EventHandlerConfig::new("http://h/{other}/{hub").unwrap();
        assert_eq!(h.url_for("x", "y"), "http://h/{other}/{hub");
    }

    #[test]
    fn bad_url_templates_are_refused_with_the_reason() {
        assert_eq!(
            err(EventHandlerConfig::new("")),
            "urlTemplate: the URL template is empty"
        );
        assert!(err(EventHandlerConfig::new("relative/{event}"))
            .starts_with("urlTemplate: `relative/{event}` is not an absolute URL"));
        assert_eq!(
            err(EventHandlerConfig::new("ftp://h/{event}")),
            "urlTemplate: `ftp://h/{event}` is a ftp:// URL; event handlers are http:// or https://"
        );
        assert_eq!(
            err(EventHandlerConfig::new("tunnel:///api/{event}")),
            "urlTemplate: `tunnel:///api/{event}`: tunnel:// URLs are not supported; give the app server's http(s) URL"
        );
        assert_eq!(
            err(EventHandlerConfig::new("https://h/{@Microsoft.KeyVault(SecretUri=x)}")),
            "urlTemplate: `https://h/{@Microsoft.KeyVault(SecretUri=x)}`: Key Vault references are not supported; put the value in the URL"
        );
        // A token in the template never reaches the message.
        assert!(!err(EventHandlerConfig::new("ftp://h/?access_token=s3cr3t")).contains("s3cr3t"));
    }

    #[test]
    fn the_short_cli_form_takes_every_event() {
        let (hub, h) = EventHandlerConfig::parse_cli("chat=http://localhost:3000/{event}").unwrap();
        assert_eq!(hub, "chat");
        assert_eq!(h.user_event_pattern(), &UserEventPattern::All);
        assert_eq!(h.subscribed_system_events(), &SystemEvent::ALL);
    }

    #[test]
    fn the_long_cli_form_narrows_user_and_system_events() {
        let (_, h) = EventHandlerConfig::parse_cli(
            "chat=http://h/{event};user=a,b;system=Connect, disconnected",
        )
        .unwrap();
        assert_eq!(
            h.user_event_pattern(),
            &UserEventPattern::Names(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            h.subscribed_system_events(),
            &[SystemEvent::Connect, SystemEvent::Disconnected]
        );
        let (_, h) = EventHandlerConfig::parse_cli("chat=http://h/{event};user=;system=").unwrap();
        assert_eq!(h.user_event_pattern(), &UserEventPattern::None);
        assert!(h.subscribed_system_events().is_empty());
        let (_, h) =
            EventHandlerConfig::parse_cli("chat=http://h/{event};system=connected").unwrap();
        assert_eq!(h.user_event_pattern(), &UserEventPattern::All);
    }

    #[test]
    fn every_bad_cli_spec_gets_its_own_message() {
        let cases = [
            (
                "http://h/{event}",
                "--event-handler: `http://h/{event}` is not HUB=URL_TEMPLATE[;user=PATTERN][;system=EVENTS]",
            ),
            ("=http://h/", "--event-handler: the hub name is empty"),
            (
                "a b=http://h/",
                "--event-handler: hub name `a b` has ' '; hub names have no spaces and none of / ? # ; =",
            ),
            ("chat=", "--event-handler: the URL template is empty"),
            (
                "chat=http://h/;system=connect,open",
                "--event-handler: `open` is not a system event (connect, connected or disconnected)",
            ),
            (
                "chat=http://h/;users=*",
                "--event-handler: unknown option `users=*` in `chat=http://h/;users=*` (expected user=PATTERN or system=EVENTS)",
            ),
            (
                "chat=http://h/;user=a;user=b",
                "--event-handler: `user=` is given twice in `chat=http://h/;user=a;user=b`",
            ),
        ];
        let mut wrong = Vec::new();
        for (spec, want) in cases {
            let got = err(EventHandlerConfig::parse_cli(spec));
            if got != want {
                wrong.push(format!("{spec}: got `{got}`, want `{want}`"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn routing_takes_the_first_handler_that_takes_the_event() {
        let cfg = UpstreamConfig::new()
            .handler(
                "chat",
                EventHandlerConfig::new("http://a/{event}")
                    .unwrap()
                    .user_events(UserEventPattern::parse("special"))
                    .system_events([]),
            )
            .handler("Chat", EventHandlerConfig::new("http://b/{event}").unwrap());
        let url = |e| cfg.route("CHAT", e).map(|h| h.url_template().to_owned());
        assert_eq!(
            url(HandlerEvent::User("Special")).as_deref(),
            Some("http://a/{event}")
        );
        assert_eq!(
            url(HandlerEvent::User("other")).as_deref(),
            Some("http://b/{event}")
        );
        assert_eq!(
            url(HandlerEvent::System(SystemEvent::Connect)).as_deref(),
            Some("http://b/{event}")
        );
        assert!(cfg.route("lobby", HandlerEvent::User("x")).is_none());
        assert_eq!(cfg.hubs().count(), 1);
    }

    #[test]
    fn microsofts_settings_file_reads_as_it_is() {
        let text = r#"{
          "Urls": "http://localhost:8080",
          "WebPubSub": {
            "AccessKey": "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH",
            "EventHandlerTimeout": "00:00:05",
            "Hubs": {
              "chat": {
                "EventHandlers": [
                  {"UrlTemplate": "http://localhost:7071/events/{hub}/{event}",
                   "SystemEvents": ["connect", "connected", "disconnected"],
                   "EventPattern": "*"},
                  {"urltemplate": "http://localhost:7072/{event}", "usereventpattern": "late"}
                ],
                "EventListeners": []
              }
            }
          }
        }"#;
        let loaded = UpstreamConfig::from_json(text).unwrap();
        assert_eq!(
            loaded.access_key.as_deref(),
            Some("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH")
        );
        assert_eq!(loaded.upstream.timeout_value(), Duration::from_secs(5));
        let (hub, list) = loaded.upstream.hubs().next().unwrap();
        assert_eq!(hub, "chat");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].subscribed_system_events(), &SystemEvent::ALL);
        assert_eq!(
            list[1].user_event_pattern(),
            &UserEventPattern::Names(vec!["late".into()])
        );
        assert!(list[1].subscribed_system_events().is_empty());
        assert_eq!(
            loaded.warnings,
            [
                "Urls: not a setting of this emulator, ignored",
                "WebPubSub:Hubs:chat:EventListeners: not supported by this emulator, ignored",
            ]
        );
    }

    #[test]
    fn every_bad_settings_file_names_the_key() {
        let h = |handler: &str| {
            format!(r#"{{"WebPubSub":{{"Hubs":{{"chat":{{"EventHandlers":[{handler}]}}}}}}}}"#)
        };
        let cases = [
            ("[]".to_owned(), "(the file): must be an object, not an array"),
            (r#"{"WebPubSub":1}"#.to_owned(), "WebPubSub: must be an object, not a number"),
            (r#"{"WebPubSub":{"Hubs":[]}}"#.to_owned(), "WebPubSub:Hubs: must be an object, not an array"),
            (
                r#"{"WebPubSub":{"Hubs":{"a b":{}}}}"#.to_owned(),
                "WebPubSub:Hubs:a b: hub name `a b` has ' '; hub names have no spaces and none of / ? # ; =",
            ),
            (
                r#"{"WebPubSub":{"Hubs":{"chat":{},"Chat":{}}}}"#.to_owned(),
                // Keys come in sorted order: `Chat` before `chat`.
                "WebPubSub:Hubs:chat: the hub is given twice (hub names ignore case)",
            ),
            (
                r#"{"WebPubSub":{"Hubs":{"chat":{"EventHandlers":{}}}}}"#.to_owned(),
                "WebPubSub:Hubs:chat:EventHandlers: must be an array of handlers",
            ),
            (h("{}"), "WebPubSub:Hubs:chat:EventHandlers:0:UrlTemplate: is required"),
            (h("1"), "WebPubSub:Hubs:chat:EventHandlers:0: must be an object, not a number"),
            (
                h(r#"{"UrlTemplate":"ftp://h/"}"#),
                "WebPubSub:Hubs:chat:EventHandlers:0:UrlTemplate: `ftp://h/` is a ftp:// URL; event handlers are http:// or https://",
            ),
            (
                h(r#"{"UrlTemplate":7}"#),
                "WebPubSub:Hubs:chat:EventHandlers:0:UrlTemplate: must be a string, not a number",
            ),
            (
                h(r#"{"UrlTemplate":"http://h/","SystemEvents":"connect"}"#),
                "WebPubSub:Hubs:chat:EventHandlers:0:SystemEvents: must be an array of \"connect\", \"connected\", \"disconnected\"",
            ),
            (
                h(r#"{"UrlTemplate":"http://h/","SystemEvents":["connect","joined"]}"#),
                "WebPubSub:Hubs:chat:EventHandlers:0:SystemEvents:1: `joined` is not a system event (connect, connected or disconnected)",
            ),
            (
                h(r#"{"UrlTemplate":"http://h/","EventPattern":["*"]}"#),
                "WebPubSub:Hubs:chat:EventHandlers:0:EventPattern: must be a string, not an array",
            ),
            (
                h(r#"{"UrlTemplate":"http://h/","Auth":{"Type":"None"}}"#),
                "WebPubSub:Hubs:chat:EventHandlers:0:Auth: outbound authentication of event handler calls is not supported; remove `Auth`",
            ),
            (r#"{"WebPubSub":{"AccessKey":""}}"#.to_owned(), "WebPubSub:AccessKey: must not be empty"),
            (
                r#"{"WebPubSub":{"EventHandlerTimeout":"30"}}"#.to_owned(),
                "WebPubSub:EventHandlerTimeout: `30` is not a duration like 00:00:30 ([d.]hh:mm:ss[.fff])",
            ),
            (
                r#"{"WebPubSub":{"EventHandlerTimeout":"00:00:00"}}"#.to_owned(),
                "WebPubSub:EventHandlerTimeout: `00:00:00`: the timeout must be more than zero",
            ),
        ];
        let mut wrong = Vec::new();
        for (text, want) in &cases {
            let got = err(UpstreamConfig::from_json(text));
            if got != *want {
                wrong.push(format!("{text}\n  got  `{got}`\n  want `{want}`"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        assert!(err(UpstreamConfig::from_json("{\n  \"WebPubSub\": ,"))
            .starts_with("not valid JSON at line 2, column 16: "));
    }

    #[test]
    fn unknown_keys_are_ignored_with_a_warning_each() {
        let loaded = UpstreamConfig::from_json(
            r#"{"Logging":{},"WebPubSub":{"ConnectionString":"x","Hubs":{"chat":{"Other":1,
                "EventHandlers":[{"UrlTemplate":"http://h/","Extra":true}]}}}}"#,
        )
        .unwrap();
        assert_eq!(
            loaded.warnings,
            [
                "Logging: not a setting of this emulator, ignored",
                "WebPubSub:ConnectionString: not supported by this emulator, ignored",
                "WebPubSub:Hubs:chat:EventHandlers:0:Extra: not supported by this emulator, ignored",
                "WebPubSub:Hubs:chat:Other: not supported by this emulator, ignored",
            ]
        );
        // A handler without EventPattern or SystemEvents takes nothing, as in Microsoft's.
        let (_, list) = loaded.upstream.hubs().next().unwrap();
        assert!(!list[0].takes(HandlerEvent::User("message")));
        assert!(!list[0].takes(HandlerEvent::System(SystemEvent::Connect)));
    }

    #[test]
    fn timespans_read_as_dotnet_writes_them() {
        let ok = |s: &str| parse_timespan(s).unwrap();
        assert_eq!(ok("00:00:30"), Duration::from_secs(30));
        assert_eq!(ok("00:01"), Duration::from_secs(60));
        assert_eq!(ok("1.00:00:01"), Duration::from_secs(86_401));
        assert_eq!(ok("00:00:01.5"), Duration::from_millis(1500));
        for bad in [
            "",
            "30",
            "00:60:00",
            "24:00:00",
            "a:b:c",
            "00:00:01.",
            "1:2:3:4",
            "-00:00:01",
        ] {
            assert!(parse_timespan(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_output_hides_secrets_in_templates_and_the_access_key() {
        let loaded = UpstreamConfig::from_json(
            r#"{"WebPubSub":{"AccessKey":"k3y-s3cr3t","Hubs":{"h":{"EventHandlers":[
                {"UrlTemplate":"http://h/{event}?access_token=t0k3n"}]}}}}"#,
        )
        .unwrap();
        let shown = format!("{loaded:?}");
        assert!(
            !shown.contains("k3y-s3cr3t") && !shown.contains("t0k3n"),
            "{shown}"
        );
        assert!(shown.contains("access_token=***"), "{shown}");
    }

    #[test]
    fn merging_appends_handlers_after_the_first_configs() {
        let a =
            UpstreamConfig::new().handler("chat", EventHandlerConfig::new("http://a/").unwrap());
        let b = UpstreamConfig::new()
            .handler("CHAT", EventHandlerConfig::new("http://b/").unwrap())
            .handler("other", EventHandlerConfig::new("http://c/").unwrap());
        let m = a.merge(b);
        let hubs: Vec<_> = m.hubs().map(|(h, l)| (h.to_owned(), l.len())).collect();
        assert_eq!(hubs, [("chat".to_owned(), 2), ("other".to_owned(), 1)]);
    }
}
