//! A running local `redis-sentinel`, started from the deploy template
//! (`deploy/sentinel/sentinel.conf`) with the test's own primaries.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{free_port, io_error, start_answering_ping, START_ATTEMPTS};
use crate::{Error, ErrorKind, Result};

/// The environment variable that overrides the `redis-sentinel` binary.
pub const REDIS_SENTINEL_ENV: &str = "SHARDIS_REDIS_SENTINEL";

/// The `redis-sentinel` binary to run: `SHARDIS_REDIS_SENTINEL`, else `redis-sentinel` from
/// `PATH` (Debian package `redis-sentinel`).
pub fn redis_sentinel_binary() -> PathBuf {
    std::env::var_os(REDIS_SENTINEL_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-sentinel"))
}

/// A primary for sentinels to monitor, with the timings of its failovers.
#[derive(Debug, Clone)]
pub struct Monitored {
    /// The master's name (shardis's `sentinel.master`).
    pub name: String,
    /// The primary's port on 127.0.0.1.
    pub port: u16,
    /// How many sentinels must agree the primary is down.
    pub quorum: u32,
    /// `down-after-milliseconds`.
    pub down_after: Duration,
    /// `failover-timeout`.
    pub failover_timeout: Duration,
}

impl Monitored {
    /// The primary on `port` named `name`, quorum 2, down after 1 s, failover timeout 3 s:
    /// timings for tests.
    pub fn new(name: &str, port: u16) -> Monitored {
        Monitored {
            name: name.to_owned(),
            port,
            quorum: 2,
            down_after: Duration::from_millis(1000),
            failover_timeout: Duration::from_millis(3000),
        }
    }
}

/// A running local `redis-sentinel`.
///
/// ```no_run
/// use shardis_testkit::{Monitored, RedisServer, RedisSentinel};
/// let primary = RedisServer::start().unwrap();
/// let template = std::path::Path::new("deploy/sentinel/sentinel.conf");
/// let sentinel = RedisSentinel::start(template, &[Monitored::new("cache-a", primary.port())]).unwrap();
/// println!("sentinel at {}", sentinel.url());
/// ```
pub struct RedisSentinel {
    child: Option<Child>,
    port: u16,
    conf: PathBuf,
    dir: tempfile::TempDir,
    /// Arguments added to every start (e.g. `--requirepass`, TLS settings).
    extra: Vec<String>,
}

impl std::fmt::Debug for RedisSentinel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSentinel")
            .field("port", &self.port)
            .field("pid", &self.child.as_ref().map(Child::id))
            .finish()
    }
}

impl RedisSentinel {
    /// Starts a sentinel on a free loopback port from `template` (a `sentinel.conf`): its
    /// lines are kept except the per-master `sentinel` lines, which are replaced by
    /// `monitored`; port, bind, dir and logfile are overridden. Waits until it answers `PING`.
    pub fn start(template: &Path, monitored: &[Monitored]) -> Result<RedisSentinel> {
        RedisSentinel::start_with(template, monitored, &[])
    }

