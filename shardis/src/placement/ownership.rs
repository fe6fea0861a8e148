//! The exact division of a hash space among shards, for balance and movement figures.

/// The exact division of a hash space among shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Contiguous segments of a space of `2^bits` hashes: `(first hash, shard index)`, sorted,
    /// the first starting at 0; each runs to the next start (the last to the end of the space).
    Segments {
        /// The size of the hash space, as a power of two.
        bits: u32,
        /// The segments.
        segments: Vec<(u64, u32)>,
    },
    /// Equal cells, in hash order: cell `i` is owned by shard `cells[i]`.
    Cells(Vec<u32>),
}

impl Ownership {
    /// Each shard's exact share of the hash space, for `shards` shards.
    pub fn shares(&self, shards: usize) -> Vec<f64> {
        let mut out = vec![0.0; shards];
        match self {
            Ownership::Segments { bits, segments } => {
                let space = 1u128 << bits;
                for (i, (start, owner)) in segments.iter().enumerate() {
                    let end = segments.get(i + 1).map_or(space, |s| u128::from(s.0));
                    out[*owner as usize] += (end - u128::from(*start)) as f64 / space as f64;
                }
            }
            Ownership::Cells(cells) => {
                let each = 1.0 / cells.len() as f64;
                for c in cells {
                    out[*c as usize] += each;
                }
            }
        }
        out
    }

    /// The exact fraction of the hash space whose owner differs between `self` (shards named
    /// `names`) and `after` (shards named `after_names`), and the part of it that moved between
    /// two shards present in both. `None` when the two divide different spaces.
    pub fn moved(
        &self,
        names: &[&str],
        after: &Ownership,
        after_names: &[&str],
    ) -> Option<(f64, f64)> {
        let survives = |name: &str| names.contains(&name) && after_names.contains(&name);
        let mut moved = 0.0;
        let mut between = 0.0;
        let mut count = |before: &str, now: &str, share: f64| {
            if before != now {
                moved += share;
                if survives(before) && survives(now) {
                    between += share;
                }
            }
        };
        match (self, after) {
            (Ownership::Cells(a), Ownership::Cells(b)) if a.len() == b.len() => {
                let each = 1.0 / a.len() as f64;
                for (x, y) in a.iter().zip(b) {
                    count(names[*x as usize], after_names[*y as usize], each);
                }
            }
            (
                Ownership::Segments { bits, segments: a },
                Ownership::Segments {
                    bits: bits_b,
                    segments: b,
                },
            ) if bits == bits_b => {
                let space = 1u128 << bits;
                // Sweep the union of both boundary sets.
                let (mut i, mut j, mut pos) = (0usize, 0usize, 0u128);
                while pos < space {
                    let end_a = a.get(i + 1).map_or(space, |s| u128::from(s.0));
                    let end_b = b.get(j + 1).map_or(space, |s| u128::from(s.0));
                    let end = end_a.min(end_b);
                    count(
                        names[a[i].1 as usize],
                        after_names[b[j].1 as usize],
                        (end - pos) as f64 / space as f64,
                    );
                    pos = end;
                    if end == end_a {
                        i += 1;
                    }
                    if end == end_b {
                        j += 1;
                    }
                }
            }
            _ => return None,
        }
        Some((moved, between))
    }
}
