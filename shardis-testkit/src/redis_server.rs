//! A running local `redis-server`: start, stop, kill, pause, restart, and read its INFO.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{free_port, io_error, start_answering_ping, START_ATTEMPTS, START_TIMEOUT};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::tls::ServerTls;
use crate::{Error, ErrorKind, Result};

/// The environment variable that overrides the `redis-server` binary.
pub const REDIS_SERVER_ENV: &str = "SHARDIS_REDIS_SERVER";

/// A running local `redis-server`.
///
/// ```no_run
/// let server = shardis_testkit::RedisServer::start().unwrap();
/// println!("listening at {}", server.url());
/// // killed when `server` is dropped
/// ```
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    extra_args: Vec<String>,
    /// A config file given to redis-server before the arguments (which override it).
    conf: Option<PathBuf>,
    /// The TLS side and its port, for a server started with [`RedisServer::start_tls`].
    tls: Option<(ServerTls, u16)>,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .field("pid", &self.pid())
            .finish()
    }
}

/// The `redis-server` binary to run.
pub fn redis_server_binary() -> PathBuf {
    std::env::var_os(REDIS_SERVER_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers `PING`.
    pub fn start() -> Result<RedisServer> {
        RedisServer::start_with(&[])
    }

    /// Starts a server with extra command-line arguments (e.g. `["--replicaof", "127.0.0.1",
    /// "7001"]`).
    pub fn start_with(extra_args: &[&str]) -> Result<RedisServer> {
        RedisServer::start_inner(None, extra_args, None)
    }

    /// Starts a server from a config file (e.g. a deploy recipe), overriding only what a local
    /// test process needs: port, bind address, directory, log file, no persistence, no
    /// daemonizing; then `extra_args` (e.g. `["--aclfile", path]`).
    pub fn start_from_conf(conf: &std::path::Path, extra_args: &[&str]) -> Result<RedisServer> {
        RedisServer::start_inner(Some(conf), extra_args, None)
    }

    /// Starts a server that also listens for TLS on a second port ([`tls_port`](Self::tls_port),
    /// [`tls_url`](Self::tls_url)), with `tls`'s certificate; the plain port stays open, for
    /// readiness checks and for tests of a plain port behind `rediss://`.
    pub fn start_tls(tls: &ServerTls, extra_args: &[&str]) -> Result<RedisServer> {
        RedisServer::start_inner(None, extra_args, Some(tls))
    }

    fn start_inner(
        conf: Option<&std::path::Path>,
        extra_args: &[&str],
        tls: Option<&ServerTls>,
    ) -> Result<RedisServer> {
        let dir = tempfile::Builder::new()
            .prefix("shardis-redis-")
            .tempdir()
            .map_err(|e| io_error("cannot create a directory for redis-server", e))?;
        let mut server = RedisServer {
            child: None,
            port: 0,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            conf: conf.map(|c| c.to_owned()),
            tls: None,
            dir,
        };
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            server.port = free_port()?;
            if let Some(tls) = tls {
                server.tls = Some((tls.clone(), free_port()?));
            }
            match server.spawn() {
                Ok(()) => return Ok(server),
                // Another process may have taken the port between our probe and the bind.
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::new(ErrorKind::Io, "redis-server did not start")))
    }

    fn spawn(&mut self) -> Result<()> {
        let binary = redis_server_binary();
        let log = self.log_path();
        let mut command = Command::new(&binary);
        if let Some(conf) = &self.conf {
            command.arg(conf).args(["--supervised", "no"]);
        }
        command
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--protected-mode", "no"])
            // Replicas sync at once instead of after Redis's default 5 s diskless delay.
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(&self.extra_args)
            .args(self.tls.iter().flat_map(|(tls, port)| tls.args(*port)))
            .stderr(Stdio::piped());
        let port = self.port;
        let child = start_answering_ping(
            &mut command,
            &binary,
            "Redis",
            "redis-server",
            REDIS_SERVER_ENV,
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

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The TLS port of a server started with [`start_tls`](Self::start_tls).
    pub fn tls_port(&self) -> Option<u16> {
        self.tls.as_ref().map(|(_, port)| *port)
    }

    /// `rediss://127.0.0.1:TLS_PORT` for a server started with [`start_tls`](Self::start_tls).
    pub fn tls_url(&self) -> Option<String> {
        self.tls_port().map(|p| format!("rediss://127.0.0.1:{p}"))
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// One field of `INFO section`, asked directly over a plain socket.
    pub fn info_field(&self, section: &str, field: &str) -> Result<Option<String>> {
        let text = info(self.port, section)?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(field).and_then(|v| v.strip_prefix(':')))
            .map(|v| v.trim().to_owned()))
    }

    /// Waits until this replica has replicated everything `primary` holds now: its
    /// `slave_repl_offset` reaches the primary's `master_repl_offset`. (`WAIT` would not do: it
    /// covers only the calling connection's own writes.)
    pub fn wait_caught_up(&self, primary: &RedisServer, limit: Duration) -> Result<()> {
        let offset = |s: &RedisServer, field: &str| -> Result<i64> {
            Ok(s.info_field("replication", field)?
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1))
        };
        let target = offset(primary, "master_repl_offset")?;
        let deadline = Instant::now() + limit;
        while offset(self, "slave_repl_offset")? < target {
            if Instant::now() > deadline {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "{} did not catch up with {} in {limit:?}",
                        self.url(),
                        primary.url()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Kills the process with SIGKILL and reaps it: a crash, not a shutdown.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A stopped process dies of SIGKILL too; SIGCONT first keeps its exit tidy.
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the process with SIGSTOP: it keeps its port and accepts TCP connections (the
    /// kernel does), but answers nothing, like a hung host.
    pub fn pause(&self) -> Result<()> {
        self.signal(Signal::SIGSTOP)
    }

    /// Resumes a paused process with SIGCONT.
    pub fn resume(&self) -> Result<()> {
        self.signal(Signal::SIGCONT)
    }

    fn signal(&self, signal: Signal) -> Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| Error::new(ErrorKind::Io, "redis-server is not running"))?;
        let pid = i32::try_from(pid)
            .map_err(|_| Error::new(ErrorKind::Io, format!("pid {pid} out of range")))?;
        // A pid we spawned and still own (not yet reaped).
        kill(Pid::from_raw(pid), signal).map_err(|e| {
            io_error(
                "cannot signal redis-server",
                std::io::Error::from_raw_os_error(e as i32),
            )
        })
    }

    /// Starts the server again on the same port with the same arguments (after [`kill`](Self::kill)).
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                // The old socket may linger for a moment.
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- log of redis-server on port {} ----\n{}",
                self.port,
                self.log()
            );
        }
        self.kill();
    }
}

/// `INFO section` over a plain socket (a bulk string reply).
fn info(port: u16, section: &str) -> Result<String> {
    let fail = |e: std::io::Error| io_error("INFO failed", e);
    let mut stream =
        TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(2))
            .map_err(fail)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(fail)?;
    stream
        .write_all(format!("INFO {section}\r\n").as_bytes())
        .map_err(fail)?;
    let mut reader = std::io::BufReader::new(stream);
    let mut header = String::new();
    std::io::BufRead::read_line(&mut reader, &mut header).map_err(fail)?;
    let len: usize = header
        .trim()
        .strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::new(ErrorKind::Protocol, format!("INFO answered {header:?}")))?;
    let mut body = vec![0u8; len + 2];
    reader.read_exact(&mut body).map_err(fail)?;
    body.truncate(len);
    Ok(String::from_utf8_lossy(&body).into_owned())
}
