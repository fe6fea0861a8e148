//! Filling the arc table, one bucket at a time (see `score` for what decides an arc's owner).
//!
//! In each bucket, every shard first *proposes* the arcs it ranks best — its ranks below a
//! limit proportional to its weight, listed by inverting its local permutation — and each arc
//! keeps its best proposal. A proposal whose key is below every shard's first unlisted key cannot
//! be beaten by anything unlisted, so it is that arc's exact winner. The arcs left (no proposal
//! that good: a fraction `e^-c` when shards propose `c` arcs per arc in all) are then scored
//! over every shard. The work per arc is about `c + N e^-c` permutation evaluations instead of
//! `N`, and `c` grows like `ln N`: the build costs `arcs × O(log N)`.
//!
//! Buckets are independent, so a build splits them over threads; each thread's working state is
//! one bucket's (L2-sized). [`Plan::update`] derives a table from an old one: arcs whose owner
//! stays keep it unless a new shard beats it there, and arcs whose owner left are scored over
//! every shard.

use std::collections::BTreeMap;

use super::score::{self, claim, index_of, weighted, Claim, Keying, Layout, Local, Scored, Scorer};

/// What a build or an update needs about the shards.
#[derive(Debug)]
pub(super) struct Plan {
    scorer: Scorer,
    /// Shard indices grouped by weight.
    classes: Vec<Vec<usize>>,
    /// Shard `i` proposes its ranks below `limits[i]`.
    limits: Vec<u32>,
    /// A proposal whose key is below this is final.
    bound: u64,
}

/// Proposals per arc, in all, that balance the proposal work against the exhaustive scoring of
/// the arcs left without a final proposal (`ln N` less a constant; none for a few shards).
fn coverage(shards: usize) -> f64 {
    if shards < 12 {
        return 0.0;
    }
    let log2 = f64::from(usize::BITS - 1 - shards.leading_zeros());
    0.69 * log2 - 0.9
}