    /// [`start`](Self::start) with `extra_args` added to the command line (and to every
    /// restart): `--requirepass PASSWORD`, or the TLS settings a sentinel needs to reach
    /// TLS-only masters (`--tls-replication yes`, `--tls-cert-file` ...).
    pub fn start_with(
        template: &Path,
        monitored: &[Monitored],
        extra_args: &[&str],
    ) -> Result<RedisSentinel> {
        let text = std::fs::read_to_string(template).map_err(|e| {
            io_error(
                &format!("cannot read the sentinel template {}", template.display()),
                e,
            )
        })?;
        let dir = tempfile::Builder::new()
            .prefix("shardis-sentinel-")
            .tempdir()
            .map_err(|e| io_error("cannot create a directory for redis-sentinel", e))?;
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(&conf, config(&text, monitored))
            .map_err(|e| io_error("cannot write sentinel.conf", e))?;
        let mut sentinel = RedisSentinel {
            child: None,
            port: 0,
            conf,
            dir,
            extra: extra_args.iter().map(|a| (*a).to_owned()).collect(),
        };
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            sentinel.port = free_port()?;
            match sentinel.spawn() {
                Ok(()) => return Ok(sentinel),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::new(ErrorKind::Io, "redis-sentinel did not start")))
    }

    fn spawn(&mut self) -> Result<()> {
        let binary = redis_sentinel_binary();
        let log = self.dir.path().join("sentinel.log");
        let mut command = Command::new(&binary);
        command
            .arg(&self.conf)
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--daemonize", "no"])
            .args(["--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(&self.extra)
            .stderr(Stdio::piped());
        let port = self.port;
        let child = start_answering_ping(
            &mut command,
            &binary,
            "Redis Sentinel",
            "redis-sentinel",
            REDIS_SENTINEL_ENV,
            port,
            || self.log(),
        )?;
        self.child = Some(child);
        Ok(())
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its log file's contents so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sentinel.log")).unwrap_or_default()
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the config file it rewrote (after
    /// [`kill`](Self::kill)).
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        let deadline = Instant::now() + crate::process::START_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until this sentinel knows `master` with at least `replicas` replicas up and
    /// `others` other sentinels: then a failover can be agreed on.
    pub fn wait_ready(
        &self,
        master: &str,
        replicas: usize,
        others: usize,
        limit: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + limit;
        let client = redis::Client::open(self.url())
            .map_err(|e| Error::new(ErrorKind::Protocol, e.to_string()))?;
        loop {
            let counts = client.get_connection().ok().and_then(|mut con| {
                let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
                    .arg("replicas")
                    .arg(master)
                    .query(&mut con)
                    .ok()?;
                let sentinels: Vec<redis::Value> = redis::cmd("SENTINEL")
                    .arg("sentinels")
                    .arg(master)
                    .query(&mut con)
                    .ok()?;
                Some((replicas.len(), sentinels.len()))
            });
            if let Some((r, s)) = counts {
                if r >= replicas && s >= others {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "sentinel on port {} did not see {master} with {replicas} replicas and \
                         {others} other sentinels within {limit:?} (saw {counts:?})\n{}",
                        self.port,
                        self.log()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- log of redis-sentinel on port {} ----\n{}",
                self.port,
                self.log()
            );
        }
        self.kill();
    }
}

/// The template's lines without its per-master `sentinel` lines, then `monitored`'s.
fn config(template: &str, monitored: &[Monitored]) -> String {
    const PER_MASTER: [&str; 7] = [
        "monitor",
        "down-after-milliseconds",
        "failover-timeout",
        "parallel-syncs",
        "auth-pass",
        "auth-user",
        "notification-script",
    ];
    let mut out: String = template
        .lines()
        .filter(|l| {
            let mut words = l.split_whitespace();
            match words.next() {
                // Paths of the host's install: the command line gives the test's own.
                Some("dir" | "logfile" | "pidfile") => false,
                Some("sentinel") => !words.next().is_some_and(|w| PER_MASTER.contains(&w)),
                _ => true,
            }
        })
        .map(|l| format!("{l}\n"))
        .collect();
    for m in monitored {
        out.push_str(&format!(
            "sentinel monitor {name} 127.0.0.1 {port} {quorum}\n\
             sentinel down-after-milliseconds {name} {down}\n\
             sentinel failover-timeout {name} {failover}\n\
             sentinel parallel-syncs {name} 1\n",
            name = m.name,
            port = m.port,
            quorum = m.quorum,
            down = m.down_after.as_millis(),
            failover = m.failover_timeout.as_millis(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_keeps_its_settings_and_gets_our_masters() {
        let t = "port 26379\ndir /var/lib/x\nsentinel resolve-hostnames yes\nsentinel monitor x 10.0.0.1 6379 2\n\
                 sentinel down-after-milliseconds x 5000\n";
        let c = config(t, &[Monitored::new("cache-a", 7001)]);
        assert!(c.contains("sentinel resolve-hostnames yes"));
        assert!(c.contains("port 26379"));
        assert!(!c.contains("10.0.0.1") && !c.contains("/var/lib/x"));
        assert!(c.contains("sentinel monitor cache-a 127.0.0.1 7001 2"));
        assert!(c.contains("sentinel down-after-milliseconds cache-a 1000"));
    }
}
