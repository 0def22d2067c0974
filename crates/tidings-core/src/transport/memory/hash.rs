//! [`FastMap`]: the transport's maps hash with FNV-1a instead of SipHash. Their keys are
//! queue names and delivery tokens made by Tidings, looked up several times per message,
//! and SipHash's protection against chosen keys buys nothing here.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` with [`Fnv`].
pub(super) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// FNV-1a over the bytes written; integers are mixed with one multiplication.
pub(super) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        // hashbrown takes its control bits from the top: fold the low bits up.
        self.0 ^ self.0.rotate_left(32)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_tokens_and_names() {
        let mut m: FastMap<u64, u64> = FastMap::default();
        for t in 0..10_000u64 {
            m.insert(t, t * 2);
        }
        assert!((0..10_000u64).all(|t| m.get(&t) == Some(&(t * 2))));
        let mut q: FastMap<String, usize> = FastMap::default();
        for i in 0..100 {
            q.insert(format!("bench_{i}"), i);
        }
        assert_eq!(q.get("bench_42"), Some(&42));
        assert_eq!(q.get("bench_420"), None);
    }
}
