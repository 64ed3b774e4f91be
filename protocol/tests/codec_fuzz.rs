//! Randomised decoding of generated and mutated frames through both decoders.
//!
//! Two tests of 500,000 frames each (1,000,000 in all); every frame goes through both
//! `ServiceMessage::decode` and `ClientMessage::decode`, whichever direction it was made
//! for. The frames start as encodings of random valid messages of every kind (unicode,
//! escapes, ids around 2^53 and `u64::MAX`, deep JSON, long strings) and are then mutated:
//! fields removed, duplicated, retyped or swapped, `dataType` changed, base64 broken,
//! nesting deepened, bytes flipped, text cut or spliced.
//!
//! Properties checked:
//! - no decoder panics, whatever the frame;
//! - a valid message decodes to itself;
//! - any frame that decodes to a known (non-`Unknown`) message re-encodes to text that
//!   decodes to an equal message.
//!
//! The run is deterministic for a seed. A failure prints the seed and the frame; replay
//! with `CODEC_FUZZ_SEED=<seed>` (decimal or `0x` hex), and scale the run with
//! `CODEC_FUZZ_FRAMES=<frames per test>`.

#[path = "../fuzz/roundtrip.rs"]
mod roundtrip;

use roundtrip::{float_parsing_is_exact, same_client, same_service};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;
use webpubsub_protocol::{AckError, ClientMessage, Data, Metadata, ProtocolError, ServiceMessage};
use webpubsub_testkit::rng::{env_u64, Rng};

const DEFAULT_SEED: u64 = 0x7765_6270_7562_7375;
const DEFAULT_FRAMES_PER_TEST: usize = 500_000;
/// Frames made from one generated message: the valid encoding and its mutants.
const FRAMES_PER_MESSAGE: usize = 16;

#[test]
fn service_frames_and_their_mutants_never_panic_and_round_trip() {
    run(Direction::Service);
}

#[test]
fn client_frames_and_their_mutants_never_panic_and_round_trip() {
    run(Direction::Client);
}

#[derive(Clone, Copy, Debug)]
enum Direction {
    Service,
    Client,
}

fn run(direction: Direction) {
    let seed = env_u64("CODEC_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let frames = env_u64("CODEC_FUZZ_FRAMES").map_or(DEFAULT_FRAMES_PER_TEST, |n| n as usize);
    // Each direction draws its own stream, so the two tests can run in parallel.
    let stream = seed ^ (direction as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    println!("codec fuzz ({direction:?}): seed {seed:#x}, {frames} frames (replay with CODEC_FUZZ_SEED={seed:#x})");
    if !float_parsing_is_exact() {
        println!(
            "codec fuzz: serde_json parses floats best-effort (feature float_roundtrip off): \
             JSON payload floats are compared within a few ULP"
        );
    }
    let started = Instant::now();
    let mut stats = Stats::default();
    let mut case = 0u64;
    while stats.frames < frames {
        // One generator per message, derived from the seed and the case number, so a
        // failing case is reproducible from the printed seed alone.
        let mut rng = Rng::new(stream ^ case.wrapping_mul(0xd1b5_4a32_d192_ed03));
        let ctx = Ctx { seed, case };
        let valid = match direction {
            Direction::Service => {
                let msg = gen_service(&mut rng);
                let text = msg.encode();
                check_valid_service(&msg, &text, &ctx);
                text
            }
            Direction::Client => {
                let msg = gen_client(&mut rng);
                let text = msg.encode();
                check_valid_client(&msg, &text, &ctx);
                text
            }
        };
        stats.check(&valid, &ctx);
        let fields = split_fields(&valid);
        for _ in 1..FRAMES_PER_MESSAGE {
            let mutant = mutate(&mut rng, &fields, &valid);
            stats.check(&mutant, &ctx);
        }
        case += 1;
    }
    let elapsed = started.elapsed();
    println!(
        "codec fuzz ({direction:?}): {} frames ({} bytes, {} decodes) in {:.2?}; service decoder: {}; client decoder: {}",
        stats.frames,
        stats.bytes,
        stats.frames * 2,
        elapsed,
        stats.service,
        stats.client
    );
    // A fuzzer that only ever hits the error path proves nothing: demand that the decoder
    // of the frames' own direction reached every kind of outcome.
    if frames >= 10_000 {
        match direction {
            Direction::Service => stats.service.assert_covers(&[
                "Connected",
                "Disconnected",
                "Ack",
                "GroupMessage",
                "ServerMessage",
                "Pong",
                "InvokeResponse",
                "Unknown",
            ]),
            Direction::Client => stats.client.assert_covers(&[
                "JoinGroup",
                "LeaveGroup",
                "SendToGroup",
                "Event",
                "SequenceAck",
                "Ping",
                "Invoke",
                "CancelInvocation",
                "Unknown",
            ]),
        }
    }
}

struct Ctx {
    seed: u64,
    case: u64,
}

impl fmt::Display for Ctx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {:#x}, case {} (replay with CODEC_FUZZ_SEED={:#x})",
            self.seed, self.case, self.seed
        )
    }
}

// ---------------------------------------------------------------------------------------
// Checks

#[derive(Default)]
struct Stats {
    frames: usize,
    bytes: usize,
    service: Outcomes,
    client: Outcomes,
}

#[derive(Default)]
struct Outcomes {
    known: usize,
    unknown: usize,
    errors: usize,
    variants: BTreeSet<&'static str>,
    error_kinds: BTreeSet<&'static str>,
}

impl Outcomes {
    fn error(&mut self, e: &ProtocolError) {
        self.errors += 1;
        self.error_kinds.insert(match e {
            ProtocolError::InvalidJson(_) => "InvalidJson",
            ProtocolError::MissingField { .. } => "MissingField",
            ProtocolError::InvalidField { .. } => "InvalidField",
            _ => "other",
        });
    }

