//! [`NatsError`]: what can go wrong talking to NATS, and how it maps onto
//! [`tidings_core::Error`]. Whether trying again can help ([`NatsError::kind`]) is decided
//! from async-nats's typed error kinds (`Classify`) and the JetStream API's error codes
//! when the error is made, never from its text.

use async_nats::jetstream::{Error as ApiError, ErrorCode};
use tidings_core::ErrorKind;

/// Errors of the NATS transport. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// The configuration (URL, options) is invalid.
    #[error("invalid NATS configuration: {0}")]
    Config(String),
    /// Connecting to the server failed.
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect {
        /// The server URL, credentials redacted.
        url: String,
        /// What went wrong, credentials redacted.
        message: String,
        /// Transient (timeout, I/O, DNS) or permanent (authentication, TLS, bad address).
        kind: ErrorKind,
    },
    /// The server does not offer JetStream, or it is too old.
    #[error("JetStream not available: {0}")]
    JetStreamUnavailable(String),
    /// A JetStream API request (stream/consumer management, info, get) failed.
    #[error("JetStream request `{operation}` failed: {message}")]
    Request {
        /// What was asked.
        operation: String,
        /// The server's or client's answer.
        message: String,
        /// Whether trying again may help.
        kind: ErrorKind,
    },
    /// Publishing did not get its stream acknowledgement.
    #[error("publish to `{subject}` failed: {message}")]
    Publish {
        /// The subject.
        subject: String,
        /// What went wrong.
        message: String,
        /// Whether trying again may help.
        kind: ErrorKind,
    },
    /// Acknowledging (ack/nak/term/progress) a delivery failed.
    #[error("settling a delivery failed: {0}")]
    Settle(String),
    /// The queue has not been declared.
    #[error("unknown queue `{0}`")]
    UnknownQueue(String),
    /// The transport has been closed.
    #[error("the NATS transport is closed")]
    Closed,
    /// A stored message is not a Tidings envelope.
    #[error("cannot decode message: {0}")]
    Decode(String),
}

impl NatsError {
    /// Whether trying again may succeed: a connection, request or publish failure as its
    /// async-nats kind said when it was made; a failed settlement is transient (the
    /// delivery comes back); configuration, a missing JetStream, undecodable messages,
    /// unknown queues and a closed transport are permanent.
    pub fn kind(&self) -> ErrorKind {
        match self {
            NatsError::Connect { kind, .. }
            | NatsError::Request { kind, .. }
            | NatsError::Publish { kind, .. } => *kind,
            NatsError::Settle(_) => ErrorKind::Transient,
            NatsError::Config(_)
            | NatsError::JetStreamUnavailable(_)
            | NatsError::Decode(_)
            | NatsError::UnknownQueue(_)
            | NatsError::Closed => ErrorKind::Permanent,
        }
    }

    /// A failed JetStream request, classified by its async-nats kind.
    pub(crate) fn request(
        operation: impl Into<String>,
        err: impl Classify + std::fmt::Display,
    ) -> Self {
        NatsError::Request {
            operation: operation.into(),
            kind: err.classify(),
            message: err.to_string(),
        }
    }

    /// A failed publish to `subject`, classified by its async-nats kind.
    pub(crate) fn publish(
        subject: impl Into<String>,
        err: &(impl Classify + std::fmt::Display),
    ) -> Self {
        NatsError::Publish {
            subject: subject.into(),
            kind: err.classify(),
            message: err.to_string(),
        }
    }
}

/// Whether an async-nats error (or error kind) is worth retrying.
///
/// Timeouts, lost connections, "no responders" (the JetStream API is not answering yet),
/// a full ack window and the API's "temporarily unavailable" answers are transient;
/// invalid names and subjects, missing streams and consumers, oversized payloads,
/// failed expectations and the API's other answers are permanent.
pub(crate) trait Classify {
    /// Transient or permanent.
    fn classify(&self) -> ErrorKind;
}

