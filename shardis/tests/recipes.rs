//! The lock and the rate limiter against real redis-servers, across client *processes*
//! (`examples/recipe_worker.rs`, built by `cargo test`): mutual exclusion with growing fencing
//! tokens, expiry when a holder is SIGKILLed, token-checked extend and release, and rate
//! limits exact under concurrency.
#![cfg(all(feature = "lock", feature = "rate-limit"))]

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use futures_util::future::join_all;
use shardis::{ErrorKind, RateLimit};
use shardis_testkit::RedisServer;

/// The worker binary, next to this test's own target directory.
fn worker() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = dir.join("examples").join("recipe_worker");
    assert!(
        path.exists(),
        "{} is missing: `cargo test` builds it; alone, run `cargo build -p shardis --example \
         recipe_worker` first",
        path.display()
    );
    path
}

fn urls(servers: &[RedisServer]) -> String {
    servers
        .iter()
        .map(RedisServer::url)
        .collect::<Vec<_>>()
        .join(",")
}

fn spawn(args: &[&str]) -> Child {
    Command::new(worker())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn recipe_worker")
}

fn output(child: Child) -> String {
    let out = child.wait_with_output().expect("worker output");
    assert!(out.status.success(), "worker failed: {:?}", out.status);
    String::from_utf8(out.stdout).expect("utf-8")
}

