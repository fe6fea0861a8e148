//! Topology changes under load: `update_topology`, `reload_config` and the config watcher.

use crate::common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use shardis::placement::Locator;
use shardis::{Client, ErrorKind, Event, ShardSpec, Topology};

fn topology(servers: &[shardis_testkit::RedisServer]) -> Topology {
    Topology::new(
        servers
            .iter()
            .enumerate()
            .map(|(i, s)| ShardSpec::new(format!("shard-{i}"), s.url()))
            .collect(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_4_to_5_shards_and_back_under_load_fails_no_request() {
    let all = servers(5);
    let client = Client::builder();
    let client = (0..4)
        .fold(client, |b, i| b.shard(format!("shard-{i}"), all[i].url()))
        .build()
        .await
        .unwrap();
    let failures = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let (client, failures, done, ops) =
                (client.clone(), failures.clone(), done.clone(), ops.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let k = format!("t{t}:{}", i % 50);
                    let result = async {
                        client.set(k.as_str(), i).await?;
                        let _: Option<u64> = client.get(k.as_str()).await?;
                        let keys: Vec<String> = (0..5).map(|j| format!("t{t}:{j}")).collect();
                        let _: Vec<Option<u64>> = client.mget(&keys).await?;
                        Ok::<_, shardis::Error>(())
                    }
                    .await;
                    if let Err(e) = result {
                        failures.lock().unwrap().push(e);
                    }
                    ops.fetch_add(3, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    let four = topology(&all[..4]);
    let five = topology(&all);
    let start_version = client.topology_version();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        client.update_topology(five.clone()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        client.update_topology(four.clone()).await.unwrap();
    }
    client.update_topology(five.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    done.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let failures = std::mem::take(&mut *failures.lock().unwrap());
    assert!(
        failures.is_empty(),
        "{} failed requests, e.g. {:?}",
        failures.len(),
        failures.first()
    );
    assert!(ops.load(Ordering::Relaxed) > 3000);
    assert_eq!(client.topology_version(), start_version + 7);

    // Afterwards every key is routed by the new table, and lands on the server it names.
    let locator = Locator::new(&five, &Default::default(), None).unwrap();
    for i in 0..2000 {
        let k = format!("after:{i}");
        assert_eq!(client.locate(k.as_str()), *locator.locate(k.as_bytes()));
    }
    let k = key_on(&client, "shard-4", "new:");
    client.set(k.as_str(), "on the new shard").await.unwrap();
    let mut conn = direct(&all[4]).await;
    let v: Option<String> = redis::cmd("GET")
        .arg(&k)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("on the new shard"));
}

#[tokio::test]
async fn pools_of_removed_endpoints_close_once_idle() {
    let all = servers(2);
    let client = builder(&all).build().await.unwrap();
    client.set("k", 1).await.unwrap();
    let clients_on = |i: usize| {
        let s = &all[i];
        async move {
            let mut c = direct(s).await;
            let list: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query_async(&mut c)
                .await
                .unwrap();
            list.lines().count() - 1 // not counting this connection
        }
    };
    assert!(clients_on(1).await > 0);
    client.update_topology(topology(&all[..1])).await.unwrap();
    let closed = eventually(Duration::from_secs(5), || async {
        clients_on(1).await == 0
    })
    .await;
    assert!(closed, "connections to the removed endpoint stayed open");
    assert!(
        clients_on(0).await > 0,
        "the kept endpoint's pool was closed too"
    );
}

#[tokio::test]
async fn unchanged_endpoints_keep_their_pools_across_a_swap() {
    let all = servers(3);
    let client = builder(&all[..2]).build().await.unwrap();
    client.set("k", 1).await.unwrap();
    let ids = |s: &shardis_testkit::RedisServer| {
        let url = s.url();
        async move {
            let c = redis::Client::open(url).unwrap();
            let mut c = c.get_multiplexed_async_connection().await.unwrap();
            let list: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query_async(&mut c)
                .await
                .unwrap();
            let mut ids: Vec<String> = list
                .lines()
                .filter(|l| !l.contains("cmd=client|list"))
                .filter_map(|l| l.split(' ').next().map(str::to_owned))
                .collect();
            ids.sort();
            ids
        }
    };
    let before = ids(&all[0]).await;
    client.update_topology(topology(&all)).await.unwrap();
    assert_eq!(
        ids(&all[0]).await,
        before,
        "shard-0's connections were reopened"
    );
}

#[tokio::test]
async fn an_invalid_or_unreachable_topology_is_rejected_and_the_old_one_stays() {
    let all = servers(2);
    let client = builder(&all).build().await.unwrap();
    let mut events = client.events();
    let version = client.topology_version();
    let dup = Topology::new(vec![ShardSpec::new("a", all[0].url())]).unwrap();
    let dead_port = shardis_testkit::free_port().unwrap();
    let unreachable = Topology::new(vec![
        ShardSpec::new("shard-0", all[0].url()),
        ShardSpec::new("dead", format!("redis://127.0.0.1:{dead_port}")),
    ])
    .unwrap();
    let err = client.update_topology(unreachable).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection);
    assert_eq!(err.shard(), Some("dead"));
    assert_eq!(client.topology_version(), version);
    assert!(
        wait_event(&mut events, Duration::from_secs(1), |e| matches!(
            e,
            Event::ConfigRejected { .. }
        ))
        .await
        .is_some()
    );
    client.set("still", "works").await.unwrap();
    // A valid one is accepted.
    assert_eq!(client.update_topology(dup).await.unwrap(), version + 1);
}

#[tokio::test]
async fn reload_config_applies_a_good_file_and_keeps_the_old_topology_on_a_bad_one() {
    let all = servers(3);
    let shard = |name: &str, s: &shardis_testkit::RedisServer| {
        format!("[[shards]]\nname = \"{name}\"\nprimary = \"{}\"\n", s.url())
    };
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(format!("{}{}", shard("a", &all[0]), shard("b", &all[1])).as_bytes())
        .unwrap();
    let client = Client::from_config_file(file.path()).await.unwrap();
    let mut events = client.events();
    let v1 = client.topology_version();

    std::fs::write(
        file.path(),
        format!("{}{}", shard("a", &all[0]), shard("a", &all[1])),
    )
    .unwrap();
    let err = client.reload_config(file.path()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(client.topology_version(), v1);
    assert_eq!(client.topology().shards().len(), 2);
    assert!(
        wait_event(&mut events, Duration::from_secs(1), |e| matches!(
            e,
            Event::ConfigRejected { .. }
        ))
        .await
        .is_some()
    );
    client.set("k", "v").await.unwrap();

    std::fs::write(
        file.path(),
        format!(
            "{}{}{}",
            shard("a", &all[0]),
            shard("b", &all[1]),
            shard("c", &all[2])
        ),
    )
    .unwrap();
    assert_eq!(client.reload_config(file.path()).await.unwrap(), v1 + 1);
    assert_eq!(client.topology().shards().len(), 3);

    // The watcher picks up the next change by itself, and ignores a broken file.
    let _watch = client.watch_config(file.path(), Duration::from_millis(20));
    std::fs::write(file.path(), "not toml").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(client.topology().shards().len(), 3);
    std::fs::write(file.path(), shard("a", &all[0])).unwrap();
    let applied = eventually(Duration::from_secs(5), || async {
        client.topology().shards().len() == 1
    })
    .await;
    assert!(applied, "the watcher did not reload");
}

#[tokio::test]
async fn a_reloaded_key_limit_applies_to_the_next_request() {
    let all = servers(1);
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let shard = format!("[[shards]]\nname = \"a\"\nprimary = \"{}\"\n", all[0].url());
    file.write_all(shard.as_bytes()).unwrap();
    let client = Client::from_config_file(file.path()).await.unwrap();
    client.set("abcdef", 1).await.unwrap();
    std::fs::write(file.path(), format!("[limits]\nmax_key_bytes = 4\n{shard}")).unwrap();
    client.reload_config(file.path()).await.unwrap();
    let err = client.set("abcdef", 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    client.set("abcd", 1).await.unwrap();
}
