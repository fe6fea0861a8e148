//! Properties of the default placement, `rendezvous_table`, over random topology changes.

use proptest::prelude::*;
use shardis::placement::{Placement, PlacementNode, RendezvousTable};

const BITS: u32 = 14;

fn nodes(shards: &[(String, u32)]) -> Vec<PlacementNode<'_>> {
    shards
        .iter()
        .map(|(n, w)| PlacementNode {
            name: n,
            weight: *w,
        })
        .collect()
}

fn owners(t: &RendezvousTable, shards: &[(String, u32)]) -> Vec<String> {
    let cells = match t.ownership() {
        Some(shardis::placement::Ownership::Cells(c)) => c,
        other => panic!("{other:?}"),
    };
    cells
        .iter()
        .map(|o| shards[*o as usize].0.clone())
        .collect()
}

#[derive(Debug, Clone)]
enum Step {
    Add(u32),
    Remove(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1u32..4).prop_map(Step::Add),
        (0usize..64).prop_map(Step::Remove)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Along any sequence of additions and removals, an arc only ever moves to an added shard or
    /// away from a removed one, and updating gives the same table as rebuilding.
    #[test]
    fn monotone_along_random_changes(start in 2usize..12, steps in proptest::collection::vec(step(), 1..8)) {
        let mut shards: Vec<(String, u32)> = (0..start).map(|i| (format!("s{i}"), 1)).collect();
        let mut next = start;
        let mut table = RendezvousTable::new(&nodes(&shards), BITS).unwrap();
        for s in steps {
            let before = owners(&table, &shards);
            let (added, removed) = match s {
                Step::Add(w) => {
                    shards.push((format!("s{next}"), w));
                    next += 1;
                    (Some(shards.last().unwrap().0.clone()), None)
                }
                Step::Remove(i) if shards.len() > 1 => {
                    let (name, _) = shards.remove(i % shards.len());
                    (None, Some(name))
                }
                Step::Remove(_) => continue,
            };
            let updated = table.update(&nodes(&shards)).unwrap();
            let rebuilt = RendezvousTable::new(&nodes(&shards), BITS).unwrap();
            let after = owners(&updated, &shards);
            prop_assert_eq!(&after, &owners(&rebuilt, &shards));
            for (b, a) in before.iter().zip(&after) {
                if b != a {
                    prop_assert!(
                        Some(a) == added.as_ref() || Some(b) == removed.as_ref(),
                        "moved {} -> {} (added {:?}, removed {:?})", b, a, added, removed
                    );
                }
            }
            table = updated;
        }
    }

    /// Each shard's share of the hash space is proportional to its weight, within 3%.
    #[test]
    fn shares_follow_weights(weights in proptest::collection::vec(1u32..6, 2..8)) {
        let shards: Vec<(String, u32)> = weights.iter().enumerate().map(|(i, w)| (format!("w{i}"), *w)).collect();
        let table = RendezvousTable::new(&nodes(&shards), 20).unwrap();
        let total: u32 = weights.iter().sum();
        let shares = table.ownership().unwrap().shares(shards.len());
        for (share, w) in shares.iter().zip(&weights) {
            let due = f64::from(*w) / f64::from(total);
            prop_assert!((share / due - 1.0).abs() <= 0.03, "share {} due {}", share, due);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Listing the same shards in another order gives every arc the same owner by name, weights
    /// or not, fleets small (every shard scored per arc) or large (proposals first).
    #[test]
    fn listing_order_does_not_matter(
        weights in proptest::collection::vec(1u32..4, 2..40),
        seed in any::<u64>(),
    ) {
        let shards: Vec<(String, u32)> = weights.iter().enumerate().map(|(i, w)| (format!("o{i}"), *w)).collect();
        let mut shuffled = shards.clone();
        fastrand::Rng::with_seed(seed).shuffle(&mut shuffled);
        let a = owners(&RendezvousTable::new(&nodes(&shards), BITS).unwrap(), &shards);
        let b = owners(&RendezvousTable::new(&nodes(&shuffled), BITS).unwrap(), &shuffled);
        prop_assert_eq!(a, b);
    }
}
