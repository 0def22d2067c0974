//! Handlers: the [`Handler`] trait users implement (or a closure), and [`HandlerError`],
//! which says whether a failure is worth retrying, with [`ResultExt`] to choose that at a
//! `?`.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;

use crate::context::ConsumeContext;
use crate::{ErrorKind, FaultReason, Message};

/// A boxed error, as [`HandlerError`] holds the error it wraps.
type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A failed handling. Transient by default (retried, then redelivered, then dead-lettered);
/// a permanent one goes straight to the error queue.
///
/// # `?` in handlers
///
/// `HandlerError` implements [`std::error::Error`], so it cannot also convert from *every*
/// error type: `impl<E: Error> From<E> for HandlerError` would overlap with the standard
/// `impl<T> From<T> for T` (the reason `anyhow::Error` and `eyre::Report` do not implement
/// `Error`). Tidings keeps `Error` (so a `HandlerError` can be a source, be boxed, be
/// reported by any error reporter) and offers two ways to use `?`:
///
/// - `From` for the errors handlers meet, each with the [`ErrorKind`] its type tells:
///   [`tidings_core::Error`](crate::Error) (its own [`kind`](crate::Error::kind)),
///   [`serde_json::Error`] (I/O transient, bad data permanent), [`std::io::Error`]
///   (invalid input or data, unsupported: permanent; the rest transient),
///   `Box<dyn Error + Send + Sync>` (a boxed [`tidings_core::Error`](crate::Error),
///   `io::Error` or `HandlerError` keeps its kind; anything else is transient), and with
///   feature `sqlx`, `sqlx::Error` (classified by `tidings_core::error::sqlx_kind`). Each
///   transport crate converts its own error type too.
/// - For any other error, or to overrule the type's kind, [`ResultExt`]:
///   `.transient()?` or `.permanent()?` on any `Result<T, E: Error + Send + Sync>`
///   (as `anyhow::Context` does for its context).
///
/// # Text and source
///
/// The error's text is printed once. A converted error is *transparent*: the
/// `HandlerError` shows the wrapped error's text, and [`source`](StdError::source) goes on
/// with the wrapped error's own source (not the wrapped error itself, whose text was just
/// shown). [`HandlerError::transient`] and friends carry their own message;
/// [`with_source`](HandlerError::with_source) adds an error whose text follows the
/// message (`"message: source"`), and whose source continues the chain likewise.
/// [`source_error`](HandlerError::source_error) gives the wrapped error itself, e.g. to
/// downcast it.
///
/// ```
/// use std::error::Error as _;
/// use tidings_core::{ErrorKind, HandlerError, ResultExt};
///
/// fn parse(body: &str) -> Result<u32, HandlerError> {
///     let v: serde_json::Value = serde_json::from_str(body)?; // bad JSON: permanent
///     let n: u32 = v["qty"].to_string().parse().permanent()?; // any Error, kind chosen
///     std::fs::metadata("/definitely/missing").transient()?;   // io::Error, kind chosen
///     Ok(n)
/// }
///
/// let e = parse("{").unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::Permanent);
/// let json = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
/// assert_eq!(e.to_string(), json.to_string(), "the text once, as serde_json wrote it");
///
/// let e = parse(r#"{"qty": "x"}"#).unwrap_err();
/// assert!(e.is_permanent());
/// assert!(e.to_string().contains("invalid digit"));
///
/// let e = parse(r#"{"qty": 3}"#).unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::Transient);
/// assert!(e.source().is_none(), "the io::Error's text is the HandlerError's own");
/// ```
#[derive(Debug)]
pub struct HandlerError {
    kind: ErrorKind,
    reason: FaultReason,
    /// The text this error adds; `None`: its text is the wrapped error's (transparent).
    message: Option<String>,
    defer: Option<Duration>,
    source: Option<BoxError>,
}

impl HandlerError {
    /// A transient failure: retried per the endpoint's policies.
    pub fn transient(message: impl std::fmt::Display) -> Self {
        HandlerError {
            kind: ErrorKind::Transient,
            reason: FaultReason::HandlerFailed,
            message: Some(message.to_string()),
            defer: None,
            source: None,
        }
    }

    /// A permanent failure (validation, business rule): no retries, straight to the error queue.
    pub fn permanent(message: impl std::fmt::Display) -> Self {
        HandlerError {
            kind: ErrorKind::Permanent,
            ..Self::transient(message)
        }
    }

