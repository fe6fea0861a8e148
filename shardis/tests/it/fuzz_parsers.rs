//! Every parser a user or a file reaches — the TOML config, endpoint URLs, hash tags, the
//! twemproxy YAML import — fed arbitrary bytes and mutations of valid inputs: it never
//! panics, it answers with a typed error ([`ConfigError`]) or a valid value, its message is
//! bounded, and no password from the input shows in the message or in a `Debug`.
//!
//! Each property runs proptest's default 256 cases, or `PROPTEST_CASES`;
//! `benches/fuzz.sh` runs 100 000 each in release mode.
//!
//! Passwords are checked where the input holds them as passwords or as values. A shard name,
//! a twemproxy pool name and a URL's user name are shown as written, so no mutation here
//! moves a password into one of those.

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use proptest::prelude::*;
use shardis::{Config, ConfigError, Endpoint, Error, HashTag, ShardSpec, Topology};

/// Passwords holding every character that cuts a URL.
const SECRETS: [&str; 2] = ["Sup3r/Secr@t:pw", "p@ss/w:rd#1?x"];

/// The longest message (in characters) any rendering of an error may have.
const MESSAGE_LIMIT: usize = 1_000;

fn encoded(pw: &str) -> String {
    utf8_percent_encode(pw, NON_ALPHANUMERIC).to_string()
}

/// Fails unless `shown` is free of every password, raw or percent-encoded.
fn assert_no_secret(shown: &str, input: &str) {
    for pw in SECRETS {
        assert!(
            !shown.contains(pw) && !shown.contains(&encoded(pw)),
            "a password shows\ninput:\n{input}\noutput:\n{shown}"
        );
    }
}

/// Every rendering of a config error: bounded and free of passwords.
fn check_error(err: &ConfigError, input: &str) {
    let e = Error::from(err.clone());
    for shown in [
        err.to_string(),
        format!("{err:?}"),
        e.to_string(),
        format!("{e:?}"),
    ] {
        assert!(
            shown.chars().count() <= MESSAGE_LIMIT,
            "{} characters:\n{shown}",
            shown.chars().count()
        );
        assert_no_secret(&shown, input);
    }
}

fn check_config(text: &str) {
    match Config::from_toml_str(text) {
        Ok(config) => assert_no_secret(&format!("{config:?}"), text),
        Err(err) => check_error(&err, text),
    }
}

#[cfg(feature = "twemproxy")]
fn check_twemproxy(yaml: &str) {
    match shardis::twemproxy::import_str(yaml, None) {
        Ok(import) => assert_no_secret(&format!("{import:?}"), yaml),
        Err(err) => check_error(&err, yaml),
    }
}

/// A valid config with both passwords, percent-encoded, in URLs.
fn valid_toml() -> String {
    format!(
        "[placement]\nalgorithm = \"ring\"\nhash_tag = \"{{}}\"\nvnodes = 40\n\
         [pool]\nconnections_per_endpoint = 2\nconnect_timeout_ms = 250\n\
         [routing]\nread_from = \"primary_then_replica\"\n\
         [[shards]]\nname = \"a\"\nprimary = \"redis://:{}@127.0.0.1:7001\"\n\
         replicas = [\"redis://app:{}@127.0.0.1:7101/2\"]\nweight = 2\n\
         [[shards]]\nname = \"b\"\nprimary = \"redis://127.0.0.1:7002/1\"\n",
        encoded(SECRETS[0]),
        encoded(SECRETS[1])
    )
}

/// A valid twemproxy pool with a password.
#[cfg(feature = "twemproxy")]
fn valid_yaml(pw: &str) -> String {
    format!(
        "alpha:\n  listen: 127.0.0.1:22121\n  hash: fnv1a_64\n  hash_tag: \"{{}}\"\n  \
         distribution: ketama\n  timeout: 400\n  redis: true\n  redis_auth: {pw}\n  \
         redis_db: 1\n  server_connections: 2\n  auto_eject_hosts: true\n  servers:\n   \
         - 127.0.0.1:6379:1\n   - 127.0.0.1:6380:2 cache-b\n   - 127.0.0.1:6381:1\n"
    )
}

/// A value put in place of a TOML value: each password, in every shape a mistake gives it.
fn toml_values(pw: &str) -> Vec<String> {
    let enc = encoded(pw);
    vec![
        format!("\"redis://:{pw}@h:1\""),
        format!("\"redis://u:{pw}@127.0.0.1:1/0\""),
        format!("[\"redis://:{pw}@h:1\"]"),
        format!("{{ url = \"redis://:{pw}@h:1\" }}"),
        format!("redis://:{pw}@h:1"),
        format!("\"redis://:{pw}@h:1"),
        format!("'redis://:{pw}@h:1'"),
        format!("\"\"\"redis://:{pw}@h:1\"\"\""),
        format!("\"{pw}\""),
        format!("\"redis://:{enc}@h:1/x\""),
        format!("\"http://:{enc}@h:1\""),
        format!("\":{pw}@h:1\""),
        "1".into(),
        "-1".into(),
        "true".into(),
        "1979-05-27T07:32:00Z".into(),
    ]
}

