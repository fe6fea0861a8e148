//! No password reaches an error's `Display` or `Debug`, a `Debug` of a spec, builder,
//! topology or endpoint, or a rejected reload's event, whatever the mistake in the config.
//! Every path is tried with known passwords holding the characters that used to defeat
//! redaction: `/`, `@`, `:`, `#`, `?`.

use crate::common;

use std::io::Write;
use std::time::Duration;

use common::*;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use shardis::{
    Client, Config, ConfigError, Endpoint, Error, ErrorKind, Event, ShardSpec, Topology,
};
use shardis_testkit::RedisServer;

/// The passwords every test hides, with a fragment of each that must not show either.
const PASSWORDS: [(&str, &str); 2] = [("Sup3r/Secr@t:pw", "Sup3r"), ("p@ss/w:rd#1?x", "rd#1?x")];

fn encoded(pw: &str) -> String {
    utf8_percent_encode(pw, NON_ALPHANUMERIC).to_string()
}

/// Fails if `shown` holds any password, raw or percent-encoded, or a fragment of one.
fn assert_hidden(shown: &str, context: &str) {
    for (pw, fragment) in PASSWORDS {
        for secret in [pw, encoded(pw).as_str(), fragment] {
            assert!(
                !shown.contains(secret),
                "{context}: `{secret}` shows in:\n{shown}"
            );
        }
    }
}

/// `Display` and `Debug` of a config error and of the `Error` it becomes.
fn every_rendering(err: &ConfigError) -> String {
    let e = Error::from(err.clone());
    format!("{err}\n{err:?}\n{e}\n{e:?}")
}

/// Which error a bad config must give.
type Expected = fn(&ConfigError) -> bool;

/// Config texts, each wrong in its own way, with the password `pw` in a URL.
fn bad_configs(pw: &str) -> Vec<(String, Expected)> {
    let enc = encoded(pw);
    let shard = "[[shards]]\nname = \"a\"\nprimary = \"redis://127.0.0.1:7001\"\n";
    let parse: Expected = |e| matches!(e, ConfigError::Parse(_));
    let url: Expected = |e| matches!(e, ConfigError::InvalidUrl { .. });
    vec![
        // Type errors: a string for a list, for a number, a list for a string, a table.
        (format!("{shard}replicas = \"redis://:{pw}@h:1\"\n"), parse),
        (format!("{shard}replicas = \"redis://:{enc}@h:1\"\n"), parse),
        (format!("{shard}weight = \"redis://u:{pw}@h:1\"\n"), parse),
        (
            format!("[[shards]]\nname = \"a\"\nprimary = [\"redis://:{pw}@h:1\"]\n"),
            parse,
        ),
        (
            format!("[[shards]]\nname = \"a\"\nprimary = {{ url = \"redis://:{enc}@h:1\" }}\n"),
            parse,
        ),
        // The URL as a key, as an enum value, as a hash tag.
        (format!("{shard}\"redis://:{pw}@h:1\" = 1\n"), parse),
        (
            format!("[placement]\nalgorithm = \"redis://:{pw}@h:1\"\n{shard}"),
            parse,
        ),
        (format!("[routing]\nread_from = \"{pw}\"\n{shard}"), parse),
        (
            format!("[placement]\nhash_tag = \"redis://:{pw}@h:1\"\n{shard}"),
            |e| matches!(e, ConfigError::InvalidValue { .. }),
        ),
        // Syntax errors on the password's line: unquoted, unterminated, a duplicate key.
        (
            format!("[[shards]]\nname = \"a\"\nprimary = redis://:{pw}@h:1\n"),
            parse,
        ),
        (
            format!("[[shards]]\nname = \"a\"\nprimary = \"redis://:{pw}@h:1\n"),
            parse,
        ),
        (
            format!("[[shards]]\nname = \"a\"\nprimary = '''redis://:{pw}@h:1\n"),
            parse,
        ),
        (format!("{shard}primary = \"redis://:{pw}@h:1\"\n"), parse),
        (
            format!("[[shards]]\nname = \"a\"\nprimary = \"redis://:{enc}@h:1\" x\n"),
            parse,
        ),
        // Bad URLs: a raw password (the `/` or `#` cuts it), a bad db, a bad scheme.
        (
            format!("[[shards]]\nname = \"a\"\nprimary = \"redis://:{pw}@h:1\"\n"),
            url,
        ),
        (
            format!("[[shards]]\nname = \"a\"\nprimary = \"redis://u:{pw}@h:1/2\"\n"),
            url,
        ),
        (
            format!("[[shards]]\nname = \"a\"\nprimary = \"redis://:{enc}@h:1/db\"\n"),
            url,
        ),
        (
            format!("[[shards]]\nname = \"a\"\nprimary = \"http://:{enc}@h:1\"\n"),
            url,
        ),
        (
            format!(
                "[[shards]]\nname = \"a\"\nprimary = \"redis://h:1\"\nreplicas = [\"redis://:{pw}@h:2\"]\n"
            ),
            url,
        ),
        (
            format!("[[shards]]\nname = \"a\"\nprimary = \":{pw}@h:1\"\n"),
            url,
        ),
        // A valid URL with a duplicate endpoint.
        (
            format!(
                "{shard}[[shards]]\nname = \"b\"\nprimary = \"redis://:{enc}@localhost:7001\"\n"
            ),
            |e| matches!(e, ConfigError::DuplicateEndpoint { .. }),
        ),
    ]
}