    /// Wraps `error` as a failure of `kind`, transparently: the `HandlerError` shows
    /// `error`'s text, and its [`source`](StdError::source) is `error`'s source.
    ///
    /// ```
    /// use tidings_core::{ErrorKind, HandlerError};
    ///
    /// let io = std::io::Error::other("disk on fire");
    /// let e = HandlerError::new(ErrorKind::Permanent, io);
    /// assert!(e.is_permanent());
    /// assert_eq!(e.to_string(), "disk on fire");
    /// assert!(e.source_error().is_some_and(|s| s.is::<std::io::Error>()));
    /// ```
    pub fn new(kind: ErrorKind, error: impl Into<BoxError>) -> Self {
        let error = error.into();
        // A boxed `HandlerError` is unwrapped rather than nested (its reason and deferral
        // stay), only its kind is replaced.
        match error.downcast::<HandlerError>() {
            Ok(inner) => HandlerError { kind, ..*inner },
            Err(error) => HandlerError {
                kind,
                reason: FaultReason::HandlerFailed,
                message: None,
                defer: None,
                source: Some(error),
            },
        }
    }

    /// A failure with a specific fault reason (used by the pipeline: undeserializable, panicked ...).
    pub fn with_reason(
        reason: FaultReason,
        kind: ErrorKind,
        message: impl std::fmt::Display,
    ) -> Self {
        HandlerError {
            kind,
            reason,
            ..Self::transient(message)
        }
    }

    /// Not a failure: deliver again after `delay` without counting an error (open breaker).
    pub fn defer(delay: Duration, message: impl std::fmt::Display) -> Self {
        HandlerError {
            defer: Some(delay),
            ..Self::transient(message)
        }
    }

    /// Attaches the underlying error: the text becomes `"message: source"`, and
    /// [`source`](StdError::source) continues with `source`'s own source.
    ///
    /// ```
    /// use tidings_core::HandlerError;
    ///
    /// let e = HandlerError::transient("stock lookup").with_source(std::io::Error::other("reset"));
    /// assert_eq!(e.to_string(), "stock lookup: reset");
    /// ```
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Transient or permanent.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether retries are skipped.
    pub fn is_permanent(&self) -> bool {
        self.kind == ErrorKind::Permanent
    }

    /// The fault reason the error queue will record.
    pub fn reason(&self) -> FaultReason {
        self.reason
    }

    /// The deferral asked for, if this is a deferral rather than a failure.
    pub fn deferral(&self) -> Option<Duration> {
        self.defer
    }

    /// The error's own text: the message it was made with, or, for a converted error,
    /// that error's text (without the text of an attached source; [`Display`] has all).
    ///
    /// [`Display`]: std::fmt::Display
    pub fn message(&self) -> Cow<'_, str> {
        match (&self.message, &self.source) {
            (Some(m), _) => Cow::Borrowed(m),
            (None, Some(s)) => Cow::Owned(s.to_string()),
            (None, None) => Cow::Borrowed(""),
        }
    }

    /// The wrapped or attached error itself, if any (e.g. to downcast it).
    pub fn source_error(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.message, &self.source) {
            (Some(m), Some(s)) => write!(f, "{m}: {s}"),
            (Some(m), None) => f.write_str(m),
            (None, Some(s)) => std::fmt::Display::fmt(s, f),
            (None, None) => Ok(()),
        }
    }
}

/// The next error of the chain: the wrapped error's text is already in this one's
/// [`Display`](std::fmt::Display), so the chain goes on with *its* source.
impl StdError for HandlerError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_ref()?.source()
    }
}

/// Keeps the error's [`kind`](crate::Error::kind).
impl From<crate::Error> for HandlerError {
    fn from(e: crate::Error) -> Self {
        HandlerError::new(e.kind(), e)
    }
}

/// Bad JSON or data that does not fit the type is permanent; an I/O failure while
/// reading or writing is transient.
impl From<serde_json::Error> for HandlerError {
    fn from(e: serde_json::Error) -> Self {
        let kind = match e.classify() {
            serde_json::error::Category::Io => ErrorKind::Transient,
            _ => ErrorKind::Permanent,
        };
        HandlerError::new(kind, e)
    }
}

/// Invalid input or data and unsupported operations are permanent; the rest (timeouts,
/// resets, not found yet, ...) transient.
impl From<std::io::Error> for HandlerError {
    fn from(e: std::io::Error) -> Self {
        let kind = io_kind(&e);
        HandlerError::new(kind, e)
    }
}

fn io_kind(e: &std::io::Error) -> ErrorKind {
    use std::io::ErrorKind as Io;
    match e.kind() {
        Io::InvalidInput | Io::InvalidData | Io::Unsupported => ErrorKind::Permanent,
        _ => ErrorKind::Transient,
    }
}