/// `name=value` fields of a line.
fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_excludes_64_tasks_in_3_processes_and_fencing_tokens_grow() {
    let servers = servers(3);
    let urls = urls(&servers);
    let rounds = 3;
    let children: Vec<Child> = [22, 21, 21]
        .iter()
        .map(|tasks| spawn(&["lock", &urls, "jobs:nightly", &tasks.to_string(), "3"]))
        .collect();
    let mut acquisitions = Vec::new();
    for child in children {
        let out = tokio::task::spawn_blocking(move || output(child))
            .await
            .unwrap();
        assert!(out.ends_with("done\n"), "{out}");
        for line in out.lines().filter(|l| l.starts_with("acquired")) {
            acquisitions.push((
                field(line, "seq"),
                field(line, "fence"),
                field(line, "inside"),
            ));
        }
    }
    assert_eq!(acquisitions.len(), 64 * rounds);
    // Never two holders at once: whoever entered found nobody inside.
    assert!(
        acquisitions.iter().all(|(_, _, inside)| *inside == 1),
        "overlap"
    );
    // In the order the holders entered, fencing tokens strictly increase.
    acquisitions.sort();
    let seqs: Vec<u64> = acquisitions.iter().map(|a| a.0).collect();
    assert_eq!(seqs, (1..=64 * rounds as u64).collect::<Vec<_>>());
    for w in acquisitions.windows(2) {
        assert!(w[0].1 < w[1].1, "fence {} then {}", w[0].1, w[1].1);
    }
    // Every lock was released: the name is free.
    let client = client(&servers).await;
    let lock = client.lock("jobs:nightly").try_acquire().await.unwrap();
    assert!(lock.expect("free").fencing_token() > acquisitions.last().unwrap().1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_expires_when_its_holder_process_is_killed() {
    let servers = servers(2);
    let client = client(&servers).await;
    let mut holder = spawn(&["hold", &urls(&servers), "jobs:killed", "3000"]);
    let mut line = String::new();
    {
        use std::io::BufRead;
        let stdout = holder.stdout.take().unwrap();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
    }
    let held = field(&line, "fence");
    assert!(client
        .lock("jobs:killed")
        .try_acquire()
        .await
        .unwrap()
        .is_none());
    holder.kill().unwrap(); // SIGKILL: no release, no drop
    holder.wait().unwrap();
    let killed = Instant::now();
    assert!(
        client
            .lock("jobs:killed")
            .try_acquire()
            .await
            .unwrap()
            .is_none(),
        "still held until its TTL"
    );
    let lock = client
        .lock("jobs:killed")
        .wait(Duration::from_secs(20))
        .acquire()
        .await
        .expect("taken once the dead holder's TTL passed");
    assert!(lock.fencing_token() > held);
    assert!(killed.elapsed() < Duration::from_secs(20));
    lock.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extend_and_release_are_checked_by_token_and_a_dropped_lock_is_released() {
    let servers = servers(2);
    let client = client(&servers).await;
    let lock = client
        .lock("res")
        .ttl(Duration::from_millis(300))
        .acquire()
        .await
        .unwrap();
    lock.extend(Duration::from_secs(10)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let busy = client
        .lock("res")
        .wait(Duration::from_millis(100))
        .acquire()
        .await;
    assert_eq!(busy.unwrap_err().kind(), ErrorKind::LockNotAcquired);
    lock.release().await.unwrap();

    // A lock that expired cannot be extended or released, and the new holder's stays.
    let old = client
        .lock("res")
        .ttl(Duration::from_millis(50))
        .acquire()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let new = client.lock("res").acquire().await.unwrap();
    assert!(new.fencing_token() > old.fencing_token());
    assert_eq!(
        old.extend(Duration::from_secs(1)).await.unwrap_err().kind(),
        ErrorKind::LockLost
    );
    assert_eq!(old.release().await.unwrap_err().kind(), ErrorKind::LockLost);
    assert!(client.lock("res").try_acquire().await.unwrap().is_none());
    assert!(
        !format!("{new:?}").contains(" token:"),
        "the token is never shown"
    );
    // Dropping the guard releases it in the background.
    drop(new);
    let again = eventually(Duration::from_secs(5), || async {
        matches!(client.lock("res").try_acquire().await, Ok(Some(_)))
    })
    .await;
    assert!(again);
    let e = client
        .lock("res")
        .ttl(Duration::ZERO)
        .acquire()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

fn start_at(after: Duration) -> String {
    let at = SystemTime::now() + after;
    at.duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_allow_exactly_the_gcra_number_across_processes() {
    let servers = servers(3);
    let urls = urls(&servers);
    // 1 per hour with a burst of 20: exactly 21 of 1002 concurrent callers in 3 processes.
    let at = start_at(Duration::from_millis(1500));
    let children: Vec<Child> = (0..3)
        .map(|_| {
            spawn(&[
                "rate",
                &urls,
                "api:user:42",
                "334",
                "1",
                "3600000",
                "20",
                &at,
            ])
        })
        .collect();
    let mut allowed = 0;
    for child in children {
        let out = tokio::task::spawn_blocking(move || output(child))
            .await
            .unwrap();
        assert!(!out.contains("bad"), "{out}");
        allowed += field(out.trim(), "allowed");
        assert_eq!(
            field(out.trim(), "allowed") + field(out.trim(), "refused"),
            334
        );
    }
    assert_eq!(allowed, 21);

    // 100 per second with a burst of 20, 1000 concurrent callers: 21 at once, then one per
    // 10 ms of the time the calls took (by the server's clock, which the calls span).
    let client = client(&servers).await;
    let limit = RateLimit::per_second(100).burst(20);
    let started = Instant::now();
    let decisions = join_all((0..1000).map(|_| client.rate_limit("api:user:7", limit))).await;
    let elapsed = started.elapsed();
    let decisions: Vec<_> = decisions.into_iter().map(Result::unwrap).collect();
    let allowed = decisions.iter().filter(|d| d.allowed).count() as u128;
    let most = 21 + elapsed.as_millis() / 10 + 1;
    assert!(
        (21..=most).contains(&allowed),
        "{allowed} allowed in {elapsed:?}"
    );
    for d in &decisions {
        assert!(d.reset_after <= Duration::from_millis(210));
        if d.allowed {
            assert!(d.retry_after.is_none());
        } else {
            let retry = d.retry_after.expect("a refusal says when to retry");
            assert!(retry > Duration::ZERO && retry <= Duration::from_millis(10));
        }
    }
    // At rest again after the tolerance: the full burst is back.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let d = client.rate_limit("api:user:7", limit).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.remaining, 20);
    let e = client
        .rate_limit("k", RateLimit::per_second(0))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}
