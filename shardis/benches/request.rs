//! The client's own cost per request, without Redis: a fake server on loopback answers every
//! command from memory (a 32-byte value for each key read, `+OK` for the rest), on the same
//! single-threaded runtime as the client, so the time per request is the client's work (and
//! the fake's few parsing steps) plus the socket calls, with no server process to share the
//! cores with. Regressions of the request path show up here without the noise of a real run.
//!
//! `cargo bench --bench request`. Each iteration is 64 concurrent calls; the figure criterion
//! reports is per 64. `direct` is the same 64 calls on a raw redis-rs multiplexed connection,
//! routed by hand: what no client layer can beat.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const VALUE: &[u8] = b"abcdefghijklmnopqrstuvwxyzabcdef";
const CALLS: usize = 64;

/// Parses complete RESP arrays of bulk strings from `buf`, returning each command's arguments
/// and how many bytes were consumed.
fn parse(buf: &[u8]) -> (Vec<Vec<Vec<u8>>>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    'commands: loop {
        let mut i = at;
        let Some(line) = line(buf, &mut i) else {
            break;
        };
        let Some(n) = line.strip_prefix(b"*").and_then(number) else {
            break;
        };
        let mut args = Vec::with_capacity(n);
        for _ in 0..n {
            let Some(len) = line_at(buf, &mut i)
                .and_then(|l| l.strip_prefix(b"$"))
                .and_then(number)
            else {
                break 'commands;
            };
            if buf.len() < i + len + 2 {
                break 'commands;
            }
            args.push(buf[i..i + len].to_vec());
            i += len + 2;
        }
        out.push(args);
        at = i;
    }
    (out, at)
}

fn line<'a>(buf: &'a [u8], i: &mut usize) -> Option<&'a [u8]> {
    line_at(buf, i)
}

fn line_at<'a>(buf: &'a [u8], i: &mut usize) -> Option<&'a [u8]> {
    let rest = &buf[*i..];
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    *i += end + 2;
    Some(&rest[..end])
}

fn number(b: &[u8]) -> Option<usize> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn bulk(out: &mut Vec<u8>, v: &[u8]) {
    out.extend_from_slice(format!("${}\r\n", v.len()).as_bytes());
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
}

/// Answers one command from memory.
fn answer(args: &[Vec<u8>], out: &mut Vec<u8>) {
    let name = args
        .first()
        .map(|a| a.to_ascii_uppercase())
        .unwrap_or_default();
    match name.as_slice() {
        b"GET" => bulk(out, VALUE),
        b"MGET" => {
            out.extend_from_slice(format!("*{}\r\n", args.len() - 1).as_bytes());
            for _ in 1..args.len() {
                bulk(out, VALUE);
            }
        }
        b"PING" => out.extend_from_slice(b"+PONG\r\n"),
        b"ROLE" => out.extend_from_slice(b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"),
        _ => out.extend_from_slice(b"+OK\r\n"),
    }
}

async fn serve(mut socket: TcpStream) {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(64 * 1024);
    loop {
        let n = match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let (commands, used) = parse(&buf);
        buf.drain(..used);
        out.clear();
        for c in &commands {
            answer(c, &mut out);
        }
        if socket.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// Starts a fake server on the current runtime; returns its port.
async fn fake_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let _ = socket.set_nodelay(true);
            tokio::spawn(serve(socket));
        }
    });
    port
}

fn request_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ports: Vec<u16> = rt.block_on(async { join_all((0..4).map(|_| fake_server())).await });
    let client = |coalesce: bool| {
        rt.block_on(async {
            ports
                .iter()
                .enumerate()
                .fold(shardis::Client::builder(), |b, (i, p)| {
                    b.shard(format!("s{i}"), format!("redis://127.0.0.1:{p}"))
                })
                .coalesce_reads(coalesce)
                .build()
                .await
                .expect("client over the fake servers")
        })
    };
    let clients = [("coalesced", client(true)), ("plain", client(false))];
    let keys: Arc<Vec<String>> = Arc::new((0..CALLS * 10).map(|i| format!("k:{i}")).collect());
    let direct = rt.block_on(async {
        let mut conns = Vec::new();
        for p in &ports {
            let c = redis::Client::open(format!("redis://127.0.0.1:{p}")).expect("url");
            conns.push(c.get_multiplexed_async_connection().await.expect("conn"));
        }
        conns
    });
    let locator = shardis::placement::Locator::new(
        &clients[0].1.topology(),
        &shardis::placement::PlacementSpec::default(),
        None,
    )
    .expect("locator");

    let mut g = c.benchmark_group("request");
    g.throughput(Throughput::Elements(CALLS as u64));
    g.measurement_time(Duration::from_secs(3));
    for (name, client) in &clients {
        g.bench_function(format!("get x{CALLS}/{name}"), |b| {
            b.to_async(&rt).iter(|| async {
                let calls = keys[..CALLS]
                    .iter()
                    .map(|k| client.get::<_, Option<Vec<u8>>>(k.as_str()));
                for r in join_all(calls).await {
                    r.expect("get");
                }
            })
        });
        g.bench_function(format!("mget10 x{CALLS}/{name}"), |b| {
            b.to_async(&rt).iter(|| async {
                let calls = keys
                    .chunks(10)
                    .map(|ks| client.mget::<_, Option<Vec<u8>>>(ks));
                for r in join_all(calls).await {
                    r.expect("mget");
                }
            })
        });
    }
    g.bench_function(format!("get x{CALLS}/direct"), |b| {
        b.to_async(&rt).iter(|| async {
            let calls = keys[..CALLS].iter().map(|k| {
                let mut conn = direct[locator.index(k.as_bytes())].clone();
                async move {
                    redis::cmd("GET")
                        .arg(k)
                        .query_async::<Option<Vec<u8>>>(&mut conn)
                        .await
                }
            });
            for r in join_all(calls).await {
                r.expect("get");
            }
        })
    });
    g.finish();
}

criterion_group!(benches, request_path);
criterion_main!(benches);
