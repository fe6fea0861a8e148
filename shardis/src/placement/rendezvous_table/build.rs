//! Filling the arc table, one bucket at a time (see `score` for what decides an arc's owner).
//!
//! In each bucket, every shard *proposes* the arcs it ranks best, found by inverting its local
//! permutation, and only the arcs that no proposal settles are scored over every shard:
//!
//! - with equal weights, in rounds: round `m` lists the arc each shard ranks `m`, shards in
//!   order of rank (rank offset, then seed), and the first shard to reach an arc owns it — no
//!   later proposal can rank lower. Rounds stop when the arcs left are few enough that scoring
//!   them is cheaper than another round;
//! - with weights, each shard proposes its ranks below a limit proportional to its weight and each
//!   arc keeps its best proposal; one whose key is below every shard's first unlisted key cannot
//!   be beaten, so it is final.
//!
//! About `c` proposals per arc leave a fraction `e^-c` of the arcs to score over all `N` shards,
//! so the work per arc is about `ln N` permutation evaluations instead of `N`: the build costs
//! `arcs × O(log N)`. Buckets are independent, so a build splits them over threads, each with
//! one bucket's (L2-sized) working state. [`Plan::update`] derives a table from an old one:
//! arcs whose owner stays keep it unless a new shard beats it there, and arcs whose owner left
//! are scored over every shard.

use std::collections::BTreeMap;

use super::score::{
    self, claim, index_of, weighted, Claim, Keying, Layout, Local, Scored, Scorer, EMPTY, ROUNDS,
};

/// What a build or an update needs about the shards.
#[derive(Debug)]
pub(super) struct Plan {
    /// The shards in seed order.
    scorer: Scorer,
    /// The member (listed) index of each shard of the scorer.
    members: Vec<u16>,
    /// Scorer indices grouped by weight, each group in index order.
    classes: Vec<Vec<usize>>,
    /// Whether shards propose arcs before the exhaustive scoring (a build of enough shards).
    propose: bool,
    /// Weighted proposals: shard `i` proposes its ranks below `limits[i]`.
    limits: Vec<u32>,
    /// Weighted proposals: a proposal whose key is below this is final.
    bound: u64,
}

/// Proposals per arc, in all, that balance the proposal work against the exhaustive scoring of
/// the arcs left without a final proposal (`ln N` less a constant).
fn coverage(shards: usize) -> f64 {
    let log2 = f64::from(usize::BITS - 1 - shards.leading_zeros());
    0.69 * log2 - 0.9
}

/// An arc without an owner yet (no shard has index `u16::MAX`).
const FREE: u16 = u16::MAX;

/// Below this many shards, scoring every shard on every arc is cheaper than proposing.
const MIN_PROPOSING: usize = 20;

