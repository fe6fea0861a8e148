//! The `shardis` binary never prints a password: not on stderr, not in `--format json`,
//! whatever is wrong with the config file or the server's password.

use std::io::Write;
use std::process::{Command, Stdio};

/// Passwords holding the characters that used to defeat redaction.
const PASSWORDS: [&str; 2] = ["Sup3r/Secr@t:pw", "p@ss/w:rd#1?x"];

fn encoded(pw: &str) -> String {
    pw.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs the binary; returns exit code, stdout and stderr.
fn shardis(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shardis"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run shardis");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn assert_hidden(shown: &str, context: &str) {
    for pw in PASSWORDS {
        for secret in [pw.to_owned(), encoded(pw)] {
            assert!(
                !shown.contains(&secret),
                "{context}: `{secret}` shows in:\n{shown}"
            );
        }
    }
}

/// Runs `args` with `--config FILE` in both formats: exit 2, a config error, no password.
fn assert_rejected_quietly(file: &str, args: &[&str], kind: &str, context: &str) {
    let mut table = vec!["--config", file];
    table.extend_from_slice(args);
    let (code, out, err) = shardis(&table);
    assert_eq!(code, 2, "{context}: {err}");
    assert!(err.starts_with("error: "), "{context}: {err}");
    assert_hidden(&format!("{out}{err}"), context);

    let mut json = vec!["--config", file, "--format", "json"];
    json.extend_from_slice(args);
    let (code, out, err) = shardis(&json);
    assert_eq!(code, 2, "{context}: {err}");
    assert_hidden(&format!("{out}{err}"), context);
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON error document");
    assert_eq!(v["error"]["kind"], kind, "{context}: {out}");
}

#[test]
fn a_bad_config_never_prints_its_password() {
    for pw in PASSWORDS {
        let enc = encoded(pw);
        let shard = "[[shards]]\nname = \"a\"\nprimary = \"redis://127.0.0.1:1\"\n";
        for text in [
            // A string instead of a list: the TOML error would quote the line.
            format!("{shard}replicas = \"redis://:{pw}@127.0.0.1:2\"\n"),
            format!("{shard}replicas = \"redis://:{enc}@127.0.0.1:2\"\n"),
            // A syntax error on the password's line.
            format!("[[shards]]\nname = \"a\"\nprimary = \"redis://:{pw}@127.0.0.1:2\n"),
            // A raw password: the `/` or `#` cuts the URL, which must still be redacted.
            format!("[[shards]]\nname = \"a\"\nprimary = \"redis://:{pw}@127.0.0.1:2\"\n"),
            format!("[[shards]]\nname = \"a\"\nprimary = \"redis://u:{enc}@127.0.0.1:2/x\"\n"),
        ] {
            let file = write(&text);
            let path = file.path().to_str().unwrap();
            assert_rejected_quietly(path, &["status"], "config", &text);
            assert_rejected_quietly(path, &["locate", "k"], "config", &text);
        }
    }
}

#[test]
fn a_bad_twemproxy_file_never_prints_its_password() {
    for pw in PASSWORDS {
        for yaml in [
            format!("p:\n  redis: true\n  redis_auth: {pw}\n  servers: {pw}\n"),
            format!("p:\n  redis: true\n  redis_auth: \"{pw}\n  servers:\n   - h:1:1\n"),
            format!("p:\n  redis: true\n  redis_auth: {pw}\n  servers:\n   - {pw}\n"),
            format!("p:\n  redis: true\n  redis_auth: {pw}\n  servers:\n   - h:1:1\n   - h:1:1\n"),
        ] {
            let file = write(&yaml);
            let path = file.path().to_str().unwrap();
            for format in ["table", "json"] {
                let (code, out, err) =
                    shardis(&["--format", format, "locate", "--twemproxy", path, "k"]);
                assert_eq!(code, 2, "{yaml}: {err}");
                assert_hidden(&format!("{out}{err}"), &yaml);
            }
        }
    }
}

#[test]
fn a_wrong_password_never_prints_either_password() {
    let [right, wrong] = PASSWORDS;
    let server = shardis_testkit::RedisServer::start_with(&["--requirepass", right])
        .unwrap_or_else(|e| panic!("cannot start redis-server: {e}"));
    let config = write(&format!(
        "[pool]\nconnect_timeout_ms = 500\n[[shards]]\nname = \"a\"\nprimary = \"redis://:{}@127.0.0.1:{}\"\n",
        encoded(wrong),
        server.port()
    ));
    let path = config.path().to_str().unwrap();
    assert_rejected_quietly(path, &["get", "k"], "connection", "wrong password");
}

#[test]
fn bad_durations_and_sizes_are_refused_briefly() {
    for (flag, value, says) in [
        ("--duration", "10parsecs", "unknown time unit `parsecs`"),
        ("--duration", "10", "a time unit is needed"),
        ("--value-size", "32k", "expected a whole number"),
    ] {
        let (code, _, err) = shardis(&["bench", flag, value]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(says), "{err}");
    }
}

/// Runs the binary with one extra environment variable.
fn shardis_env(args: &[&str], var: (&str, &str)) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shardis"))
        .args(args)
        .env(var.0, var.1)
        .stdin(Stdio::null())
        .output()
        .expect("run shardis");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn passwords_from_env_and_file_and_tls_keys_never_print() {
    use shardis_testkit::tls::{CertAuthority, ServerTls, Usage, Validity};
    let [from_env, from_file] = PASSWORDS;
    let ca = CertAuthority::new("root").unwrap();
    let client_cert = ca
        .issue("client", &["c"], Usage::Client, Validity::Current)
        .unwrap();
    let key_pem = std::fs::read_to_string(&client_cert.key_file).unwrap();
    let key_line = key_pem.lines().nth(1).unwrap().to_owned();
    let tls = ServerTls {
        server: ca.loopback_server("server").unwrap(),
        ca_file: ca.ca_file().to_owned(),
        require_client_cert: true,
    };
    let a = shardis_testkit::RedisServer::start_tls(&tls, &["--requirepass", from_env])
        .unwrap_or_else(|e| panic!("cannot start redis-server: {e}"));
    let b = shardis_testkit::RedisServer::start_with(&["--requirepass", from_file])
        .unwrap_or_else(|e| panic!("cannot start redis-server: {e}"));
    let password_file = write(&format!("{from_file}\n"));
    let config = write(&format!(
        r#"
        [pool]
        connect_timeout_ms = 1000
        [tls]
        ca_file = "{}"
        client_cert_file = "{}"
        client_key_file = "{}"
        [[shards]]
        name = "a"
        primary = "{}"
        password_env = "SHARDIS_CLI_TEST_PASSWORD"
        [[shards]]
        name = "b"
        primary = "redis://127.0.0.1:{}"
        password_file = "{}"
        "#,
        ca.ca_file().display(),
        client_cert.cert_file.display(),
        client_cert.key_file.display(),
        a.tls_url().unwrap(),
        b.port(),
        password_file.path().display()
    ));
    let path = config.path().to_str().unwrap();
    let env = ("SHARDIS_CLI_TEST_PASSWORD", from_env);
    let hidden = |shown: &str, context: &str| {
        assert_hidden(shown, context);
        assert!(
            !shown.contains(&key_line),
            "{context}: the key shows in:\n{shown}"
        );
    };
    for i in 0..20 {
        let key = format!("k{i}");
        let (code, out, err) = shardis_env(&["--config", path, "set", &key, "v"], env);
        assert_eq!(code, 0, "{err}");
        hidden(&format!("{out}{err}"), "set");
    }
    for format in ["table", "json"] {
        let (code, out, err) = shardis_env(&["--config", path, "--format", format, "status"], env);
        assert_eq!(code, 0, "{err}");
        hidden(&format!("{out}{err}"), "status");
        assert!(out.contains("127.0.0.1"), "{out}");
    }
    // Wrong passwords from the same places: errors, still without any password.
    let (code, out, err) = shardis_env(
        &["--config", path, "--format", "json", "get", "k0"],
        ("SHARDIS_CLI_TEST_PASSWORD", from_file),
    );
    hidden(
        &format!("{out}{err}"),
        "wrong password from the environment",
    );
    let _ = code;
    std::fs::write(password_file.path(), format!("{from_env}\n")).unwrap();
    for format in ["table", "json"] {
        let (_, out, err) = shardis_env(&["--config", path, "--format", format, "status"], env);
        hidden(&format!("{out}{err}"), "status with a wrong password file");
    }
    let (code, out, err) = shardis_env(&["--config", path, "--format", "json", "get", "k0"], env);
    assert_ne!(code, 0, "{out}");
    hidden(&format!("{out}{err}"), "wrong password from the file");
}

/// `status` of a Sentinel-managed shard whose sentinel has a password: which sentinel
/// answered and the master's address, in both formats, and never the password; with a wrong
/// password, a row saying why no sentinel answered beside the other shards, and never either
/// password.
#[test]
fn status_shows_the_sentinel_that_answered_and_never_its_password() {
    use shardis_testkit::{Monitored, RedisSentinel, RedisServer};
    let primary = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let template =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/sentinel/sentinel.conf");
    let sentinel = RedisSentinel::start_with(
        &template,
        &[Monitored::new("cache-a", primary.port())],
        &["--requirepass", PASSWORDS[0]],
    )
    .unwrap_or_else(|e| panic!("cannot start redis-sentinel: {e}"));
    let config = |pw: &str| {
        write(&format!(
            r#"
            [[shards]]
            name = "cache-a"
            sentinel = {{ master = "cache-a", addrs = ["redis://:{}@127.0.0.1:{}"] }}
            "#,
            encoded(pw),
            sentinel.port()
        ))
    };
    let (primary_at, sentinel_at) = (
        format!("127.0.0.1:{}", primary.port()),
        format!("127.0.0.1:{}", sentinel.port()),
    );
    let file = config(PASSWORDS[0]);
    let path = file.path().to_str().unwrap();

    let (code, out, err) = shardis(&["--config", path, "status", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    assert_hidden(&format!("{out}{err}"), "status --format json");
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let shard = &report["shards"][0];
    assert_eq!(shard["name"], "cache-a");
    let s = &shard["sentinel"];
    assert_eq!(s["master"], "cache-a", "{out}");
    assert_eq!(s["sentinels"], serde_json::json!([sentinel_at]), "{out}");
    assert_eq!(s["answered_by"], sentinel_at.as_str(), "{out}");
    assert_eq!(s["primary"], primary_at.as_str(), "{out}");
    assert!(s["error"].is_null(), "{out}");
    assert_eq!(
        shard["endpoints"][0]["endpoint"],
        primary_at.as_str(),
        "{out}"
    );
    assert_eq!(shard["endpoints"][0]["role"], "primary", "{out}");

    let (code, out, err) = shardis(&["--config", path, "status"]);
    assert_eq!(code, 0, "{err}");
    assert_hidden(&format!("{out}{err}"), "status");
    let line =
        format!("sentinel master \"cache-a\": primary {primary_at} (answered by {sentinel_at})");
    assert!(out.contains(&line), "`{line}` not in:\n{out}");

    // A wrong sentinel password: no sentinel answers, so the shard is a row of its own with
    // the reason, beside the other shards' rows; exit 1; neither password shown.
    let wrong = write(&format!(
        r#"
        [[shards]]
        name = "cache-a"
        sentinel = {{ master = "cache-a", addrs = ["redis://:{}@127.0.0.1:{}"] }}
        [[shards]]
        name = "plain"
        primary = "{}"
        "#,
        encoded(PASSWORDS[1]),
        sentinel.port(),
        primary.url()
    ));
    let wrong = wrong.path().to_str().unwrap();
    let (code, out, err) = shardis(&["--config", wrong, "status", "--format", "json"]);
    assert_eq!(code, 1, "{out}{err}");
    assert_hidden(
        &format!("{out}{err}"),
        "status with a wrong sentinel password",
    );
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let (a, plain) = (&report["shards"][0], &report["shards"][1]);
    assert_eq!(a["name"], "cache-a", "{out}");
    assert!(a["sentinel"]["answered_by"].is_null(), "{out}");
    assert_eq!(
        a["sentinel"]["sentinels"],
        serde_json::json!([sentinel_at]),
        "{out}"
    );
    let why = a["sentinel"]["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("sentinel") && why.contains(&sentinel_at),
        "{out}"
    );
    assert_eq!(a["endpoints"], serde_json::json!([]), "{out}");
    assert_eq!(plain["name"], "plain", "{out}");
    assert_eq!(plain["endpoints"][0]["health"], "up", "{out}");
    let (code, out, err) = shardis(&["--config", wrong, "status"]);
    assert_eq!(code, 1, "{out}{err}");
    assert_hidden(
        &format!("{out}{err}"),
        "status with a wrong sentinel password",
    );
    assert!(
        out.contains("sentinel master \"cache-a\": primary unknown (no sentinel answered"),
        "{out}"
    );
}
