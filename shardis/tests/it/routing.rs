//! Keys land where `locate` says, on real redis-servers, and spread over all of them.

use crate::common;

use common::*;

#[tokio::test]
async fn keys_land_on_the_shard_locate_names() {
    let servers = servers(3);
    let client = client(&servers).await;
    let keys: Vec<String> = (0..600).map(|i| format!("user:{i}")).collect();
    for k in &keys {
        client.set(k.as_str(), format!("v-{k}")).await.unwrap();
    }
    let mut conns = Vec::new();
    for s in &servers {
        conns.push(direct(s).await);
    }
    for k in &keys {
        let owner = client.locate(k.as_str());
        for (i, conn) in conns.iter_mut().enumerate() {
            let v: Option<String> = redis::cmd("GET").arg(k).query_async(conn).await.unwrap();
            if owner == shard_name(i).as_str() {
                assert_eq!(
                    v.as_deref(),
                    Some(format!("v-{k}").as_str()),
                    "{k} missing on its owner"
                );
            } else {
                assert_eq!(
                    v,
                    None,
                    "{k} found on {} but locate says {owner}",
                    shard_name(i)
                );
            }
        }
    }
}

#[tokio::test]
async fn load_spreads_over_every_shard() {
    let servers = servers(4);
    let client = client(&servers).await;
    let items: Vec<(String, u32)> = (0..4000).map(|i| (format!("k{i}"), i)).collect();
    for chunk in items.chunks(250) {
        client.mset(chunk).await.unwrap();
    }
    let mut total = 0;
    for s in &servers {
        let n = dbsize(s).await;
        // An even share is 1000; the ring keeps every shard well within a factor of 1.5.
        assert!(
            (600..=1500).contains(&n),
            "shard on {} holds {n} of 4000 keys",
            s.url()
        );
        total += n;
    }
    assert_eq!(total, 4000);
}

#[tokio::test]
async fn hash_tags_keep_related_keys_on_one_shard() {
    let servers = servers(3);
    let client = builder(&servers).hash_tag("{}").build().await.unwrap();
    let keys: Vec<String> = (0..50).map(|i| format!("{{user:7}}:field:{i}")).collect();
    let owners: std::collections::HashSet<String> = keys
        .iter()
        .map(|k| client.locate(k.as_str()).to_string())
        .collect();
    assert_eq!(owners.len(), 1, "tagged keys spread over {owners:?}");
    let pairs: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "x")).collect();
    client.mset(&pairs).await.unwrap();
    let sizes = [
        dbsize(&servers[0]).await,
        dbsize(&servers[1]).await,
        dbsize(&servers[2]).await,
    ];
    assert_eq!(sizes.iter().filter(|n| **n == 50).count(), 1, "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 50);
}

#[tokio::test]
async fn replacing_a_host_behind_a_name_moves_no_key() {
    // Placement follows names: the same names over other addresses give the same owners.
    let first = servers(3);
    let second = servers(3);
    let a = client(&first).await;
    let b = client(&second).await;
    for i in 0..2000 {
        let k = format!("key:{i}");
        assert_eq!(a.locate(k.as_str()), b.locate(k.as_str()));
    }
}
