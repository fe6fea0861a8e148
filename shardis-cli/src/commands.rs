//! The commands that act on a configured fleet: get, set, del, locate, status; and the
//! dispatch of the others (stats, bench, remap, demo) to their modules.

use std::ffi::OsString;
use std::io::BufRead;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Map, Value};
use shardis::placement::Locator;
use shardis::{Client, Config, ConfigError};

use crate::error::Error;

use crate::output::{self, bytes_field};
use crate::{Cli, Command, Format};

pub async fn run(cli: Cli) -> Result<ExitCode, Error> {
    let format = cli.format;
    match cli.command {
        Command::Demo {
            keys,
            sentinel: true,
        } => crate::demo_sentinel::run(format, keys).await,
        Command::Demo { keys, .. } => crate::demo::run(format, keys).await,
        Command::Status => crate::status::run(config(cli.config.as_deref())?, format).await,
        Command::Stats(args) => {
            crate::stats::run(format, config(cli.config.as_deref())?, args).await
        }
        Command::Bench(args) => crate::bench::run(format, config(cli.config.as_deref())?, args)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Invalidate(args) => {
            crate::invalidate::run(format, client(cli.config.as_deref()).await?, args).await
        }
        Command::Migrate(args) => {
            crate::migrate::run(format, config(cli.config.as_deref())?, args).await
        }
        Command::Remap(args) => crate::remap::run(format, args).map(|()| ExitCode::SUCCESS),
        Command::Locate {
            twemproxy,
            pool,
            keys,
        } => {
            let config = match twemproxy {
                Some(path) => {
                    let import = shardis::twemproxy::import(&path, pool.as_deref())?;
                    for note in &import.notes {
                        tracing::info!("twemproxy pool `{}`: {note}", import.pool);
                    }
                    import.config
                }
                None => config(cli.config.as_deref())?,
            };
            locate(&config, format, &keys)
        }
        Command::Scan { pattern, count } => {
            let client = client(cli.config.as_deref()).await?;
            crate::fleet::scan(&client, format, &pattern, count).await
        }
        Command::RunAll { command } => {
            let client = client(cli.config.as_deref()).await?;
            crate::fleet::run_all(&client, format, &command).await
        }
        Command::Get { key } => {
            let client = client(cli.config.as_deref()).await?;
            let key = key.as_bytes();
            let value: Option<Vec<u8>> = client.get(key).await?;
            if format == Format::Json {
                let mut obj = Map::new();
                bytes_field(&mut obj, "key", key);
                obj.insert("shard".into(), json!(client.locate(key).as_str()));
                match &value {
                    Some(v) => bytes_field(&mut obj, "value", v),
                    None => {
                        obj.insert("value".into(), Value::Null);
                    }
                }
                output::json(&Value::Object(obj));
            } else if let Some(v) = &value {
                output::raw_line(v);
            } else {
                eprintln!("(nil)");
            }
            Ok(if value.is_some() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Set { key, value, ttl_ms } => {
            let client = client(cli.config.as_deref()).await?;
            let (key, value) = (key.as_bytes(), value.as_bytes());
            match ttl_ms {
                Some(ms) => client.set_ex(key, value, Duration::from_millis(ms)).await?,
                None => client.set(key, value).await?,
            }
            done(format, &client, key, json!({"ok": true}));
            Ok(ExitCode::SUCCESS)
        }
        Command::Del { key } => {
            let client = client(cli.config.as_deref()).await?;
            let key = key.as_bytes();
            let removed = client.del(key).await?;
            done(format, &client, key, json!({"removed": removed}));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reports a write: `OK`/`1`/`0` as text, or the key, shard and `extra` fields as JSON.
fn done(format: Format, client: &Client, key: &[u8], extra: Value) {
    if format == Format::Json {
        let mut obj = Map::new();
        bytes_field(&mut obj, "key", key);
        obj.insert("shard".into(), json!(client.locate(key).as_str()));
        if let Value::Object(extra) = extra {
            obj.extend(extra);
        }
        output::json(&Value::Object(obj));
    } else if let Some(removed) = extra.get("removed").and_then(Value::as_bool) {
        println!("{}", u8::from(removed));
    } else {
        println!("OK");
    }
}

fn config(path: Option<&Path>) -> Result<Config, Error> {
    match path {
        Some(p) => Ok(Config::from_file(p)?),
        None => Err(ConfigError::InvalidValue {
            field: "--config".into(),
            reason: "this command needs --config FILE".into(),
        }
        .into()),
    }
}

async fn client(path: Option<&Path>) -> Result<Client, Error> {
    Ok(Client::from_config(config(path)?).await?)
}

fn locate(config: &Config, format: Format, keys: &[OsString]) -> Result<ExitCode, Error> {
    let locator = Locator::from_source(
        config.topology(),
        &config.options().placement_source(),
        config.options().hash_tag,
    )?;
    let mut rows: Vec<Value> = Vec::new();
    let mut emit = |key: &[u8]| {
        let shard = locator.locate(key);
        if format == Format::Json {
            let mut obj = Map::new();
            bytes_field(&mut obj, "key", key);
            obj.insert("shard".into(), json!(shard.as_str()));
            rows.push(Value::Object(obj));
        } else {
            let mut line = key.to_vec();
            line.push(b'\t');
            line.extend_from_slice(shard.as_str().as_bytes());
            output::raw_line(&line);
        }
    };
    for key in keys {
        if key == "-" {
            let stdin = std::io::stdin();
            for line in stdin.lock().split(b'\n') {
                let mut line = line.map_err(|e| {
                    Error::new(shardis::ErrorKind::Io, format!("cannot read stdin: {e}"))
                })?;
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                emit(&line);
            }
        } else {
            emit(key.as_bytes());
        }
    }
    if format == Format::Json {
        output::json(&Value::Array(rows));
    }
    Ok(ExitCode::SUCCESS)
}
