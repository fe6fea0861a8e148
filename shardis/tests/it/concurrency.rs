//! One client shared by many tasks at once.

use crate::common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_client_serves_many_concurrent_tasks() {
    let servers = servers(3);
    let client = client(&servers).await;
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let client = client.clone();
            tokio::spawn(async move {
                for i in 0..100 {
                    let key = format!("t{t}:k{i}");
                    client.set(key.as_str(), i).await?;
                    let v: Option<u32> = client.get(key.as_str()).await?;
                    assert_eq!(v, Some(i));
                    if i % 10 == 9 {
                        let keys: Vec<String> = (i - 9..=i).map(|j| format!("t{t}:k{j}")).collect();
                        let vals: Vec<Option<u32>> = client.mget(&keys).await?;
                        assert_eq!(vals, (i - 9..=i).map(Some).collect::<Vec<_>>());
                    }
                    client
                        .incr(format!("counter:{}", t % 4).as_str(), 1)
                        .await?;
                }
                Ok::<_, shardis::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task panicked").expect("request failed");
    }
    let mut total = 0;
    for c in 0..4 {
        let v: Option<i64> = client.get(format!("counter:{c}").as_str()).await.unwrap();
        total += v.unwrap();
    }
    assert_eq!(total, 64 * 100);
    let stored: usize =
        dbsize(&servers[0]).await + dbsize(&servers[1]).await + dbsize(&servers[2]).await;
    assert_eq!(stored, 64 * 100 + 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pooled_connection_carries_requests() {
    let servers = servers(1);
    let client = builder(&servers)
        .connections_per_endpoint(3)
        .build()
        .await
        .unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let client = client.clone();
            tokio::spawn(async move {
                for i in 0..200 {
                    client.set(format!("k{t}:{i}").as_str(), i).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut conn = direct(&servers[0]).await;
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    // Each of the client's connections last ran a SET: none sits idle after its handshake.
    let used = list.lines().filter(|l| l.contains("cmd=set")).count();
    assert_eq!(used, 3, "{list}");
}
