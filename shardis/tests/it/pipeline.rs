//! Sharded pipelines and single-shard transactions against real redis-servers: replies in
//! the pipeline's order with `.ignore()` honoured, checked against the same commands sent one
//! by one to a single server; error replies typed and placed; transactions all or nothing;
//! cross-shard transactions refused before anything is sent.

use crate::common;

use std::time::Duration;

use common::*;
use redis::{Cmd, Value};
use shardis::{Client, ErrorKind};
use shardis_testkit::RedisServer;

/// A random command over a small key space, and whether to `.ignore()` it.
fn random_command(rng: &mut fastrand::Rng) -> Cmd {
    let key = |rng: &mut fastrand::Rng| format!("k{}", rng.u32(0..40));
    let list = |rng: &mut fastrand::Rng| format!("l{}", rng.u32(0..10));
    let hash = |rng: &mut fastrand::Rng| format!("h{}", rng.u32(0..10));
    let mut c;
    match rng.u32(0..12) {
        0 | 1 => {
            c = redis::cmd("GET");
            c.arg(key(rng));
        }
        2 => {
            c = redis::cmd("SET");
            c.arg(key(rng)).arg(rng.u32(..));
        }
        3 => {
            c = redis::cmd("INCRBY");
            c.arg(format!("n{}", rng.u32(0..10))).arg(rng.i32(-5..5));
        }
        4 => {
            c = redis::cmd("MGET");
            for _ in 0..rng.usize(1..8) {
                c.arg(key(rng));
            }
        }
        5 => {
            c = redis::cmd("MSET");
            for _ in 0..rng.usize(1..6) {
                c.arg(key(rng)).arg(rng.u32(..));
            }
        }
        6 => {
            c = redis::cmd(if rng.bool() { "DEL" } else { "UNLINK" });
            for _ in 0..rng.usize(1..4) {
                c.arg(key(rng));
            }
        }
        7 => {
            c = redis::cmd("EXISTS");
            for _ in 0..rng.usize(1..6) {
                c.arg(key(rng));
            }
        }
        8 => {
            c = redis::cmd("RPUSH");
            c.arg(list(rng)).arg(rng.u32(..));
        }
        9 => {
            c = redis::cmd("LRANGE");
            c.arg(list(rng)).arg(0).arg(-1);
        }
        10 => {
            c = redis::cmd("HSET");
            c.arg(hash(rng))
                .arg(format!("f{}", rng.u32(0..4)))
                .arg(rng.u32(..));
        }
        _ => {
            c = redis::cmd("HGETALL");
            c.arg(hash(rng));
        }
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_of_random_commands_answer_as_the_commands_sent_one_by_one() {
    let servers = servers(3);
    let reference = RedisServer::start().expect("reference redis-server");
    let client = client(&servers).await;
    let mut one_by_one = direct(&reference).await;
    let mut rng = fastrand::Rng::with_seed(15);
    for round in 0..10 {
        let mut pipe = redis::pipe();
        let mut expected = Vec::new();
        for _ in 0..1000 {
            let cmd = random_command(&mut rng);
            let reply: Value = cmd
                .query_async(&mut one_by_one)
                .await
                .expect("reference reply");
            pipe.add_command(cmd);
            if rng.u32(0..10) == 0 {
                pipe.ignore();
            } else {
                expected.push(reply);
            }
        }
        let got: Vec<Value> = client.query_pipeline(&pipe).await.expect("pipeline");
        assert_eq!(got.len(), expected.len(), "round {round}");
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g, e, "round {round}, reply {i}");
        }
    }
    // Every shard took part.
    for s in &servers {
        assert!(dbsize(s).await > 0, "shard {} got no key", s.url());
    }
    // Same data as the reference, key by key.
    let mut reference = direct(&reference).await;
    for i in 0..40 {
        let k = format!("k{i}");
        let want: Option<String> = redis::cmd("GET")
            .arg(&k)
            .query_async(&mut reference)
            .await
            .unwrap();
        let got: Option<String> = client.get(&k).await.unwrap();
        assert_eq!(got, want, "{k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_keep_order_and_ignore_and_errors_name_command_and_shard() {
    let servers = servers(3);
    let client = client(&servers).await;
    let a = key_on(&client, "shard-0", "a");
    let b = key_on(&client, "shard-1", "b");
    let c = key_on(&client, "shard-2", "c");
    let mut pipe = redis::pipe();
    pipe.set(&a, "1")
        .ignore()
        .set(&b, "2")
        .ignore()
        .set(&c, "3")
        .ignore()
        .get(&c)
        .get(&a)
        .incr(&b, 5)
        .mget(&[&a, &b, &c]);
    let (vc, va, vb, all): (String, String, i64, Vec<String>) =
        client.query_pipeline(&pipe).await.unwrap();
    assert_eq!((vc.as_str(), va.as_str(), vb), ("3", "1", 7));
    assert_eq!(all, ["1", "7", "3"]);

    // An error reply fails the call, naming the command and its shard; the rest ran.
    let mut pipe = redis::pipe();
    pipe.set(&a, "x").rpush(&c, "item").incr(&c, 1).get(&b);
    let e = client
        .query_pipeline::<Value>(&pipe)
        .await
        .expect_err("WRONGTYPE");
    assert_eq!(e.kind(), ErrorKind::Server, "{e}");
    assert_eq!(e.server_code(), Some("WRONGTYPE"), "{e}");
    assert_eq!(e.shard(), Some("shard-2"), "{e}");
    assert!(e.to_string().contains("command 1 (RPUSH)"), "{e}");
    assert_eq!(client.get::<_, String>(&a).await.unwrap(), "x");

    // With ignore_errors(), each reply comes back, errors in place, as with redis-rs.
    pipe.ignore_errors();
    let replies: Vec<redis::RedisResult<Value>> = client.query_pipeline(&pipe).await.unwrap();
    assert_eq!(replies.len(), 4);
    assert!(replies[0].is_ok() && replies[1].is_err() && replies[3].is_ok());

    // An empty pipeline answers an empty list.
    let none: Vec<Value> = client.query_pipeline(&redis::pipe()).await.unwrap();
    assert!(none.is_empty());

    // Keyless and unknown commands are refused before sending.
    let mut pipe = redis::pipe();
    pipe.get(&a).cmd("PING");
    let e = client.query_pipeline::<Value>(&pipe).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("on_every_shard"), "{e}");
    let mut pipe = redis::pipe();
    pipe.cmd("FROBNICATE").arg(&a);
    let e = client.query_pipeline::<Value>(&pipe).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let mut pipe = redis::pipe();
    pipe.get(&a).cmd("SELECT").arg(1);
    let e = client.query_pipeline::<Value>(&pipe).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

async fn tagged_client(servers: &[RedisServer]) -> Client {
    builder(servers).hash_tag("{}").build().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_pipeline_runs_on_one_shard_all_or_nothing() {
    let servers = servers(3);
    let client = tagged_client(&servers).await;
    let mut tx = redis::pipe();
    tx.atomic()
        .set("{user:7}:name", "ann")
        .ignore()
        .incr("{user:7}:visits", 1)
        .incr("{user:7}:visits", 1)
        .cmd("TIME");
    let (v1, v2, _time): (i64, i64, Value) = client.query_pipeline(&tx).await.unwrap();
    assert_eq!((v1, v2), (1, 2));
    let owner = client.locate("{user:7}:name").to_string();
    let i: usize = owner.trim_start_matches("shard-").parse().unwrap();
    let mut conn = direct(&servers[i]).await;
    let name: String = redis::cmd("GET")
        .arg("{user:7}:name")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(name, "ann");

    // A command refused while queueing (wrong arity) aborts the whole transaction.
    let mut tx = redis::pipe();
    tx.atomic()
        .set("{user:7}:a", "1")
        .cmd("SET")
        .arg("{user:7}:b");
    let e = client.query_pipeline::<Value>(&tx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server, "{e}");
    assert_eq!(e.shard(), Some(owner.as_str()), "{e}");
    assert!(!client.exists("{user:7}:a").await.unwrap(), "nothing ran");

    // Only a MULTI/EXEC pair reached the shard, and no other shard saw anything.
    reset_stats(&servers).await;
    let mut tx = redis::pipe();
    tx.atomic().set("{user:8}:a", "1").set("{user:8}:b", "2");
    let () = client.query_pipeline(&tx).await.unwrap();
    let owner: usize = client
        .locate("{user:8}:a")
        .to_string()
        .trim_start_matches("shard-")
        .parse()
        .unwrap();
    for (j, s) in servers.iter().enumerate() {
        let mut ran = commands_run(s, BACKGROUND_COMMANDS).await;
        ran.sort();
        if j == owner {
            assert_eq!(ran, ["exec", "multi", "set"], "shard {j}");
        } else {
            assert!(ran.is_empty(), "shard {j} ran {ran:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_shard_transactions_are_refused_before_anything_is_sent() {
    let servers = servers(3);
    let client = client(&servers).await;
    let a = key_on(&client, "shard-0", "a");
    let b = key_on(&client, "shard-1", "b");
    reset_stats(&servers).await;
    let mut tx = redis::pipe();
    tx.atomic().set(&a, "1").set(&b, "2");
    let e = client.query_pipeline::<Value>(&tx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CrossShard, "{e}");
    let shown = e.to_string();
    assert!(
        shown.contains(&format!("`{a}` on `shard-0`"))
            && shown.contains(&format!("`{b}` on `shard-1`")),
        "{shown}"
    );
    assert_eq!(ErrorKind::CrossShard.as_str(), "cross_shard");

    // A non-atomic pipeline with a multi-key command that cannot be split, across shards.
    let mut pipe = redis::pipe();
    pipe.set(&a, "1").cmd("RENAME").arg(&a).arg(&b);
    let e = client.query_pipeline::<Value>(&pipe).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CrossShard, "{e}");

    // Nothing reached any server: no SET, no MULTI, not even the valid part.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for s in &servers {
        let ran = commands_run(s, BACKGROUND_COMMANDS).await;
        assert!(ran.is_empty(), "{} ran {ran:?}", s.url());
        assert_eq!(dbsize(s).await, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_shard_fails_only_pipelines_with_commands_for_it_and_reads_fail_over() {
    let mut rs = Vec::new();
    for _ in 0..2 {
        rs.push(replicated(1).await);
    }
    let client = rs
        .iter()
        .enumerate()
        .fold(Client::builder(), |b, (i, r)| {
            b.shard_spec(
                shardis::ShardSpec::new(shard_name(i), r.primary.url())
                    .replica(r.replicas[0].url()),
            )
        })
        .health(patient_health())
        .read_from(shardis::ReadFrom::PrimaryThenReplica)
        .build()
        .await
        .unwrap();
    let a = key_on(&client, "shard-0", "a");
    let b = key_on(&client, "shard-1", "b");
    let mut pipe = redis::pipe();
    pipe.set(&a, "A").set(&b, "B");
    let () = client.query_pipeline(&pipe).await.unwrap();
    for r in &rs {
        r.replicas[0]
            .wait_caught_up(&r.primary, Duration::from_secs(5))
            .unwrap();
    }
    rs[1].primary.kill();

    // Commands for the live shard only: fine.
    let mut pipe = redis::pipe();
    pipe.set(&a, "A2").get(&a);
    let ((), v): ((), String) = client.query_pipeline(&pipe).await.unwrap();
    assert_eq!(v, "A2");
    // Reads of the dead shard's keys follow the read policy: its replica answers.
    let mut pipe = redis::pipe();
    pipe.get(&a).get(&b).mget(&[&a, &b]);
    let (va, vb, both): (String, String, Vec<String>) = client.query_pipeline(&pipe).await.unwrap();
    assert_eq!((va.as_str(), vb.as_str()), ("A2", "B"));
    assert_eq!(both, ["A2", "B"]);
    // A write for the dead shard fails the call, naming it.
    let mut pipe = redis::pipe();
    pipe.get(&a).set(&b, "B2");
    let e = client.query_pipeline::<Value>(&pipe).await.unwrap_err();
    assert_eq!(e.shard(), Some("shard-1"), "{e}");
    assert!(
        e.is_failover_candidate() || e.kind() == ErrorKind::ShardUnavailable,
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_on_one_shard_runs_there_alone_with_ignore_and_errors_as_redis_rs() {
    let servers = servers(3);
    let client = tagged_client(&servers).await;
    let owner: usize = client
        .locate("{cart:9}")
        .to_string()
        .trim_start_matches("shard-")
        .parse()
        .unwrap();
    reset_stats(&servers).await;
    let mut pipe = redis::pipe();
    pipe.set("{cart:9}:a", "1")
        .ignore()
        .incr("{cart:9}:n", 2)
        .get("{cart:9}:a")
        .rpush("{cart:9}:items", "x")
        .ignore()
        .get("{cart:9}:missing");
    let (n, a, missing): (i64, String, Option<String>) =
        client.query_pipeline(&pipe).await.unwrap();
    assert_eq!((n, a.as_str(), missing), (2, "1", None));
    for (j, s) in servers.iter().enumerate() {
        let mut ran = commands_run(s, BACKGROUND_COMMANDS).await;
        ran.sort();
        if j == owner {
            assert_eq!(ran, ["get", "incrby", "rpush", "set"], "shard {j}");
        } else {
            assert!(ran.is_empty(), "shard {j} ran {ran:?}");
        }
    }

    // An error reply fails the call naming its command and shard; the others ran.
    let mut pipe = redis::pipe();
    pipe.set("{cart:9}:b", "2")
        .incr("{cart:9}:items", 1)
        .get("{cart:9}:b");
    let e = client
        .query_pipeline::<Value>(&pipe)
        .await
        .expect_err("WRONGTYPE");
    assert_eq!(e.server_code(), Some("WRONGTYPE"), "{e}");
    assert_eq!(e.shard(), Some(format!("shard-{owner}").as_str()), "{e}");
    assert!(e.to_string().contains("command 1 (INCRBY)"), "{e}");
    assert_eq!(client.get::<_, String>("{cart:9}:b").await.unwrap(), "2");

    // With ignore_errors(), every reply in place, the error among them.
    pipe.ignore_errors();
    let replies: Vec<redis::RedisResult<Value>> = client.query_pipeline(&pipe).await.unwrap();
    assert_eq!(replies.len(), 3);
    assert!(replies[0].is_ok() && replies[1].is_err() && replies[2].is_ok());

    // A split command on one shard is still split per shard (here: one part), and answered whole.
    let mut pipe = redis::pipe();
    pipe.mget(&["{cart:9}:a", "{cart:9}:b", "{cart:9}:none"]);
    let (all,): (Vec<Option<String>>,) = client.query_pipeline(&pipe).await.unwrap();
    assert_eq!(all, [Some("1".to_owned()), Some("2".to_owned()), None]);
}
