//! The demo's cache act: a stampede of 1 000 concurrent requests on one cold key through
//! `shardis::cache`, with a 200 ms loader standing in for a database.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardis::cache::Cache;
use shardis::{Client, ErrorKind};

use crate::error::Error;

/// Concurrent requests of the stampede.
pub const REQUESTS: usize = 1000;

/// A loader's error (the demo's loader never fails).
#[derive(Debug)]
struct Unreachable;
impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("unreachable")
    }
}
impl std::error::Error for Unreachable {}

/// Runs the stampede: returns the loader calls and how long all requests took, in ms.
pub async fn stampede(client: &Client) -> Result<(usize, f64), Error> {
    let cache = Cache::builder(client.clone()).namespace("demo").build();
    cache.invalidate("profile:1").await?;
    let calls = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let requests: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let (cache, calls) = (cache.clone(), calls.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load("profile:1", move || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Ok::<_, Unreachable>(String::from("a profile from the database"))
                    })
                    .await
            })
        })
        .collect();
    for r in requests {
        r.await
            .map_err(|e| Error::new(ErrorKind::Io, format!("a request task failed: {e}")))?
            .map_err(|e| Error::new(ErrorKind::Server, e.to_string()))?;
    }
    let ms = started.elapsed().as_secs_f64() * 1e3;
    Ok((calls.load(Ordering::SeqCst), ms))
}
