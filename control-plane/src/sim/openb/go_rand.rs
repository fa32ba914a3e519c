//! A bit-exact port of Go's `math/rand` (v1) global source and the few
//! `Rand` methods the FGD simulator draws from.
//!
//! The original simulator seeds Go's global generator once per run and takes
//! the pod shuffle, the tuning samples and the node ranks from it, so a replay
//! has to reproduce the stream word for word (PROTOCOL.md, Appendix A).

use super::go_rand_cooked::RNG_COOKED;

const LEN: usize = 607;
const TAP: usize = 273;
const INT32_MAX: i64 = (1 << 31) - 1;
const MASK63: u64 = (1 << 63) - 1;

/// Go's additive lagged Fibonacci generator (`rngSource`) with the `Rand`
/// helpers layered on it.
#[derive(Clone)]
pub struct GoRand {
    tap: usize,
    feed: usize,
    vec: [u64; LEN],
}

impl std::fmt::Debug for GoRand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoRand")
            .field("tap", &self.tap)
            .field("feed", &self.feed)
            .finish_non_exhaustive()
    }
}

/// One step of the seeding LCG, `48271 * x mod (2^31 - 1)` by Schrage's
/// method, exactly as Go's `seedrand`.
fn seed_lcg(x: i32) -> i32 {
    const Q: i32 = 44488;
    const R: i32 = 3399;
    let hi = x / Q;
    let lo = x % Q;
    let mut x = 48271 * lo - R * hi;
    if x < 0 {
        x += INT32_MAX as i32;
    }
    x
}

impl GoRand {
    /// A generator in the state of Go's `rand.Seed(seed)`.
    pub fn new(seed: i64) -> Self {
        let mut rng = GoRand {
            tap: 0,
            feed: LEN - TAP,
            vec: [0; LEN],
        };
        rng.seed(seed);
        rng
    }

    /// Re-seeds the generator (Go `Seed`).
    pub fn seed(&mut self, seed: i64) {
        self.tap = 0;
        self.feed = LEN - TAP;
        let mut seed = seed % INT32_MAX;
        if seed < 0 {
            seed += INT32_MAX;
        }
        if seed == 0 {
            seed = 89_482_311;
        }
        let mut x = seed as i32;
        for i in -20..LEN as i32 {
            x = seed_lcg(x);
            if i >= 0 {
                let mut u = (x as i64) << 40;
                x = seed_lcg(x);
                u ^= (x as i64) << 20;
                x = seed_lcg(x);
                u ^= x as i64;
                u ^= RNG_COOKED[i as usize];
                self.vec[i as usize] = u as u64;
            }
        }
    }

    /// Go `Uint64`: the next full 64-bit word.
    pub fn uint64(&mut self) -> u64 {
        self.tap = if self.tap == 0 { LEN - 1 } else { self.tap - 1 };
        self.feed = if self.feed == 0 {
            LEN - 1
        } else {
            self.feed - 1
        };
        let x = self.vec[self.feed].wrapping_add(self.vec[self.tap]);
        self.vec[self.feed] = x;
        x
    }

    /// Go `Int63`: a non-negative 63-bit integer.
    pub fn int63(&mut self) -> i64 {
        (self.uint64() & MASK63) as i64
    }

    /// Go `Uint32`: the low 32 bits of `Int63() >> 31`.
    pub fn uint32(&mut self) -> u32 {
        (self.int63() >> 31) as u32
    }

    /// Go `Int31`: the top 31 bits of `Int63()`.
    pub fn int31(&mut self) -> i32 {
        (self.int63() >> 32) as i32
    }

    /// Go `Int31n`: uniform in `[0, n)` by rejection sampling.
    ///
    /// # Panics
    /// If `n <= 0`, as Go does.
    pub fn int31n(&mut self, n: i32) -> i32 {
        assert!(n > 0, "invalid argument to int31n");
        if n & (n - 1) == 0 {
            return self.int31() & (n - 1);
        }
        let max = (INT32_MAX - (1i64 << 31) % n as i64) as i32;
        let mut v = self.int31();
        while v > max {
            v = self.int31();
        }
        v % n
    }

    /// Go `Intn` for `n < 2^31`, which is `Int31n`.
    pub fn intn(&mut self, n: usize) -> usize {
        let n = i32::try_from(n).expect("intn argument fits in 31 bits");
        self.int31n(n) as usize
    }

    /// Go's unexported Lemire-style `int31n`, used by `Shuffle`.
    fn int31n_lemire(&mut self, n: u32) -> u32 {
        let mut prod = u64::from(self.uint32()) * u64::from(n);
        let mut low = prod as u32;
        if low < n {
            let thresh = n.wrapping_neg() % n;
            while low < thresh {
                prod = u64::from(self.uint32()) * u64::from(n);
                low = prod as u32;
            }
        }
        (prod >> 32) as u32
    }

    /// Go `Shuffle`: Fisher–Yates from the end of the slice.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        let n = items.len();
        assert!(n < (1 << 31), "shuffle of more than 2^31 items");
        for i in (1..n).rev() {
            let j = self.int31n_lemire((i + 1) as u32) as usize;
            items.swap(i, j);
        }
    }

    /// Go `Perm(n)`: a random permutation of `0..n`.
    pub fn perm(&mut self, n: usize) -> Vec<usize> {
        let mut a = vec![0usize; n];
        for i in 0..n {
            let j = self.intn(i + 1);
            a[i] = a[j];
            a[j] = i;
        }
        a
    }

    /// Go `Float64`: uniform in `[0, 1)`.
    pub fn float64(&mut self) -> f64 {
        loop {
            let f = self.int63() as f64 / (1u64 << 63) as f64;
            if f < 1.0 {
                return f;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::GoRand;

    #[test]
    fn int63_matches_go() {
        let mut r = GoRand::new(42);
        let got: Vec<i64> = (0..5).map(|_| r.int63()).collect();
        assert_eq!(
            got,
            [
                3440579354231278675,
                608747136543856411,
                5571782338101878760,
                1926012586526624009,
                404153945743547657
            ]
        );
    }

    #[test]
    fn intn_uint32_perm_shuffle_match_go() {
        let mut r = GoRand::new(42);
        let got: Vec<usize> = (0..5).map(|_| r.intn(8152)).collect();
        assert_eq!(got, [7873, 4315, 4996, 1382, 887]);

        let mut r = GoRand::new(42);
        let got: Vec<u32> = (0..3).map(|_| r.uint32()).collect();
        assert_eq!(got, [1602144611, 283469975, 2594563336]);

        let mut r = GoRand::new(42);
        assert_eq!(r.perm(10), [7, 5, 8, 9, 2, 1, 6, 0, 3, 4]);

        let mut r = GoRand::new(42);
        let mut v: Vec<u32> = (0..10).collect();
        r.shuffle(&mut v);
        assert_eq!(v, [2, 5, 7, 9, 6, 8, 1, 4, 0, 3]);
    }

    #[test]
    fn seed_is_taken_modulo_2_31_minus_1() {
        let mut a = GoRand::new(0);
        let mut b = GoRand::new(89_482_311);
        assert_eq!(a.int63(), b.int63());
        let mut c = GoRand::new(42 + ((1 << 31) - 1));
        assert_eq!(c.int63(), 3440579354231278675);
    }
}