    fn assert_covers(&self, variants: &[&'static str]) {
        for v in variants {
            assert!(
                self.variants.contains(v),
                "no frame decoded to {v}: {:?}",
                self.variants
            );
        }
        for kind in ["InvalidJson", "MissingField", "InvalidField"] {
            assert!(
                self.error_kinds.contains(kind),
                "no frame gave {kind}: {:?}",
                self.error_kinds
            );
        }
    }
}

impl fmt::Display for Outcomes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} known, {} unknown, {} errors",
            self.known, self.unknown, self.errors
        )
    }
}

impl Stats {
    /// Runs one frame through both decoders, checking the round-trip property.
    fn check(&mut self, text: &str, ctx: &Ctx) {
        self.frames += 1;
        self.bytes += text.len();
        match decode_guarded("ServiceMessage", text, ctx, ServiceMessage::decode) {
            Ok(ServiceMessage::Unknown { .. }) => {
                self.service.unknown += 1;
                self.service.variants.insert("Unknown");
            }
            Ok(msg) => {
                self.service.known += 1;
                self.service.variants.insert(service_variant(&msg));
                let again = msg.encode();
                match ServiceMessage::decode(&again) {
                    Ok(back) if same_service(&back, &msg) => {}
                    other => panic!(
                        "service frame {text:?} decoded to {msg:?}, which re-encodes as {again:?}, \
                         which decodes to {other:?}; {ctx}"
                    ),
                }
            }
            Err(e) => self.service.error(&e),
        }
        match decode_guarded("ClientMessage", text, ctx, ClientMessage::decode) {
            Ok(ClientMessage::Unknown { .. }) => {
                self.client.unknown += 1;
                self.client.variants.insert("Unknown");
            }
            Ok(msg) => {
                self.client.known += 1;
                self.client.variants.insert(client_variant(&msg));
                let again = msg.encode();
                match ClientMessage::decode(&again) {
                    Ok(back) if same_client(&back, &msg) => {}
                    other => panic!(
                        "client frame {text:?} decoded to {msg:?}, which re-encodes as {again:?}, \
                         which decodes to {other:?}; {ctx}"
                    ),
                }
            }
            Err(e) => self.client.error(&e),
        }
    }
}

fn decode_guarded<T>(
    decoder: &str,
    text: &str,
    ctx: &Ctx,
    decode: fn(&str) -> Result<T, ProtocolError>,
) -> Result<T, ProtocolError> {
    match catch_unwind(AssertUnwindSafe(|| decode(text))) {
        Ok(result) => result,
        Err(_) => panic!("{decoder}::decode panicked on frame {text:?}; {ctx}"),
    }
}

fn check_valid_service(msg: &ServiceMessage, text: &str, ctx: &Ctx) {
    let decoded = ServiceMessage::decode(text);
    match (msg, &decoded) {
        // `Unknown` encodes the kind it describes as its `type`; it decodes as unknown
        // again, keeping its sequence id.
        (
            ServiceMessage::Unknown { sequence_id, .. },
            Ok(ServiceMessage::Unknown {
                sequence_id: got, ..
            }),
        ) if got == sequence_id => {}
        (_, Ok(got)) if same_service(got, msg) => {}
        _ => panic!("{msg:?} encodes as {text:?}, which decodes to {decoded:?}; {ctx}"),
    }
}

fn check_valid_client(msg: &ClientMessage, text: &str, ctx: &Ctx) {
    let decoded = ClientMessage::decode(text);
    match (msg, &decoded) {
        (ClientMessage::Unknown { .. }, Ok(ClientMessage::Unknown { .. })) => {}
        (_, Ok(got)) if same_client(got, msg) => {}
        _ => panic!("{msg:?} encodes as {text:?}, which decodes to {decoded:?}; {ctx}"),
    }
}

fn service_variant(msg: &ServiceMessage) -> &'static str {
    match msg {
        ServiceMessage::Connected { .. } => "Connected",
        ServiceMessage::Disconnected { .. } => "Disconnected",
        ServiceMessage::Ack { .. } => "Ack",
        ServiceMessage::GroupMessage { .. } => "GroupMessage",
        ServiceMessage::ServerMessage { .. } => "ServerMessage",
        ServiceMessage::Pong => "Pong",
        ServiceMessage::InvokeResponse { .. } => "InvokeResponse",
        ServiceMessage::Unknown { .. } => "Unknown",
        _ => "other",
    }
}

fn client_variant(msg: &ClientMessage) -> &'static str {
    match msg {
        ClientMessage::JoinGroup { .. } => "JoinGroup",
        ClientMessage::LeaveGroup { .. } => "LeaveGroup",
        ClientMessage::SendToGroup { .. } => "SendToGroup",
        ClientMessage::Event { .. } => "Event",
        ClientMessage::SequenceAck { .. } => "SequenceAck",
        ClientMessage::Ping => "Ping",
        ClientMessage::Invoke { .. } => "Invoke",
        ClientMessage::CancelInvocation { .. } => "CancelInvocation",
        ClientMessage::Unknown { .. } => "Unknown",
        _ => "other",
    }
}

// ---------------------------------------------------------------------------------------
// Generators of valid values

