//! [`Connector`]: one AMQP connection shared by the publisher and the consumers,
//! reconnected with exponential back-off when it drops. After every (re)connection it
//! re-declares the delay infrastructure and every queue and exchange declared so far, then
//! opens a fresh publisher channel in confirm mode.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use lapin::options::ConfirmSelectOptions;
use lapin::tcp::OwnedTLSConfig;
use lapin::types::LongString;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::time::Instant;
use uuid::Uuid;

use tidings_core::transport::QueueSpec;

use crate::config::RabbitMqConfig;
use crate::error::RabbitMqError;
use crate::management::Management;
use crate::topology;

/// A live connection and its publisher channel.
pub(crate) struct Link {
    pub(crate) connection: Arc<Connection>,
    pub(crate) publisher: Channel,
    /// Increases with every new connection.
    pub(crate) generation: u64,
}

impl Link {
    fn healthy(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }
}

/// What has been declared, to declare again after a reconnection.
#[derive(Default)]
struct Declared {
    queues: BTreeMap<String, QueueSpec>,
    exchanges: BTreeSet<String>,
}

/// Owns the connection; see the module docs.
pub(crate) struct Connector {
    pub(crate) config: RabbitMqConfig,
    current: RwLock<Option<Arc<Link>>>,
    reconnecting: tokio::sync::Mutex<()>,
    declared: Mutex<Declared>,
    generation: AtomicU64,
    closed: AtomicBool,
    /// The management API client, to list queues (`None`: discovery off).
    pub(crate) management: Option<Management>,
    /// Whether a failing management API was reported already.
    management_warned: AtomicBool,
}

/// Messages this process gave back without a failure (release, shutdown), by id, across
/// all transports of the process: quorum queues count those returns in
/// `x-delivery-count`; they are subtracted.
static GIVEN_BACK: std::sync::LazyLock<Mutex<HashMap<Uuid, u32>>> =
    std::sync::LazyLock::new(|| Mutex::new(HashMap::new()));

/// Above this many tracked give-backs the table is cleared (entries of messages that went
/// to other processes are never settled here).
const GIVEN_BACK_LIMIT: usize = 100_000;

impl Connector {
    pub(crate) fn new(config: RabbitMqConfig) -> Result<Self, RabbitMqError> {
        let management = config.management.clone().map(Management::new).transpose()?;
        Ok(Connector {
            config,
            current: RwLock::new(None),
            reconnecting: tokio::sync::Mutex::new(()),
            declared: Mutex::new(Declared::default()),
            generation: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            management,
            management_warned: AtomicBool::new(false),
        })
    }