/// A boxed [`crate::Error`], [`std::io::Error`] or `HandlerError` keeps its kind; any other
/// error is transient (use [`ResultExt::permanent`] to say otherwise).
impl From<BoxError> for HandlerError {
    fn from(e: BoxError) -> Self {
        let kind = if let Some(h) = e.downcast_ref::<HandlerError>() {
            h.kind
        } else if let Some(c) = e.downcast_ref::<crate::Error>() {
            c.kind()
        } else if let Some(io) = e.downcast_ref::<std::io::Error>() {
            io_kind(io)
        } else {
            ErrorKind::Transient
        };
        HandlerError::new(kind, e)
    }
}

/// With feature `sqlx`: busy, locked, lost connections, serialization failures and
/// deadlocks are transient, the rest permanent (see [`crate::error::sqlx_kind`]).
#[cfg(feature = "sqlx")]
impl From<sqlx::Error> for HandlerError {
    fn from(e: sqlx::Error) -> Self {
        HandlerError::new(crate::error::sqlx_kind(&e), e)
    }
}

/// Chooses, at a `?`, whether a failure is worth retrying: `.transient()?` or
/// `.permanent()?` on any `Result` whose error is a [`std::error::Error`] (the error is
/// wrapped transparently, see [`HandlerError`]).
///
/// ```
/// use tidings_core::{HandlerError, ResultExt};
///
/// fn quantity(text: &str) -> Result<u32, HandlerError> {
///     let n: u32 = text.parse().permanent()?; // bad input will not get better
///     Ok(n)
/// }
///
/// let e = quantity("many").unwrap_err();
/// assert!(e.is_permanent());
/// assert_eq!(e.to_string(), "invalid digit found in string");
/// ```
pub trait ResultExt<T> {
    /// Any error becomes a transient [`HandlerError`]: retried per the endpoint's policies.
    fn transient(self) -> Result<T, HandlerError>;
    /// Any error becomes a permanent [`HandlerError`]: straight to the error queue.
    fn permanent(self) -> Result<T, HandlerError>;
}

impl<T, E> ResultExt<T> for Result<T, E>
where
    E: StdError + Send + Sync + 'static,
{
    fn transient(self) -> Result<T, HandlerError> {
        self.map_err(|e| HandlerError::new(ErrorKind::Transient, e))
    }

    fn permanent(self) -> Result<T, HandlerError> {
        self.map_err(|e| HandlerError::new(ErrorKind::Permanent, e))
    }
}

/// Handles one message type. Implement it, or pass an async closure
/// `|msg: M, ctx: ConsumeContext| async move { .. }` to the endpoint.
#[async_trait]
pub trait Handler<M: Message>: Send + Sync + 'static {
    /// Handles `msg`. `Ok` acks it.
    async fn handle(&self, msg: M, ctx: ConsumeContext) -> Result<(), HandlerError>;
}

/// Wraps an async closure as a [`Handler`].
pub struct HandlerFn<F>(pub F);