fn gen_string(rng: &mut Rng) -> String {
    const ASCII: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~ /";
    const SPECIAL: &[char] = &[
        '"',
        '\\',
        '/',
        '\n',
        '\r',
        '\t',
        '\u{0}',
        '\u{1}',
        '\u{1f}',
        '\u{7f}',
        '\u{80}',
        '\u{2028}',
        '\u{2029}',
        '\u{feff}',
        '\u{fffd}',
        '\u{ffff}',
        'é',
        'ß',
        '中',
        '🙂',
        '\u{10ffff}',
        '\u{1f600}',
        '{',
        '}',
        '[',
        ']',
        ',',
        ':',
    ];
    let len = match rng.below(20) {
        0 => 0,
        // Long strings are costly to decode a million times: rare but present.
        1 if rng.one_in(20) => 200 + rng.below(2000),
        _ => 1 + rng.below(12),
    };
    let special_rate = match rng.below(3) {
        0 => 0,
        1 => 4,
        _ => 1,
    };
    let mut s = String::with_capacity(len);
    for _ in 0..len {
        if special_rate > 0 && rng.one_in(special_rate + 1) {
            s.push(rng.pick(SPECIAL));
        } else {
            s.push(rng.pick(ASCII) as char);
        }
    }
    s
}

fn gen_u64(rng: &mut Rng) -> u64 {
    const TWO_53: u64 = 1 << 53;
    match rng.below(8) {
        0 => rng.below(10) as u64,
        1 => TWO_53 - 2 + rng.below(5) as u64,
        2 => u64::MAX - rng.below(3) as u64,
        3 => 1u64 << rng.below(64),
        4 => 10u64.pow(rng.below(20) as u32),
        5 => i64::MAX as u64 + rng.below(3) as u64 - 1,
        _ => rng.next_u64() >> rng.below(64),
    }
}

fn gen_f64(rng: &mut Rng) -> f64 {
    const FIXED: &[f64] = &[
        0.0,
        -0.0,
        0.1,
        -1.5,
        1e300,
        -1e-300,
        5e-324,
        f64::MAX,
        f64::MIN_POSITIVE,
        9007199254740993.0,
        1.7976931348623157e308,
        2.2250738585072014e-308,
        123456.789,
    ];
    if rng.one_in(2) {
        return rng.pick(FIXED);
    }
    loop {
        let f = f64::from_bits(rng.next_u64());
        if f.is_finite() {
            return f;
        }
    }
}

fn gen_number(rng: &mut Rng) -> Number {
    match rng.below(3) {
        0 => Number::from(gen_u64(rng)),
        1 => {
            let magnitude = (rng.next_u64() >> rng.below(64)) >> 1;
            Number::from(-(magnitude as i64) - 1)
        }
        _ => Number::from_f64(gen_f64(rng)).expect("finite"),
    }
}

