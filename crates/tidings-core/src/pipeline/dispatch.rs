//! The innermost step: [`Dispatcher`] maps each accepted contract (name + version, upcasts
//! included) to a decoder and a typed handler, and calls the handler with the decoded message.
//!
//! Terms: this is the *incoming* side — a contract's [`HandlerTable`] entry says which
//! handler gets it. A *route* in Tidings is only the outgoing mapping of a command to the
//! queue that receives it ([`BusBuilder::route`](crate::BusBuilder::route),
//! [`Producer::route`](crate::Producer::route)); [`Producer::dispatch`](crate::Producer::dispatch)
//! sends or publishes an outgoing message, while the [`Dispatcher`] here hands an incoming
//! one to its handler.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::future::{BoxFuture, Either, Ready};

use super::Consume;
use crate::handler::{Handler, HandlerError};
use crate::{ContractId, ErrorKind, FaultReason, JsonSerializer, Message, Serializer};

type AnyBox = Box<dyn Any + Send + Sync>;
type DecodeFn = Arc<dyn Fn(&[u8]) -> Result<AnyBox, String> + Send + Sync>;
type HandleFn = Arc<
    dyn Fn(AnyBox, crate::ConsumeContext) -> BoxFuture<'static, Result<(), HandlerError>>
        + Send
        + Sync,
>;

/// How one contract version is decoded (into the handler's type) and handled.
#[derive(Clone)]
pub(crate) struct HandlerEntry {
    decode: DecodeFn,
    handle: HandleFn,
    /// The Rust type the contract decodes into (before upcast).
    pub(crate) wire_type: TypeId,
}

/// A decoded message, handed from the deserialize step to the handler. Later immediate
/// retries decode the body again (the first attempt takes the value).
#[derive(Clone)]
pub struct Decoded {
    slot: Arc<Mutex<Option<AnyBox>>>,
    entry: HandlerEntry,
}

impl Decoded {
    /// The decoded value, if not taken by a handler yet (user layers may inspect it).
    pub fn with_value<R>(&self, f: impl FnOnce(Option<&(dyn Any + Send + Sync)>) -> R) -> R {
        let guard = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        f(guard.as_deref())
    }
}

/// Routes decoded messages to typed handlers.
#[derive(Clone, Default)]
pub struct Dispatcher {
    entries: Arc<HashMap<ContractId, HandlerEntry>>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.entries.keys()).finish()
    }
}

/// Collects the handler entries while an endpoint is being built.
#[derive(Default, Clone)]
pub(crate) struct HandlerTable {
    pub(crate) entries: HashMap<ContractId, HandlerEntry>,
    /// Handler types (message type names) in registration order, for errors.
    pub(crate) handled: HashMap<TypeId, &'static str>,
}

fn unexpected_type() -> HandlerError {
    HandlerError::with_reason(
        FaultReason::UnknownType,
        ErrorKind::Permanent,
        "decoded message has an unexpected type",
    )
}

fn decoder<W: Message, M: Message + From<W>>() -> DecodeFn {
    Arc::new(|body: &[u8]| {
        JsonSerializer
            .decode::<W>(body)
            .map(|w| Box::new(M::from(w)) as AnyBox)
            .map_err(|e| e.to_string())
    })
}

impl HandlerTable {
    /// Registers `handler` for `M` (its own name and version).
    pub(crate) fn handle<M: Message, H: Handler<M>>(&mut self, handler: H) -> Result<(), String> {
        let handler = Arc::new(handler);
        let handle: HandleFn = Arc::new(move |msg: AnyBox, ctx| match msg.downcast::<M>() {
            Ok(m) => {
                let handler = handler.clone();
                Box::pin(async move { handler.handle(*m, ctx).await })
            }
            Err(_) => Box::pin(futures::future::ready(Err(unexpected_type()))),
        });
        self.register::<M>(handle)
    }