impl Plan {
    /// The plan for `shards` (in member order) in `layout`; `propose` enables the proposals.
    pub(super) fn new(layout: Layout, shards: Vec<Scored>, propose: bool) -> Plan {
        let mut order: Vec<usize> = (0..shards.len()).collect();
        order.sort_by_key(|i| (shards[*i].seed, *i));
        let members = order.iter().map(|i| *i as u16).collect();
        let shards: Vec<Scored> = order.iter().map(|i| shards[*i].clone()).collect();
        let propose = propose && shards.len() >= MIN_PROPOSING;
        let arcs = 1u64 << layout.bits;
        let total: f64 = shards.iter().map(|s| f64::from(s.weight)).sum();
        let c = if propose { coverage(shards.len()) } else { 0.0 };
        // Only the speed depends on the limits, never the result.
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
            members,
            classes: by_weight.into_values().collect(),
            propose,
            limits,
            bound,
        }
    }

    /// Every arc's owner (a member index), the buckets split over `threads` threads.
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
        s.owner.clear();
        s.owner.resize(len, 0);
        s.open.clear();
        match &self.scorer.keying {
            _ if !self.propose => s.open.extend(0..len as u16),
            Keying::Ranks => self.rounds(s),
            Keying::Weighted { units } => self.offers(units, s),
        }
        self.resolve(s);
        for (l, c) in s.open.iter().zip(&s.won) {
            s.owner[usize::from(*l)] = c.index as u16;
        }
        for (o, i) in out.iter_mut().zip(&s.owner) {
            *o = self.members[usize::from(*i)];
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

    /// Equal weights: rounds of first claims (see the module doc), into `s.owner`; the arcs
    /// left go to `s.open`.
    fn rounds(&self, s: &mut Scratch) {
        let (n, len) = (s.locals.len(), s.owner.len());
        let layout = &self.scorer.layout;
        // Shards by rank offset, then index: their order of rank within a round.
        s.order.clear();
        s.order.extend(0..n as u16);
        s.order.sort_by_key(|i| s.locals[usize::from(*i)].offset);
        for (j, column) in s.keys.iter_mut().enumerate() {
            column.clear();
            column.extend(s.order.iter().map(|i| s.locals[usize::from(*i)].keys[j]));
        }
        s.taken.clear();
        s.taken.resize(len, false);
        s.run.resize(n, 0);
        s.firsts.resize(n, 0);
        // Another round settles about `open × n / len` arcs for `n` evaluations; scoring an arc
        // over every shard costs about `n / 1.5` of them.
        let stop = len * 3 / (2 * n);
        let (keys, order, owner) = (&s.keys, &s.order[..n], &mut s.owner[..]);
        let (taken, run, firsts) = (&mut s.taken[..], &mut s.run[..n], &mut s.firsts[..n]);
        let mut open = len;
        let mut m = 0;
        while open > stop {
            score::unpermute_each(keys, layout.local_bits, m, run);
            // The shards that reach a free arc first, without a branch per shard.
            let mut claims = 0;
            for (p, &l) in run.iter().enumerate() {
                let was = std::mem::replace(&mut taken[usize::from(l)], true);
                firsts[claims] = p as u16;
                claims += usize::from(!was);
            }
            for &p in &firsts[..claims] {
                owner[usize::from(run[usize::from(p)])] = order[usize::from(p)];
            }
            open -= claims;
            m += 1;
        }
        let taken = &s.taken;
        s.open
            .extend((0..len as u16).filter(|l| !taken[usize::from(*l)]));
    }

    /// Weights: every shard offers its ranks below its limit; the final offers go to
    /// `s.owner`, the arcs left to `s.open`.
    fn offers(&self, units: &[f64], s: &mut Scratch) {
        let len = s.owner.len();
        let layout = &self.scorer.layout;
        s.best.clear();
        s.best.resize(len, EMPTY);
        for (i, local) in s.locals.iter().enumerate() {
            let limit = self.limits[i];
            if local.offset >= limit {
                continue;
            }
            let (shift, offset) = (layout.offset_bits, local.offset);
            // Local ranks m with (m << shift | offset) < limit.
            let count = (((limit - 1 - offset) >> shift) + 1) as usize;
            if s.run.len() < count {
                s.run.resize(count, 0);
            }
            let run = &mut s.run[..count];
            score::unpermute_run(&local.keys, layout.local_bits, run);
            let w = self.scorer.shards[i].weight;
            for (m, &l) in (0u32..).zip(run.iter()) {
                let offered = claim(weighted(units[((m << shift) | offset) as usize], w), i);
                let held = &mut s.best[usize::from(l)];
                *held = offered.min(*held);
            }
        }
        for (l, (c, o)) in s.best.iter().zip(&mut s.owner).enumerate() {
            if c >> 16 < self.bound {
                *o = index_of(*c) as u16;
            } else {
                s.open.push(l as u16);
            }
        }
    }

    /// The exact winners of the local arcs `s.open`, into `s.won`: every shard is scored on
    /// them, a weight class at a time.
    fn resolve(&self, s: &mut Scratch) {
        let n = s.open.len();
        s.won.clear();
        s.won.resize(n, Claim::NONE);
        if n == 0 {
            return;
        }
        let layout = &self.scorer.layout;
        s.rank_min.resize(n, 0);
        s.who.resize(n, 0);
        s.won_key.clear();
        s.won_key.resize(n, u64::MAX);
        s.run.resize(n.max(s.run.len()), 0);
        for members in &self.classes {
            s.rank_min.fill(u32::MAX);
            for &i in members {
                let local = &s.locals[i];
                let ranks = &mut s.run[..n];
                score::permute_all(&local.keys, layout.local_bits, &s.open, ranks);
                let best = (&mut s.rank_min[..n], &mut s.who[..n]);
                fold(ranks, local.offset, layout.offset_bits, i as u32, best);
            }
            for j in 0..n {
                let (rank, index) = (s.rank_min[j], s.who[j]);
                let key = (self.scorer.key(rank, index as usize), index);
                if key < (s.won_key[j], s.won[j].index) {
                    s.won[j] = Claim { rank, index };
                    s.won_key[j] = key.0;
                }
            }
        }
    }

    /// The table after a change of shards. `old(arc)` is the arc's owner in the old table, and
    /// `kept[o]` the member index now of old member `o` if it is still there with the same
    /// weight; `added` lists the member indices of the shards that are new or re-weighted. One
    /// thread: the arcs whose owner stays are scored only against the added shards, those whose
    /// owner left against every shard; about `arcs × (1 + added)` permutation evaluations.
    pub(super) fn update(
        &self,
        old: impl Fn(usize) -> usize,
        kept: &[Option<u16>],
        added: &[usize],
    ) -> Vec<u16> {
        let len = self.scorer.layout.bucket_len();
        let mut index = vec![0u16; self.members.len()];
        for (i, m) in self.members.iter().enumerate() {
            index[usize::from(*m)] = i as u16;
        }
        let kept: Vec<u16> = (kept.iter())
            .map(|k| k.map_or(FREE, |m| index[usize::from(m)]))
            .collect();
        let added: Vec<usize> = added.iter().map(|m| usize::from(index[*m])).collect();
        let mut out = vec![0u16; 1 << self.scorer.layout.bits];
        let mut s = Scratch::default();
        for (b, chunk) in out.chunks_mut(len).enumerate() {
            let first = b * len;
            s.owner.clear();
            s.owner.extend((first..first + len).map(|a| kept[old(a)]));
            let owner = &s.owner;
            s.open.clear();
            s.open
                .extend((0..len as u16).filter(|l| owner[usize::from(*l)] == FREE));
            if !s.open.is_empty() || !added.is_empty() {
                self.setup(b, &mut s);
            }
            self.resolve(&mut s);
            if added.is_empty() {
                for (l, c) in s.open.iter().zip(&s.won) {
                    s.owner[usize::from(*l)] = c.index as u16;
                }
            } else {
                self.challenge(&added, &mut s);
            }
            for (o, i) in chunk.iter_mut().zip(&s.owner) {
                *o = self.members[usize::from(*i)];
            }
        }
        out
    }

    /// The owners of a bucket after the shards `added` challenge the kept owners (`s.owner`)
    /// and the winners of the open arcs (`s.won`), into `s.owner`.
    fn challenge(&self, added: &[usize], s: &mut Scratch) {
        let layout = &self.scorer.layout;
        let len = s.owner.len();
        self.held_ranks(s);
        for (l, c) in s.open.iter().zip(&s.won) {
            s.owner[usize::from(*l)] = c.index as u16;
            s.ranks[usize::from(*l)] = c.rank;
        }
        s.run.resize(len.max(s.run.len()), 0);
        let shift = layout.offset_bits;
        match &self.scorer.keying {
            Keying::Ranks => {
                s.best.clear();
                let held = s.ranks.iter().zip(&s.owner);
                s.best
                    .extend(held.map(|(r, i)| claim(u64::from(*r), usize::from(*i))));
                for &i in added {
                    let local = &s.locals[i];
                    score::permute_run(&local.keys, layout.local_bits, &mut s.run[..len]);
                    let offered =
                        |m: &u16| claim(u64::from((u32::from(*m) << shift) | local.offset), i);
                    for (m, best) in s.run[..len].iter().zip(&mut s.best) {
                        *best = offered(m).min(*best);
                    }
                }
                for (o, c) in s.owner.iter_mut().zip(&s.best) {
                    *o = index_of(*c) as u16;
                }
            }
            Keying::Weighted { .. } => {
                for &i in added {
                    let local = &s.locals[i];
                    score::permute_run(&local.keys, layout.local_bits, &mut s.run[..len]);
                    let held = s.ranks.iter_mut().zip(&mut s.owner);
                    for (m, (rank, owner)) in s.run[..len].iter().zip(held) {
                        let c = Claim {
                            rank: (u32::from(*m) << shift) | local.offset,
                            index: i as u32,
                        };
                        let h = Claim {
                            rank: *rank,
                            index: u32::from(*owner),
                        };
                        if self.scorer.beats(c, h) {
                            (*rank, *owner) = (c.rank, i as u16);
                        }
                    }
                }
            }
        }
    }

    /// The ranks of the kept owners of a bucket's arcs (`s.owner`), into `s.ranks`, scored
    /// owner by owner so that each shard's arcs are permuted together.
    fn held_ranks(&self, s: &mut Scratch) {
        let layout = &self.scorer.layout;
        let (n, len) = (s.locals.len(), s.owner.len());
        // Arcs by owner (the open ones, owned by none, last).
        s.start.clear();
        s.start.resize(n + 2, 0);
        let key = |o: u16| usize::from(o).min(n);
        for o in &s.owner {
            s.start[key(*o) + 1] += 1;
        }
        for i in 1..s.start.len() {
            s.start[i] += s.start[i - 1];
        }
        s.by_owner.resize(len, 0);
        for (l, o) in s.owner.iter().enumerate() {
            let slot = &mut s.start[key(*o)];
            s.by_owner[*slot as usize] = l as u16;
            *slot += 1;
        }
        s.ranks.clear();
        s.ranks.resize(len, 0);
        s.run.resize(len.max(s.run.len()), 0);
        let mut from = 0;
        for (i, local) in s.locals.iter().enumerate() {
            let to = s.start[i] as usize;
            let arcs = &s.by_owner[from..to];
            let ranks = &mut s.run[..arcs.len()];
            score::permute_all(&local.keys, layout.local_bits, arcs, ranks);
            for (l, m) in arcs.iter().zip(ranks.iter()) {
                s.ranks[usize::from(*l)] = (u32::from(*m) << layout.offset_bits) | local.offset;
            }
            from = to;
        }
    }
}