impl<K> Classify for async_nats::error::Error<K>
where
    K: Classify + Clone + std::fmt::Debug + std::fmt::Display + PartialEq,
{
    fn classify(&self) -> ErrorKind {
        // A JetStream API answer wrapped as the source of a kind without a typed variant
        // (e.g. `PublishErrorKind::Other`) decides by its code.
        let api = std::error::Error::source(self).and_then(|s| s.downcast_ref::<ApiError>());
        match api {
            Some(api) if self.kind().classify() == ErrorKind::Transient => api.classify(),
            _ => self.kind().classify(),
        }
    }
}

impl<T: Classify> Classify for &T {
    fn classify(&self) -> ErrorKind {
        (**self).classify()
    }
}

/// A JetStream API error answer: JetStream not enabled is permanent; a cluster without a
/// leader or peers, insufficient resources, and any other 503 (unavailable) or 408
/// (timeout) transient; the rest (bad request, not found, conflict) permanent.
impl Classify for ApiError {
    fn classify(&self) -> ErrorKind {
        match self.error_code() {
            ErrorCode::JETSTREAM_NOT_ENABLED | ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT => {
                ErrorKind::Permanent
            }
            ErrorCode::CLUSTER_NOT_AVAILABLE
            | ErrorCode::CLUSTER_NO_PEERS
            | ErrorCode::INSUFFICIENT_RESOURCES => ErrorKind::Transient,
            _ if matches!(self.code(), 408 | 503) => ErrorKind::Transient,
            _ => ErrorKind::Permanent,
        }
    }
}

fn transient_if(yes: bool) -> ErrorKind {
    if yes {
        ErrorKind::Transient
    } else {
        ErrorKind::Permanent
    }
}

impl Classify for async_nats::ConnectErrorKind {
    fn classify(&self) -> ErrorKind {
        use async_nats::ConnectErrorKind as K;
        match self {
            K::Dns | K::TimedOut | K::Io | K::MaxReconnects => ErrorKind::Transient,
            K::ServerParse | K::Authentication | K::AuthorizationViolation | K::Tls => {
                ErrorKind::Permanent
            }
        }
    }
}

impl Classify for async_nats::RequestErrorKind {
    fn classify(&self) -> ErrorKind {
        use async_nats::RequestErrorKind as K;
        transient_if(matches!(self, K::TimedOut | K::NoResponders | K::Other))
    }
}

mod jetstream_kinds {
    use super::*;
    use async_nats::jetstream::{consumer, context, stream};

    impl Classify for context::PublishErrorKind {
        fn classify(&self) -> ErrorKind {
            use context::PublishErrorKind as K;
            // `Other`: the client could not hand the message over (reconnecting, closed);
            // an API answer in its source is classified by its code (see above).
            transient_if(matches!(
                self,
                K::TimedOut | K::BrokenPipe | K::MaxAckPending | K::Other
            ))
        }
    }

    impl Classify for context::RequestErrorKind {
        fn classify(&self) -> ErrorKind {
            use context::RequestErrorKind as K;
            transient_if(matches!(self, K::TimedOut | K::NoResponders | K::Other))
        }
    }

    impl Classify for context::CreateStreamErrorKind {
        fn classify(&self) -> ErrorKind {
            use context::CreateStreamErrorKind as K;
            match self {
                K::JetStream(e) => e.classify(),
                K::TimedOut | K::Response => ErrorKind::Transient,
                _ => ErrorKind::Permanent,
            }
        }
    }

    impl Classify for context::GetStreamErrorKind {
        fn classify(&self) -> ErrorKind {
            use context::GetStreamErrorKind as K;
            match self {
                K::JetStream(e) => e.classify(),
                K::Request => ErrorKind::Transient,
                _ => ErrorKind::Permanent,
            }
        }
    }

    impl Classify for context::GetStreamByNameErrorKind {
        fn classify(&self) -> ErrorKind {
            use context::GetStreamByNameErrorKind as K;
            match self {
                K::JetStream(e) => e.classify(),
                K::Request => ErrorKind::Transient,
                _ => ErrorKind::Permanent,
            }
        }
    }

