//! Endpoints and inputs a hostile production environment produces: a server at `maxclients`,
//! a listener that is not Redis, listeners that never answer, values and keys over the limits.

use crate::common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use common::*;
use shardis::{Client, ErrorKind, ShardSpec, Topology};
use shardis_testkit::{RedisServer, SilentListener};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_at_maxclients_is_named_with_its_own_message() {
    let server = RedisServer::start_with(&["--maxclients", "2"]).unwrap();
    // Take every slot.
    let _a = direct(&server).await;
    let _b = direct(&server).await;
    let err = Client::builder()
        .shard("s", server.url())
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    assert!(
        err.to_string().contains("max number of clients reached"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_that_got_some_connections_serves_with_them_and_says_so() {
    // Room for the probe connection and 3 of the 8 request connections wanted.
    let server = RedisServer::start_with(&["--maxclients", "4"]).unwrap();
    let client = Client::builder()
        .shard("s", server.url())
        .connections_per_endpoint(8)
        .health(patient_health())
        .build()
        .await
        .unwrap();
    for i in 0..200 {
        client.set(format!("k{i}").as_str(), i).await.unwrap();
    }
    let filled = eventually(Duration::from_secs(5), || async {
        let e = &client.status().await[0].endpoints[0];
        e.connections >= 1 && e.connections < 8 && e.target_connections == 8
    })
    .await;
    let e = &client.status().await[0].endpoints[0];
    assert!(
        filled,
        "status shows {}/{}",
        e.connections, e.target_connections
    );
    assert_eq!(e.health, shardis::Health::Up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_turned_away_by_a_full_server_keeps_the_endpoint_up() {
    let server = RedisServer::start().unwrap();
    let mut health = fast_health();
    health.probe_timeout = Duration::from_millis(500);
    let client = Client::builder()
        .shard("s", server.url())
        .connections_per_endpoint(2)
        .health(health)
        .build()
        .await
        .unwrap();
    let mut events = client.events();
    for i in 0..100 {
        client.set(format!("k{i}").as_str(), i).await.unwrap();
    }
    let full = eventually(Duration::from_secs(5), || async {
        client.status().await[0].endpoints[0].connections == 2
    })
    .await;
    assert!(full, "the pool never filled");
    // The probe connection is named `shardis-probe`: close it, and leave no room for another, so the probe's reconnect is turned away (`max number of clients`).
    let mut admin = direct(&server).await;
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut admin)
        .await
        .unwrap();
    let probe = list
        .lines()
        .find(|l| l.contains(" name=shardis-probe "))
        .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .unwrap_or_else(|| panic!("no probe connection in CLIENT LIST:\n{list}"))
        .to_owned();
    let room = list.lines().count() - 1;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxclients")
        .arg(room)
        .query_async(&mut admin)
        .await
        .unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(&probe)
        .query_async(&mut admin)
        .await
        .unwrap();
    // Wait for several probes to be turned away.
    // (On the admin connection: a new one would be turned away too.)
    let admin = tokio::sync::Mutex::new(admin);
    let turned_away = eventually(Duration::from_secs(10), || async {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query_async(&mut *admin.lock().await)
            .await
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("rejected_connections:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n >= 5)
    })
    .await;
    assert!(turned_away, "the probe never reconnected");
    // Probes went on over a request connection: the endpoint was never marked down (the one
    // probe that found its connection closed may make it `Suspect`), and requests go on on the
    // connections it has.
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(
                event,
                shardis::Event::Health {
                    to: shardis::Health::Down,
                    ..
                }
            ),
            "marked down: {event:?}"
        );
    }
    assert_eq!(
        client.status().await[0].endpoints[0].health,
        shardis::Health::Up
    );
    for i in 0..100 {
        let v: Option<i64> = client.get(format!("k{i}").as_str()).await.unwrap();
        assert_eq!(v, Some(i));
    }
}

/// A listener that answers anything with an HTTP error, as a web server on the port would.
fn http_listener() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_is_not_redis_is_named_with_its_first_bytes() {
    let port = http_listener();
    let err = Client::builder()
        .shard("s", format!("redis://127.0.0.1:{port}"))
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    let text = err.to_string();
    assert!(text.contains("did not answer like Redis"), "{text}");
    assert!(text.contains("HTTP/1.1 400 Bad Request"), "{text}");
    assert!(text.len() < 300, "unbounded: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_many_endpoints_that_never_answer_is_bounded() {
    // 200 shards whose endpoints accept and never reply (one listener each, loopback only).
    let listeners: Vec<SilentListener> =
        (0..200).map(|_| SilentListener::start().unwrap()).collect();
    let specs: Vec<ShardSpec> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| ShardSpec::new(format!("s{i}"), l.url()))
        .collect();
    let client = Client::builder()
        .config(shardis::Config::new(
            Topology::new(specs).unwrap(),
            shardis::Options::default(),
        ))
        .connect_timeout(Duration::from_millis(200))
        .response_timeout(Duration::from_millis(200))
        .lazy_connect(true)
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    let status = client.status().await;
    let took = started.elapsed();
    assert_eq!(status.len(), 200);
    assert!(status
        .iter()
        .all(|s| s.endpoints[0].error.is_some() && s.endpoints[0].server_role.is_none()));
    // Not a timing assertion on speed, a bound on work: one timeout for all, not one each
    // (200 sequential timeouts would take 40 s).
    println!("status of 200 silent endpoints took {took:?}");
    assert!(took < Duration::from_secs(20), "status took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_and_keys_over_the_limits_are_refused_before_anything_is_sent() {
    let servers = servers(1);
    let client = builder(&servers).build().await.unwrap();
    // 512 MiB + 1: zeroed pages, never touched, because nothing reads them.
    let huge = vec![0u8; 512 * 1024 * 1024 + 1];
    let err = client.set("k", &huge[..]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(!err.is_outcome_unknown());
    let err = client
        .mset(&[("a", &b"1"[..]), ("b", &huge[..])])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let err = client
        .get::<_, Option<Vec<u8>>>(&huge[..])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(dbsize(&servers[0]).await, 0);
    // The endpoint was never touched: still up, and serving.
    client.set("k", "v").await.unwrap();
}
