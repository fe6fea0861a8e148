//! TLS endpoints (`rediss://`) against real redis-servers with a TLS port, certificates made
//! by the test: trusted and mutual TLS, and every way a certificate or a port can be wrong.
#![cfg(feature = "tls")]

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use shardis::{Client, Config, ErrorKind, TlsOptions};
use shardis_testkit::tls::{CertAuthority, Issued, ServerTls, Usage, Validity};
use shardis_testkit::RedisServer;

/// Generous: handshakes of several tests at once on a loaded 2-core machine.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(2000);

fn ca(name: &str) -> CertAuthority {
    CertAuthority::new(name).unwrap_or_else(|e| panic!("cannot make a CA: {e}"))
}

fn tls_server(ca: &CertAuthority, server: Issued, require_client_cert: bool) -> RedisServer {
    let tls = ServerTls {
        server,
        ca_file: ca.ca_file().to_owned(),
        require_client_cert,
    };
    RedisServer::start_tls(&tls, &[]).unwrap_or_else(|e| panic!("cannot start redis-server: {e}"))
}

fn tls_url(server: &RedisServer) -> String {
    server.tls_url().expect("a TLS port")
}

async fn build(url: String, tls: TlsOptions) -> shardis::Result<Client> {
    Client::builder()
        .shard("shard-0", url)
        .tls(tls)
        .connect_timeout(CONNECT_TIMEOUT)
        .response_timeout(CONNECT_TIMEOUT)
        .health(common::patient_health())
        .build()
        .await
}

#[tokio::test]
async fn commands_run_over_tls_with_the_ca_file() {
    let ca = ca("root");
    let servers: Vec<RedisServer> = (0..2)
        .map(|i| tls_server(&ca, ca.loopback_server(&format!("s{i}")).unwrap(), false))
        .collect();
    let client = Client::builder()
        .shard("shard-0", tls_url(&servers[0]))
        .shard("shard-1", tls_url(&servers[1]))
        .tls(TlsOptions::default().ca_file(ca.ca_file()))
        .connect_timeout(CONNECT_TIMEOUT)
        .response_timeout(CONNECT_TIMEOUT)
        .health(common::patient_health())
        .build()
        .await
        .expect("a TLS client builds");
    for i in 0..200 {
        client.set(format!("k{i}"), i).await.unwrap();
    }
    for i in 0..200 {
        let v: Option<i64> = client.get(format!("k{i}")).await.unwrap();
        assert_eq!(v, Some(i));
    }
    // Both shards got keys, over their TLS ports (the plain ports saw no client but the
    // testkit's readiness checks).
    for s in &servers {
        let n: usize = common::dbsize(s).await;
        assert!(n > 0, "a shard got no key");
    }
    let status = client.status().await;
    assert!(
        status
            .iter()
            .flat_map(|s| &s.endpoints)
            .all(|e| e.health == shardis::Health::Up && e.error.is_none()),
        "{status:?}"
    );
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let ca = ca("root");
    let server = tls_server(&ca, ca.loopback_server("server").unwrap(), true);
    let client_cert = ca
        .issue(
            "client",
            &["shardis-client"],
            Usage::Client,
            Validity::Current,
        )
        .unwrap();
    let with_cert = TlsOptions::default()
        .ca_file(ca.ca_file())
        .client_cert(&client_cert.cert_file, &client_cert.key_file);
    let client = build(tls_url(&server), with_cert)
        .await
        .expect("mutual TLS with a client certificate");
    client.set("k", "v").await.unwrap();
    let v: Option<String> = client.get("k").await.unwrap();
    assert_eq!(v.as_deref(), Some("v"));

    let started = Instant::now();
    let err = build(
        tls_url(&server),
        TlsOptions::default().ca_file(ca.ca_file()),
    )
    .await
    .expect_err("no client certificate: refused");
    assert_tls_error(&err, &server, started);
}

/// The error of a refused TLS connection: kind `tls`, naming shard and endpoint, and given
/// within a few connect timeouts (never after a hang).
fn assert_tls_error(err: &shardis::Error, server: &RedisServer, started: Instant) {
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    assert_eq!(err.shard(), Some("shard-0"), "{err}");
    let endpoint = err
        .endpoint()
        .unwrap_or_else(|| panic!("no endpoint in {err}"));
    assert!(
        endpoint.starts_with("127.0.0.1:"),
        "{endpoint} is not one of {server:?}'s"
    );
    assert!(
        started.elapsed() < CONNECT_TIMEOUT * 5,
        "took {:?}: {err}",
        started.elapsed()
    );
}

#[tokio::test]
async fn every_bad_certificate_is_a_tls_error_naming_shard_and_endpoint() {
    let ca_ = ca("root");
    let other_ca = ca("other");
    let good = tls_server(&ca_, ca_.loopback_server("good").unwrap(), false);
    let expired = tls_server(
        &ca_,
        ca_.issue(
            "expired",
            &["localhost", "127.0.0.1"],
            Usage::Server,
            Validity::Expired,
        )
        .unwrap(),
        false,
    );
    let misnamed = tls_server(
        &ca_,
        ca_.issue(
            "misnamed",
            &["cache.example.org"],
            Usage::Server,
            Validity::Current,
        )
        .unwrap(),
        false,
    );
    let trusted = TlsOptions::default().ca_file(ca_.ca_file());
    let cases: Vec<(&str, String, TlsOptions, &RedisServer)> = vec![
        (
            "a CA that did not sign the server's certificate",
            tls_url(&good),
            TlsOptions::default().ca_file(other_ca.ca_file()),
            &good,
        ),
        (
            "an expired certificate",
            tls_url(&expired),
            trusted.clone(),
            &expired,
        ),
        (
            "a certificate for another host name",
            tls_url(&misnamed),
            trusted.clone(),
            &misnamed,
        ),
        (
            "a plain port behind rediss://",
            format!("rediss://127.0.0.1:{}", good.port()),
            trusted.clone(),
            &good,
        ),
        (
            "a TLS port behind redis://",
            format!("redis://127.0.0.1:{}", good.tls_port().unwrap()),
            trusted.clone(),
            &good,
        ),
    ];
    for (case, url, tls, server) in cases {
        let started = Instant::now();
        let err = build(url, tls)
            .await
            .err()
            .unwrap_or_else(|| panic!("{case}: the client built"));
        eprintln!("{case}: {err}");
        assert_tls_error(&err, server, started);
    }
    // The good server with the right CA works, so the failures above are the certificates'.
    build(tls_url(&good), trusted)
        .await
        .expect("the good server");
}

