//! [`serve`]: runs the admin router on its own port, refusing to expose it beyond
//! loopback without a bearer token.

use std::future::Future;
use std::net::SocketAddr;

use crate::{router, AdminError, AdminState};

/// Where and how the admin server listens.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Address to bind (`127.0.0.1:9090`; port 0 picks a free one).
    pub bind: SocketAddr,
    /// Bearer token required on the API; `None` is allowed on loopback only.
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("bind", &self.bind)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl AdminConfig {
    /// Listen on `bind`, no token.
    pub fn new(bind: SocketAddr) -> Self {
        AdminConfig { bind, token: None }
    }

    /// Requires this bearer token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into()).filter(|t| !t.is_empty());
        self
    }

    /// The refuse-to-start rule: a non-loopback address needs a token.
    pub fn check(&self) -> Result<(), AdminError> {
        let has_token = self.token.as_deref().is_some_and(|t| !t.is_empty());
        if self.bind.ip().is_loopback() || has_token {
            Ok(())
        } else {
            Err(AdminError::InsecureBind { addr: self.bind })
        }
    }
}

/// A bound admin server, not yet serving.
#[derive(Debug)]
pub struct AdminServer {
    listener: tokio::net::TcpListener,
    state: AdminState,
    addr: SocketAddr,
}

impl AdminServer {
    /// Checks the config and binds the port.
    pub async fn bind(config: AdminConfig, state: AdminState) -> Result<Self, AdminError> {
        let token = config
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .or_else(|| state.token.as_deref().map(str::to_string));
        let config = AdminConfig {
            bind: config.bind,
            token,
        };
        config.check()?;
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|source| AdminError::Bind {
                addr: config.bind,
                source,
            })?;
        let addr = listener.local_addr().map_err(AdminError::Serve)?;
        let state = state.token(config.token);
        Ok(AdminServer {
            listener,
            state,
            addr,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` completes.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AdminError> {
        tracing::info!(addr = %self.addr, auth = self.state.requires_token(), "admin API listening");
        axum::serve(self.listener, router(self.state))
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(AdminError::Serve)
    }
}

/// Binds `config.bind` and serves the admin API until the process ends.
///
/// Refuses ([`AdminError::InsecureBind`]) a non-loopback address without a token.
pub async fn serve(config: AdminConfig, state: AdminState) -> Result<(), AdminError> {
    AdminServer::bind(config, state)
        .await?
        .run_until(std::future::pending())
        .await
}
