//! Hedged reads (`hedge_after_ms`) against real redis-servers: a read stuck on a SIGSTOPped
//! primary is answered by the replica through the hedge (fixed and adaptive delays), and the
//! hedge rate is capped.
//!
//! The primary is never marked down here (no probe runs during the tests, and the response
//! timeout is long): a read that comes back while the primary is stopped came back through its
//! hedge. Each read is bounded by a 20 s guard only so that a broken hedge fails the test
//! instead of hanging it for the response timeout.

use crate::common;

use std::time::Duration;

use common::*;
use shardis::{Client, HedgeAfter, ReadFrom, ShardSpec};

/// A client of one shard (primary and replica) reading `primary_then_replica`, hedging as
/// `hedge` says, with no probe during the test and a response timeout of `response`.
async fn hedging_client(
    shard: &Replicated,
    hedge: HedgeAfter,
    response: Duration,
    coalesce: bool,
) -> Client {
    let mut health = patient_health();
    health.interval = Duration::from_secs(3600);
    Client::builder()
        .shard_spec(ShardSpec::new("shard-0", shard.primary.url()).replica(shard.replicas[0].url()))
        .read_from(ReadFrom::PrimaryThenReplica)
        .hedge_after_ms(hedge)
        .coalesce_reads(coalesce)
        .response_timeout(response)
        .health(health)
        .build()
        .await
        .expect("client builds")
}

const GUARD: Duration = Duration::from_secs(20);

async fn read_through_hedge(client: &Client, key: &str) -> Option<String> {
    tokio::time::timeout(GUARD, client.get::<_, Option<String>>(key))
        .await
        .expect("the read waited for the stopped primary: it was not hedged")
        .expect("the hedge to the replica answers")
}

#[tokio::test]
async fn a_read_stuck_on_a_stopped_primary_is_answered_by_the_replica_through_its_hedge() {
    let shard = replicated(1).await;
    let client = hedging_client(&shard, HedgeAfter::from(5), Duration::from_secs(60), true).await;
    client.set("k", "v").await.unwrap();
    wait_replicated(&shard).await;
    let replica_reads = calls(&shard.replicas[0], "mget");
    shard.primary.pause().unwrap();
    for _ in 0..3 {
        assert_eq!(read_through_hedge(&client, "k").await.as_deref(), Some("v"));
    }
    assert!(calls(&shard.replicas[0], "mget") > replica_reads);
    shard.primary.resume().unwrap();
    // The primary answers again: its reads are its own.
    let v: Option<String> = client.get("k").await.unwrap();
    assert_eq!(v.as_deref(), Some("v"));
}

#[tokio::test]
async fn adaptive_hedging_learns_the_primary_latency_and_hedges_a_stuck_read() {
    let shard = replicated(1).await;
    let client = hedging_client(&shard, HedgeAfter::Adaptive, Duration::from_secs(60), false).await;
    client.set("k", "v").await.unwrap();
    wait_replicated(&shard).await;
    // Enough answered reads for a p99 (a loopback read: well under the 10 ms start value).
    for _ in 0..1500 {
        let _: Option<String> = client.get("k").await.unwrap();
    }
    let replica_gets = calls(&shard.replicas[0], "get");
    shard.primary.pause().unwrap();
    assert_eq!(read_through_hedge(&client, "k").await.as_deref(), Some("v"));
    assert_eq!(calls(&shard.replicas[0], "get"), replica_gets + 1);
    shard.primary.resume().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedges_are_capped_at_a_twentieth_of_reads_plus_a_burst() {
    let shard = replicated(1).await;
    // Without coalescing each hedge is one GET on the replica, so the replica counts them.
    let client = hedging_client(
        &shard,
        HedgeAfter::from(5),
        Duration::from_millis(1500),
        false,
    )
    .await;
    client.set("k", "v").await.unwrap();
    wait_replicated(&shard).await;
    let before = calls(&shard.replicas[0], "get");
    shard.primary.pause().unwrap();
    const READS: u64 = 200;
    let tasks: Vec<_> = (0..READS)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get::<_, Option<String>>("k").await })
        })
        .collect();
    // Long enough for every uncapped hedge to go (5 ms each), well short of the response
    // timeout after which capped reads fail over on their own.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let hedged = calls(&shard.replicas[0], "get") - before;
    shard.primary.resume().unwrap();
    // Capped reads fail over to the replica after the response timeout (or get the primary's
    // answer once it resumes): every read succeeds.
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().as_deref(), Some("v"));
    }
    // A burst of 10, and 1/20 of a token per read: at most 10 + 200/20 = 20 hedges.
    assert!(hedged <= 20, "{hedged} hedges for {READS} reads");
    assert!(hedged >= 10, "only {hedged} hedges: the burst was not used");
}

#[tokio::test]
async fn hedging_needs_reads_allowed_on_replicas() {
    let e = Client::builder()
        .shard("a", "redis://127.0.0.1:1")
        .hedge_after_ms(5)
        .lazy_connect(true)
        .build()
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("pool.hedge_after_ms"), "{text}");
    assert!(text.contains("read_from"), "{text}");
    let e = Client::builder()
        .shard("a", "redis://127.0.0.1:1")
        .read_from(ReadFrom::PrimaryThenReplica)
        .hedge_after_ms(500)
        .response_timeout(Duration::from_millis(500))
        .lazy_connect(true)
        .build()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("pool.hedge_after_ms"), "{e}");
}
