//! Tests of the rendezvous table: its properties, and the fast build against the definition.

use super::*;

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("shard-{i}")).collect()
}

fn nodes<'a>(names: &'a [String], weights: &[u32]) -> Vec<PlacementNode<'a>> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| PlacementNode {
            name: n,
            weight: weights.get(i).copied().unwrap_or(1),
        })
        .collect()
}

fn shares(t: &RendezvousTable) -> Vec<f64> {
    t.ownership().unwrap().shares(t.shard_count())
}

#[test]
fn balanced_at_10_and_100_shards() {
    for n in [10, 100] {
        let ns = names(n);
        let t = RendezvousTable::new(&nodes(&ns, &[]), DEFAULT_ARC_BITS).unwrap();
        let peak = shares(&t).iter().cloned().fold(0.0, f64::max) * n as f64;
        assert!(peak <= 1.03, "{n} shards: peak/mean {peak}");
    }
}

#[test]
fn update_equals_rebuild_and_is_monotone() {
    let ns = names(12);
    let before = RendezvousTable::new(&nodes(&ns[..10], &[]), 16).unwrap();
    // Add two, remove one in the middle, re-weight one.
    let mut after_names: Vec<String> = ns.clone();
    after_names.remove(3);
    let after_nodes = nodes(&after_names, &[1, 1, 1, 2]);
    let rebuilt = RendezvousTable::new(&after_nodes, 16).unwrap();
    let updated = before.update(&after_nodes).unwrap();
    for a in 0..rebuilt.arcs() {
        assert_eq!(rebuilt.owners.get(a), updated.owners.get(a), "arc {a}");
    }
}

#[test]
fn the_trait_update_path_is_the_incremental_one() {
    let ns = names(11);
    let t = RendezvousTable::new(&nodes(&ns[..10], &[]), 14).unwrap();
    let via_trait = Placement::update(&t, &nodes(&ns, &[]))
        .expect("rendezvous_table has an update path")
        .unwrap();
    let rebuilt = RendezvousTable::new(&nodes(&ns, &[]), 14).unwrap();
    assert_eq!(via_trait.ownership(), rebuilt.ownership());
}

#[test]
fn nothing_moves_between_survivors() {
    let ns = names(11);
    let t10 = RendezvousTable::new(&nodes(&ns[..10], &[]), 16).unwrap();
    let t11 = t10.update(&nodes(&ns, &[])).unwrap();
    for a in 0..t10.arcs() {
        let (x, y) = (t10.owners.get(a), t11.owners.get(a));
        assert!(x == y || y == 10, "arc {a} moved {x} -> {y}");
    }
    let mut rest = ns[..10].to_vec();
    rest.remove(4);
    let t9 = t10.update(&nodes(&rest, &[])).unwrap();
    for a in 0..t10.arcs() {
        let before = &ns[t10.owners.get(a)];
        let after = &rest[t9.owners.get(a)];
        assert!(
            before == after || before == "shard-4",
            "arc {a} moved {before} -> {after}"
        );
    }
}

#[test]
fn weights_are_proportional() {
    let ns = names(4);
    let t = RendezvousTable::new(&nodes(&ns, &[1, 2, 3, 4]), 20).unwrap();
    for (i, s) in shares(&t).iter().enumerate() {
        let due = (i + 1) as f64 / 10.0;
        assert!((s / due - 1.0).abs() < 0.03, "shard {i}: {s} vs {due}");
    }
}

#[test]
fn placement_is_pinned() {
    // If these change, every deployed cache would go cold on upgrade.
    let ns = names(3);
    let t = RendezvousTable::new(&nodes(&ns, &[]), DEFAULT_ARC_BITS).unwrap();
    let got: Vec<usize> = (0..8)
        .map(|i| t.locate(format!("user:{i}").as_bytes()))
        .collect();
    assert_eq!(got, PINNED);
}
const PINNED: [usize; 8] = [1, 0, 0, 2, 1, 2, 0, 1];

#[test]
fn rejects_bad_parameters() {
    let ns = names(2);
    assert!(RendezvousTable::new(&nodes(&ns, &[]), MIN_ARC_BITS - 1).is_err());
    assert!(RendezvousTable::new(&nodes(&ns, &[]), MAX_ARC_BITS + 1).is_err());
    assert!(RendezvousTable::new(&nodes(&ns, &[0]), 10).is_err());
}

