//! The messages of the protobuf subprotocols, declared with prost's derive (PROTOBUF.md).
//!
//! Our own declarations of `Azure/azure-webpubsub`'s `webpubsub.v1.proto`, with three
//! deliberate differences that change nothing on the wire:
//! - `protobuf_data` (a `google.protobuf.Any`) is declared as `bytes`: an embedded message
//!   and a `bytes` field have the same wire form, so the serialised `Any` is taken and given
//!   as it is, never parsed and re-encoded;
//! - `map<string, string>` fields are declared as repeated `MetadataEntry` messages, which is
//!   how protobuf defines a map's wire form; the entries keep their order, and the decoder
//!   applies the map rule (the last of a repeated key wins);
//! - the `success` flags are `optional`, so that `false` is written explicitly, as the JS
//!   client's test vectors have it (a proto3 reader sees the same value either way).
//!
//! The preview cases (streaming, group state) are declared only as far as a receiver needs:
//! to know the case (it is skipped) and, for group state, its sequence id.

/// A frame from a client (`UpstreamMessage`).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct UpstreamMessage {
    #[prost(
        oneof = "Upstream",
        tags = "1, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17"
    )]
    pub message: Option<Upstream>,
}

/// `UpstreamMessage.message`. Tags 2, 3, 4 and 12 are unused.
#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum Upstream {
    #[prost(message, tag = "1")]
    SendToGroup(SendToGroupMessage),
    #[prost(message, tag = "5")]
    Event(EventMessage),
    #[prost(message, tag = "6")]
    JoinGroup(GroupMessage),
    #[prost(message, tag = "7")]
    LeaveGroup(GroupMessage),
    #[prost(message, tag = "8")]
    SequenceAck(SequenceAckMessage),
    #[prost(message, tag = "9")]
    Ping(Empty),
    #[prost(message, tag = "10")]
    InvokeEvent(InvokeEventMessage),
    #[prost(message, tag = "11")]
    CancelInvocation(CancelInvocationMessage),
    #[prost(message, tag = "13")]
    StreamData(Empty),
    #[prost(message, tag = "14")]
    StreamEnd(Empty),
    #[prost(message, tag = "15")]
    SetGroupState(Empty),
    #[prost(message, tag = "16")]
    SubscribeGroupState(Empty),
    #[prost(message, tag = "17")]
    UnsubscribeGroupState(Empty),
}

/// A message whose fields are all skipped: `PingMessage`, `PongMessage`, and the preview
/// messages, and the `stream` fields that make a send a streaming one.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Empty {}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SendToGroupMessage {
    #[prost(string, tag = "1")]
    pub group: String,
    #[prost(uint64, optional, tag = "2")]
    pub ack_id: Option<u64>,
    #[prost(message, optional, tag = "3")]
    pub data: Option<MessageData>,
    #[prost(bool, optional, tag = "4")]
    pub no_echo: Option<bool>,
    #[prost(uint32, optional, tag = "5")]
    pub ttl_seconds: Option<u32>,
    #[prost(message, repeated, tag = "6")]
    pub metadata: Vec<MetadataEntry>,
    #[prost(message, optional, tag = "7")]
    pub stream: Option<Empty>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EventMessage {
    #[prost(string, tag = "1")]
    pub event: String,
    #[prost(message, optional, tag = "2")]
    pub data: Option<MessageData>,
    #[prost(uint64, optional, tag = "3")]
    pub ack_id: Option<u64>,
    #[prost(message, repeated, tag = "4")]
    pub metadata: Vec<MetadataEntry>,
    #[prost(message, optional, tag = "5")]
    pub stream: Option<Empty>,
}

