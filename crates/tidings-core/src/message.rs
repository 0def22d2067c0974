//! Message contracts: the [`Message`] trait (derived with `#[derive(Message)]`), the
//! [`Event`] / [`Command`] markers, and the [`Serializer`] that turns them into bytes.

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

/// Whether a contract is an event (published, fanned out) or a command (sent to one endpoint).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    /// A fact that happened; zero or more endpoints subscribe.
    Event,
    /// An intent; exactly one endpoint receives it.
    Command,
}

/// A message contract: a serde type with a stable name and version.
///
/// Derive it: `#[derive(Message)] #[message(name = "orderflow.order-placed", version = 2, kind = "event")]`.
pub trait Message: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Stable contract name; travels in the envelope.
    const NAME: &'static str;
    /// Contract version; additive changes only within one version.
    const VERSION: u32;
    /// Event or command.
    const KIND: MessageKind;
}

/// Marker for events: may be published.
pub trait Event: Message {}

/// Marker for commands: may be sent.
pub trait Command: Message {}

/// The identity of a contract: name and version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContractId {
    /// Contract name.
    pub name: String,
    /// Contract version.
    pub version: u32,
}

impl ContractId {
    /// The id of `M`.
    pub fn of<M: Message>() -> Self {
        ContractId {
            name: M::NAME.to_string(),
            version: M::VERSION,
        }
    }
}

impl std::fmt::Display for ContractId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} v{}", self.name, self.version)
    }
}

/// Turns messages into bodies and back. JSON ([`JsonSerializer`]) is the default.
pub trait Serializer: Send + Sync + 'static {
    /// The MIME type written into the envelope.
    fn content_type(&self) -> &'static str;
    /// Encodes a message.
    fn encode<M: Serialize>(&self, msg: &M) -> crate::Result<Bytes>;
    /// Decodes a message.
    fn decode<M: DeserializeOwned>(&self, body: &[u8]) -> crate::Result<M>;
}

/// JSON with serde_json.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonSerializer;

impl Serializer for JsonSerializer {
    fn content_type(&self) -> &'static str {
        crate::envelope::JSON_CONTENT_TYPE
    }

    fn encode<M: Serialize>(&self, msg: &M) -> crate::Result<Bytes> {
        // Most bodies fit: no regrowth (and copy) while writing.
        let mut buf = Vec::with_capacity(512);
        serde_json::to_writer(&mut buf, msg)
            .map(|()| Bytes::from(buf))
            .map_err(|e| crate::Error::Serialization(e.to_string()))
    }

    fn decode<M: DeserializeOwned>(&self, body: &[u8]) -> crate::Result<M> {
        serde_json::from_slice(body).map_err(|e| crate::Error::Serialization(e.to_string()))
    }
}
