//! Message codes in Pushwoosh's format (`XXXX-XXXXXXXX-XXXXXXXX`, uppercase hex), unique
//! within one sandbox, plus the cheap pseudo-random numbers the fault injection draws.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finaliser: a bijection on `u64` that scatters neighbouring inputs.
pub(super) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed that differs between runs (wall clock mixed with the process id).
pub(super) fn time_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    splitmix64(nanos ^ (u64::from(std::process::id()) << 32))
}

/// Generates message codes. The last 64 bits are a bijection of a counter, so two codes
/// from one generator never collide; the first 16 bits only make them look like Pushwoosh's.
pub(super) struct CodeGen {
    seed: u64,
    counter: AtomicU64,
}

impl CodeGen {
    pub(super) fn new(seed: u64) -> Self {
        Self {
            seed,
            counter: AtomicU64::new(0),
        }
    }

    pub(super) fn next_code(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tail = splitmix64(n ^ self.seed);
        let head = (splitmix64(tail ^ self.seed.rotate_left(23)) >> 48) as u16;
        format!("{head:04X}-{:08X}-{:08X}", (tail >> 32) as u32, tail as u32)
    }
}

/// Lock-free uniform numbers in `[0, 1)` for probabilistic faults (not cryptographic).
pub(super) struct Rng {
    state: AtomicU64,
}

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    pub(super) fn next_f64(&self) -> f64 {
        let x = splitmix64(self.state.fetch_add(GOLDEN, Ordering::Relaxed));
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p` (`p <= 0` or NaN: never; `p >= 1`: always).
    pub(super) fn chance(&self, p: f64) -> bool {
        p > 0.0 && (p >= 1.0 || self.next_f64() < p)
    }
}

/// Whether `s` has the shape of a Pushwoosh message code.
#[cfg(test)]
pub(super) fn is_code_shaped(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 3
        && parts
            .iter()
            .zip([4usize, 8, 8])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_have_pushwoosh_shape_and_are_unique() {
        let g = CodeGen::new(time_seed());
        let mut seen = HashSet::new();
        for _ in 0..50_000 {
            let c = g.next_code();
            assert!(is_code_shaped(&c), "{c}");
            assert!(seen.insert(c));
        }
        assert!(is_code_shaped("C3F8-C3863ED4-334AD4F1"));
        assert!(!is_code_shaped("c3f8-C3863ED4-334AD4F1"));
        assert!(!is_code_shaped("C3F8-C3863ED4"));
    }

    #[test]
    fn rng_is_in_range_and_chance_respects_bounds() {
        let r = Rng::new(42);
        let mut hits = 0;
        for _ in 0..10_000 {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
            if r.chance(0.25) {
                hits += 1;
            }
        }
        assert!((2_000..3_000).contains(&hits), "{hits}");
        assert!(!r.chance(0.0) && !r.chance(f64::NAN) && r.chance(1.0));
    }
}
