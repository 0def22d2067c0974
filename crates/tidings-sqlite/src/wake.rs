//! [`Wake`]: tells this process's receivers that messages may have become claimable. It
//! is level-triggered — an epoch counter plus a [`Notify`] — so a receiver whose `recv`
//! future was dropped mid-wait (a `select!`) cannot miss a wake-up: it compares epochs.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// Wake-ups of idle receivers.
#[derive(Debug, Default)]
pub(crate) struct Wake {
    epoch: AtomicU64,
    notify: Notify,
}

impl Wake {
    /// Something changed: bump the epoch and wake every waiter.
    pub(crate) fn wake(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    /// The current epoch.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// A future completing at the next [`Wake::wake`]; enable it before reading the epoch.
    pub(crate) fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }
}
