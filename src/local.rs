//! Local `redis-server` processes for the demo, tests and benchmarks.
//!
//! Each [`RedisServer`] is an isolated process on a free loopback port, with persistence off
//! (`--save ""`, no AOF), no delay before a replica's first sync, its own directory and log
//! file. It is killed when dropped, and its
//! log is printed if that happens while a thread panics (a failing test).
//!
//! The binary is `redis-server` from `PATH`, or the path in `SHARDIS_REDIS_SERVER`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};

/// The environment variable that overrides the `redis-server` binary.
pub const REDIS_SERVER_ENV: &str = "SHARDIS_REDIS_SERVER";

const START_TIMEOUT: Duration = Duration::from_secs(10);
const START_ATTEMPTS: usize = 5;

/// A running local `redis-server`.
///
/// ```no_run
/// let server = shardis::local::RedisServer::start().unwrap();
/// println!("listening at {}", server.url());
/// // killed when `server` is dropped
/// ```
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    extra_args: Vec<String>,
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
        let dir = tempfile::Builder::new()
            .prefix("shardis-redis-")
            .tempdir()
            .map_err(|e| io_error("cannot create a directory for redis-server", e))?;
        let mut server = RedisServer {
            child: None,
            port: 0,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            dir,
        };
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            server.port = free_port()?;
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
            .stderr(Stdio::piped());
        let mut child = start_process(
            &mut command,
            &binary,
            "Redis",
            "redis-server",
            REDIS_SERVER_ENV,
        )?;
        let port = self.port;
        wait_ready(
            &mut child,
            || ping(port, Duration::from_millis(200)),
            |child, status| {
                let mut stderr = String::new();
                if let Some(mut s) = child.stderr.take() {
                    let _ = s.read_to_string(&mut stderr);
                }
                format!(
                    "redis-server on port {port} exited with {status}: {}{}",
                    stderr.trim(),
                    self.log().trim()
                )
            },
            &format!("redis-server on port {port} did not answer PING"),
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
            // SAFETY: as in `signal`.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGCONT) };
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the process with SIGSTOP: it keeps its port and accepts TCP connections (the
    /// kernel does), but answers nothing, like a hung host.
    pub fn pause(&self) -> Result<()> {
        self.signal(libc::SIGSTOP)
    }

    /// Resumes a paused process with SIGCONT.
    pub fn resume(&self) -> Result<()> {
        self.signal(libc::SIGCONT)
    }

    fn signal(&self, signal: libc::c_int) -> Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| Error::new(ErrorKind::Io, "redis-server is not running"))?;
        let pid = libc::pid_t::try_from(pid)
            .map_err(|_| Error::new(ErrorKind::Io, format!("pid {pid} out of range")))?;
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped), and a valid
        // signal number; it touches no memory of ours.
        let rc = unsafe { libc::kill(pid, signal) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io_error(
                "cannot signal redis-server",
                std::io::Error::last_os_error(),
            ))
        }
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

fn io_error(what: &str, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("{what}: {e}")).with_source(e)
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| io_error("cannot find a free port", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| io_error("cannot find a free port", e))
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
        .ok_or_else(|| Error::new(ErrorKind::Type, format!("INFO answered {header:?}")))?;
    let mut body = vec![0u8; len + 2];
    reader.read_exact(&mut body).map_err(fail)?;
    body.truncate(len);
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// True if a server on the loopback `port` answers `PING` (or asks for a password) within
/// `timeout`.
fn ping(port: u16, timeout: Duration) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), timeout)
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    // `+PONG`, or `-NOAUTH ...` from a server started with a password: either way it serves.
    let mut buf = [0u8; 6];
    stream.read_exact(&mut buf).is_ok() && (&buf == b"+PONG\r" || &buf == b"-NOAUT")
}

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
/// use shardis::local::{Nutcracker, RedisServer};
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

/// Starts `command` with no stdin or stdout; a missing binary becomes an error that says how to
/// install it (`package` from Debian) or point `env` at it.
fn start_process(
    command: &mut Command,
    binary: &std::path::Path,
    what: &str,
    package: &str,
    env: &str,
) -> Result<Child> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::new(
                    ErrorKind::Io,
                    format!(
                        "`{}` not found: install {what} (Debian: `apt-get install {package}`) \
                         or set {env} to its path",
                        binary.display()
                    ),
                )
            } else {
                io_error(&format!("cannot start {}", binary.display()), e)
            }
        })
}

/// Waits until `ready()`; fails if the process exits first (with `exited`'s description) or
/// `START_TIMEOUT` passes (killing it).
fn wait_ready(
    child: &mut Child,
    ready: impl Fn() -> bool,
    exited: impl FnOnce(&mut Child, std::process::ExitStatus) -> String,
    timeout: &str,
) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::new(ErrorKind::Io, exited(child, status)));
        }
        if ready() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::new(
                ErrorKind::Timeout,
                format!("{timeout} within {START_TIMEOUT:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