/// The owner of every arc straight from the definition in `score`: every shard scored on every
/// arc, the lowest key winning, equal keys going to the lower seed.
fn by_definition(nodes: &[PlacementNode<'_>], bits: u32) -> Vec<usize> {
    let layout = Layout::new(bits);
    let shards: Vec<Scored> = nodes
        .iter()
        .map(|n| Scored::new(hrw::seed(n.name), n.weight))
        .collect();
    let equal = nodes.iter().all(|n| n.weight == nodes[0].weight);
    let mut owners = Vec::with_capacity(1 << bits);
    for b in 0..layout.buckets() {
        let locals: Vec<score::Local> = shards.iter().map(|s| s.local(&layout, b)).collect();
        for l in 0..layout.bucket_len() {
            let contest = |i: usize| {
                let rank = locals[i].rank(&layout, l as u16);
                let key = if equal {
                    u64::from(rank)
                } else {
                    score::weighted(layout.unit(rank), shards[i].weight)
                };
                (key, shards[i].seed)
            };
            owners.push((0..shards.len()).min_by_key(|i| contest(*i)).unwrap());
        }
    }
    owners
}

fn owners(t: &RendezvousTable) -> Vec<usize> {
    (0..t.arcs()).map(|a| t.owners.get(a)).collect()
}

#[test]
fn builds_exactly_the_definition() {
    // Few shards (everything scored), many (proposals first), one bucket or several, weighted.
    let cases: [(usize, u32, &[u32]); 6] = [
        (1, 8, &[]),
        (3, 17, &[]),
        (13, 16, &[]),
        (40, 16, &[]),
        (300, 12, &[]),
        (
            24,
            16,
            &[1, 3, 2, 1, 5, 1, 1, 2, 8, 1, 1, 4, 1, 1, 2, 1, 7, 1, 1, 3],
        ),
    ];
    for (n, bits, weights) in cases {
        let ns = names(n);
        let ns = nodes(&ns, weights);
        let t = RendezvousTable::new(&ns, bits).unwrap();
        let want = by_definition(&ns, bits);
        let got = owners(&t);
        let diff = (0..want.len()).find(|a| want[*a] != got[*a]);
        assert_eq!(diff, None, "{n} shards, {bits} bits");
        for i in 0..n {
            assert!(
                got.contains(&i),
                "{n} shards, {bits} bits: shard {i} owns nothing"
            );
        }
    }
}

#[test]
fn update_equals_new_along_random_changes() {
    let mut rng = fastrand::Rng::with_seed(7);
    for bits in [14, 16] {
        let mut next = 0;
        let mut fleet: Vec<(String, u32)> = Vec::new();
        for _ in 0..20 {
            fleet.push((format!("n{next}"), 1));
            next += 1;
        }
        let mut table = RendezvousTable::new(&fleet_nodes(&fleet), bits).unwrap();
        for step in 0..12 {
            let before: Vec<(String, u32)> = fleet.clone();
            // Add one or more, remove one or more, re-weight one, or all at once.
            let kind = rng.usize(0..4);
            if kind == 0 || kind == 3 {
                for _ in 0..rng.usize(1..4) {
                    fleet.insert(
                        rng.usize(0..=fleet.len()),
                        (format!("n{next}"), rng.u32(1..4)),
                    );
                    next += 1;
                }
            }
            if kind == 1 || kind == 3 {
                for _ in 0..rng.usize(1..3) {
                    fleet.remove(rng.usize(0..fleet.len()));
                }
            }
            if kind == 2 || kind == 3 {
                let i = rng.usize(0..fleet.len());
                fleet[i].1 = fleet[i].1 % 3 + 1;
            }
            let updated = table.update(&fleet_nodes(&fleet)).unwrap();
            let fresh = RendezvousTable::new(&fleet_nodes(&fleet), bits).unwrap();
            assert_eq!(owners(&updated), owners(&fresh), "bits {bits}, step {step}");
            // Only arcs of changed shards move, and only to changed shards.
            let changed = |s: &(String, u32), other: &[(String, u32)]| !other.contains(s);
            for a in 0..table.arcs() {
                let (x, y) = (&before[table.owners.get(a)], &fleet[updated.owners.get(a)]);
                assert!(
                    x.0 == y.0 || changed(x, &fleet) || changed(y, &before),
                    "bits {bits}, step {step}: arc {a} moved {x:?} -> {y:?}"
                );
            }
            table = updated;
        }
    }
}

fn fleet_nodes(fleet: &[(String, u32)]) -> Vec<PlacementNode<'_>> {
    fleet
        .iter()
        .map(|(name, weight)| PlacementNode {
            name,
            weight: *weight,
        })
        .collect()
}

#[test]
fn the_order_shards_are_listed_does_not_matter() {
    let ns = names(30);
    let weights: Vec<u32> = (0..30).map(|i| 1 + i % 3).collect();
    let listed = nodes(&ns, &weights);
    let mut shuffled = listed.clone();
    fastrand::Rng::with_seed(3).shuffle(&mut shuffled);
    let (a, b) = (
        RendezvousTable::new(&listed, 16).unwrap(),
        RendezvousTable::new(&shuffled, 16).unwrap(),
    );
    for arc in 0..a.arcs() {
        assert_eq!(
            listed[a.owners.get(arc)].name,
            shuffled[b.owners.get(arc)].name,
            "arc {arc}"
        );
    }
}

#[test]
fn weight_classes_get_their_due() {
    // 60 shards of weights 1 to 4: enough for the proposal pass, which weights must not bias.
    let ns = names(60);
    let weights: Vec<u32> = (0..60).map(|i| 1 + i % 4).collect();
    let t = RendezvousTable::new(&nodes(&ns, &weights), 20).unwrap();
    let total: u32 = weights.iter().sum();
    let s = shares(&t);
    for w in 1..=4 {
        let share: f64 = (0..60).filter(|i| weights[*i] == w).map(|i| s[i]).sum();
        let due = f64::from(w * 15) / f64::from(total);
        assert!(
            (share / due - 1.0).abs() < 0.01,
            "weight {w}: {share} vs {due}"
        );
    }
}
