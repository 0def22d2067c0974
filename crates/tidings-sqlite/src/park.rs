//! Parked claims: an idle receiver's claim that found nothing stays with the writer instead
//! of coming back empty. Every later batch that changes something (sends, write jobs,
//! acks, requeues) claims for the parked receivers inside its own transaction, so a
//! message and the claim that picks it up share one commit (one fsync per delivery instead
//! of two), and the receiver gets its rows the moment that batch commits — no wake-up, no
//! second round trip. A parked claim is answered (empty, `waited`) when its deadline
//! passes: the receiver's poll interval (writes of other processes) or when the queue's
//! next row becomes visible (delays, leases).

use std::time::Duration;

use tokio::time::Instant;

use crate::error::Result;
use crate::raw::Raw;
use crate::schema::now_ms;
use crate::store::{self, ClaimSpec};
use crate::writer::{ClaimResult, Reply};

/// One parked claim.
struct Parked {
    id: u64,
    spec: ClaimSpec,
    reply: Reply<ClaimResult>,
    until: Instant,
}

/// The parked claims of the writer.
#[derive(Default)]
pub(crate) struct ParkedClaims {
    list: Vec<Parked>,
}

/// Claims found for parked receivers in a batch: (index, result), answered after commit.
pub(crate) type Found = Vec<(usize, ClaimResult)>;

fn empty(next_visible: Option<i64>) -> ClaimResult {
    ClaimResult {
        rows: Vec::new(),
        token: 0,
        next_visible,
        waited: true,
    }
}

impl ParkedClaims {
    /// Whether no claim is parked.
    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Parks a claim that found nothing, until `wait` has passed or the queue's next row
    /// becomes visible.
    pub(crate) fn park(
        &mut self,
        id: u64,
        spec: ClaimSpec,
        reply: Reply<ClaimResult>,
        wait: Duration,
        next_visible: Option<i64>,
    ) {
        let mut wait = wait.max(Duration::from_millis(1));
        if let Some(at) = next_visible {
            wait = wait.min(Duration::from_millis((at - now_ms()).max(1) as u64));
        }
        self.list.push(Parked {
            id,
            spec,
            reply,
            until: Instant::now() + wait,
        });
    }

    /// Answers parked claim `id` (empty) at once: its receiver is closing.
    pub(crate) fn unpark(&mut self, id: u64) {
        if let Some(i) = self.list.iter().position(|p| p.id == id) {
            let p = self.list.swap_remove(i);
            let _ = p.reply.send(Ok(empty(None)));
        }
    }

    /// Answers every parked claim (empty): the writer stops.
    pub(crate) fn release_all(&mut self) {
        for p in self.list.drain(..) {
            let _ = p.reply.send(Ok(empty(None)));
        }
    }

    /// Forgets claims whose receiver is gone; the earliest deadline of the others.
    pub(crate) fn deadline(&mut self) -> Option<Instant> {
        self.list.retain(|p| !p.reply.is_closed());
        self.list.iter().map(|p| p.until).min()
    }

    /// Claims for every parked receiver in the batch's transaction; returns those to answer:
    /// rows found, or the deadline passed.
    pub(crate) fn claim_in(&self, raw: &Raw<'_>) -> Result<Found> {
        let now = Instant::now();
        let mut found = Vec::new();
        for (i, p) in self.list.iter().enumerate() {
            if p.reply.is_closed() {
                continue;
            }
            let token = store::new_token();
            let rows = raw.claim(&p.spec, token)?;
            if !rows.is_empty() {
                found.push((
                    i,
                    ClaimResult {
                        rows,
                        token,
                        next_visible: None,
                        waited: true,
                    },
                ));
            } else if p.until <= now {
                let next = raw.next_visible(&p.spec.queue)?;
                found.push((i, empty(next)));
            }
        }
        Ok(found)
    }

    /// Answers (after the commit) what [`ParkedClaims::claim_in`] found.
    pub(crate) fn answer(&mut self, mut found: Found) {
        found.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
        for (i, res) in found {
            if i < self.list.len() {
                let p = self.list.swap_remove(i);
                if let Err(Ok(res)) = p.reply.send(Ok(res)) {
                    // The receiver went away as we answered: the rows' lease brings
                    // them back.
                    tracing::debug!(
                        rows = res.rows.len(),
                        "tidings-sqlite: parked claim answered after its receiver left"
                    );
                }
            }
        }
    }
}
