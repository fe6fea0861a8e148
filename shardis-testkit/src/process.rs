//! Spawning a server process and waiting until it serves; free loopback ports.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Error, ErrorKind, Result};

/// How long a process may take to start serving.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How many free ports to try before giving up (another process may take one first).
pub(crate) const START_ATTEMPTS: usize = 5;

pub(crate) fn io_error(what: &str, e: std::io::Error) -> Error {
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

/// Starts `command` with no stdin or stdout; a missing binary becomes an error that says how to
/// install it (`package` from Debian) or point `env` at it.
pub(crate) fn start_process(
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

/// Starts a Redis process (`redis-server`, `redis-sentinel`: `package` names it in errors)
/// with [`start_process`] and waits until it answers `PING` on `port`. If it exits first, the
/// error quotes its stderr and `log()` (its log file so far).
pub(crate) fn start_answering_ping(
    command: &mut Command,
    binary: &std::path::Path,
    what: &str,
    package: &str,
    env: &str,
    port: u16,
    log: impl FnOnce() -> String,
) -> Result<Child> {
    let mut child = start_process(command, binary, what, package, env)?;
    wait_ready(
        &mut child,
        || ping(port, Duration::from_millis(200)),
        |child, status| {
            let mut stderr = String::new();
            if let Some(mut s) = child.stderr.take() {
                let _ = s.read_to_string(&mut stderr);
            }
            format!(
                "{package} on port {port} exited with {status}: {}{}",
                stderr.trim(),
                log().trim()
            )
        },
        &format!("{package} on port {port} did not answer PING"),
    )?;
    Ok(child)
}

/// Waits until `ready()`; fails if the process exits first (with `exited`'s description) or
/// `START_TIMEOUT` passes (killing it).
pub(crate) fn wait_ready(
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

/// Raises this process's open-file limit to at least `wanted` (up to the hard limit), for
/// tests that open thousands of connections. Returns the soft limit in force afterwards.
pub fn raise_fd_limit(wanted: u64) -> Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let fail = |e: nix::Error| {
        io_error(
            "cannot read or raise the open-file limit",
            std::io::Error::from_raw_os_error(e as i32),
        )
    };
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(fail)?;
    if soft >= wanted {
        return Ok(soft);
    }
    let target = wanted.min(hard);
    setrlimit(Resource::RLIMIT_NOFILE, target, hard).map_err(fail)?;
    Ok(target)
}

/// True if a redis-server or redis-sentinel on the loopback `port` answers `PING` (or asks for a password) within
/// `timeout`.
pub(crate) fn ping(port: u16, timeout: Duration) -> bool {
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
