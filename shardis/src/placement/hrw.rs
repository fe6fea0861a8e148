//! Weighted rendezvous (highest random weight) scoring for `rendezvous`; `rendezvous_table`
//! shares its shard seeds, its SplitMix64 mixer and its deterministic logarithm.
//!
//! Each shard has a 64-bit seed from its name. The score of shard `i` for a point `x` (a key
//! hash or an arc number) is a SplitMix64 output of `seed_i` and `x`. With equal weights the
//! highest score wins. With weights, shard `i` wins where `-ln(u_i) / w_i` is smallest
//! (`u_i` = score as a fraction of 2^64): each shard then wins with probability `w_i / W`, and
//! removing or adding a shard only moves points from or to it.
//!
//! The logarithm is computed with additions, multiplications and divisions only (IEEE-754
//! rounds these identically everywhere), never with `f64::ln`, whose last bit may differ
//! between platforms and would make two hosts disagree on a key's owner.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The seed of shard name hashes. Fixed forever.
const NAME_SEED: u64 = 0x6872_775f_7365_6564; // "hrw_seed"

/// A shard's rendezvous seed, from its stable name.
#[inline]
pub(crate) fn seed(name: &str) -> u64 {
    xxh3_64_with_seed(name.as_bytes(), NAME_SEED)
}

/// The score of the shard seeded `seed` at point `x`: SplitMix64's output mixer over
/// `seed + (x + 1) * golden`.
#[inline(always)]
pub(crate) fn score(seed: u64, x: u64) -> u64 {
    let mut z = seed.wrapping_add(x.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `-ln(u)` for `u = (h + 1) / 2^64`, in `[0, 44.4]`, deterministic on every platform.
pub(crate) fn neg_ln_unit(h: u64) -> f64 {
    const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;
    if h >= 1 << 63 {
        // u in [1/2, 1]: -ln(u) = -ln(1 - d) = 2 atanh(d / (2 - d)), d = 1 - u, small.
        let d = (u64::MAX - h) as f64 / TWO_POW_64;
        2.0 * atanh_small(d / (2.0 - d))
    } else {
        // u = m * 2^e with m in [1, 2): ln(u) = e ln 2 + 2 atanh((m - 1) / (m + 1)).
        let x = (h + 1) as f64;
        let bits = x.to_bits();
        let e = ((bits >> 52) & 0x7ff) as i64 - 1023 - 64;
        let m = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52));
        -(e as f64 * std::f64::consts::LN_2 + 2.0 * atanh_small((m - 1.0) / (m + 1.0)))
    }
}

/// atanh(t) for |t| <= 1/3 by its odd power series, to ~1e-13 relative.
fn atanh_small(t: f64) -> f64 {
    let t2 = t * t;
    let mut term = t;
    let mut sum = t;
    let mut k = 3.0;
    while k < 28.0 {
        term *= t2;
        sum += term / k;
        k += 2.0;
    }
    sum
}

/// The shards as rendezvous contenders, grouped by weight so that the logarithm is taken
/// once per weight class per point, not once per shard.
#[derive(Debug, Clone)]
pub(crate) struct Contenders {
    /// `(weight, [(seed, shard index)])`, classes by ascending weight.
    classes: Vec<(u32, Vec<(u64, u32)>)>,
}

impl Contenders {
    pub(crate) fn new(shards: impl IntoIterator<Item = (u64, u32, u32)>) -> Contenders {
        let mut classes: Vec<(u32, Vec<(u64, u32)>)> = Vec::new();
        for (seed, weight, index) in shards {
            match classes.iter_mut().find(|(w, _)| *w == weight) {
                Some((_, members)) => members.push((seed, index)),
                None => classes.push((weight, vec![(seed, index)])),
            }
        }
        classes.sort_by_key(|(w, _)| *w);
        Contenders { classes }
    }

    /// The winning shard index at point `x`, with its class's best score and weight.
    #[inline]
    pub(crate) fn winner(&self, x: u64) -> Winner {
        let mut best: Option<Winner> = None;
        for (weight, members) in &self.classes {
            // Ties (probability 2^-64) go to the lower seed, independent of listing order.
            let (mut top, mut top_seed, mut top_index) = (0u64, u64::MAX, u32::MAX);
            for &(seed, index) in members {
                let s = score(seed, x);
                if s > top || (s == top && seed < top_seed) {
                    (top, top_seed, top_index) = (s, seed, index);
                }
            }
            let w = Winner {
                index: top_index,
                score: top,
                weight: *weight,
            };
            best = Some(match best {
                None => w,
                Some(b) => b.better(w),
            });
        }
        best.unwrap_or(Winner {
            index: u32::MAX,
            score: 0,
            weight: 1,
        })
    }
}

/// A shard's claim on a point: its index, score and weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Winner {
    pub(crate) index: u32,
    pub(crate) score: u64,
    pub(crate) weight: u32,
}

impl Winner {
    /// The stronger of two claims.
    #[inline]
    pub(crate) fn better(self, other: Winner) -> Winner {
        let other_wins = if self.weight == other.weight {
            other.score > self.score
        } else {
            // Smaller -ln(u)/w wins; compare by cross-multiplying to avoid a division.
            neg_ln_unit(other.score) * f64::from(self.weight)
                < neg_ln_unit(self.score) * f64::from(other.weight)
        };
        if other_wins {
            other
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neg_ln_matches_std_closely() {
        for h in [
            0u64,
            1,
            12345,
            1 << 20,
            (1 << 62) + 7,
            (1 << 63) - 1,
            1 << 63,
            u64::MAX / 3 * 2,
            u64::MAX - 1_000_000,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let u = (h as f64 + 1.0) / 18_446_744_073_709_551_616.0;
            let want = -u.ln();
            let got = neg_ln_unit(h);
            let err = (got - want).abs();
            assert!(
                err <= 1e-12 * want.max(1e-9) + 1e-15,
                "h={h}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn neg_ln_is_monotone() {
        let mut prev = f64::INFINITY;
        for i in 0..=4096u64 {
            let h = i.wrapping_mul(u64::MAX / 4096);
            let v = neg_ln_unit(h);
            assert!(v <= prev, "not decreasing at {h}");
            prev = v;
        }
    }

    #[test]
    fn weighted_winner_shares_follow_weights() {
        let c = Contenders::new([(seed("a"), 1, 0), (seed("b"), 3, 1)]);
        let n = 200_000u64;
        let b = (0..n).filter(|x| c.winner(*x).index == 1).count() as f64 / n as f64;
        assert!((b - 0.75).abs() < 0.01, "{b}");
    }
}
