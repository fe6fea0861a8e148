//! A running local twemproxy (`nutcracker`), the proxy shardis is measured against.

use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::{free_port, io_error, start_process, wait_ready, START_ATTEMPTS};
use crate::{Error, ErrorKind, Result};

/// The environment variable that overrides the `nutcracker` (twemproxy) binary.
pub const NUTCRACKER_ENV: &str = "SHARDIS_NUTCRACKER";

/// The `nutcracker` binary to run: `SHARDIS_NUTCRACKER`, else `nutcracker` from `PATH`, else
/// Debian's `/usr/sbin/nutcracker`.
pub fn nutcracker_binary() -> PathBuf {
    if let Some(p) = std::env::var_os(NUTCRACKER_ENV) {
        return PathBuf::from(p);
    }
    let debian = PathBuf::from("/usr/sbin/nutcracker");
    let on_path = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("nutcracker").is_file())
    });
    if !on_path && debian.is_file() {
        debian
    } else {
        PathBuf::from("nutcracker")
    }
}

/// A running local twemproxy (`nutcracker`) with one Redis pool named `pool`.
///
/// ```no_run
/// use shardis_testkit::{Nutcracker, RedisServer};
/// let a = RedisServer::start().unwrap();
/// let proxy = Nutcracker::start(&[format!("127.0.0.1:{}:1", a.port())], "hash: fnv1a_64").unwrap();
/// println!("twemproxy at {}", proxy.url());
/// ```
pub struct Nutcracker {
    child: Option<Child>,
    port: u16,
    yaml: String,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Nutcracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nutcracker")
            .field("port", &self.port)
            .finish()
    }
}

impl Nutcracker {
    /// Starts nutcracker on a free loopback port with a pool of `servers` (twemproxy server
    /// lines, `host:port:weight [name]`) and `options`: extra YAML lines for the pool, e.g.
    /// `"hash: md5\nhash_tag: \"{}\""`.
    pub fn start(servers: &[String], options: &str) -> Result<Nutcracker> {
        let dir = tempfile::Builder::new()
            .prefix("shardis-nutcracker-")
            .tempdir()
            .map_err(|e| io_error("cannot create a directory for nutcracker", e))?;
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            let mut yaml = format!("pool:\n  listen: 127.0.0.1:{port}\n  redis: true\n");
            for line in options.lines().filter(|l| !l.trim().is_empty()) {
                yaml.push_str(&format!("  {}\n", line.trim()));
            }
            yaml.push_str("  servers:\n");
            for s in servers {
                yaml.push_str(&format!("   - {s}\n"));
            }
            match spawn_nutcracker(dir.path(), &yaml, port) {
                Ok(child) => {
                    return Ok(Nutcracker {
                        child: Some(child),
                        port,
                        yaml,
                        dir,
                    })
                }
                // The port may have been taken between our probe and nutcracker's bind.
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::new(ErrorKind::Io, "nutcracker did not start")))
    }

    /// The proxy's URL, `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Connection settings for redis-rs that skip `CLIENT SETINFO`, which twemproxy does not
    /// know and answers by closing the connection.
    pub fn connection_info(&self) -> Result<redis::ConnectionInfo> {
        use redis::IntoConnectionInfo;
        let info = self
            .url()
            .into_connection_info()
            .map_err(|e| Error::new(ErrorKind::Config, e.to_string()))?;
        let settings = info.redis_settings().clone().set_skip_set_lib_name();
        Ok(info.set_redis_settings(settings))
    }

    /// The YAML config it runs with (one pool, named `pool`).
    pub fn yaml(&self) -> &str {
        &self.yaml
    }

    /// nutcracker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nutcracker.log")).unwrap_or_default()
    }

    /// Stops the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nutcracker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- nutcracker config ----\n{}\n---- log ----\n{}",
                self.yaml,
                self.log()
            );
        }
        self.kill();
    }
}

/// Starts nutcracker with `yaml` in `dir` and waits until it listens on `port`.
fn spawn_nutcracker(dir: &std::path::Path, yaml: &str, port: u16) -> Result<Child> {
    let conf = dir.join("nutcracker.yml");
    let log = dir.join("nutcracker.log");
    std::fs::write(&conf, yaml).map_err(|e| io_error("cannot write nutcracker.yml", e))?;
    let stats = free_port()?;
    let binary = nutcracker_binary();
    let mut command = Command::new(&binary);
    command
        .arg("-c")
        .arg(&conf)
        .args(["-s", &stats.to_string(), "-a", "127.0.0.1", "-v", "4"])
        .arg("-o")
        .arg(&log)
        .arg("-p")
        .arg(dir.join("nutcracker.pid"))
        .stderr(Stdio::null());
    let mut child = start_process(
        &mut command,
        &binary,
        "twemproxy",
        "nutcracker",
        NUTCRACKER_ENV,
    )?;
    wait_ready(
        &mut child,
        || {
            TcpStream::connect_timeout(
                &(Ipv4Addr::LOCALHOST, port).into(),
                Duration::from_millis(200),
            )
            .is_ok()
        },
        |_, status| {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            format!("nutcracker exited with {status}: {}", log.trim())
        },
        &format!("nutcracker did not listen on {port}"),
    )?;
    Ok(child)
}