fn gen_json(rng: &mut Rng, depth: usize) -> Value {
    // Rarely, a deep but legal nesting (serde_json refuses more than 128 levels).
    if depth == 0 && rng.one_in(50) {
        let mut v = Value::from(1);
        for _ in 0..rng.below(100) {
            v = if rng.one_in(2) {
                Value::Array(vec![v])
            } else {
                let mut m = Map::new();
                m.insert("k".into(), v);
                Value::Object(m)
            };
        }
        return v;
    }
    let scalar_only = depth >= 3;
    match rng.below(if scalar_only { 4 } else { 6 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.one_in(2)),
        2 => Value::Number(gen_number(rng)),
        3 => Value::String(gen_string(rng)),
        4 => Value::Array(
            (0..rng.below(4))
                .map(|_| gen_json(rng, depth + 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.below(4))
                .map(|_| (gen_string(rng), gen_json(rng, depth + 1)))
                .collect(),
        ),
    }
}

fn gen_bytes(rng: &mut Rng) -> Vec<u8> {
    let len = if rng.one_in(400) {
        1000 + rng.below(3000)
    } else {
        rng.below(40)
    };
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

fn gen_data(rng: &mut Rng) -> Data {
    match rng.below(4) {
        0 => Data::Text(gen_string(rng)),
        1 => Data::Json(gen_json(rng, 0)),
        2 => Data::Binary(gen_bytes(rng)),
        _ => Data::Protobuf(gen_bytes(rng)),
    }
}

fn gen_opt<T>(rng: &mut Rng, f: impl FnOnce(&mut Rng) -> T) -> Option<T> {
    if rng.one_in(2) {
        Some(f(rng))
    } else {
        None
    }
}

/// Metadata, empty most of the time as on the wire. The codecs keep whatever the peer sent
/// (the limits are rules, not format), so keys and values are any strings, now and then
/// within the rules.
fn gen_metadata(rng: &mut Rng) -> Metadata {
    if rng.below(3) > 0 {
        return Metadata::new();
    }
    const KEYS: &[&str] = &["trace-id", "origin", "k", "Content-Type", "x_y.z~1", ""];
    (0..1 + rng.below(4))
        .map(|_| {
            let key = if rng.one_in(2) {
                rng.pick(KEYS).to_owned()
            } else {
                gen_string(rng)
            };
            (key, gen_string(rng))
        })
        .collect()
}

/// A TTL: within the rule's 0–300 mostly, anywhere in `u32` now and then.
fn gen_ttl(rng: &mut Rng) -> u32 {
    match rng.below(4) {
        0 => 0,
        1 => 300,
        2 => rng.next_u64() as u32,
        _ => rng.below(301) as u32,
    }
}

fn gen_ack_error(rng: &mut Rng) -> AckError {
    const NAMES: &[&str] = &[
        AckError::DUPLICATE,
        AckError::FORBIDDEN,
        AckError::INTERNAL_SERVER_ERROR,
        AckError::INVOCATION_FAILED,
    ];
    let name = if rng.one_in(4) {
        gen_string(rng)
    } else {
        rng.pick(NAMES).to_owned()
    };
    AckError::new(name, gen_string(rng))
}

fn gen_service(rng: &mut Rng) -> ServiceMessage {
    match rng.below(8) {
        0 => ServiceMessage::Connected {
            connection_id: gen_string(rng),
            user_id: gen_opt(rng, gen_string),
            reconnection_token: gen_opt(rng, gen_string),
        },
        1 => ServiceMessage::Disconnected {
            message: gen_opt(rng, gen_string),
        },
        2 => ServiceMessage::Ack {
            ack_id: gen_u64(rng),
            success: rng.one_in(2),
            error: gen_opt(rng, gen_ack_error),
        },
        3 => ServiceMessage::GroupMessage {
            group: gen_string(rng),
            data: gen_data(rng),
            from_user_id: gen_opt(rng, gen_string),
            sequence_id: gen_opt(rng, gen_u64),
            metadata: gen_metadata(rng),
        },
        4 => ServiceMessage::ServerMessage {
            data: gen_data(rng),
            sequence_id: gen_opt(rng, gen_u64),
            metadata: gen_metadata(rng),
        },
        5 => ServiceMessage::Pong,
        6 => ServiceMessage::InvokeResponse {
            invocation_id: gen_string(rng),
            success: rng.one_in(2),
            data: gen_opt(rng, gen_data),
            error: gen_opt(rng, gen_ack_error),
            metadata: gen_metadata(rng),
        },
        _ => ServiceMessage::Unknown {
            kind: gen_string(rng),
            sequence_id: gen_opt(rng, gen_u64),
        },
    }
}

fn gen_client(rng: &mut Rng) -> ClientMessage {
    match rng.below(9) {
        0 => ClientMessage::JoinGroup {
            group: gen_string(rng),
            ack_id: gen_opt(rng, gen_u64),
        },
        1 => ClientMessage::LeaveGroup {
            group: gen_string(rng),
            ack_id: gen_opt(rng, gen_u64),
        },
        2 => ClientMessage::SendToGroup {
            group: gen_string(rng),
            ack_id: gen_opt(rng, gen_u64),
            no_echo: rng.one_in(2),
            data: gen_data(rng),
            ttl_seconds: gen_opt(rng, gen_ttl),
            metadata: gen_metadata(rng),
        },
        3 => ClientMessage::Event {
            event: gen_string(rng),
            ack_id: gen_opt(rng, gen_u64),
            data: gen_data(rng),
            metadata: gen_metadata(rng),
        },
        4 => ClientMessage::SequenceAck {
            sequence_id: gen_u64(rng),
        },
        5 => ClientMessage::Ping,
        6 => ClientMessage::Invoke {
            invocation_id: gen_string(rng),
            event: gen_string(rng),
            data: gen_opt(rng, gen_data),
            metadata: gen_metadata(rng),
        },
        7 => ClientMessage::CancelInvocation {
            invocation_id: gen_string(rng),
        },
        _ => ClientMessage::Unknown {
            kind: gen_string(rng),
        },
    }
}

// ---------------------------------------------------------------------------------------
// Mutations

/// A frame as its top-level fields in wire order: (key, raw JSON value). Keys need no
/// escaping (the encoder's and [`KEYS`]); values borrow from the frame until mutated, which
/// spares a million frames most of their allocations.
type Fields<'a> = Vec<(&'a str, Cow<'a, str>)>;

/// Splits an encoded message into its fields, keeping order and the values' exact text.
fn split_fields(text: &str) -> Fields<'_> {
    struct FieldsVisitor;
    impl<'de> Visitor<'de> for FieldsVisitor {
        type Value = Fields<'de>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
            let mut fields = Vec::new();
            while let Some((k, v)) = map.next_entry::<&'de str, &'de RawValue>()? {
                fields.push((k, Cow::Borrowed(v.get())));
            }
            Ok(fields)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    de.deserialize_map(FieldsVisitor)
        .unwrap_or_else(|e| panic!("encoder wrote {text:?}, which is not an object: {e}"))
}

fn render(fields: &Fields<'_>) -> String {
    let mut out = String::with_capacity(fields.iter().map(|(k, v)| k.len() + v.len() + 4).sum());
    out.push('{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(k);
        out.push_str("\":");
        out.push_str(v);
    }
    out.push('}');
    out
}

const KEYS: &[&str] = &[
    "type",
    "event",
    "from",
    "group",
    "ackId",
    "success",
    "error",
    "dataType",
    "data",
    "fromUserId",
    "sequenceId",
    "connectionId",
    "userId",
    "reconnectionToken",
    "message",
    "noEcho",
    "invocationId",
    "target",
    "ttlSeconds",
    "metadata",
    "name",
    "Type",
    "",
];

const TYPES: &[&str] = &[
    "\"system\"",
    "\"ack\"",
    "\"message\"",
    "\"pong\"",
    "\"invokeResponse\"",
    "\"joinGroup\"",
    "\"leaveGroup\"",
    "\"sendToGroup\"",
    "\"event\"",
    "\"sequenceAck\"",
    "\"ping\"",
    "\"invoke\"",
    "\"cancelInvocation\"",
    "\"Ack\"",
    "\"\"",
    "null",
    "7",
];

const EVENTS_AND_FROMS: &[&str] = &[
    "\"connected\"",
    "\"disconnected\"",
    "\"group\"",
    "\"server\"",
    "\"event\"",
    "\"peer\"",
    "null",
    "[]",
];

const DATA_TYPES: &[&str] = &[
    "\"text\"",
    "\"json\"",
    "\"binary\"",
    "\"protobuf\"",
    "\"TEXT\"",
    "\"Json\"",
    "\"bInArY\"",
    "\"ProtoBuf\"",
    "\"xml\"",
    "\"\"",
    "null",
    "5",
    "[\"text\"]",
];

const BAD_BASE64: &[&str] = &[
    "\"A\"",
    "\"AQI\"",
    "\"AQID=\"",
    "\"AQ==AQ==\"",
    "\"!!!!\"",
    "\"AQ\\u003d\\u003d\"",
    "\"AQ ID\"",
    "\"AQ-_\"",
    "\"AR==\"",
    "\"====\"",
    "\"\"",
];

/// Values of every JSON type, including the edges of u64 and unreadable numbers.
const VALUES: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "-0",
    "-1",
    "1.5",
    "1e2",
    "1e400",
    "-1e400",
    "9007199254740992",
    "9007199254740993",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "\"\"",
    "\"x\"",
    "\"1\"",
    "\"true\"",
    "\"\\ud800\"",
    "\"\\udc00\\ud800\"",
    "\"\\u0000\"",
    "\"\\ud83d\\ude00\"",
    "[]",
    "{}",
    "[1,\"a\",null]",
    "{\"name\":\"n\"}",
    "{\"name\":1,\"message\":\"m\"}",
    "{\"name\":\"n\",\"message\":null}",
    "[\"n\",\"m\"]",
    "{\"name\":\"n\",\"name\":\"n\"}",
    "{\"k\":\"v\"}",
    "{\"k\":\"v\",\"k\":\"w\"}",
    "{\"k\":1}",
    "{\"\":\"\",\"a b\":\"\\u00e9\"}",
];

/// Tokens spliced into frames at random places.
const TOKENS: &[&str] = &[
    "{", "}", "[", "]", ",", ":", "\"", "\\", "\\u", "\\ud800", "null", "true", "-", "0", "e9",
    ".", " ", "\n", "\u{0}", "é", "🙂", "\"type\"", "\"data\"", ",\"x\":1", "}{", "\u{feff}",
];

fn mutate(rng: &mut Rng, fields: &Fields<'_>, valid: &str) -> String {
    let mut fields = fields.clone();
    let mut text = None;
    for _ in 0..1 + rng.below(3) {
        if text.is_none() && rng.below(3) > 0 {
            mutate_fields(rng, &mut fields);
        } else {
            let mut bytes = text.take().unwrap_or_else(|| render(&fields)).into_bytes();
            mutate_bytes(rng, &mut bytes);
            text = Some(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    let text = text.unwrap_or_else(|| render(&fields));
    // Now and then, something that is not a message at all.
    if rng.one_in(64) {
        return random_tokens(rng, valid);
    }
    text
}

fn mutate_fields<'a>(rng: &mut Rng, fields: &mut Fields<'a>) {
    let pick = |rng: &mut Rng, fields: &Fields<'a>| {
        if fields.is_empty() {
            None
        } else {
            Some(rng.below(fields.len()))
        }
    };
    let set = |fields: &mut Fields<'a>, key: &'static str, value: &'static str| match fields
        .iter_mut()
        .find(|(k, _)| *k == key)
    {
        Some(field) => field.1 = Cow::Borrowed(value),
        None => fields.push((key, Cow::Borrowed(value))),
    };
    match rng.below(12) {
        0 => {
            if let Some(i) = pick(rng, fields) {
                fields.remove(i);
            }
        }
        1 => {
            if let Some(i) = pick(rng, fields) {
                let field = fields[i].clone();
                let at = rng.below(fields.len() + 1);
                fields.insert(at, field);
            }
        }
        2 | 3 => {
            if let Some(i) = pick(rng, fields) {
                fields[i].1 = random_value(rng);
            }
        }
        4 => {
            set(fields, "dataType", rng.pick(DATA_TYPES));
        }
        5 => {
            set(fields, "data", rng.pick(BAD_BASE64));
            if rng.one_in(2) {
                let ty = if rng.one_in(2) {
                    "\"binary\""
                } else {
                    "\"protobuf\""
                };
                set(fields, "dataType", ty);
            }
        }
        6 => {
            set(fields, "type", rng.pick(TYPES));
        }
        7 => {
            let key = if rng.one_in(2) { "event" } else { "from" };
            set(fields, key, rng.pick(EVENTS_AND_FROMS));
        }
        8 => {
            let key = rng.pick(KEYS);
            let at = rng.below(fields.len() + 1);
            fields.insert(at, (key, random_value(rng)));
        }
        9 => {
            if fields.len() >= 2 {
                let (a, b) = (rng.below(fields.len()), rng.below(fields.len()));
                fields.swap(a, b);
            }
        }
        10 if rng.one_in(2) => {
            if let Some(i) = pick(rng, fields) {
                fields[i].1 = Cow::Owned(deep_value(rng));
            }
        }
        _ => {
            // A field with the right name but a value of another field's type.
            if let (Some(i), Some(j)) = (pick(rng, fields), pick(rng, fields)) {
                fields[i].1 = fields[j].1.clone();
            }
        }
    }
}

fn random_value(rng: &mut Rng) -> Cow<'static, str> {
    match rng.below(6) {
        0 => Cow::Owned(serde_json::to_string(&gen_string(rng)).expect("string")),
        1 => Cow::Owned(serde_json::to_string(&gen_json(rng, 2)).expect("json")),
        _ => Cow::Borrowed(rng.pick(VALUES)),
    }
}

/// Nesting on both sides of serde_json's recursion limit (128), possibly unbalanced.
fn deep_value(rng: &mut Rng) -> String {
    let depth = 100 + rng.below(200);
    let (open, close) = if rng.one_in(2) {
        ("[", "]")
    } else {
        ("{\"a\":", "}")
    };
    let mut s = String::with_capacity(depth * 6);
    for _ in 0..depth {
        s.push_str(open);
    }
    s.push('1');
    let closes = if rng.one_in(4) {
        rng.below(depth)
    } else {
        depth
    };
    for _ in 0..closes {
        s.push_str(close);
    }
    s
}

fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>) {
    if bytes.is_empty() {
        bytes.extend_from_slice(rng.pick(TOKENS).as_bytes());
        return;
    }
    let at = rng.below(bytes.len());
    match rng.below(6) {
        0 => bytes[at] ^= 1 << rng.below(8),
        1 => bytes.truncate(at),
        2 => {
            let token = rng.pick(TOKENS).as_bytes();
            bytes.splice(at..at, token.iter().copied());
        }
        3 => {
            let end = (at + 1 + rng.below(16)).min(bytes.len());
            bytes.drain(at..end);
        }
        4 => {
            let end = (at + 1 + rng.below(32)).min(bytes.len());
            let chunk = bytes[at..end].to_vec();
            let to = rng.below(bytes.len() + 1);
            bytes.splice(to..to, chunk);
        }
        _ => bytes[at] = rng.pick(b"{}[]\",:\\0 n"),
    }
}