#[tokio::test]
async fn unusable_tls_files_are_tls_errors_naming_file_shard_and_endpoint() {
    let ca_ = ca("root");
    let server = tls_server(&ca_, ca_.loopback_server("server").unwrap(), false);
    let client = ca_
        .issue("client", &["c"], Usage::Client, Validity::Current)
        .unwrap();
    let other = ca_
        .issue("other", &["c"], Usage::Client, Validity::Current)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not-pem.pem");
    std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
    let broken_pem = dir.path().join("broken.pem");
    std::fs::write(
        &broken_pem,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.pem");
    let cases: Vec<(&str, TlsOptions, &Path)> = vec![
        (
            "a missing CA file",
            TlsOptions::default().ca_file(&missing),
            &missing,
        ),
        (
            "a CA file without PEM",
            TlsOptions::default().ca_file(&not_pem),
            &not_pem,
        ),
        (
            "a CA file with broken PEM",
            TlsOptions::default().ca_file(&broken_pem),
            &broken_pem,
        ),
        (
            "a missing client key",
            TlsOptions::default()
                .ca_file(ca_.ca_file())
                .client_cert(&client.cert_file, &missing),
            &missing,
        ),
        (
            "a client key that is not PEM",
            TlsOptions::default()
                .ca_file(ca_.ca_file())
                .client_cert(&client.cert_file, &not_pem),
            &not_pem,
        ),
        (
            "a client key of another certificate",
            TlsOptions::default()
                .ca_file(ca_.ca_file())
                .client_cert(&client.cert_file, &other.key_file),
            &client.cert_file,
        ),
    ];
    for (case, tls, file) in cases {
        let started = Instant::now();
        let err = build(tls_url(&server), tls)
            .await
            .err()
            .unwrap_or_else(|| panic!("{case}: the client built"));
        eprintln!("{case}: {err}");
        assert_tls_error(&err, &server, started);
        let shown = err.to_string();
        assert!(
            shown.contains(&file.display().to_string()),
            "{case}: {shown}"
        );
        // A key file's contents are never quoted.
        let key = std::fs::read_to_string(&other.key_file).unwrap();
        let key_body = key.lines().nth(1).unwrap();
        assert!(!shown.contains(key_body) && !format!("{err:?}").contains(key_body));
    }
}

#[tokio::test]
async fn insecure_skip_verify_accepts_an_untrusted_certificate() {
    let other_ca = ca("other");
    let server = tls_server(
        &other_ca,
        other_ca
            .issue(
                "misnamed",
                &["cache.example.org"],
                Usage::Server,
                Validity::Expired,
            )
            .unwrap(),
        false,
    );
    let client = build(
        tls_url(&server),
        TlsOptions::default().insecure_skip_verify(true),
    )
    .await
    .expect("no verification: connects");
    client.set("k", "v").await.unwrap();
}

#[tokio::test]
async fn the_tls_section_of_a_config_file_is_used() {
    let ca_ = ca("root");
    let server = tls_server(&ca_, ca_.loopback_server("server").unwrap(), true);
    let client_cert = ca_
        .issue("client", &["c"], Usage::Client, Validity::Current)
        .unwrap();
    let text = format!(
        r#"
        [tls]
        ca_file = "{}"
        client_cert_file = "{}"
        client_key_file = "{}"
        insecure_skip_verify = false

        [[shards]]
        name = "shard-0"
        primary = "{}"
        "#,
        ca_.ca_file().display(),
        client_cert.cert_file.display(),
        client_cert.key_file.display(),
        tls_url(&server)
    );
    let config = Config::from_toml_str(&text).expect("config parses");
    assert_eq!(config.options().tls.ca_file.as_deref(), Some(ca_.ca_file()));
    let client = Client::from_config(config)
        .await
        .expect("client from config");
    client.set("k", "v").await.unwrap();

    let err = Config::from_toml_str("[tls]\nclient_cert_file = \"/x.pem\"\n[[shards]]\nname = \"a\"\nprimary = \"rediss://h:1\"")
        .unwrap_err();
    assert!(err.to_string().contains("tls.client_key_file"), "{err}");
}

#[test]
fn a_shard_mixes_tls_and_plain_endpoints_only_when_told() {
    let mixed = |allow: bool| {
        shardis::Topology::new(vec![shardis::ShardSpec::new("a", "rediss://10.0.0.1:6380")
            .replica("redis://10.0.0.2:6379")
            .allow_mixed_tls(allow)])
    };
    let err = mixed(false).unwrap_err();
    assert!(err.to_string().contains("allow_mixed_tls"), "{err}");
    mixed(true).expect("allowed explicitly");
    let config = Config::from_toml_str(
        "[[shards]]\nname = \"a\"\nprimary = \"rediss://10.0.0.1:6380\"\nreplicas = [\"redis://10.0.0.2:6379\"]\nallow_mixed_tls = true",
    );
    config.expect("allowed in the config file");
}
