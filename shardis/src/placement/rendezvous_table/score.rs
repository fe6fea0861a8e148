//! The score that decides which shard owns an arc, built so that each shard's best arcs can be
//! listed directly instead of scoring every shard on every arc.
//!
//! The arcs are grouped into *buckets* of `2^local_bits` arcs (`local_bits = min(arc_bits, 15)`,
//! so a bucket's working state fits in a core's L2 cache); arc `a` is local arc
//! `l = a mod 2^local_bits` of bucket `b = a >> local_bits`, and there are `2^offset_bits`
//! buckets. Every shard ranks all arcs by a keyed bijection of `[0, arcs)`:
//!
//! ```text
//! rank(a) = permute(bucket_keys(b), local_bits, l) << offset_bits | permute(offset_keys, offset_bits, b)
//! ```
//!
//! `permute` is a 4-round Feistel network on 16-bit words (alternating halves, so any width
//! works) whose round function is two 16×16→32-bit multiply-folds; its keys come from the
//! shard's seed (`hrw::seed` of its name) and, for the local part, the bucket. Low ranks are
//! good. Because the rank is a bijection, the arcs where a shard ranks `0, 1, 2, …` are found by
//! inverting the local permutation, bucket by bucket: that is what makes the build fast.
//!
//! With weights, the rank becomes the deterministic exponential variate
//! `unit(rank) = -ln(1 - (rank + 1/2) / arcs)` (via `hrw::neg_ln_unit`: additions,
//! multiplications and divisions only) divided by the weight, and the smallest wins: each arc
//! then goes to shard `i` with probability `w_i / W`. For equal weights this order is the rank
//! order (`unit` is strictly increasing: consecutive values differ by at least `e / arcs`
//! relatively, ~10^5 times more than its error), so ranks are compared directly.
//!
//! Equal keys (two shards with the same rank on an arc, which happens on about `shards / arcs`
//! of the arcs) go to the shard with the lower seed, so nothing depends on the order shards are
//! listed. The scorer
//! numbers shards in seed order, and a claim packs its key above that number into a `u64`: the
//! smaller claim wins.

use super::super::hrw;

/// Widest local permutation: a bucket holds at most `2^15` arcs.
pub(super) const MAX_LOCAL_BITS: u32 = 15;
/// Feistel rounds.
pub(super) const ROUNDS: usize = 4;
/// Seed domains of the key material, so no two uses of a seed share a SplitMix stream.
const OFFSET_DOMAIN: u64 = 0x6f66_6673_6574_5f6b; // "offset_k"
const BUCKET_DOMAIN: u64 = 0x6275_636b_6574_5f6b; // "bucket_k"

/// Round keys of one permutation: two 16-bit words per round.
pub(super) type Keys = [u16; 2 * ROUNDS];

/// An empty claim: worse than any real one (keys use at most 47 bits, indices < 0xFFFF).
pub(super) const EMPTY: u64 = u64::MAX;

/// Packs a claim: `key` (< 2^48) above the shard index.
#[inline(always)]
pub(super) fn claim(key: u64, index: usize) -> u64 {
    (key << 16) | index as u64
}

/// The shard index of a claim.
#[inline(always)]
pub(super) fn index_of(claim: u64) -> usize {
    (claim & 0xFFFF) as usize
}

/// `x * m` folded to 16 bits (high half xor low half): SIMD-friendly on every target.
#[inline(always)]
fn mix(x: u16, m: u16) -> u16 {
    x.wrapping_mul(m) ^ ((u32::from(x) * u32::from(m)) >> 16) as u16
}

#[inline(always)]
fn round_fn(ka: u16, kb: u16, r: u16) -> u16 {
    mix(mix(r ^ ka, 0x9E37) ^ kb, 0x7F4B) >> 8
}

#[inline(always)]
fn low(bits: u32) -> u16 {
    ((1u32 << bits) - 1) as u16
}

/// The widths `(right, left)` of the halves at round `j` of a `bits`-wide permutation.
#[inline(always)]
fn halves(bits: u32, j: usize) -> (u32, u32) {
    let (v, u) = (bits - bits / 2, bits / 2);
    if j.is_multiple_of(2) {
        (v, u)
    } else {
        (u, v)
    }
}

/// A keyed bijection of `[0, 2^bits)`, `bits <= 16`.
#[inline(always)]
pub(super) fn permute(keys: &Keys, bits: u32, mut x: u16) -> u16 {
    for j in 0..ROUNDS {
        let (v, u) = halves(bits, j);
        let (r, l) = (x & low(v), x >> v);
        x = (r << u) | ((l ^ round_fn(keys[2 * j], keys[2 * j + 1], r)) & low(u));
    }
    x
}

/// The inverse of [`permute`].
#[inline(always)]
pub(super) fn unpermute(keys: &Keys, bits: u32, mut y: u16) -> u16 {
    for j in (0..ROUNDS).rev() {
        let (v, u) = halves(bits, j);
        let (nr, r) = (y & low(u), y >> u);
        let l = (nr ^ round_fn(keys[2 * j], keys[2 * j + 1], r)) & low(u);
        y = (l << v) | r;
    }
    y
}

