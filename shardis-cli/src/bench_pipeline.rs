//! `shardis bench --pipeline-size N`: each operation one pipeline of N GET/SET commands on
//! random keys, sent to each target its own way: shardis's `query_pipeline`, one pipeline to
//! the proxy, or hand-routed redis-rs pipelines (one per shard, all at once, replies put back
//! in order).

use std::collections::BTreeMap;

use futures_util::future::join_all;
use redis::aio::MultiplexedConnection;
use redis::Value;
use shardis::placement::Locator;
use shardis::{Client, ErrorKind};

use crate::error::Error;

/// The commands of one pipeline: `(key number, is a read)`, drawn from `seed`.
pub fn commands(
    seed: u64,
    n: usize,
    keys: u64,
    read_ratio: f64,
) -> impl Iterator<Item = (u64, bool)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n).map(move |_| (rng.u64(0..keys), rng.f64() < read_ratio))
}

fn build(pipe: &mut redis::Pipeline, key: &str, read: bool, value: &[u8]) {
    if read {
        pipe.cmd("GET").arg(key);
    } else {
        pipe.cmd("SET").arg(key).arg(value);
    }
}

/// The pipeline as one `redis::Pipeline`.
pub fn whole(seed: u64, n: usize, keys: u64, read_ratio: f64, value: &[u8]) -> redis::Pipeline {
    let mut pipe = redis::Pipeline::with_capacity(n);
    for (k, read) in commands(seed, n, keys, read_ratio) {
        build(&mut pipe, &crate::bench::bench_key(k), read, value);
    }
    pipe
}

/// Through the client.
pub async fn shardis(client: &Client, pipe: &redis::Pipeline) -> Result<(), Error> {
    let replies: Vec<Value> = client.query_pipeline(pipe).await?;
    check(replies.len(), pipe.len())
}

/// Through the proxy: one pipeline, which the proxy splits.
pub async fn proxy(conn: &mut MultiplexedConnection, pipe: &redis::Pipeline) -> Result<(), Error> {
    let replies: Vec<Value> = pipe
        .query_async(conn)
        .await
        .map_err(crate::bench::redis_error)?;
    check(replies.len(), pipe.len())
}

/// Hand-routed: one pipeline per shard, sent at once, replies put back in pipeline order.
pub async fn direct(
    locator: &Locator,
    pick: impl Fn(usize) -> MultiplexedConnection,
    (seed, n, keys, read_ratio): (u64, usize, u64, f64),
    value: &[u8],
) -> Result<(), Error> {
    let mut groups: BTreeMap<usize, (redis::Pipeline, Vec<usize>)> = BTreeMap::new();
    for (j, (k, read)) in commands(seed, n, keys, read_ratio).enumerate() {
        let key = crate::bench::bench_key(k);
        let (pipe, positions) = groups
            .entry(locator.index(key.as_bytes()))
            .or_insert_with(|| (redis::Pipeline::new(), Vec::new()));
        build(pipe, &key, read, value);
        positions.push(j);
    }
    let sends = groups.into_iter().map(|(shard, (pipe, positions))| {
        let mut conn = pick(shard);
        async move { (positions, pipe.query_async::<Vec<Value>>(&mut conn).await) }
    });
    let mut out = vec![Value::Nil; n];
    for (positions, replies) in join_all(sends).await {
        for (i, v) in positions
            .into_iter()
            .zip(replies.map_err(crate::bench::redis_error)?)
        {
            out[i] = v;
        }
    }
    check(out.len(), n)
}

fn check(got: usize, want: usize) -> Result<(), Error> {
    if got == want {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Type,
            format!("a pipeline of {want} commands got {got} replies"),
        ))
    }
}