vectorised! {
    /// Folds one shard's ranks of the open arcs into its weight class's best: the lowest rank
    /// and its shard (shards come in index order, so an equal rank keeps the lower index).
    fn fold(ranks: &[u16], offset: u32, shift: u32, index: u32, best: (&mut [u32], &mut [u32])) {
        let (best, who) = best;
        for ((m, b), w) in ranks.iter().zip(best).zip(who) {
            let r = (u32::from(*m) << shift) | offset;
            let lower = r < *b;
            *w = if lower { index } else { *w };
            *b = if lower { r } else { *b };
        }
    }
}

/// One thread's working state, reused from bucket to bucket.
#[derive(Debug, Default)]
struct Scratch {
    locals: Vec<Local>,
    owner: Vec<u16>,
    open: Vec<u16>,
    won: Vec<Claim>,
    won_key: Vec<u64>,
    run: Vec<u16>,
    rank_min: Vec<u32>,
    who: Vec<u32>,
    /// Weighted offers: each arc's best claim.
    best: Vec<u64>,
    /// Rounds: shards in round order, their keys by column, arcs taken, first claims.
    order: Vec<u16>,
    keys: [Vec<u16>; 2 * ROUNDS],
    taken: Vec<bool>,
    firsts: Vec<u16>,
    /// Update: the ranks of the arcs' owners, and the arcs by owner (`start[i]` is where shard
    /// `i`'s arcs end in `by_owner` once filled).
    ranks: Vec<u32>,
    start: Vec<u32>,
    by_owner: Vec<u16>,
}