    /// Reports that the management API could not list queues: a warning the first time,
    /// then at debug level.
    pub(crate) fn management_failed(&self, e: &RabbitMqError) {
        let e = self.config.redact(&e.to_string());
        if self.management_warned.swap(true, Ordering::AcqRel) {
            tracing::debug!(error = %e, "RabbitMQ management API unavailable");
        } else {
            tracing::warn!(
                error = %e,
                "listing only the queues declared by this process: {}",
                crate::management::HINT
            );
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn cached(&self) -> Option<Arc<Link>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .filter(|l| l.healthy())
    }

    pub(crate) fn err(&self, op: &'static str, e: &lapin::Error) -> RabbitMqError {
        RabbitMqError::amqp(op, e, |s| self.config.redact(s))
    }

    /// A healthy link, connecting (with back-off, up to the connect timeout) if needed.
    pub(crate) async fn link(&self) -> tidings_core::Result<Arc<Link>> {
        self.link_within(self.config.connect_timeout).await
    }

    /// Like [`Connector::link`] with an explicit time limit.
    pub(crate) async fn link_within(&self, limit: Duration) -> tidings_core::Result<Arc<Link>> {
        if self.is_closed() {
            return Err(tidings_core::Error::Shutdown);
        }
        if let Some(l) = self.cached() {
            return Ok(l);
        }
        let _guard = self.reconnecting.lock().await;
        if let Some(l) = self.cached() {
            return Ok(l);
        }
        let deadline = Instant::now() + limit;
        let mut backoff = self.config.reconnect_initial_backoff;
        loop {
            if self.is_closed() {
                return Err(tidings_core::Error::Shutdown);
            }
            match self.connect_once().await {
                Ok(link) => {
                    let link = Arc::new(link);
                    *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(link.clone());
                    if link.generation > 1 {
                        tracing::info!(url = %self.config.redacted_url(), generation = link.generation, "reconnected to RabbitMQ");
                    }
                    return Ok(link);
                }
                Err(e) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(e.into());
                    }
                    tracing::warn!(error = %e, retry_in = ?backoff, "RabbitMQ connection failed");
                    tokio::time::sleep(backoff.min(deadline - now)).await;
                    backoff = (backoff * 2).min(self.config.reconnect_max_backoff);
                }
            }
        }
    }

    async fn connect_once(&self) -> Result<Link, RabbitMqError> {
        // Keep the old connection if only the publisher channel broke.
        let old = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let (connection, generation) = match old.filter(|l| l.connection.status().connected()) {
            Some(l) => (l.connection.clone(), l.generation),
            None => {
                let props = ConnectionProperties::default()
                    .with_connection_name(LongString::from(self.config.connection_name.clone()));
                let connect_err = |e: lapin::Error| {
                    RabbitMqError::connect(self.config.redacted_url(), &e, |t| {
                        self.config.redact(t)
                    })
                };
                // `?tls_ca=`: its certificates are trusted besides the platform's roots.
                let tls = OwnedTLSConfig {
                    identity: None,
                    cert_chain: self.config.tls_ca.as_ref().map(|(_, pem)| pem.clone()),
                };
                let runtime = lapin::runtime::default_runtime().map_err(connect_err)?;
                let conn = Connection::connect_with_config(&self.config.url, props, tls, runtime)
                    .await
                    .map_err(connect_err)?;
                let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
                let ch = conn
                    .create_channel()
                    .await
                    .map_err(|e| self.err("channel.open", &e))?;
                self.redeclare(&ch).await?;
                let _ = ch.close(200, "OK".into()).await;
                (Arc::new(conn), generation)
            }
        };
        let publisher = connection
            .create_channel()
            .await
            .map_err(|e| self.err("channel.open", &e))?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| self.err("confirm.select", &e))?;
        Ok(Link {
            connection,
            publisher,
            generation,
        })
    }

    async fn redeclare(&self, ch: &Channel) -> Result<(), RabbitMqError> {
        topology::declare_delay_infrastructure(ch, &self.config).await?;
        let (queues, exchanges) = {
            let d = self.declared.lock().unwrap_or_else(|e| e.into_inner());
            (
                d.queues.values().cloned().collect::<Vec<_>>(),
                d.exchanges.iter().cloned().collect::<Vec<_>>(),
            )
        };
        for spec in &queues {
            topology::declare_queue(ch, &self.config, spec).await?;
        }
        for t in &exchanges {
            topology::declare_type_exchange(ch, &self.config, t).await?;
        }
        Ok(())
    }

    /// A new channel on the current connection (for consumers and admin work).
    pub(crate) async fn channel(&self) -> tidings_core::Result<(Channel, u64)> {
        let link = self.link().await?;
        let ch = link
            .connection
            .create_channel()
            .await
            .map_err(|e| self.err("channel.open", &e))?;
        Ok((ch, link.generation))
    }

    /// Declares queues (remembered for reconnections).
    pub(crate) async fn declare_queues(&self, specs: &[QueueSpec]) -> tidings_core::Result<()> {
        let (ch, _) = self.channel().await?;
        for spec in specs {
            topology::declare_queue(&ch, &self.config, spec).await?;
            let mut d = self.declared.lock().unwrap_or_else(|e| e.into_inner());
            let merged = d
                .queues
                .entry(spec.name.clone())
                .or_insert_with(|| spec.clone());
            for s in &spec.subscriptions {
                if !merged.subscriptions.contains(s) {
                    merged.subscriptions.push(s.clone());
                }
            }
            merged.ordered |= spec.ordered;
        }
        let _ = ch.close(200, "OK".into()).await;
        Ok(())
    }

    /// Forgets a queue (deleted): it is no longer re-declared after a reconnection nor
    /// listed by `stats`.
    pub(crate) fn forget_queue(&self, queue: &str) {
        self.declared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .queues
            .remove(queue);
    }

    /// Whether an event type's exchange is known to exist on this connection's broker.
    pub(crate) fn has_exchange(&self, message_type: &str) -> bool {
        self.declared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .exchanges
            .contains(message_type)
    }

    /// Declares an event type's exchange (publishing to a missing exchange would close the
    /// publisher channel).
    pub(crate) async fn declare_exchange(&self, message_type: &str) -> tidings_core::Result<()> {
        let (ch, _) = self.channel().await?;
        topology::declare_type_exchange(&ch, &self.config, message_type).await?;
        let _ = ch.close(200, "OK".into()).await;
        self.declared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .exchanges
            .insert(message_type.to_string());
        Ok(())
    }

    /// Names of the queues declared through this transport.
    pub(crate) fn declared_queues(&self) -> Vec<String> {
        self.declared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .queues
            .keys()
            .cloned()
            .collect()
    }

    /// Whether `queue` was declared ordered through this transport.
    pub(crate) fn is_ordered(&self, queue: &str) -> bool {
        self.declared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .queues
            .get(queue)
            .is_some_and(|q| q.ordered)
    }

    /// Whether `queue` was declared through this transport.
    pub(crate) fn is_declared(&self, queue: &str) -> bool {
        self.declared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .queues
            .contains_key(queue)
    }

    /// Records that message `id` was given back without a failure.
    pub(crate) fn note_given_back(&self, id: Uuid) {
        let mut g = GIVEN_BACK.lock().unwrap_or_else(|e| e.into_inner());
        if g.len() >= GIVEN_BACK_LIMIT {
            g.clear();
        }
        *g.entry(id).or_default() += 1;
    }

    /// Give-backs recorded for message `id`.
    pub(crate) fn given_back(&self, id: Uuid) -> u32 {
        let g = GIVEN_BACK.lock().unwrap_or_else(|e| e.into_inner());
        g.get(&id).copied().unwrap_or(0)
    }

    /// Forgets message `id` (settled for good).
    pub(crate) fn forget(&self, id: Uuid) {
        let mut g = GIVEN_BACK.lock().unwrap_or_else(|e| e.into_inner());
        if !g.is_empty() {
            g.remove(&id);
        }
    }

    /// Closes the connection; later operations fail with `Shutdown`.
    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let link = self
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(l) = link {
            let _ = l.connection.close(200, "OK".into()).await;
        }
    }
}