/// `JoinGroupMessage` and `LeaveGroupMessage`, which have the same fields.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct GroupMessage {
    #[prost(string, tag = "1")]
    pub group: String,
    #[prost(uint64, optional, tag = "2")]
    pub ack_id: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SequenceAckMessage {
    #[prost(uint64, tag = "1")]
    pub sequence_id: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct InvokeEventMessage {
    #[prost(string, tag = "1")]
    pub event: String,
    #[prost(string, tag = "2")]
    pub invocation_id: String,
    #[prost(message, optional, tag = "3")]
    pub data: Option<MessageData>,
    #[prost(message, repeated, tag = "4")]
    pub metadata: Vec<MetadataEntry>,
    #[prost(message, optional, tag = "5")]
    pub stream: Option<Empty>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct CancelInvocationMessage {
    #[prost(string, tag = "1")]
    pub invocation_id: String,
}

/// A frame from the service (`DownstreamMessage`).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DownstreamMessage {
    #[prost(oneof = "Downstream", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10")]
    pub message: Option<Downstream>,
}

/// `DownstreamMessage.message`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum Downstream {
    #[prost(message, tag = "1")]
    Ack(AckMessage),
    #[prost(message, tag = "2")]
    Data(DataMessage),
    #[prost(message, tag = "3")]
    System(SystemMessage),
    #[prost(message, tag = "4")]
    Pong(Empty),
    #[prost(message, tag = "5")]
    InvokeResponse(InvokeResponseMessage),
    #[prost(message, tag = "6")]
    StreamAck(Empty),
    #[prost(message, tag = "7")]
    StreamNack(Empty),
    #[prost(message, tag = "8")]
    StreamClosed(Empty),
    #[prost(message, tag = "9")]
    GroupStateUpdate(GroupStateMessage),
    #[prost(message, tag = "10")]
    GroupStateSnapshot(GroupStateMessage),
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct AckMessage {
    #[prost(uint64, tag = "1")]
    pub ack_id: u64,
    #[prost(bool, optional, tag = "2")]
    pub success: Option<bool>,
    #[prost(message, optional, tag = "3")]
    pub error: Option<ErrorMessage>,
}

/// `AckMessage.ErrorMessage` and `InvokeResponseMessage.ErrorMessage`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ErrorMessage {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DataMessage {
    #[prost(string, tag = "1")]
    pub from: String,
    #[prost(string, optional, tag = "2")]
    pub group: Option<String>,
    #[prost(message, optional, tag = "3")]
    pub data: Option<MessageData>,
    #[prost(uint64, optional, tag = "4")]
    pub sequence_id: Option<u64>,
    #[prost(message, repeated, tag = "5")]
    pub metadata: Vec<MetadataEntry>,
    #[prost(message, optional, tag = "6")]
    pub stream: Option<Empty>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SystemMessage {
    #[prost(oneof = "System", tags = "1, 2")]
    pub message: Option<System>,
}

/// `SystemMessage.message`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum System {
    #[prost(message, tag = "1")]
    Connected(ConnectedMessage),
    #[prost(message, tag = "2")]
    Disconnected(DisconnectedMessage),
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ConnectedMessage {
    #[prost(string, tag = "1")]
    pub connection_id: String,
    #[prost(string, tag = "2")]
    pub user_id: String,
    #[prost(string, optional, tag = "3")]
    pub reconnection_token: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DisconnectedMessage {
    /// Field 2: the schema has no field 1.
    #[prost(string, tag = "2")]
    pub reason: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct InvokeResponseMessage {
    #[prost(string, tag = "1")]
    pub invocation_id: String,
    #[prost(bool, optional, tag = "2")]
    pub success: Option<bool>,
    #[prost(message, optional, tag = "3")]
    pub data: Option<MessageData>,
    #[prost(message, optional, tag = "4")]
    pub error: Option<ErrorMessage>,
    #[prost(message, repeated, tag = "5")]
    pub metadata: Vec<MetadataEntry>,
}

/// `GroupStateUpdateMessage` and `GroupStateSnapshotMessage`, as far as a receiver that
/// skips them needs: their sequence id still counts as received.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct GroupStateMessage {
    #[prost(uint64, optional, tag = "3")]
    pub sequence_id: Option<u64>,
}

/// `MessageData`: the case is the data type.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct MessageData {
    #[prost(oneof = "Payload", tags = "1, 2, 3, 4")]
    pub data: Option<Payload>,
}

/// `MessageData.data`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum Payload {
    #[prost(string, tag = "1")]
    Text(String),
    /// `Bytes`, not `Vec<u8>`: prost reads a `Vec<u8>` field through an intermediate
    /// `Bytes` (two allocations and two copies of the payload), a `Bytes` field directly,
    /// and a `Bytes` read so becomes the `Vec<u8>` of a [`Data`](crate::Data) without a copy.
    #[prost(bytes = "bytes", tag = "2")]
    Binary(prost::bytes::Bytes),
    /// A serialised `google.protobuf.Any`, kept as bytes (see the module's docs).
    #[prost(bytes = "bytes", tag = "3")]
    Protobuf(prost::bytes::Bytes),
    /// Serialised JSON.
    #[prost(string, tag = "4")]
    Json(String),
}

/// One entry of a `map<string, string>`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct MetadataEntry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}