vectorised! {
    /// `permute` over a run of inputs (kept apart from the caller's loop so it vectorises).
    pub(super) fn permute_all(keys: &Keys, bits: u32, xs: &[u16], out: &mut [u16]) {
        for (o, x) in out.iter_mut().zip(xs) {
            *o = permute(keys, bits, *x);
        }
    }
}

vectorised! {
    /// `permute` of `0, 1, …, out.len() - 1`: a shard's local ranks of a bucket's first arcs.
    pub(super) fn permute_run(keys: &Keys, bits: u32, out: &mut [u16]) {
        for (x, o) in out.iter_mut().enumerate() {
            *o = permute(keys, bits, x as u16);
        }
    }
}

vectorised! {
    /// The arcs a shard ranks `0, 1, …, out.len() - 1` in a bucket.
    pub(super) fn unpermute_run(keys: &Keys, bits: u32, out: &mut [u16]) {
        for (m, o) in out.iter_mut().enumerate() {
            *o = unpermute(keys, bits, m as u16);
        }
    }
}

vectorised! {
    /// The arcs that shards rank `m`, one shard per lane: `keys[j][p]` is round key `j` of the
    /// `p`-th shard.
    pub(super) fn unpermute_each(keys: &[Vec<u16>; 2 * ROUNDS], bits: u32, m: u16, out: &mut [u16]) {
        let n = out.len();
        let keys: [&[u16]; 2 * ROUNDS] = std::array::from_fn(|j| &keys[j][..n]);
        for (p, o) in out.iter_mut().enumerate() {
            *o = unpermute(&std::array::from_fn(|j| keys[j][p]), bits, m);
        }
    }
}

fn keys_from(a: u64, b: u64) -> Keys {
    std::array::from_fn(|j| {
        let word = if j < 4 { a } else { b };
        (word >> (16 * (j % 4))) as u16
    })
}

/// How the arcs of a table split into buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    /// `log2` of the arc count.
    pub(super) bits: u32,
    /// `log2` of the arcs per bucket.
    pub(super) local_bits: u32,
    /// `log2` of the bucket count.
    pub(super) offset_bits: u32,
}

impl Layout {
    pub(super) fn new(bits: u32) -> Layout {
        let local_bits = bits.min(MAX_LOCAL_BITS);
        Layout {
            bits,
            local_bits,
            offset_bits: bits - local_bits,
        }
    }

    pub(super) fn buckets(&self) -> usize {
        1 << self.offset_bits
    }

    pub(super) fn bucket_len(&self) -> usize {
        1 << self.local_bits
    }

    /// `-ln(1 - (rank + 1/2) / arcs)`, strictly increasing in `rank`.
    pub(super) fn unit(&self, rank: u32) -> f64 {
        let h = u64::MAX - (u64::from(rank) << (64 - self.bits)) - (1u64 << (63 - self.bits));
        hrw::neg_ln_unit(h)
    }
}

/// A shard as the scorer sees it.
#[derive(Debug, Clone)]
pub(super) struct Scored {
    pub(super) seed: u64,
    pub(super) weight: u32,
    offset_keys: Keys,
}

impl Scored {
    pub(super) fn new(seed: u64, weight: u32) -> Scored {
        Scored {
            seed,
            weight,
            offset_keys: keys_from(
                hrw::score(seed ^ OFFSET_DOMAIN, 0),
                hrw::score(seed ^ OFFSET_DOMAIN, 1),
            ),
        }
    }

    /// The shard's local permutation keys and rank offset in bucket `b`.
    #[inline]
    pub(super) fn local(&self, layout: &Layout, b: usize) -> Local {
        let x = 2 * b as u64;
        Local {
            keys: keys_from(
                hrw::score(self.seed ^ BUCKET_DOMAIN, x),
                hrw::score(self.seed ^ BUCKET_DOMAIN, x + 1),
            ),
            offset: u32::from(permute(&self.offset_keys, layout.offset_bits, b as u16)),
        }
    }
}

/// A shard's view of one bucket.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Local {
    pub(super) keys: Keys,
    pub(super) offset: u32,
}

impl Local {
    /// The shard's rank of local arc `l` (the definition; builds compute ranks in bulk).
    #[cfg(test)]
    pub(super) fn rank(&self, layout: &Layout, l: u16) -> u32 {
        (u32::from(permute(&self.keys, layout.local_bits, l)) << layout.offset_bits) | self.offset
    }
}

/// Turns ranks into comparable keys.
#[derive(Debug, Clone)]
pub(super) enum Keying {
    /// Every shard has the same weight: the key is the rank.
    Ranks,
    /// Weighted: the key is the top 48 bits of `unit(rank) / weight`. `units` caches `unit`
    /// for the ranks below its length.
    Weighted {
        /// `unit(r)` for `r < units.len()`.
        units: Vec<f64>,
    },
}

/// The scoring state of a set of shards in a table layout. The shards are in seed order, and a
/// shard's index is its place in that order: equal keys go to the lower index.
#[derive(Debug, Clone)]
pub(super) struct Scorer {
    pub(super) layout: Layout,
    pub(super) shards: Vec<Scored>,
    pub(super) keying: Keying,
}

