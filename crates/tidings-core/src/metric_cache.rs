//! Metric handles registered once per label value instead of once per message.
//!
//! `metrics::counter!(name, "label" => value.clone())` hashes the labels, looks the metric
//! up in the recorder's registry and allocates the label strings — on every call. On the
//! hot path (one send, one consume) that cost more than the step it measured, so the
//! handles are kept here by label value, with the recorder they were registered with: a
//! recorder installed later (or a thread-local one in a test) gets fresh handles.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Identifies the recorder metrics go to now.
pub(crate) fn current_recorder() -> usize {
    metrics::with_recorder(|r| std::ptr::from_ref(r).cast::<()>() as usize)
}

/// Handles of type `H` by one label value (a message type).
#[derive(Debug)]
pub(crate) struct MetricCache<H> {
    by_key: RwLock<HashMap<String, Arc<(usize, H)>>>,
}

impl<H> Default for MetricCache<H> {
    fn default() -> Self {
        MetricCache {
            by_key: RwLock::default(),
        }
    }
}

impl<H> MetricCache<H> {
    /// The handles for `key` registered with the current recorder; `make` registers them
    /// when there are none yet, or `usable` says the cached ones no longer fit.
    pub(crate) fn get(
        &self,
        key: &str,
        usable: impl Fn(&H) -> bool,
        make: impl FnOnce() -> H,
    ) -> Arc<(usize, H)> {
        let recorder = current_recorder();
        let cached = self
            .by_key
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned();
        match cached {
            Some(h) if h.0 == recorder && usable(&h.1) => h,
            _ => {
                let h = Arc::new((recorder, make()));
                self.by_key
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key.to_string(), h.clone());
                h
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_once_per_key_and_again_when_unusable() {
        let cache = MetricCache::<String>::default();
        let made = std::cell::Cell::new(0);
        let make = |v: &str| {
            made.set(made.get() + 1);
            v.to_string()
        };
        assert_eq!(cache.get("a", |_| true, || make("a1")).1, "a1");
        assert_eq!(cache.get("a", |_| true, || make("a2")).1, "a1");
        assert_eq!(cache.get("b", |_| true, || make("b1")).1, "b1");
        assert_eq!(cache.get("a", |h| h != "a1", || make("a3")).1, "a3");
        assert_eq!(made.get(), 3);
    }
}
