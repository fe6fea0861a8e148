//! Placement lookup (hash included) and table build times.
//!
//! `cargo bench --bench placement`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use shardis::placement::{Placement, PlacementNode, Ring};
use std::hint::black_box;

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("shard-{i}")).collect()
}

fn nodes(names: &[String]) -> Vec<PlacementNode<'_>> {
    names
        .iter()
        .map(|n| PlacementNode { name: n, weight: 1 })
        .collect()
}

/// 16-byte keys, as in the peers' published figures.
fn keys() -> Vec<[u8; 16]> {
    (0..4096u64)
        .map(|i| {
            let mut k = [b'k'; 16];
            k[..8].copy_from_slice(format!("{i:08}").as_bytes());
            k
        })
        .collect()
}

fn lookup(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("lookup");
    for n in [10, 100, 1000] {
        let ns = names(n);
        let ring = Ring::new(&nodes(&ns), 160).expect("ring");
        let mut i = 0;
        group.bench_function(BenchmarkId::new("ring", n), |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(ring.locate(black_box(&keys[i])))
            })
        });
    }
    group.finish();
}

fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    for n in [10, 100] {
        let ns = names(n);
        let nodes = nodes(&ns);
        group.bench_function(BenchmarkId::new("ring", n), |b| {
            b.iter(|| black_box(Ring::new(&nodes, 160).expect("ring")))
        });
    }
    group.finish();
}

criterion_group!(benches, lookup, build);
criterion_main!(benches);
