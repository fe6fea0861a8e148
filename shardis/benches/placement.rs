//! Placement lookup (hash of a 16-byte key included) for every algorithm at 10, 100 and 1000
//! shards, against the `hashring` crate as an outside baseline; and table build and update times.
//!
//! `cargo bench --bench placement`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use shardis::placement::{Algorithm, PlacementNode, RendezvousTable};

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
    for n in [10usize, 100, 1000] {
        let ns = names(n);
        for algorithm in Algorithm::ALL {
            if algorithm == Algorithm::Rendezvous && n == 1000 {
                continue; // O(N): microseconds, off the scale of the others
            }
            let table = algorithm.default_spec().build(&nodes(&ns)).expect("table");
            let mut i = 0;
            group.bench_function(BenchmarkId::new(algorithm.as_str(), n), |b| {
                b.iter(|| {
                    i = (i + 1) & 4095;
                    black_box(table.locate(black_box(&keys[i])))
                })
            });
        }
        let mut ring = hashring::HashRing::new();
        for name in &ns {
            ring.add(name.clone());
        }
        let mut i = 0;
        group.bench_function(BenchmarkId::new("hashring_crate", n), |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(ring.get(black_box(&keys[i])))
            })
        });
    }
    group.finish();
}

fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    for n in [10usize, 100] {
        let ns = names(n);
        let nodes = nodes(&ns);
        for algorithm in Algorithm::ALL {
            let spec = algorithm.default_spec();
            group.bench_function(BenchmarkId::new(algorithm.as_str(), n), |b| {
                b.iter(|| black_box(spec.build(&nodes).expect("table")))
            });
        }
    }
    // The hot-swap path of the default: derive the table after one shard is added or removed.
    let ns = names(101);
    let all = nodes(&ns);
    let bits = shardis::placement::rendezvous_table::DEFAULT_ARC_BITS;
    let t100 = RendezvousTable::new(&all[..100], bits).expect("table");
    let mut without_50 = all[..100].to_vec();
    without_50.remove(50);
    group.bench_function("update/rendezvous_table/100+1", |b| {
        b.iter(|| black_box(t100.update(&all).expect("table")))
    });
    group.bench_function("update/rendezvous_table/100-1", |b| {
        b.iter(|| black_box(t100.update(&without_50).expect("table")))
    });
    group.finish();
}

criterion_group!(benches, lookup, build);
criterion_main!(benches);
