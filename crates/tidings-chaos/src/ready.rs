//! When a (re)started child counts as ready.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::child::Running;
use crate::ChaosError;

/// How to tell that the child is ready.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Ready {
    /// `GET path` on `addr` answers 2xx (HTTP/1.0, no TLS).
    Http {
        /// Where the child listens.
        addr: SocketAddr,
        /// A health path, e.g. `/healthz`.
        path: String,
    },
    /// A TCP connection to the address is accepted.
    Tcp(SocketAddr),
    /// As soon as it is started.
    Started,
}

impl Ready {
    /// `GET path` on `addr` answers 2xx.
    pub fn http(addr: SocketAddr, path: impl Into<String>) -> Self {
        Ready::Http {
            addr,
            path: path.into(),
        }
    }

    async fn probe(&self) -> bool {
        match self {
            Ready::Started => true,
            Ready::Tcp(addr) => TcpStream::connect(addr).await.is_ok(),
            Ready::Http { addr, path } => http_ok(*addr, path).await.unwrap_or(false),
        }
    }

    /// Polls until ready; fails if the child exits or `timeout` passes.
    pub(crate) async fn wait(
        &self,
        child: &mut Running,
        timeout: Duration,
        cycle: u32,
    ) -> Result<(), ChaosError> {
        let deadline = Instant::now() + timeout;
        loop {
            child.check_alive()?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ChaosError::NotReady { cycle, timeout });
            }
            if let Ok(true) = tokio::time::timeout(left, self.probe()).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20).min(left)).await;
        }
    }
}

async fn http_ok(addr: SocketAddr, path: &str) -> std::io::Result<bool> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await?;
    // "HTTP/1.x 2xx"
    Ok(head.starts_with(b"HTTP/1.") && head[9] == b'2')
}
