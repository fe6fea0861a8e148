//! A client process for the cross-process tests of the lock and the rate limiter
//! (`tests/recipes.rs` spawns several of these; `cargo test` builds it). Not an API tour.
//!
//! ```text
//! recipe_worker lock URL,URL,... NAME TASKS ROUNDS   # TASKS tasks take the lock ROUNDS times each
//! recipe_worker hold URL,URL,... NAME TTL_MS         # takes the lock, prints it, never releases
//! recipe_worker rate URL,URL,... KEY CALLERS COUNT PERIOD_MS BURST START_AT_UNIX_MS
//! ```
//!
//! Shards are named `shard-0`, `shard-1`, ... in the order of the URLs.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use shardis::{Client, RateLimit};

fn arg(args: &[String], i: usize) -> &str {
    args.get(i).map(String::as_str).unwrap_or_else(|| {
        eprintln!("recipe_worker: missing argument {i}; see the file's header for usage");
        std::process::exit(2)
    })
}

fn num(args: &[String], i: usize) -> u64 {
    arg(args, i).parse().unwrap_or_else(|_| {
        eprintln!("recipe_worker: argument {i} is not a number");
        std::process::exit(2)
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> shardis::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let client = arg(&args, 2)
        .split(',')
        .enumerate()
        .fold(Client::builder(), |b, (i, url)| {
            b.shard(format!("shard-{i}"), url)
        })
        .build()
        .await?;
    match arg(&args, 1) {
        "lock" => {
            let name = arg(&args, 3).to_owned();
            let (tasks, rounds) = (num(&args, 4), num(&args, 5));
            let runs = (0..tasks).map(|_| {
                let (client, name) = (client.clone(), name.clone());
                async move {
                    for _ in 0..rounds {
                        let lock = client
                            .lock(name.as_str())
                            .ttl(Duration::from_secs(20))
                            .wait(Duration::from_secs(120))
                            .acquire()
                            .await?;
                        let inside = client.incr("recipe:inside", 1).await?;
                        let seq = client.incr("recipe:seq", 1).await?;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        client.incr("recipe:inside", -1).await?;
                        let fence = lock.fencing_token();
                        lock.release().await?;
                        println!("acquired seq={seq} fence={fence} inside={inside}");
                    }
                    Ok::<_, shardis::Error>(())
                }
            });
            for r in join_all(runs).await {
                r?;
            }
            println!("done");
        }
        "hold" => {
            let lock = client
                .lock(arg(&args, 3))
                .ttl(Duration::from_millis(num(&args, 4)))
                .acquire()
                .await?;
            println!("held fence={}", lock.fencing_token());
            let _ = std::io::stdout().flush();
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(lock);
        }
        "rate" => {
            let key = arg(&args, 3).to_owned();
            let callers = num(&args, 4);
            let limit = RateLimit::per(num(&args, 5), Duration::from_millis(num(&args, 6)))
                .burst(num(&args, 7));
            let start = UNIX_EPOCH + Duration::from_millis(num(&args, 8));
            if let Ok(wait) = start.duration_since(SystemTime::now()) {
                tokio::time::sleep(wait).await;
            }
            let calls = (0..callers).map(|_| client.rate_limit(key.as_str(), limit));
            let mut allowed = 0;
            let mut refused = 0;
            for d in join_all(calls).await {
                let d = d?;
                if d.allowed {
                    allowed += 1;
                } else {
                    refused += 1;
                    if d.retry_after.is_none() {
                        println!("bad refused without retry_after");
                    }
                }
            }
            println!("allowed={allowed} refused={refused}");
        }
        other => {
            eprintln!("recipe_worker: unknown mode {other:?}");
            std::process::exit(2)
        }
    }
    Ok(())
}