#[async_trait]
impl<M, F, Fut> Handler<M> for HandlerFn<F>
where
    M: Message,
    F: Fn(M, ConsumeContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    async fn handle(&self, msg: M, ctx: ConsumeContext) -> Result<(), HandlerError> {
        (self.0)(msg, ctx).await
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// An error with a source, as libraries write them (text without the source's text).
    #[derive(Debug, thiserror::Error)]
    #[error("stock lookup failed")]
    struct Lookup(#[source] std::io::Error);

    fn fails<E>(e: E) -> Result<(), E> {
        Err(e)
    }

    fn chain(e: &HandlerError) -> Vec<String> {
        let mut out = Vec::new();
        let mut next = e.source();
        while let Some(s) = next {
            out.push(s.to_string());
            next = s.source();
        }
        out
    }

    #[test]
    fn question_mark_on_a_core_error_keeps_its_kind_and_text_once() {
        let run = |e: crate::Error| -> Result<(), HandlerError> { Ok(fails(e)?) };
        let e = run(crate::Error::transient(
            "claim failed",
            std::io::Error::other("connection reset"),
        ))
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Transient);
        assert_eq!(e.to_string(), "transport error: claim failed");
        assert_eq!(e.message(), "transport error: claim failed");
        assert_eq!(
            chain(&e),
            ["connection reset"],
            "source goes on after the core error"
        );
        assert!(e
            .source_error()
            .is_some_and(|s| s.downcast_ref::<crate::Error>().is_some()));

        let e = run(crate::Error::Config("no route".into())).unwrap_err();
        assert!(e.is_permanent());
        assert_eq!(e.to_string(), "invalid configuration: no route");
        assert!(chain(&e).is_empty());
    }

    #[test]
    fn question_mark_on_serde_json() {
        let run = |s: &str| -> Result<u32, HandlerError> { Ok(serde_json::from_str(s)?) };
        let e = run("\"x\"").unwrap_err();
        assert!(e.is_permanent(), "bad data does not get better");
        let text = serde_json::from_str::<u32>("\"x\"")
            .unwrap_err()
            .to_string();
        assert_eq!(e.to_string(), text);
        assert_eq!(e.reason(), FaultReason::HandlerFailed);

        struct Broken;
        impl std::io::Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("pipe closed"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let write = || -> Result<(), HandlerError> { Ok(serde_json::to_writer(Broken, &1)?) };
        let e = write().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Transient, "an I/O failure may pass");
    }

    #[test]
    fn question_mark_on_io() {
        let run = |e: std::io::Error| -> Result<(), HandlerError> { Ok(fails(e)?) };
        let e = run(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "took too long",
        ))
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Transient);
        assert_eq!(e.to_string(), "took too long");
        let e = run(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not utf-8",
        ))
        .unwrap_err();
        assert!(e.is_permanent());
        // An io::Error wrapping another error: its text is the inner one's, its source
        // the inner one — the chain shows what the io::Error says it is caused by.
        let e = run(std::io::Error::other(Lookup(std::io::Error::other(
            "reset",
        ))))
        .unwrap_err();
        assert_eq!(e.to_string(), "stock lookup failed");
    }

    #[test]
    fn question_mark_on_a_boxed_error_keeps_known_kinds() {
        let run = |e: BoxError| -> Result<(), HandlerError> { Ok(fails(e)?) };
        let e = run("plain text".into()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Transient);
        assert_eq!(e.to_string(), "plain text");
        let e = run(Box::new(crate::Error::Shutdown)).unwrap_err();
        assert!(e.is_permanent(), "a boxed core error keeps its kind");
        let e = run(Box::new(HandlerError::permanent("bad order"))).unwrap_err();
        assert!(e.is_permanent());
        assert_eq!(e.to_string(), "bad order");
        assert!(e.source_error().is_none(), "not nested");
        let e = run(Box::new(std::io::Error::from(
            std::io::ErrorKind::Unsupported,
        )))
        .unwrap_err();
        assert!(e.is_permanent());
    }

    #[test]
    fn result_ext_chooses_the_kind_for_any_error() {
        let run = |permanent: bool| -> Result<(), HandlerError> {
            let r = fails(Lookup(std::io::Error::other("connection reset")));
            if permanent {
                r.permanent()?;
            } else {
                r.transient()?;
            }
            Ok(())
        };
        let e = run(true).unwrap_err();
        assert!(e.is_permanent());
        assert_eq!(e.to_string(), "stock lookup failed");
        assert_eq!(chain(&e), ["connection reset"]);
        let e = run(false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Transient);
        // Overrules a type's own kind.
        let e = fails(crate::Error::Shutdown).transient().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Transient);
        // A HandlerError changes kind only; reason and deferral stay.
        let e = fails(HandlerError::with_reason(
            FaultReason::TimedOut,
            ErrorKind::Transient,
            "slow",
        ))
        .permanent()
        .unwrap_err();
        assert_eq!(
            (e.reason(), e.kind()),
            (FaultReason::TimedOut, ErrorKind::Permanent)
        );
        assert_eq!(e.to_string(), "slow");
    }

    #[test]
    fn a_message_with_a_source_prints_each_text_once() {
        let e = HandlerError::permanent("reserving stock")
            .with_source(Lookup(std::io::Error::other("connection reset")));
        assert_eq!(e.to_string(), "reserving stock: stock lookup failed");
        assert_eq!(e.message(), "reserving stock");
        assert_eq!(chain(&e), ["connection reset"]);
        assert!(e.source_error().is_some_and(|s| s.is::<Lookup>()));
        // A HandlerError is an Error: it can be boxed and be another error's source.
        let boxed: BoxError = Box::new(e);
        assert_eq!(boxed.to_string(), "reserving stock: stock lookup failed");
    }

    #[cfg(feature = "sqlx")]
    #[test]
    fn question_mark_on_sqlx() {
        let run = |e: sqlx::Error| -> Result<(), HandlerError> { Ok(fails(e)?) };
        let e = run(sqlx::Error::PoolTimedOut).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Transient);
        assert_eq!(e.to_string(), sqlx::Error::PoolTimedOut.to_string());
        let e = run(sqlx::Error::RowNotFound).unwrap_err();
        assert!(e.is_permanent());
        let e = run(sqlx::Error::Io(std::io::Error::other("reset"))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Transient);
    }
}