/// A frame of random tokens, or a random slice of a valid frame.
fn random_tokens(rng: &mut Rng, valid: &str) -> String {
    if rng.one_in(2) {
        let bytes = valid.as_bytes();
        let a = rng.below(bytes.len() + 1);
        let b = a + rng.below(bytes.len() - a + 1);
        return String::from_utf8_lossy(&bytes[a..b]).into_owned();
    }
    let mut s = String::new();
    for _ in 0..rng.below(24) {
        s.push_str(rng.pick(TOKENS));
    }
    s
}

// ---------------------------------------------------------------------------------------
// Protobuf: the same generators, encoded with `encode_protobuf`, mutated at the wire level.

/// Protobuf frames per direction: protobuf frames are smaller and cheaper to decode, and the
/// mutations below reach its few cases quickly.
const DEFAULT_PROTOBUF_FRAMES_PER_TEST: usize = 200_000;

#[test]
fn protobuf_service_frames_and_their_mutants_never_panic_and_round_trip() {
    run_protobuf(Direction::Service);
}

#[test]
fn protobuf_client_frames_and_their_mutants_never_panic_and_round_trip() {
    run_protobuf(Direction::Client);
}

fn run_protobuf(direction: Direction) {
    let seed = env_u64("CODEC_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let frames =
        env_u64("CODEC_FUZZ_FRAMES").map_or(DEFAULT_PROTOBUF_FRAMES_PER_TEST, |n| n as usize);
    let stream = seed ^ (direction as u64 + 3).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    println!(
        "protobuf codec fuzz ({direction:?}): seed {seed:#x}, {frames} frames \
         (replay with CODEC_FUZZ_SEED={seed:#x})"
    );
    let started = Instant::now();
    let mut stats = Stats::default();
    let mut case = 0u64;
    while stats.frames < frames {
        let mut rng = Rng::new(stream ^ case.wrapping_mul(0xd1b5_4a32_d192_ed03));
        let ctx = Ctx { seed, case };
        let valid = match direction {
            Direction::Service => {
                let msg = protobuf_service(gen_service(&mut rng));
                let bytes = msg.encode_protobuf();
                let mut appended = vec![7];
                msg.encode_protobuf_into(&mut appended);
                assert_eq!(appended[1..], bytes[..], "encode_protobuf_into; {ctx}");
                match ServiceMessage::decode_protobuf(&bytes) {
                    Ok(got) if same_service(&got, &msg) => {}
                    other => {
                        panic!("{msg:?} encodes as {bytes:?}, which decodes to {other:?}; {ctx}")
                    }
                }
                bytes
            }
            Direction::Client => {
                let msg = protobuf_client(gen_client(&mut rng));
                let bytes = msg.encode_protobuf();
                let mut appended = vec![7];
                msg.encode_protobuf_into(&mut appended);
                assert_eq!(appended[1..], bytes[..], "encode_protobuf_into; {ctx}");
                match ClientMessage::decode_protobuf(&bytes) {
                    Ok(got) if same_client(&got, &msg) => {}
                    other => {
                        panic!("{msg:?} encodes as {bytes:?}, which decodes to {other:?}; {ctx}")
                    }
                }
                bytes
            }
        };
        stats.check_protobuf(&valid, &ctx);
        for _ in 1..FRAMES_PER_MESSAGE {
            let mutant = mutate_protobuf(&mut rng, &valid);
            stats.check_protobuf(&mutant, &ctx);
        }
        case += 1;
    }
    println!(
        "protobuf codec fuzz ({direction:?}): {} frames ({} bytes) in {:.2?}; service decoder: {}; client decoder: {}",
        stats.frames,
        stats.bytes,
        started.elapsed(),
        stats.service,
        stats.client
    );
    if frames >= 10_000 {
        let errors = ["InvalidProtobuf", "MissingField", "InvalidField"];
        match direction {
            Direction::Service => stats.service.assert_covers_with(
                &[
                    "Connected",
                    "Disconnected",
                    "Ack",
                    "GroupMessage",
                    "ServerMessage",
                    "Pong",
                    "InvokeResponse",
                    "Unknown",
                ],
                &errors,
            ),
            Direction::Client => stats.client.assert_covers_with(
                &[
                    "JoinGroup",
                    "LeaveGroup",
                    "SendToGroup",
                    "Event",
                    "SequenceAck",
                    "Ping",
                    "Invoke",
                    "CancelInvocation",
                    "Unknown",
                ],
                &errors,
            ),
        }
    }
}

/// A generated message as protobuf can say it: no `fromUserId`, no sequence id 0, no empty
/// user id or disconnect reason (a proto3 string is never absent), and an `Unknown` is the
/// empty frame.
fn protobuf_service(msg: ServiceMessage) -> ServiceMessage {
    let nonzero = |s: Option<u64>| s.filter(|&s| s != 0);
    let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
    match msg {
        ServiceMessage::GroupMessage {
            group,
            data,
            sequence_id,
            metadata,
            ..
        } => ServiceMessage::GroupMessage {
            group,
            data,
            from_user_id: None,
            sequence_id: nonzero(sequence_id),
            metadata,
        },
        ServiceMessage::ServerMessage {
            data,
            sequence_id,
            metadata,
        } => ServiceMessage::ServerMessage {
            data,
            sequence_id: nonzero(sequence_id),
            metadata,
        },
        ServiceMessage::Connected {
            connection_id,
            user_id,
            reconnection_token,
        } => ServiceMessage::Connected {
            connection_id,
            user_id: nonempty(user_id),
            reconnection_token,
        },
        ServiceMessage::Disconnected { message } => ServiceMessage::Disconnected {
            message: nonempty(message),
        },
        ServiceMessage::Unknown { .. } => ServiceMessage::Unknown {
            kind: "unknown message case".into(),
            sequence_id: None,
        },
        other => other,
    }
}

fn protobuf_client(msg: ClientMessage) -> ClientMessage {
    match msg {
        ClientMessage::Unknown { .. } => ClientMessage::Unknown {
            kind: "unknown message case".into(),
        },
        other => other,
    }
}

impl Outcomes {
    fn assert_covers_with(&self, variants: &[&'static str], errors: &[&'static str]) {
        for v in variants {
            assert!(
                self.variants.contains(v),
                "no frame decoded to {v}: {:?}",
                self.variants
            );
        }
        for kind in errors {
            assert!(
                self.error_kinds.contains(kind),
                "no frame gave {kind}: {:?}",
                self.error_kinds
            );
        }
    }

    fn protobuf_error(&mut self, e: &ProtocolError) {
        self.errors += 1;
        self.error_kinds.insert(match e {
            ProtocolError::InvalidProtobuf(_) => "InvalidProtobuf",
            ProtocolError::MissingField { .. } => "MissingField",
            ProtocolError::InvalidField { .. } => "InvalidField",
            _ => "other",
        });
    }
}

impl Stats {
    /// Runs one protobuf frame through both decoders, checking the round-trip property.
    fn check_protobuf(&mut self, bytes: &[u8], ctx: &Ctx) {
        self.frames += 1;
        self.bytes += bytes.len();
        let service = catch_unwind(AssertUnwindSafe(|| ServiceMessage::decode_protobuf(bytes)))
            .unwrap_or_else(|_| {
                panic!("ServiceMessage::decode_protobuf panicked on {bytes:?}; {ctx}")
            });
        match service {
            Ok(msg) => {
                self.service.variants.insert(service_variant(&msg));
                if matches!(msg, ServiceMessage::Unknown { .. }) {
                    self.service.unknown += 1;
                } else {
                    self.service.known += 1;
                    let again = msg.encode_protobuf();
                    match ServiceMessage::decode_protobuf(&again) {
                        Ok(back) if same_service(&back, &msg) => {}
                        other => panic!(
                            "service frame {bytes:?} decoded to {msg:?}, which re-encodes as \
                             {again:?}, which decodes to {other:?}; {ctx}"
                        ),
                    }
                }
            }
            Err(e) => self.service.protobuf_error(&e),
        }
        let client = catch_unwind(AssertUnwindSafe(|| ClientMessage::decode_protobuf(bytes)))
            .unwrap_or_else(|_| {
                panic!("ClientMessage::decode_protobuf panicked on {bytes:?}; {ctx}")
            });
        match client {
            Ok(msg) => {
                self.client.variants.insert(client_variant(&msg));
                if matches!(msg, ClientMessage::Unknown { .. }) {
                    self.client.unknown += 1;
                } else {
                    self.client.known += 1;
                    let again = msg.encode_protobuf();
                    match ClientMessage::decode_protobuf(&again) {
                        Ok(back) if same_client(&back, &msg) => {}
                        other => panic!(
                            "client frame {bytes:?} decoded to {msg:?}, which re-encodes as \
                             {again:?}, which decodes to {other:?}; {ctx}"
                        ),
                    }
                }
            }
            Err(e) => self.client.protobuf_error(&e),
        }
    }
}

/// A protobuf field's value, by wire type.
#[derive(Clone)]
enum Wire {
    Varint(u64),
    I64([u8; 8]),
    Len(Vec<u8>),
    I32([u8; 4]),
}

/// Splits bytes into (field number, value) pairs; `None` unless the whole input parses.
fn parse_wire(mut b: &[u8]) -> Option<Vec<(u64, Wire)>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (key, rest) = read_varint(b)?;
        b = rest;
        let value = match key & 7 {
            0 => {
                let (v, rest) = read_varint(b)?;
                b = rest;
                Wire::Varint(v)
            }
            1 => {
                let (v, rest) = (b.get(..8)?, &b[8..]);
                b = rest;
                Wire::I64(v.try_into().ok()?)
            }
            2 => {
                let (len, rest) = read_varint(b)?;
                let len = usize::try_from(len).ok()?;
                let v = rest.get(..len)?.to_vec();
                b = &rest[len..];
                Wire::Len(v)
            }
            5 => {
                let (v, rest) = (b.get(..4)?, &b[4..]);
                b = rest;
                Wire::I32(v.try_into().ok()?)
            }
            _ => return None,
        };
        out.push((key >> 3, value));
    }
    Some(out)
}