impl Scorer {
    /// A scorer of `shards`, in seed order; `cached_units` ranks get their `unit` precomputed
    /// when weights differ.
    pub(super) fn new(layout: Layout, shards: Vec<Scored>, cached_units: u32) -> Scorer {
        debug_assert!(shards.windows(2).all(|w| w[0].seed <= w[1].seed));
        let equal = shards.windows(2).all(|w| w[0].weight == w[1].weight);
        let keying = if equal {
            Keying::Ranks
        } else {
            Keying::Weighted {
                units: (0..cached_units).map(|r| layout.unit(r)).collect(),
            }
        };
        Scorer {
            layout,
            shards,
            keying,
        }
    }

    /// The key of shard `i` at rank `rank`: smaller is better.
    #[inline]
    pub(super) fn key(&self, rank: u32, i: usize) -> u64 {
        match &self.keying {
            Keying::Ranks => u64::from(rank),
            Keying::Weighted { units } => {
                let unit = match units.get(rank as usize) {
                    Some(u) => *u,
                    None => self.layout.unit(rank),
                };
                weighted(unit, self.shards[i].weight)
            }
        }
    }

    /// Whether `a` is a better claim than `b` on the same arc (`b` may be [`Claim::NONE`]).
    #[inline]
    pub(super) fn beats(&self, a: Claim, b: Claim) -> bool {
        if b.index == Claim::NONE.index {
            return true;
        }
        let (i, j) = (a.index as usize, b.index as usize);
        if self.shards[i].weight == self.shards[j].weight {
            // Equal weights: keys order like ranks, and are equal exactly when ranks are.
            (a.rank, i) < (b.rank, j)
        } else {
            (self.key(a.rank, i), i) < (self.key(b.rank, j), j)
        }
    }
}

/// A shard's claim on an arc: its rank there and its index (in seed order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Claim {
    pub(super) rank: u32,
    pub(super) index: u32,
}

impl Claim {
    /// No claim: beaten by any.
    pub(super) const NONE: Claim = Claim {
        rank: u32::MAX,
        index: u32::MAX,
    };
}

/// The key of a weighted unit: the top 48 bits of `unit / weight` (a positive `f64`, whose
/// bits order like its value).
#[inline]
pub(super) fn weighted(unit: f64, weight: u32) -> u64 {
    (unit / f64::from(weight)).to_bits() >> 16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_is_a_bijection_with_its_inverse() {
        let keys = keys_from(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);
        for bits in 0..=MAX_LOCAL_BITS {
            let mut seen = vec![false; 1 << bits];
            for x in 0..(1u32 << bits) {
                let y = permute(&keys, bits, x as u16);
                assert!(u32::from(y) < 1 << bits, "bits {bits}: {x} -> {y}");
                assert!(!seen[y as usize], "bits {bits}: {y} twice");
                seen[y as usize] = true;
                assert_eq!(unpermute(&keys, bits, y), x as u16);
            }
        }
    }

    #[test]
    fn ranks_are_a_bijection_of_the_arcs() {
        let layout = Layout::new(17);
        let shard = Scored::new(hrw::seed("s"), 1);
        let mut seen = vec![false; 1 << 17];
        for b in 0..layout.buckets() {
            let local = shard.local(&layout, b);
            for l in 0..layout.bucket_len() {
                let r = local.rank(&layout, l as u16) as usize;
                assert!(!seen[r], "rank {r} twice");
                seen[r] = true;
            }
        }
    }

    #[test]
    fn units_strictly_increase() {
        // Exhaustively at the default width, and around the smallest relative gap (the rank
        // where 1 - rank/arcs is near 1/e) plus both ends at the widest.
        let check = |layout: Layout, ranks: &mut dyn Iterator<Item = u32>| {
            let mut prev: Option<(u32, u64)> = None;
            for r in ranks {
                let k = weighted(layout.unit(r), 1);
                if let Some((pr, pk)) = prev {
                    assert!(pr + 1 != r || pk < k, "bits {}: rank {r}", layout.bits);
                }
                prev = Some((r, k));
            }
        };
        check(Layout::new(21), &mut (0..1 << 21));
        for bits in [8, 15, 26] {
            let layout = Layout::new(bits);
            let arcs = 1u64 << bits;
            let mid = (arcs - (arcs as f64 / std::f64::consts::E) as u64) as u32;
            let n = (arcs as u32).min(20_000);
            check(layout, &mut (0..n));
            check(
                layout,
                &mut (mid.saturating_sub(n / 2)..(mid + n / 2).min(arcs as u32)),
            );
            check(layout, &mut ((arcs as u32 - n)..arcs as u32));
        }
    }

    #[test]
    fn unit_is_minus_ln_of_the_rank_midpoint() {
        let layout = Layout::new(10);
        for r in [0u32, 1, 100, 511, 1000, 1023] {
            let want = -(1.0 - (f64::from(r) + 0.5) / 1024.0).ln();
            assert!((layout.unit(r) - want).abs() < 1e-12 * want, "{r}");
        }
    }
}
