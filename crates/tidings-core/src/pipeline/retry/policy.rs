//! [`RetryPolicy`]: decides whether a failed attempt is tried again, and after how long.
//! [`NoRetry`], [`Intervals`] and [`Filter`] live here; [`Exponential`](super::Exponential)
//! in `backoff.rs`.

use std::sync::Arc;
use std::time::Duration;

use crate::handler::HandlerError;

/// Decides, after a failed attempt, whether to try again within the same delivery.
///
/// The [`Retry`](super::Retry) service never retries permanent errors nor deferrals
/// ([`HandlerError::deferral`]), whatever the policy says; a policy only sees transient
/// failures.
pub trait RetryPolicy: Send + Sync + 'static {
    /// The delay before the next attempt, or `None` to give up and return `error`.
    ///
    /// `attempt` is the number of attempts made so far in this delivery (1 after the first
    /// failure), so `next_delay(1, e)` is the wait before the first retry.
    fn next_delay(&self, attempt: u32, error: &HandlerError) -> Option<Duration>;

    /// Retries only the errors for which `filter` returns `true` (the transient ones for
    /// this handler); others are returned at once.
    fn filter<F>(self, filter: F) -> Filter<Self, F>
    where
        Self: Sized,
        F: Fn(&HandlerError) -> bool + Send + Sync + 'static,
    {
        Filter {
            policy: self,
            filter: Arc::new(filter),
        }
    }
}

/// Never retries: the first failure is returned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoRetry;

impl RetryPolicy for NoRetry {
    fn next_delay(&self, _attempt: u32, _error: &HandlerError) -> Option<Duration> {
        None
    }
}

/// A fixed list of waits: one retry per entry, waiting that long before it.
///
/// `Intervals(vec![100ms, 500ms, 1s])` makes at most four attempts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intervals(pub Vec<Duration>);

impl Intervals {
    /// `count` retries, each after `interval`.
    pub fn fixed(count: usize, interval: Duration) -> Self {
        Intervals(vec![interval; count])
    }
}

impl RetryPolicy for Intervals {
    fn next_delay(&self, attempt: u32, _error: &HandlerError) -> Option<Duration> {
        let index = usize::try_from(attempt.checked_sub(1)?).ok()?;
        self.0.get(index).copied()
    }
}

/// A policy that retries only errors its predicate accepts; made by
/// [`RetryPolicy::filter`].
pub struct Filter<P, F> {
    policy: P,
    filter: Arc<F>,
}

impl<P: Clone, F> Clone for Filter<P, F> {
    fn clone(&self) -> Self {
        Filter {
            policy: self.policy.clone(),
            filter: self.filter.clone(),
        }
    }
}

impl<P: std::fmt::Debug, F> std::fmt::Debug for Filter<P, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<P, F> RetryPolicy for Filter<P, F>
where
    P: RetryPolicy,
    F: Fn(&HandlerError) -> bool + Send + Sync + 'static,
{
    fn next_delay(&self, attempt: u32, error: &HandlerError) -> Option<Duration> {
        if (self.filter)(error) {
            self.policy.next_delay(attempt, error)
        } else {
            None
        }
    }
}
