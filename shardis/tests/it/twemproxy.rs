//! shardis's `ketama` placement agrees with a real twemproxy (Debian's nutcracker) on every
//! key: keys are written through nutcracker in front of real redis-servers, each backend is
//! asked which keys it holds, and the twemproxy config, imported into shardis, must place every
//! key on that backend.
#![cfg(feature = "twemproxy")]

use crate::common;

use std::collections::HashMap;

use common::*;
use shardis::placement::Locator;
use shardis_testkit::{Nutcracker, RedisServer};

/// Keys of many shapes: ASCII, bytes >= 0x80 (twemproxy's signed-char quirks), every length
/// from 1 to 40 (every hash's tail handling), and hash-tagged ones.
fn keys(n: usize) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = (0..n)
        .map(|i| match i % 5 {
            0 => format!("key:{i}").into_bytes(),
            1 => {
                let mut k = format!("bin:{i}:").into_bytes();
                k.extend((0..(i % 7) as u8).map(|b| 0x80 | b.wrapping_mul(37)));
                k
            }
            2 => (0..1 + i % 40)
                .map(|j| b'a' + ((i + j) % 26) as u8)
                .collect(),
            3 => format!("{{user:{}}}:field:{i}", i % 17).into_bytes(),
            _ => {
                let mut k = vec![0xff, 0xfe, (i % 251) as u8];
                k.extend(format!("{i}").bytes());
                k
            }
        })
        .collect();
    // Short generated keys repeat; each key must be written once.
    keys.sort();
    keys.dedup();
    keys
}

/// One backend: its server, its twemproxy server line, and the shard name shardis gives it.
struct Backend {
    server: RedisServer,
    line: String,
    name: String,
}

fn backends(weights: &[u32], named: bool) -> Vec<Backend> {
    servers(weights.len())
        .into_iter()
        .zip(weights)
        .enumerate()
        .map(|(i, (server, w))| {
            let address = format!("127.0.0.1:{}", server.port());
            let (line, name) = if named {
                let name = format!("cache-{i}");
                (format!("{address}:{w} {name}"), name)
            } else {
                (format!("{address}:{w}"), address)
            };
            Backend { server, line, name }
        })
        .collect()
}

/// Writes `keys` through a nutcracker with `options`, then checks that every key is on the
/// backend shardis's imported config names.
async fn assert_agreement(backends: &[Backend], options: &str, keys: &[Vec<u8>]) {
    for b in backends {
        let mut c = direct(&b.server).await;
        let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
    }
    let lines: Vec<String> = backends.iter().map(|b| b.line.clone()).collect();
    let proxy = Nutcracker::start(&lines, options).unwrap_or_else(|e| panic!("nutcracker: {e}"));
    let client = redis::Client::open(proxy.connection_info().unwrap()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for chunk in keys.chunks(200) {
        let mut pipe = redis::pipe();
        for k in chunk {
            pipe.cmd("SET").arg(k).arg(1).ignore();
        }
        let _: () = pipe.query_async(&mut conn).await.unwrap();
    }

    // Where nutcracker put each key, from the backends themselves.
    let mut holder: HashMap<Vec<u8>, usize> = HashMap::new();
    for (i, b) in backends.iter().enumerate() {
        let mut c = direct(&b.server).await;
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut c)
                .await
                .unwrap();
            for k in batch {
                assert!(
                    holder.insert(k.clone(), i).is_none(),
                    "{k:?} on two backends"
                );
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    assert_eq!(
        holder.len(),
        keys.len(),
        "some keys never reached a backend"
    );

    let import = shardis::twemproxy::import_str(proxy.yaml(), None).unwrap();
    let locator = Locator::new(
        import.config.topology(),
        &import.config.options().placement,
        import.config.options().hash_tag,
    )
    .unwrap();
    let index: HashMap<&str, usize> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| (b.name.as_str(), i))
        .collect();
    let mut wrong = Vec::new();
    for k in keys {
        let ours = index[locator.locate(k).as_str()];
        if ours != holder[k] {
            wrong.push((String::from_utf8_lossy(k).into_owned(), ours, holder[k]));
        }
    }
    assert!(
        wrong.is_empty(),
        "{options:?}: {} of {} keys placed differently (key, shardis, nutcracker): {:?}",
        wrong.len(),
        keys.len(),
        &wrong[..wrong.len().min(10)]
    );
}

#[tokio::test]
async fn every_key_hash_agrees_with_nutcracker() {
    let backends = backends(&[1, 1, 1, 1], false);
    let keys = keys(2000);
    for (_, hash) in shardis::placement::keyhash::ALL {
        assert_agreement(&backends, &format!("hash: {hash}"), &keys).await;
    }
}

#[tokio::test]
async fn named_servers_with_unequal_weights_agree() {
    let backends = backends(&[1, 2, 3, 1, 5], true);
    let keys = keys(3000);
    for hash in ["md5", "murmur", "fnv1a_64"] {
        assert_agreement(&backends, &format!("hash: {hash}"), &keys).await;
    }
}

#[tokio::test]
async fn hash_tags_agree() {
    let backends = backends(&[1, 1, 2], false);
    let keys = keys(2000);
    assert_agreement(&backends, "hash: fnv1a_64\nhash_tag: \"{}\"", &keys).await;
    assert_agreement(&backends, "hash: jenkins\nhash_tag: \"::\"", &keys).await;
}

#[tokio::test]
async fn three_to_ten_servers_agree() {
    // Equal weights at every size (twemproxy's f32 point count is not always 160), and ten
    // servers of unequal weight.
    let all = backends(&[1; 10], false);
    let keys = keys(2000);
    for n in 3..=10 {
        assert_agreement(&all[..n], "hash: fnv1a_64", &keys).await;
    }
    let weighted = backends(&[3, 1, 4, 1, 5, 9, 2, 6, 5, 3], false);
    assert_agreement(&weighted, "hash: hsieh", &keys).await;
}
