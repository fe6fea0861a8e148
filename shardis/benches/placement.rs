//! Placement lookup (hash of a 16-byte key included) for every algorithm at 10, 100 and 1000
//! shards, against the `hashring` crate as an outside baseline; and table build and update times
//! (every algorithm at 10 and 100 shards, the default `rendezvous_table` up to 10 000).
//!
//! `cargo bench --bench placement` (`-- build` for the builds and updates only)

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
    // The default at fleet sizes where its build used to cost `arcs × shards`, and its hot-swap
    // path: derive the table after one shard is added or removed.
    let bits = shardis::placement::rendezvous_table::DEFAULT_ARC_BITS;
    for n in [100usize, 1000, 10_000] {
        let ns = names(n + 1);
        let all = nodes(&ns);
        if n > 100 {
            group.bench_function(BenchmarkId::new("rendezvous_table", n), |b| {
                b.iter(|| black_box(RendezvousTable::new(&all[..n], bits).expect("table")))
            });
        }
        let table = RendezvousTable::new(&all[..n], bits).expect("table");
        let mut without_one = all[..n].to_vec();
        without_one.remove(n / 2);
        group.bench_function(format!("update/rendezvous_table/{n}+1"), |b| {
            b.iter(|| black_box(table.update(&all).expect("table")))
        });
        group.bench_function(format!("update/rendezvous_table/{n}-1"), |b| {
            b.iter(|| black_box(table.update(&without_one).expect("table")))
        });
    }
    group.finish();
}

criterion_group!(benches, lookup, build);
criterion_main!(benches);