#[test]
fn config_errors_never_show_a_password() {
    for (pw, _) in PASSWORDS {
        for (text, expected) in bad_configs(pw) {
            let err = Config::from_toml_str(&text).unwrap_err();
            assert!(expected(&err), "unexpected error for\n{text}\n{err:?}");
            assert_hidden(&every_rendering(&err), &text);
        }
    }
}

#[test]
fn parse_errors_say_where_without_quoting_the_line() {
    let (pw, _) = PASSWORDS[0];
    let text = format!(
        "[[shards]]\nname = \"a\"\nprimary = \"redis://h:1\"\nreplicas = \"redis://:{pw}@h:1\"\n"
    );
    let err = Config::from_toml_str(&text).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid config: line 4, column 12 (`shards.replicas`): invalid type: string (not \
         shown), expected a sequence"
    );
}

#[test]
fn debug_of_specs_builders_topologies_and_endpoints_hides_passwords() {
    for (pw, _) in PASSWORDS {
        let enc = encoded(pw);
        for url in [
            format!("redis://:{pw}@127.0.0.1:7001"),
            format!("redis://app:{pw}@127.0.0.1:7001/2"),
            format!("redis://:{enc}@127.0.0.1:7001"),
            format!(":{pw}@127.0.0.1:7001"),
        ] {
            let spec = ShardSpec::new("a", url.as_str()).replica(url.as_str());
            assert_hidden(&format!("{spec:?}"), &url);
            let builder = Client::builder().shard("a", url.as_str());
            assert_hidden(&format!("{builder:?}"), &url);
            let builder = Client::builder().shard_spec(spec);
            assert_hidden(&format!("{builder:?}"), &url);
        }
        // Parsed endpoints, a topology and a config built from them.
        let url = format!("redis://app:{enc}@127.0.0.1:7001/2");
        let endpoint = Endpoint::parse(&url).unwrap();
        assert!(endpoint.has_password());
        assert_eq!(endpoint.to_string(), "redis://app:***@127.0.0.1:7001/2");
        assert_hidden(&format!("{endpoint} {endpoint:?}"), &url);
        let topology = Topology::new(vec![ShardSpec::new("a", url.as_str())]).unwrap();
        assert_hidden(&format!("{topology:?}"), &url);
        let config =
            Config::from_toml_str(&format!("[[shards]]\nname = \"a\"\nprimary = \"{url}\"\n"))
                .unwrap();
        assert_hidden(&format!("{config:?}"), &url);
        let builder = Client::builder().config(config);
        assert_hidden(&format!("{builder:?}"), &url);
    }
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[tokio::test]
async fn a_rejected_reload_never_shows_a_password() {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("cannot start redis-server: {e}"));
    let client = Client::builder()
        .shard("a", server.url())
        .build()
        .await
        .unwrap();
    let mut events = client.events();
    for (pw, _) in PASSWORDS {
        for (text, _) in bad_configs(pw) {
            let file = config_file(&text);
            let err = client.reload_config(file.path()).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{err}");
            assert_hidden(&format!("{err}\n{err:?}"), &text);
            let event = wait_event(&mut events, Duration::from_secs(5), |e| {
                matches!(e, Event::ConfigRejected { .. })
            })
            .await
            .expect("a ConfigRejected event");
            let Event::ConfigRejected { error } = &event else {
                unreachable!()
            };
            // The event (and the WARN log line, written from the same error) says why.
            assert_eq!(error, &err.to_string());
            assert_hidden(&format!("{error}\n{event:?}"), &text);
        }
    }
    // The running topology stayed in force.
    assert_eq!(client.topology_version(), 1);
    client.set("k", "v").await.unwrap();
}

#[tokio::test]
async fn a_wrong_password_never_shows_either_password() {
    let (right, _) = PASSWORDS[0];
    let (wrong, _) = PASSWORDS[1];
    let server = RedisServer::start_with(&["--requirepass", right])
        .unwrap_or_else(|e| panic!("cannot start redis-server: {e}"));
    let url = |pw: &str| format!("redis://:{}@127.0.0.1:{}", encoded(pw), server.port());
    let client = Client::builder()
        .shard("a", url(right))
        .build()
        .await
        .unwrap();
    client.set("k", "v").await.unwrap();
    assert_hidden(&format!("{client:?}"), "client");

    let err = Client::builder()
        .shard("a", url(wrong))
        .connect_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    assert_eq!(err.shard(), Some("a"));
    assert_hidden(&format!("{err}\n{err:?}"), "wrong password");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        assert_hidden(&format!("{s}\n{s:?}"), "error source");
        source = s.source();
    }
}
