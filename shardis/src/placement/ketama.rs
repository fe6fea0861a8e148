//! twemproxy's ketama (`algorithm = "ketama"`), point for point.
//!
//! A shard's identity is its name (the twemproxy import names a server `host:port`, or `host`
//! on port 11211, unless its config line names it). Servers are ordered by identity, shorter
//! first then bytewise. Each gets `floor(w/W × 40 × n) × 4` points — computed in `f32`, as
//! twemproxy does, so 160 with equal weights — taken four at a time from the MD5 of
//! `"<identity>-<k>"`. A key (after the hash tag) is hashed with the configured twemproxy
//! [`KeyHash`] and belongs to the first point at or after its hash, wrapping around; an empty
//! key hashes to 0 and a one-shard topology answers that shard.
//!
//! This reproduces twemproxy's placement so that a migration keeps every key where it was; it is
//! not the best placement (160 points per server balance to about ±10%).

use md5::{Digest, Md5};

use super::keyhash::KeyHash;
use super::{check_nodes, Ownership, Placement, PlacementNode};
use crate::error::ConfigError;

/// twemproxy's buffer for `"<identity>-<k>"` is 86 bytes; longer identities are undefined there.
pub const MAX_IDENTITY_BYTES: usize = 80;

/// A ketama continuum.
#[derive(Debug, Clone)]
pub struct Ketama {
    points: Vec<u32>,
    owners: Vec<u32>,
    hash: KeyHash,
    shards: usize,
}

impl Ketama {
    /// Builds the continuum of `nodes` with key hash `hash`.
    pub fn new(nodes: &[PlacementNode<'_>], hash: KeyHash) -> Result<Ketama, ConfigError> {
        check_nodes(nodes)?;
        if let Some(n) = nodes.iter().find(|n| n.name.len() > MAX_IDENTITY_BYTES) {
            return Err(ConfigError::InvalidValue {
                field: format!("shards.{}.name", n.name),
                reason: format!(
                    "ketama identities are limited to {MAX_IDENTITY_BYTES} bytes, as in twemproxy"
                ),
            });
        }
        let mut order: Vec<usize> = (0..nodes.len()).collect();
        order.sort_by(|a, b| {
            let (x, y) = (nodes[*a].name.as_bytes(), nodes[*b].name.as_bytes());
            x.len().cmp(&y.len()).then_with(|| x.cmp(y))
        });
        let live = nodes.len() as f32;
        let total: u32 = nodes.iter().map(|n| n.weight).sum();
        let mut entries: Vec<(u32, u32)> = Vec::new();
        for &i in &order {
            let pct = nodes[i].weight as f32 / total as f32;
            // twemproxy: floorf((float)(pct * 160 / 4 * (float)n + 0.0000000001)) * 4, where the
            // product is float and the addition double.
            let quarter = ((pct * 160.0f32) / 4.0f32) * live;
            let groups = ((f64::from(quarter) + 0.000_000_000_1) as f32).floor() as u32;
            for k in 0..groups {
                let digest = Md5::digest(format!("{}-{k}", nodes[i].name).as_bytes());
                for x in 0..4 {
                    let b = &digest[x * 4..x * 4 + 4];
                    entries.push((u32::from_le_bytes([b[0], b[1], b[2], b[3]]), i as u32));
                }
            }
        }
        // A stable sort by value: equal values keep server order, as glibc's qsort (a merge
        // sort) leaves them.
        entries.sort_by_key(|e| e.0);
        Ok(Ketama {
            points: entries.iter().map(|e| e.0).collect(),
            owners: entries.iter().map(|e| e.1).collect(),
            hash,
            shards: nodes.len(),
        })
    }

    /// The shard owning the 32-bit key hash `hash`.
    #[inline]
    pub fn locate_hash(&self, hash: u32) -> usize {
        let i = self.points.partition_point(|p| *p < hash);
        self.owners[if i == self.points.len() { 0 } else { i }] as usize
    }

    /// The key hash in use.
    pub fn key_hash(&self) -> KeyHash {
        self.hash
    }
}

impl Placement for Ketama {
    fn algorithm(&self) -> &'static str {
        "ketama"
    }

    #[inline]
    fn locate(&self, key: &[u8]) -> usize {
        if self.shards == 1 {
            return 0;
        }
        let h = if key.is_empty() {
            0
        } else {
            self.hash.hash(key)
        };
        self.locate_hash(h)
    }

    fn shard_count(&self) -> usize {
        self.shards
    }

    fn memory_bytes(&self) -> usize {
        self.points.capacity() * 4 + self.owners.capacity() * 4
    }

    fn ownership(&self) -> Option<Ownership> {
        // Point i owns (point[i-1], point[i]]; the first point also owns the wrap-around.
        let first = *self.owners.first()?;
        let mut segments = vec![(0u64, first)];
        for w in 1..self.points.len() {
            segments.push((u64::from(self.points[w - 1]) + 1, self.owners[w]));
        }
        if let Some(last) = self.points.last() {
            if u64::from(*last) < u64::from(u32::MAX) {
                segments.push((u64::from(*last) + 1, first));
            }
        }
        Some(Ownership::Segments { bits: 32, segments })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_weights_give_160_points_each() {
        let names = ["10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"];
        let nodes: Vec<_> = names
            .iter()
            .map(|n| PlacementNode { name: n, weight: 1 })
            .collect();
        let k = Ketama::new(&nodes, KeyHash::Fnv1a64).unwrap();
        assert_eq!(k.points.len(), 480);
        for i in 0..3 {
            assert_eq!(k.owners.iter().filter(|o| **o == i).count(), 160);
        }
    }

    #[test]
    fn unequal_weights_use_f32_point_counts() {
        let nodes = [
            PlacementNode {
                name: "a",
                weight: 1,
            },
            PlacementNode {
                name: "b",
                weight: 2,
            },
            PlacementNode {
                name: "c",
                weight: 4,
            },
        ];
        let k = Ketama::new(&nodes, KeyHash::Md5).unwrap();
        // 1/7*120 = 17.14 -> 17 groups; 2/7*120 = 34.28 -> 34; 4/7*120 = 68.57 -> 68.
        let count = |i| k.owners.iter().filter(|o| **o == i).count();
        assert_eq!((count(0), count(1), count(2)), (68, 136, 272));
    }

    #[test]
    fn one_shard_and_empty_keys() {
        let one = Ketama::new(
            &[PlacementNode {
                name: "a",
                weight: 1,
            }],
            KeyHash::Md5,
        )
        .unwrap();
        assert_eq!(one.locate(b"anything"), 0);
        let two = Ketama::new(
            &[
                PlacementNode {
                    name: "a",
                    weight: 1,
                },
                PlacementNode {
                    name: "b",
                    weight: 1,
                },
            ],
            KeyHash::Md5,
        )
        .unwrap();
        assert_eq!(two.locate(b""), two.locate_hash(0));
    }

    #[test]
    fn ownership_covers_the_space() {
        let nodes = [
            PlacementNode {
                name: "a",
                weight: 1,
            },
            PlacementNode {
                name: "b",
                weight: 3,
            },
        ];
        let k = Ketama::new(&nodes, KeyHash::Md5).unwrap();
        let shares = k.ownership().unwrap().shares(2);
        assert!((shares[0] + shares[1] - 1.0).abs() < 1e-12);
        assert!((shares[1] - 0.75).abs() < 0.1, "{shares:?}");
    }
}
