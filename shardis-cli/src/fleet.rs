//! `shardis scan PATTERN` (every key matching, over every shard's primary) and `shardis
//! run-all CMD ARGS...` (one keyless command on every shard).

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use futures_util::TryStreamExt;
use serde_json::{json, Map, Value as Json};
use shardis::{Client, ShardName};

use crate::error::Error;
use crate::output::{self, bytes_field, text_or_null};
use crate::Format;

/// `shardis scan`: keys one a line (raw bytes), or with `count_only` the number of keys. JSON:
/// `{"pattern", "count", "keys"}` (keys omitted with `--count`; a key that is not UTF-8 is
/// `null` in `keys` and listed in `keys_hex` by position).
pub async fn scan(
    client: &Client,
    format: Format,
    pattern: &OsString,
    count_only: bool,
) -> Result<ExitCode, Error> {
    let mut keys = std::pin::pin!(client.scan_match_bytes(pattern.as_bytes()));
    let mut count: u64 = 0;
    let mut listed: Vec<Json> = Vec::new();
    let mut hex = Map::new();
    while let Some(key) = keys.try_next().await? {
        if !count_only {
            if format == Format::Json {
                let text = text_or_null(&key);
                if text.is_null() {
                    hex.insert(listed.len().to_string(), json!(output::hex(&key)));
                }
                listed.push(text);
            } else {
                output::raw_line(&key);
            }
        }
        count += 1;
    }
    if format == Format::Json {
        let mut obj = Map::new();
        bytes_field(&mut obj, "pattern", pattern.as_bytes());
        obj.insert("count".into(), json!(count));
        if !count_only {
            obj.insert("keys".into(), Json::Array(listed));
            if !hex.is_empty() {
                obj.insert("keys_hex".into(), Json::Object(hex));
            }
        }
        output::json(&Json::Object(obj));
    } else if count_only {
        println!("{count}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `shardis run-all`: the command on every shard's primary; per shard its reply, or its error.
/// Exit status 1 if a shard failed.
pub async fn run_all(
    client: &Client,
    format: Format,
    args: &[OsString],
) -> Result<ExitCode, Error> {
    let mut cmd = redis::Cmd::new();
    for a in args {
        cmd.arg(a.as_bytes());
    }
    let replies: Vec<(ShardName, shardis::Result<redis::Value>)> =
        client.on_every_shard(&cmd).await;
    let all_ok = replies.iter().all(|(_, r)| r.is_ok());
    if format == Format::Json {
        let rows: Vec<Json> = replies
            .iter()
            .map(|(shard, r)| match r {
                Ok(v) => json!({"shard": shard.as_str(), "ok": true, "reply": to_json(v)}),
                Err(e) => json!({"shard": shard.as_str(), "ok": false, "error": {
                    "kind": e.kind().as_str(), "message": e.to_string()}}),
            })
            .collect();
        output::json(&Json::Array(rows));
    } else {
        for (shard, r) in &replies {
            match r {
                Ok(v) => {
                    let text = to_text(v);
                    if text.contains('\n') {
                        println!("{shard}:");
                        for line in text.lines() {
                            println!("  {line}");
                        }
                    } else {
                        println!("{shard}\t{text}");
                    }
                }
                Err(e) => {
                    println!("{shard}\t(error) {e}");
                    eprintln!("error: {e}");
                }
            }
        }
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A reply as JSON: strings as text (or `{"hex": ...}` when not UTF-8), numbers, arrays, maps.
fn to_json(v: &redis::Value) -> Json {
    use redis::Value as V;
    match v {
        V::Nil => Json::Null,
        V::Int(n) => json!(n),
        V::Double(d) => json!(d),
        V::Boolean(b) => json!(b),
        V::Okay => json!("OK"),
        V::SimpleString(s) => json!(s),
        V::BulkString(b) => match std::str::from_utf8(b) {
            Ok(s) => json!(s),
            Err(_) => json!({"hex": output::hex(b)}),
        },
        V::VerbatimString { text, .. } => json!(text),
        V::Array(items) | V::Set(items) => Json::Array(items.iter().map(to_json).collect()),
        V::Map(pairs) => Json::Array(
            pairs
                .iter()
                .map(|(k, v)| Json::Array(vec![to_json(k), to_json(v)]))
                .collect(),
        ),
        other => json!(format!("{other:?}")),
    }
}

/// A reply as redis-cli would print it, roughly.
fn to_text(v: &redis::Value) -> String {
    use redis::Value as V;
    match v {
        V::Nil => "(nil)".into(),
        V::Int(n) => n.to_string(),
        V::Okay => "OK".into(),
        V::SimpleString(s) => s.clone(),
        V::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        V::Array(items) | V::Set(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{}) {}", i + 1, to_text(v)))
            .collect::<Vec<_>>()
            .join("\n"),
        other => to_json(other).to_string(),
    }
}