/// A value put in place of a YAML value.
fn yaml_values(pw: &str) -> Vec<String> {
    vec![
        pw.to_owned(),
        format!("[{pw}]"),
        format!("{{a: {pw}}}"),
        format!("\"{pw}"),
        format!("'{pw}'"),
        format!("\n   - {pw}"),
        format!("|\n    {pw}"),
        "1".into(),
        "-1".into(),
        "~".into(),
        "[]".into(),
        "{}".into(),
    ]
}

/// Characters that matter to TOML or YAML, or to URLs, or to UTF-8 handling.
const INSERTS: [char; 24] = [
    '"', '\'', '[', ']', '{', '}', '=', ',', '.', '\n', '#', '@', ':', '/', ' ', '\\', 'x', '1',
    '\0', 'é', '-', '&', '*', '!',
];

/// One structured change to a text, its numbers taken modulo what they index.
#[derive(Debug, Clone)]
enum Mutation {
    /// Insert a character of [`INSERTS`] at a byte offset (moved back to a char boundary).
    Insert(usize, usize),
    /// Delete up to `len` bytes from an offset, within one line holding no `@`.
    Delete(usize, usize, usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    DeleteLine(usize),
    /// Replace the value of a `key = value` / `key: value` line (not a name) with a value
    /// from the list for the format, built with password `pw`.
    ReplaceValue(usize, usize, usize),
    /// Replace the key of a line with a URL holding a password.
    ReplaceKey(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let n = 0usize..10_000;
    prop_oneof![
        (n.clone(), n.clone()).prop_map(|(a, b)| Mutation::Insert(a, b)),
        (n.clone(), n.clone(), 1usize..12).prop_map(|(a, b, c)| Mutation::Delete(a, b, c)),
        n.clone().prop_map(Mutation::DuplicateLine),
        (n.clone(), n.clone()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        n.clone().prop_map(Mutation::DeleteLine),
        (n.clone(), n.clone(), n.clone()).prop_map(|(a, b, c)| Mutation::ReplaceValue(a, b, c)),
        (n.clone(), n).prop_map(|(a, b)| Mutation::ReplaceKey(a, b)),
    ]
}

#[derive(Clone, Copy, PartialEq)]
#[cfg_attr(not(feature = "twemproxy"), allow(dead_code))]
enum Format {
    Toml,
    Yaml,
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(text: &str, m: &Mutation, format: Format) -> String {
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let n = lines.len();
    match *m {
        Mutation::Insert(at, c) => {
            let at = floor_boundary(text, at % (text.len() + 1));
            let mut out = text.to_owned();
            out.insert(at, INSERTS[c % INSERTS.len()]);
            return out;
        }
        Mutation::Delete(line, at, len) => {
            let l = &mut lines[line % n];
            if !l.contains('@') && !l.is_empty() {
                let start = floor_boundary(l, at % l.len());
                let end = floor_boundary(l, start + len);
                l.replace_range(start..end, "");
            }
        }
        Mutation::DuplicateLine(i) => {
            let l = lines[i % n].clone();
            lines.insert(i % n, l);
        }
        Mutation::SwapLines(i, j) => lines.swap(i % n, j % n),
        Mutation::DeleteLine(i) => {
            lines.remove(i % n);
        }
        Mutation::ReplaceValue(i, v, p) => {
            let pw = SECRETS[p % SECRETS.len()];
            let sep = if format == Format::Toml { " = " } else { ": " };
            let l = &mut lines[i % n];
            if let Some((key, _)) = l.split_once(sep) {
                let name_line = key.trim() == "name" || key.trim_start().starts_with('-');
                if !name_line && !key.trim().is_empty() {
                    let values = match format {
                        Format::Toml => toml_values(pw),
                        Format::Yaml => yaml_values(pw),
                    };
                    *l = format!("{key}{sep}{}", values[v % values.len()]);
                }
            }
        }
        Mutation::ReplaceKey(i, p) => {
            let pw = SECRETS[p % SECRETS.len()];
            let sep = if format == Format::Toml { " = " } else { ": " };
            let l = &mut lines[i % n];
            if let Some((key, value)) = l.split_once(sep) {
                let indent: String = key.chars().take_while(|c| *c == ' ').collect();
                *l = format!("{indent}\"redis://:{pw}@h:1\"{sep}{value}");
            }
        }
    }
    lines.join("\n")
}

/// Tokens a config is made of, for random documents with some shape.
const TOML_TOKENS: [&str; 30] = [
    "[[shards]]\n",
    "[placement]\n",
    "[pool]\n",
    "[routing]\n",
    "[health]\n",
    "[limits]\n",
    "name = ",
    "primary = ",
    "replicas = ",
    "weight = ",
    "algorithm = ",
    "hash_tag = ",
    "vnodes = ",
    "max_key_bytes = ",
    "\"a\"\n",
    "\"b\"\n",
    "\"redis://127.0.0.1:7001\"\n",
    "\"redis://localhost:7001\"\n",
    "\"redis://:Sup3r/Secr@t:pw@h:1\"\n",
    "\"redis://u:p@ss/w:rd#1?x@h:1\"\n",
    "[\"redis://:Sup3r%2FSecr%40t%3Apw@h:2\"]\n",
    "\"ring\"\n",
    "\"{}\"\n",
    "0\n",
    "4294967296\n",
    "[",
    "{",
    "\"",
    "=",
    "\n",
];

proptest! {
    #[test]
    fn toml_config_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_config(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn toml_config_survives_arbitrary_text_around_a_password(
        before in "\\PC{0,80}",
        after in "\\PC{0,80}",
        pw in 0usize..2,
    ) {
        check_config(&format!("{before}\"redis://:{}@h:1\"{after}", SECRETS[pw]));
    }

    #[test]
    fn toml_config_survives_random_token_documents(
        tokens in prop::collection::vec(prop::sample::select(TOML_TOKENS.to_vec()), 0..40),
    ) {
        check_config(&tokens.concat());
    }

    #[test]
    fn toml_config_survives_mutations_of_a_valid_file(
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let valid = valid_toml();
        prop_assert!(Config::from_toml_str(&valid).is_ok());
        let text = mutations.iter().fold(valid, |t, m| apply(&t, m, Format::Toml));
        check_config(&text);
    }

    #[test]
    fn endpoint_urls_survive_arbitrary_text(raw in "\\PC{0,120}") {
        match Endpoint::parse(&raw) {
            Ok(e) => {
                let _ = (e.to_string(), format!("{e:?}"), e.label());
            }
            Err(reason) => prop_assert!(reason.chars().count() <= 300, "{}", reason),
        }
        let spec = ShardSpec::new("a", raw.as_str());
        let _ = format!("{spec:?}");
        if let Err(err) = Topology::new(vec![spec]) {
            check_error(&err, &raw);
        }
    }

    #[test]
    fn endpoint_urls_never_show_their_password(
        scheme in prop::sample::select(vec!["redis://", "rediss://", "http://", "", "redis:", "redis:/", " redis://"]),
        user in prop::sample::select(vec!["", "app", "a@b", "a/b", "x://y", "us%40er"]),
        pw in 0usize..2,
        encode in any::<bool>(),
        noise in "[/@:#?%a-z0-9]{0,6}",
        host in prop::sample::select(vec!["127.0.0.1", "h", "[::1]", "", "h@x", "localhost"]),
        port in prop::sample::select(vec![":1", ":0", ":99999", "", ":x", ":6379"]),
        path in prop::sample::select(vec!["", "/0", "/x", "/-1", "/0?x=1", "#f", "/1@x"]),
    ) {
        let secret = if encode { encoded(SECRETS[pw]) } else { SECRETS[pw].to_owned() };
        let raw = format!("{scheme}{user}:{noise}{secret}{noise}@{host}{port}{path}");
        let spec = ShardSpec::new("a", raw.as_str()).replica(raw.as_str());
        assert_no_secret(&format!("{spec:?}"), &raw);
        assert_no_secret(&format!("{:?}", shardis::Client::builder().shard_spec(spec.clone())), &raw);
        match Endpoint::parse(&raw) {
            Ok(e) => assert_no_secret(&format!("{e} {e:?} {}", e.label()), &raw),
            Err(reason) => assert_no_secret(&reason, &raw),
        }
        match Topology::new(vec![spec]) {
            Ok(t) => assert_no_secret(&format!("{t:?}"), &raw),
            Err(err) => check_error(&err, &raw),
        }
    }

    #[test]
    fn hash_tags_survive_arbitrary_text(tag in "\\PC{0,40}") {
        match HashTag::parse(&tag) {
            Ok(t) => {
                prop_assert_eq!(tag.len(), 2);
                let _ = t.extract(tag.as_bytes());
            }
            Err(err) => {
                check_error(&err, &tag);
                if tag.chars().count() > 2 {
                    prop_assert!(!err.to_string().contains(tag.as_str()), "{}", err);
                }
            }
        }
    }

    #[cfg(feature = "twemproxy")]
    #[test]
    fn twemproxy_import_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_twemproxy(&String::from_utf8_lossy(&bytes));
    }

    #[cfg(feature = "twemproxy")]
    #[test]
    fn twemproxy_import_survives_mutations_of_a_valid_file(
        pw in 0usize..2,
        quote in any::<bool>(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let auth = if quote { format!("\"{}\"", SECRETS[pw]) } else { SECRETS[pw].to_owned() };
        let valid = valid_yaml(&auth);
        prop_assert!(shardis::twemproxy::import_str(&valid, None).is_ok());
        let yaml = mutations.iter().fold(valid, |t, m| apply(&t, m, Format::Yaml));
        check_twemproxy(&yaml);
    }
}