    impl Classify for context::ConsumerInfoErrorKind {
        fn classify(&self) -> ErrorKind {
            use context::ConsumerInfoErrorKind as K;
            match self {
                K::JetStream(e) => e.classify(),
                K::Offline | K::Request | K::TimedOut | K::NoResponders => ErrorKind::Transient,
                _ => ErrorKind::Permanent,
            }
        }
    }

    impl Classify for stream::ConsumerErrorKind {
        fn classify(&self) -> ErrorKind {
            use stream::ConsumerErrorKind as K;
            match self {
                K::JetStream(e) => e.classify(),
                K::TimedOut | K::Request | K::Other => ErrorKind::Transient,
                _ => ErrorKind::Permanent,
            }
        }
    }

    impl Classify for stream::DirectGetErrorKind {
        fn classify(&self) -> ErrorKind {
            use stream::DirectGetErrorKind as K;
            match self {
                K::TimedOut | K::Request | K::Other => ErrorKind::Transient,
                K::ErrorResponse(status, _) => transient_if(matches!(status.as_u16(), 408 | 503)),
                _ => ErrorKind::Permanent,
            }
        }
    }

    impl Classify for stream::DeleteMessageErrorKind {
        fn classify(&self) -> ErrorKind {
            use stream::DeleteMessageErrorKind as K;
            match self {
                K::JetStream(e) => e.classify(),
                K::Request | K::TimedOut => ErrorKind::Transient,
            }
        }
    }

    impl Classify for stream::PurgeErrorKind {
        fn classify(&self) -> ErrorKind {
            use stream::PurgeErrorKind as K;
            match self {
                K::JetStream(e) => e.classify(),
                K::Request | K::TimedOut => ErrorKind::Transient,
            }
        }
    }

    impl Classify for stream::LastRawMessageErrorKind {
        fn classify(&self) -> ErrorKind {
            use stream::LastRawMessageErrorKind as K;
            match self {
                K::JetStream(e) => e.classify(),
                K::Other => ErrorKind::Transient,
                _ => ErrorKind::Permanent,
            }
        }
    }

    impl Classify for consumer::StreamErrorKind {
        fn classify(&self) -> ErrorKind {
            use consumer::StreamErrorKind as K;
            transient_if(matches!(self, K::TimedOut | K::Other))
        }
    }
}

impl From<NatsError> for tidings_core::Error {
    fn from(e: NatsError) -> Self {
        let kind = e.kind();
        match e {
            NatsError::Config(m) => tidings_core::Error::Config(m),
            NatsError::Decode(m) => tidings_core::Error::Serialization(m),
            NatsError::UnknownQueue(q) => tidings_core::Error::UnknownQueue(q),
            NatsError::Closed => tidings_core::Error::Shutdown,
            other => tidings_core::Error::Transport {
                message: other.to_string(),
                kind,
                source: Some(Box::new(other)),
            },
        }
    }
}

/// For handlers: keeps the error's [`kind`](NatsError::kind), text shown once.
impl From<NatsError> for tidings_core::HandlerError {
    fn from(e: NatsError) -> Self {
        tidings_core::HandlerError::from(tidings_core::Error::from(e))
    }
}

#[cfg(test)]
mod tests {
    use async_nats::jetstream::context::{
        CreateStreamError, CreateStreamErrorKind, PublishError, PublishErrorKind,
    };
    use async_nats::jetstream::stream::{DirectGetErrorKind, PurgeError, PurgeErrorKind};

    use super::*;

    fn api(code: usize, err_code: u64) -> ApiError {
        serde_json::from_value(serde_json::json!({
            "code": code,
            "err_code": err_code,
            "description": "from the server",
        }))
        .unwrap()
    }