impl Plan {
    /// The plan for `shards` in `layout`; `propose` enables the proposal pass (a build).
    pub(super) fn new(layout: Layout, shards: Vec<Scored>, propose: bool) -> Plan {
        let arcs = 1u64 << layout.bits;
        let total: f64 = shards.iter().map(|s| f64::from(s.weight)).sum();
        let c = if propose { coverage(shards.len()) } else { 0.0 };
        // Only speed depends on the limits, never the result.
        let limits: Vec<u32> = shards
            .iter()
            .map(|s| {
                let want = (arcs as f64 * c * f64::from(s.weight) / total).ceil();
                want.min(arcs as f64) as u32
            })
            .collect();
        let scorer = Scorer::new(layout, shards, limits.iter().copied().max().unwrap_or(0));
        let bound = limits
            .iter()
            .enumerate()
            .filter(|(_, r)| u64::from(**r) < arcs)
            .map(|(i, r)| scorer.key(*r, i))
            .min()
            .unwrap_or(u64::MAX >> 16);
        let mut by_weight: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, s) in scorer.shards.iter().enumerate() {
            by_weight.entry(s.weight).or_default().push(i);
        }
        Plan {
            scorer,
            classes: by_weight.into_values().collect(),
            limits,
            bound,
        }
    }

    /// Every arc's owner, the buckets split over `threads` threads.
    pub(super) fn build(&self, threads: usize) -> Vec<u16> {
        let layout = self.scorer.layout;
        let len = layout.bucket_len();
        let mut out = vec![0u16; 1 << layout.bits];
        let per = layout.buckets().div_ceil(threads.max(1));
        if per >= layout.buckets() {
            let mut s = Scratch::default();
            for (b, chunk) in out.chunks_mut(len).enumerate() {
                self.build_bucket(b, &mut s, chunk);
            }
            return out;
        }
        std::thread::scope(|scope| {
            for (t, part) in out.chunks_mut(per * len).enumerate() {
                scope.spawn(move || {
                    let mut s = Scratch::default();
                    for (k, chunk) in part.chunks_mut(len).enumerate() {
                        self.build_bucket(t * per + k, &mut s, chunk);
                    }
                });
            }
        });
        out
    }

    fn build_bucket(&self, b: usize, s: &mut Scratch, out: &mut [u16]) {
        let len = out.len();
        self.setup(b, s);
        s.best.clear();
        s.best.resize(len, score::EMPTY);
        for (i, local) in s.locals.iter().enumerate() {
            self.propose(b, i, local, &mut s.run, &mut s.best);
        }
        s.open.clear();
        let bound = self.bound;
        s.open
            .extend((0..len as u16).filter(|l| s.best[usize::from(*l)] >> 16 >= bound));
        self.resolve(b, s);
        for (l, c) in s.open.iter().zip(&s.won) {
            s.best[usize::from(*l)] = claim(0, c.index as usize);
        }
        for (o, c) in out.iter_mut().zip(&s.best) {
            *o = index_of(*c) as u16;
        }
    }

    /// Every shard's view of bucket `b`, into `s.locals`.
    fn setup(&self, b: usize, s: &mut Scratch) {
        let layout = &self.scorer.layout;
        s.locals.clear();
        s.locals.extend(
            self.scorer
                .shards
                .iter()
                .map(|shard| shard.local(layout, b)),
        );
    }

    /// Shard `i` offers its ranks below its limit to the arcs of bucket `b`.
    #[inline]
    fn propose(&self, b: usize, i: usize, local: &Local, run: &mut Vec<u16>, best: &mut [u64]) {
        let limit = self.limits[i];
        if local.offset >= limit {
            return;
        }
        let layout = &self.scorer.layout;
        let (shift, offset) = (layout.offset_bits, local.offset);
        // Local ranks m with (m << shift | offset) < limit.
        let count = (((limit - 1 - offset) >> shift) + 1) as usize;
        if run.len() < count {
            run.resize(count, 0);
        }
        let run = &mut run[..count];
        score::unpermute_run(&local.keys, layout.local_bits, run);
        match &self.scorer.keying {
            Keying::Ranks => self.offer(b, i, run, best, |m| u64::from((m << shift) | offset)),
            Keying::Weighted { units } => {
                let w = self.scorer.shards[i].weight;
                self.offer(b, i, run, best, |m| {
                    weighted(units[((m << shift) | offset) as usize], w)
                })
            }
        }
    }

    #[inline(always)]
    fn offer(&self, b: usize, i: usize, arcs: &[u16], best: &mut [u64], key: impl Fn(u32) -> u64) {
        for (m, &l) in arcs.iter().enumerate() {
            let offered = claim(key(m as u32), i);
            let slot = &mut best[usize::from(l)];
            let held = *slot;
            *slot = if (offered ^ held) >> 16 == 0 {
                let arc = self.scorer.layout.arc(b, usize::from(l));
                self.scorer.better(arc, held, offered)
            } else {
                offered.min(held)
            };
        }
    }

    /// The exact winners of the local arcs `s.open` of bucket `b`, into `s.won`: every shard
    /// is scored on them, a weight class at a time.
    fn resolve(&self, b: usize, s: &mut Scratch) {
        let n = s.open.len();
        s.won.clear();
        s.won.resize(n, Claim::NONE);
        if n == 0 {
            return;
        }
        let layout = &self.scorer.layout;
        for v in [&mut s.rank_min, &mut s.who, &mut s.tie, &mut s.recheck] {
            v.clear();
            v.resize(n, 0);
        }
        s.won_key.clear();
        s.won_key.resize(n, u64::MAX);
        s.ranks.resize(n.max(s.ranks.len()), 0);
        for members in &self.classes {
            s.rank_min.fill(u32::MAX);
            s.tie.fill(0);
            for &i in members {
                let local = &s.locals[i];
                let ranks = &mut s.ranks[..n];
                score::permute_all(&local.keys, layout.local_bits, &s.open, ranks);
                let folded = (&mut s.rank_min[..], &mut s.who[..], &mut s.tie[..]);
                fold(ranks, local.offset, layout.offset_bits, i as u32, folded);
            }
            for j in 0..n {
                s.recheck[j] |= s.tie[j];
                let c = Claim {
                    rank: s.rank_min[j],
                    index: s.who[j],
                };
                let key = self.scorer.key(c.rank, c.index as usize);
                let held = s.won[j];
                let wins = key < s.won_key[j]
                    || (key == s.won_key[j]
                        && self.scorer.tiebreak(
                            layout.arc(b, usize::from(s.open[j])),
                            c.index as usize,
                            held.index as usize,
                        ));
                if wins {
                    s.won[j] = c;
                    s.won_key[j] = key;
                }
            }
        }
        for j in 0..n {
            if s.recheck[j] != 0 {
                s.won[j] = self.scorer.exact(b, s.open[j], &s.locals);
            }
        }
    }

    /// The table after a change of shards. `kept(arc)` is the new index of the arc's old owner
    /// when that shard is still there with the same weight; `added` lists the shards that are
    /// new or re-weighted. One thread: cost `arcs × (1 + added)` permutation evaluations plus
    /// the exhaustive scoring of the arcs whose owner left.
    pub(super) fn update(&self, kept: impl Fn(usize) -> Option<u16>, added: &[usize]) -> Vec<u16> {
        let layout = self.scorer.layout;
        let len = layout.bucket_len();
        let shift = layout.offset_bits;
        let mut out = vec![0u16; 1 << layout.bits];
        let mut s = Scratch::default();
        for (b, chunk) in out.chunks_mut(len).enumerate() {
            let first = b * len;
            self.setup(b, &mut s);
            s.open.clear();
            s.open.extend(
                (0..len)
                    .filter(|l| kept(first + l).is_none())
                    .map(|l| l as u16),
            );
            self.resolve(b, &mut s);
            s.held.clear();
            s.held.extend((0..len).map(|l| match kept(first + l) {
                Some(o) if !added.is_empty() => Claim {
                    rank: s.locals[usize::from(o)].rank(&layout, l as u16),
                    index: u32::from(o),
                },
                Some(o) => Claim {
                    rank: 0,
                    index: u32::from(o),
                },
                None => Claim::NONE,
            }));
            for (l, c) in s.open.iter().zip(&s.won) {
                s.held[usize::from(*l)] = *c;
            }
            s.ranks.resize(len.max(s.ranks.len()), 0);
            for &i in added {
                let local = s.locals[i];
                score::permute_run(&local.keys, layout.local_bits, &mut s.ranks[..len]);
                for (l, (m, held)) in s.ranks[..len].iter().zip(&mut s.held).enumerate() {
                    let c = Claim {
                        rank: (u32::from(*m) << shift) | local.offset,
                        index: i as u32,
                    };
                    if self.scorer.beats(layout.arc(b, l), c, *held) {
                        *held = c;
                    }
                }
            }
            for (o, c) in chunk.iter_mut().zip(&s.held) {
                *o = c.index as u16;
            }
        }
        out
    }
}

/// Folds one shard's ranks of the open arcs into its weight class's best: the lowest rank, its
/// shard, and whether another shard had the same rank (a tie, settled exactly later).
#[inline(never)]
fn fold(
    ranks: &[u16],
    offset: u32,
    shift: u32,
    index: u32,
    best: (&mut [u32], &mut [u32], &mut [u32]),
) {
    let (best, who, tie) = best;
    for (((m, b), w), t) in ranks.iter().zip(best).zip(who).zip(tie) {
        let r = (u32::from(*m) << shift) | offset;
        let lower = r < *b;
        *t = if lower { 0 } else { *t | u32::from(r == *b) };
        *w = if lower { index } else { *w };
        *b = if lower { r } else { *b };
    }
}

/// One thread's working state, reused from bucket to bucket.
#[derive(Debug, Default)]
struct Scratch {
    locals: Vec<Local>,
    best: Vec<u64>,
    run: Vec<u16>,
    open: Vec<u16>,
    won: Vec<Claim>,
    won_key: Vec<u64>,
    ranks: Vec<u16>,
    rank_min: Vec<u32>,
    who: Vec<u32>,
    tie: Vec<u32>,
    recheck: Vec<u32>,
    held: Vec<Claim>,
}