    /// Registers the async closure `f` for `M`: its future is the handler's future (one
    /// box, no [`Handler`] object in between).
    pub(crate) fn handle_fn<M, F, Fut>(&mut self, f: F) -> Result<(), String>
    where
        M: Message,
        F: Fn(M, crate::ConsumeContext) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let handle: HandleFn = Arc::new(move |msg: AnyBox, ctx| match msg.downcast::<M>() {
            Ok(m) => Box::pin(f(*m, ctx)),
            Err(_) => Box::pin(futures::future::ready(Err(unexpected_type()))),
        });
        self.register::<M>(handle)
    }

    fn register<M: Message>(&mut self, handle: HandleFn) -> Result<(), String> {
        if self.handled.insert(TypeId::of::<M>(), M::NAME).is_some() {
            return Err(format!(
                "two handlers for {} on one endpoint",
                ContractId::of::<M>()
            ));
        }
        self.insert(
            ContractId::of::<M>(),
            decoder::<M, M>(),
            handle,
            TypeId::of::<M>(),
        )
    }

    /// Accepts `Old` on the wire and hands it to `New`'s handler through `From`.
    pub(crate) fn upcast<Old: Message, New: Message + From<Old>>(&mut self) -> Result<(), String> {
        let id = ContractId::of::<New>();
        let Some(target) = self.entries.get(&id) else {
            return Err(format!(
                "upcast {} -> {}: register the handler for {} first",
                ContractId::of::<Old>(),
                id,
                id
            ));
        };
        let handle = target.handle.clone();
        self.insert(
            ContractId::of::<Old>(),
            decoder::<Old, New>(),
            handle,
            TypeId::of::<Old>(),
        )
    }

    fn insert(
        &mut self,
        id: ContractId,
        decode: DecodeFn,
        handle: HandleFn,
        wire_type: TypeId,
    ) -> Result<(), String> {
        if self.entries.contains_key(&id) {
            return Err(format!("{id} is registered twice on one endpoint"));
        }
        self.entries.insert(
            id,
            HandlerEntry {
                decode,
                handle,
                wire_type,
            },
        );
        Ok(())
    }

    pub(crate) fn into_dispatcher(self) -> Dispatcher {
        Dispatcher {
            entries: Arc::new(self.entries),
        }
    }
}

impl Dispatcher {
    /// Decodes the envelope's body for its contract.
    pub fn decode(&self, env: &crate::Envelope) -> Result<Decoded, HandlerError> {
        // A scan, not a hash lookup: an endpoint has a handful of contracts, and building
        // a `ContractId` key would allocate a copy of the type name per message.
        let found = self
            .entries
            .iter()
            .find(|(k, _)| k.version == env.version && k.name == env.message_type);
        let Some((id, entry)) = found else {
            let id = ContractId {
                name: env.message_type.clone(),
                version: env.version,
            };
            let known: Vec<String> = self
                .entries
                .keys()
                .filter(|k| k.name == id.name)
                .map(|k| k.to_string())
                .collect();
            let text = if known.is_empty() {
                format!("no handler for message type {id} on this endpoint")
            } else {
                format!(
                    "unknown version: {id} (this endpoint accepts {})",
                    known.join(", ")
                )
            };
            return Err(HandlerError::with_reason(
                FaultReason::UnknownType,
                ErrorKind::Permanent,
                text,
            ));
        };
        let value = (entry.decode)(&env.body).map_err(|e| {
            HandlerError::with_reason(
                FaultReason::Undeserializable,
                ErrorKind::Permanent,
                format!("cannot decode {id}: {e}"),
            )
        })?;
        Ok(Decoded {
            slot: Arc::new(Mutex::new(Some(value))),
            entry: entry.clone(),
        })
    }

    /// Contracts this dispatcher accepts.
    pub fn contracts(&self) -> impl Iterator<Item = &ContractId> {
        self.entries.keys()
    }
}

impl tower::Service<Consume> for Dispatcher {
    type Response = ();
    type Error = HandlerError;
    type Future =
        Either<BoxFuture<'static, Result<(), HandlerError>>, Ready<Result<(), HandlerError>>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Consume) -> Self::Future {
        // Decoding and the handler call happen here; only the handler's own future is
        // awaited (no further box around it).
        let value = match req.message {
            Some(decoded) => {
                let taken = decoded
                    .slot
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                match taken {
                    Some(v) => Ok((v, decoded.entry)),
                    None => (decoded.entry.decode)(&req.ctx.envelope().body)
                        .map(|v| (v, decoded.entry))
                        .map_err(|e| {
                            HandlerError::with_reason(
                                FaultReason::Undeserializable,
                                ErrorKind::Permanent,
                                e,
                            )
                        }),
                }
            }
            None => self.decode(req.ctx.envelope()).and_then(|decoded| {
                let taken = decoded
                    .slot
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                taken
                    .map(|v| (v, decoded.entry))
                    .ok_or_else(|| HandlerError::transient("decoded value missing"))
            }),
        };
        match value {
            Ok((v, entry)) => Either::Left((entry.handle)(v, req.ctx)),
            Err(e) => Either::Right(futures::future::ready(Err(e))),
        }
    }
}
