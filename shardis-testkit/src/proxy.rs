//! Network faults on loopback: a TCP proxy whose established connections can be frozen (a
//! half-open connection: the socket stays open and nothing comes back), and a listener that
//! accepts connections and never answers (a host that hangs).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::process::io_error;
use crate::Result;

/// A TCP proxy on 127.0.0.1 in front of a local port.
///
/// [`freeze`](TcpProxy::freeze) makes every connection open at that moment go silent: bytes
/// sent to it are swallowed and nothing comes back, while the socket stays open (as with a
/// half-open TCP connection or a stuck middlebox). Connections made afterwards work.
///
/// ```no_run
/// let server = shardis_testkit::RedisServer::start().unwrap();
/// let proxy = shardis_testkit::TcpProxy::start(server.port()).unwrap();
/// println!("connect to {}", proxy.url());
/// proxy.freeze(); // connections open now stop answering
/// ```
#[derive(Debug)]
pub struct TcpProxy {
    port: u16,
    /// Connections accepted before this generation are frozen.
    generation: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl TcpProxy {
    /// Starts a proxy to `127.0.0.1:target_port` on a free loopback port.
    pub fn start(target_port: u16) -> Result<TcpProxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| io_error("cannot bind the proxy", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| io_error("cannot bind the proxy", e))?
            .port();
        listener
            .set_nonblocking(true)
            .map_err(|e| io_error("cannot set up the proxy", e))?;
        let generation = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (gen, stop2, conns2) = (generation.clone(), stop.clone(), conns.clone());
        thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let Ok(upstream) = TcpStream::connect((Ipv4Addr::LOCALHOST, target_port))
                        else {
                            continue;
                        };
                        let born = gen.load(Ordering::SeqCst);
                        if let Ok(mut list) = conns2.lock() {
                            for s in [&client, &upstream] {
                                if let Ok(c) = s.try_clone() {
                                    list.push(c);
                                }
                            }
                        }
                        pipe(&client, &upstream, born, &gen);
                        pipe(&upstream, &client, born, &gen);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Ok(TcpProxy {
            port,
            generation,
            stop,
            conns,
        })
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Every connection open now goes silent (stays open, answers nothing).
    pub fn freeze(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Ok(list) = self.conns.lock() {
            for s in list.iter() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Copies `from` to `to` on a thread of its own until either side closes; once the proxy's
/// generation moves past `born`, bytes are read and dropped instead.
fn pipe(from: &TcpStream, to: &TcpStream, born: u64, generation: &Arc<AtomicU64>) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    let generation = generation.clone();
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if generation.load(Ordering::SeqCst) != born {
                        continue; // frozen: swallow
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// A listener on 127.0.0.1 that accepts connections and never answers: a host that hangs
/// (the kernel completes the handshake, nothing more). Connections are held until dropped.
#[derive(Debug)]
pub struct SilentListener {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl SilentListener {
    /// Starts one on a free loopback port.
    pub fn start() -> Result<SilentListener> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| io_error("cannot bind the listener", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| io_error("cannot bind the listener", e))?
            .port();
        listener
            .set_nonblocking(true)
            .map_err(|e| io_error("cannot set up the listener", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        thread::spawn(move || {
            let mut held = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => held.push(s),
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Ok(SilentListener { port, stop })
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for SilentListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
