//! When to SIGKILL a command in the crash tests, so that most kills land
//! while it is still running on any machine, fast or slow.
//!
//! Each kind of command has a bound, first the fastest of a few undisturbed
//! runs; delays are drawn uniformly below it. A kill that finds the command
//! already ended proves the command takes less than that delay here, so the
//! bound drops to it: on a machine much faster than the calibration run
//! (warm page cache, idle registry) the bound follows, instead of wasting
//! the remaining attempts after the command has ended.

use std::time::Duration;

/// xorshift64*: enough randomness for kill times; the seed is printed so a
/// failing run can be replayed with STRATA_CRASH_SEED.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        if n == 0 { 0 } else { x % n }
    }
}

pub struct KillClock {
    rng: Rng,
    seed: u64,
    bounds: Vec<Duration>,
}

impl KillClock {
    /// One bound per kind of command (say, per image pulled); the seed from
    /// STRATA_CRASH_SEED, or the clock.
    pub fn new(bounds: Vec<Duration>) -> KillClock {
        let seed = std::env::var("STRATA_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(super::nanos() as u64 | 1);
        KillClock {
            rng: Rng(seed),
            seed,
            bounds,
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// A delay somewhere inside what a command of kind `which` takes.
    pub fn delay(&mut self, which: usize) -> Duration {
        let bound = self.bounds[which].as_micros() as u64;
        Duration::from_micros(self.rng.below(bound + 1))
    }

    /// A command of kind `which` had ended before a kill `delay` after its
    /// start: it takes less than that here.
    pub fn ended_before(&mut self, which: usize, delay: Duration) {
        let b = &mut self.bounds[which];
        *b = (*b).min(delay);
    }

    /// The bounds as they stand, for the failure message.
    pub fn bounds(&self) -> &[Duration] {
        &self.bounds
    }
}

/// The fastest of `n` timed runs of `f` (the first one also warms the page
/// cache, so it alone would put many kills after the command has ended).
pub fn fastest_of(n: usize, mut f: impl FnMut()) -> Duration {
    (0..n)
        .map(|_| {
            let t = std::time::Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}