fn render_wire(fields: &[(u64, Wire)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (tag, value) in fields {
        let wire_type = match value {
            Wire::Varint(_) => 0,
            Wire::I64(_) => 1,
            Wire::Len(_) => 2,
            Wire::I32(_) => 5,
        };
        push_varint(&mut out, tag << 3 | wire_type);
        match value {
            Wire::Varint(v) => push_varint(&mut out, *v),
            Wire::I64(v) => out.extend_from_slice(v),
            Wire::Len(v) => {
                push_varint(&mut out, v.len() as u64);
                out.extend_from_slice(v);
            }
            Wire::I32(v) => out.extend_from_slice(v),
        }
    }
    out
}

fn read_varint(b: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, &b[i + 1..]));
        }
    }
    None
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Field numbers worth trying: every case and field of the schema, the preview cases, the
/// unused upstream tags, a far one, and 0 (invalid).
const TAGS: &[u64] = &[
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 100, 0,
];

/// Contents for length-delimited fields: invalid UTF-8, JSON and not-JSON for `json_data`,
/// an `Any`, group names, nested messages.
const CONTENTS: &[&[u8]] = &[
    b"",
    b"\xff",
    b"a\xc3",
    b"\xed\xa0\x80",
    b"group",
    b"server",
    b"peer",
    b"{\"a\":1}",
    b"{\"a\"",
    b"null",
    b"1e400",
    b"[1,2",
    b"\x0a\x07example\x12\x03xyz",
    b"\x0a\x01x",
    b"\x12\x00",
    b"\x22\x02{}",
    b"\x0a\x01k\x12\x01v",
    b"\x08\x01",
    b"\x18\x05",
];