    #[test]
    fn publish_kinds() {
        for (k, want) in [
            (PublishErrorKind::TimedOut, ErrorKind::Transient),
            (PublishErrorKind::BrokenPipe, ErrorKind::Transient),
            (PublishErrorKind::MaxAckPending, ErrorKind::Transient),
            (PublishErrorKind::Other, ErrorKind::Transient),
            (PublishErrorKind::StreamNotFound, ErrorKind::Permanent),
            (PublishErrorKind::MaxPayloadExceeded, ErrorKind::Permanent),
            (PublishErrorKind::WrongLastSequence, ErrorKind::Permanent),
        ] {
            let e = NatsError::publish("s", &PublishError::new(k));
            assert_eq!(e.kind(), want, "{k:?}");
        }
        // An API answer behind `Other` decides by its code.
        let e = PublishError::with_source(PublishErrorKind::Other, api(400, 10999));
        assert_eq!(NatsError::publish("s", &e).kind(), ErrorKind::Permanent);
        let e = PublishError::with_source(PublishErrorKind::Other, api(503, 10008));
        assert_eq!(NatsError::publish("s", &e).kind(), ErrorKind::Transient);
    }

    #[test]
    fn request_kinds_from_typed_kinds_and_api_codes() {
        let create = |k| NatsError::request("stream.create", CreateStreamError::new(k));
        assert_eq!(
            create(CreateStreamErrorKind::TimedOut).kind(),
            ErrorKind::Transient
        );
        assert_eq!(
            create(CreateStreamErrorKind::InvalidStreamName).kind(),
            ErrorKind::Permanent
        );
        // "stream name already in use": a conflict, permanent.
        assert_eq!(
            create(CreateStreamErrorKind::JetStream(api(400, 10058))).kind(),
            ErrorKind::Permanent
        );
        // No leader / insufficient resources: transient; JetStream disabled: permanent.
        assert_eq!(
            create(CreateStreamErrorKind::JetStream(api(503, 10008))).kind(),
            ErrorKind::Transient
        );
        assert_eq!(
            create(CreateStreamErrorKind::JetStream(api(500, 10023))).kind(),
            ErrorKind::Transient
        );
        assert_eq!(
            create(CreateStreamErrorKind::JetStream(api(503, 10076))).kind(),
            ErrorKind::Permanent
        );
        let purge = NatsError::request("purge", PurgeError::new(PurgeErrorKind::Request));
        assert_eq!(purge.kind(), ErrorKind::Transient);
        let status = async_nats::StatusCode::from_u16(503).unwrap();
        assert_eq!(
            DirectGetErrorKind::ErrorResponse(status, "x".into()).classify(),
            ErrorKind::Transient
        );
        assert_eq!(
            DirectGetErrorKind::NotFound.classify(),
            ErrorKind::Permanent
        );
    }

    #[test]
    fn connect_kinds() {
        use async_nats::ConnectErrorKind as K;
        for k in [K::TimedOut, K::Io, K::Dns, K::MaxReconnects] {
            assert_eq!(k.classify(), ErrorKind::Transient, "{k:?}");
        }
        for k in [
            K::Authentication,
            K::AuthorizationViolation,
            K::Tls,
            K::ServerParse,
        ] {
            assert_eq!(k.classify(), ErrorKind::Permanent, "{k:?}");
        }
    }

    #[test]
    fn kinds_map_to_core_and_handler_errors() {
        let t: tidings_core::Error =
            NatsError::publish("s", &PublishError::new(PublishErrorKind::TimedOut)).into();
        assert!(t.is_retryable());
        let p: tidings_core::Error = NatsError::request(
            "stream.create",
            CreateStreamError::new(CreateStreamErrorKind::InvalidStreamName),
        )
        .into();
        assert!(!p.is_retryable());
        let c: tidings_core::Error = NatsError::Config("bad".into()).into();
        assert!(matches!(c, tidings_core::Error::Config(_)));
        assert_eq!(
            NatsError::Settle("gone".into()).kind(),
            ErrorKind::Transient
        );
        assert_eq!(NatsError::Closed.kind(), ErrorKind::Permanent);

        let h = tidings_core::HandlerError::from(NatsError::Settle("gone".into()));
        assert_eq!(h.kind(), ErrorKind::Transient);
        assert_eq!(
            h.to_string(),
            "transport error: settling a delivery failed: gone"
        );
    }
}
