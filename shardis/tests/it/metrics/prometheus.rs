//! `serve_prometheus`: scraped over plain HTTP and parsed as the Prometheus text format.
//!
//! This test alone uses the process's global recorder; the others install recorders of their
//! own for their own threads, which take precedence, so nothing of theirs reaches this one.

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// One sample line: `name{k="v",...} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.name == name
            && labels
                .iter()
                .all(|(k, v)| self.labels.iter().any(|(lk, lv)| lk == k && lv == v))
    }
}

/// `GET /metrics` on a raw connection; the body.
async fn scrape(addr: SocketAddr) -> String {
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    conn.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).expect("a text response");
    let (head, body) = response.split_once("\r\n\r\n").expect("headers end");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("chunked"), "{head}");
    body.to_owned()
}

/// The samples, `# HELP` and `# TYPE` lines of a text-format body; panics on any other line.
fn parse(
    body: &str,
) -> (
    Vec<Sample>,
    HashMap<String, String>,
    HashMap<String, String>,
) {
    let (mut samples, mut help, mut types) = (Vec::new(), HashMap::new(), HashMap::new());
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').expect("HELP name text");
            help.insert(name.to_owned(), text.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            types.insert(name.to_owned(), kind.to_owned());
        } else {
            let (series, value) = line.rsplit_once(' ').expect("series value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').expect("closing brace");
                    let labels = inner
                        .split("\",")
                        .map(|pair| {
                            let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                            (k.to_owned(), v.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    (name, labels)
                }
                None => (series, Vec::new()),
            };
            samples.push(Sample {
                name: name.to_owned(),
                labels,
                value,
            });
        }
    }
    (samples, help, types)
}

#[tokio::test]
async fn serve_prometheus_serves_what_the_client_records_in_the_text_format() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    serve_prometheus(addr).unwrap();
    let again = serve_prometheus(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap_err();
    assert_eq!(
        again.kind(),
        ErrorKind::Config,
        "one global recorder per process: {again}"
    );

    let server = RedisServer::start().unwrap();
    let client = Client::builder()
        .shard("prom", server.url())
        .health(patient_health())
        .build()
        .await
        .unwrap();
    client.set("k", "v").await.unwrap();
    let _: Option<String> = client.get("k").await.unwrap();
    let _: Option<String> = client.get("k").await.unwrap();

    let (samples, help, types) = parse(&scrape(addr).await);
    let one = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let found: Vec<&Sample> = samples.iter().filter(|s| s.has(name, labels)).collect();
        assert_eq!(found.len(), 1, "{name} {labels:?} in {samples:#?}");
        found[0].value
    };
    assert_eq!(
        one(REQUESTS_TOTAL, &req("prom", "primary", "SET", "ok")),
        1.0
    );
    assert_eq!(
        one(REQUESTS_TOTAL, &req("prom", "primary", "GET", "ok")),
        2.0
    );
    let endpoint = format!("127.0.0.1:{}", server.port());
    let up = [
        ("shard", "prom"),
        ("endpoint", endpoint.as_str()),
        ("role", "primary"),
    ];
    assert_eq!(one(ENDPOINT_UP, &up), 1.0);
    assert_eq!(one(ROUTING_TABLE_VERSION, &[]), 1.0);
    assert_eq!(
        one(
            POOL_CONNECTIONS,
            &[("shard", "prom"), ("endpoint", endpoint.as_str())]
        ),
        1.0
    );

    // The duration is a real Prometheus histogram: cumulative buckets, a count and a sum.
    let timed = [("shard", "prom"), ("role", "primary")];
    let count_name = format!("{REQUEST_DURATION_SECONDS}_count");
    assert_eq!(one(&count_name, &timed), 3.0);
    assert!(one(&format!("{REQUEST_DURATION_SECONDS}_sum"), &timed) > 0.0);
    let bucket_name = format!("{REQUEST_DURATION_SECONDS}_bucket");
    let buckets: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.has(&bucket_name, &timed))
        .collect();
    assert!(buckets.len() >= 10, "{buckets:?}");
    assert!(
        buckets.windows(2).all(|w| w[0].value <= w[1].value),
        "cumulative"
    );
    assert_eq!(one(&bucket_name, &[("shard", "prom"), ("le", "+Inf")]), 3.0);

    for (name, kind) in [
        (REQUESTS_TOTAL, "counter"),
        (REQUEST_DURATION_SECONDS, "histogram"),
        (ENDPOINT_UP, "gauge"),
        (POOL_CONNECTIONS, "gauge"),
        (ROUTING_TABLE_VERSION, "gauge"),
    ] {
        assert_eq!(types.get(name).map(String::as_str), Some(kind), "{name}");
        assert!(
            help.get(name).is_some_and(|h| !h.is_empty()),
            "{name} has no HELP"
        );
    }
    assert!(
        samples.iter().all(|s| s.name.starts_with("shardis_")),
        "{samples:#?}"
    );
}