/// One to three mutations, at the wire level (fields of the frame or of a nested message)
/// or the byte level.
fn mutate_protobuf(rng: &mut Rng, valid: &[u8]) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    for _ in 0..1 + rng.below(3) {
        if rng.below(3) > 0 {
            if let Some(mut fields) = parse_wire(&bytes) {
                mutate_message(rng, &mut fields, 0);
                bytes = render_wire(&fields);
                continue;
            }
        }
        mutate_protobuf_bytes(rng, &mut bytes);
    }
    bytes
}

fn mutate_message(rng: &mut Rng, fields: &mut Vec<(u64, Wire)>, depth: usize) {
    // Descend into a nested message now and then, as deep as the schema goes.
    if depth < 4 && !fields.is_empty() && rng.below(3) > 0 {
        let i = rng.below(fields.len());
        if let Wire::Len(inner) = &fields[i].1 {
            if let Some(mut nested) = parse_wire(inner) {
                if !nested.is_empty() || rng.one_in(2) {
                    mutate_message(rng, &mut nested, depth + 1);
                    fields[i].1 = Wire::Len(render_wire(&nested));
                    return;
                }
            }
        }
    }
    let pick = |rng: &mut Rng, fields: &Vec<(u64, Wire)>| {
        (!fields.is_empty()).then(|| rng.below(fields.len()))
    };
    match rng.below(9) {
        0 => {
            if let Some(i) = pick(rng, fields) {
                fields.remove(i);
            }
        }
        1 => {
            if let Some(i) = pick(rng, fields) {
                let f = fields[i].clone();
                fields.insert(rng.below(fields.len() + 1), f);
            }
        }
        2 => {
            if let Some(i) = pick(rng, fields) {
                fields[i].0 = rng.pick(TAGS);
            }
        }
        3 => {
            // Another wire type for the same field.
            if let Some(i) = pick(rng, fields) {
                fields[i].1 = match &fields[i].1 {
                    Wire::Len(v) => Wire::Varint(v.len() as u64),
                    Wire::Varint(v) => {
                        let mut b = Vec::new();
                        push_varint(&mut b, *v);
                        Wire::Len(b)
                    }
                    Wire::I64(_) | Wire::I32(_) => Wire::Varint(1),
                };
            }
        }
        4 => {
            if let Some(i) = pick(rng, fields) {
                if let Wire::Varint(v) = &mut fields[i].1 {
                    *v = match rng.below(4) {
                        0 => 0,
                        1 => u64::MAX,
                        2 => 1 << 53 | 1,
                        _ => rng.next_u64() >> rng.below(64),
                    };
                } else {
                    fields[i].1 = Wire::Len(rng.pick(CONTENTS).to_vec());
                }
            }
        }
        5 => {
            if let Some(i) = pick(rng, fields) {
                if let Wire::Len(v) = &mut fields[i].1 {
                    match rng.below(3) {
                        0 => v.truncate(rng.below(v.len() + 1)),
                        1 => {
                            let at = rng.below(v.len() + 1);
                            v.insert(at, 0xff);
                        }
                        _ => *v = rng.pick(CONTENTS).to_vec(),
                    }
                }
            }
        }
        6 => {
            let value = match rng.below(4) {
                0 => Wire::Varint(rng.next_u64() >> rng.below(64)),
                1 => Wire::I64(rng.next_u64().to_le_bytes()),
                2 => Wire::I32((rng.next_u64() as u32).to_le_bytes()),
                _ => Wire::Len(rng.pick(CONTENTS).to_vec()),
            };
            let at = rng.below(fields.len() + 1);
            fields.insert(at, (rng.pick(TAGS), value));
        }
        7 => {
            if fields.len() >= 2 {
                let (a, b) = (rng.below(fields.len()), rng.below(fields.len()));
                fields.swap(a, b);
            }
        }
        _ => fields.clear(),
    }
}

fn mutate_protobuf_bytes(rng: &mut Rng, bytes: &mut Vec<u8>) {
    if bytes.is_empty() {
        bytes.extend_from_slice(rng.pick(CONTENTS));
        return;
    }
    let at = rng.below(bytes.len());
    match rng.below(6) {
        0 => bytes[at] ^= 1 << rng.below(8),
        1 => bytes.truncate(at),
        2 => {
            let chunk = rng.pick(CONTENTS);
            bytes.splice(at..at, chunk.iter().copied());
        }
        3 => {
            let end = (at + 1 + rng.below(8)).min(bytes.len());
            bytes.drain(at..end);
        }
        4 => {
            // An oversized or overlong length or varint.
            let junk: &[u8] = rng.pick(&[
                &[0xff, 0xff, 0xff, 0xff, 0x0f][..],
                &[0x80; 11][..],
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01][..],
            ]);
            bytes.splice(at..at, junk.iter().copied());
        }
        _ => bytes[at] = rng.next_u64() as u8,
    }
}
