//! The in-process ceiling: a bounded tokio mpsc channel per consumer (fan-out: the
//! producer sends to each), no durability, no settlement.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::payload::{decode, encode};
use crate::system::{Locator, Setup, System};

/// tokio mpsc channels.
pub struct MpscSystem {
    txs: Vec<mpsc::Sender<Vec<u8>>>,
    consumers: Vec<JoinHandle<()>>,
    size: usize,
}

impl MpscSystem {
    /// One channel (of capacity `prefetch`) per tracker.
    pub fn open(setup: &Setup) -> Self {
        let mut txs = Vec::new();
        let mut consumers = Vec::new();
        for t in &setup.trackers {
            let (tx, mut rx) = mpsc::channel::<Vec<u8>>(setup.prefetch.max(1));
            let t = Arc::clone(t);
            consumers.push(tokio::spawn(async move {
                while let Some(b) = rx.recv().await {
                    t.received(decode(&b));
                    t.acked(1);
                }
            }));
            txs.push(tx);
        }
        MpscSystem {
            txs,
            consumers,
            size: setup.size,
        }
    }
}

#[async_trait]
impl System for MpscSystem {
    async fn send(&self, msgs: Vec<(u64, u64)>) -> anyhow::Result<()> {
        for (seq, sent) in msgs {
            let b = encode(seq, sent, self.size);
            for tx in &self.txs {
                tx.send(b.clone())
                    .await
                    .map_err(|_| anyhow::anyhow!("mpsc consumer gone"))?;
            }
        }
        Ok(())
    }

    fn locator(&self) -> Locator {
        Locator::default()
    }

    async fn finish(self: Box<Self>, _cleanup: bool) -> anyhow::Result<()> {
        drop(self.txs);
        for c in self.consumers {
            c.await?;
        }
        Ok(())
    }
}
