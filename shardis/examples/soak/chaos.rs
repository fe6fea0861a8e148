//! The servers, and the fault rotation run against them: SIGKILL of a primary and its restart
//! 2 s later (it comes back empty), SIGSTOP of a primary for 2 s, a hot swap (a 4th shard in or
//! out), a config reload (response timeout 300 <-> 400 ms). One fault every `every`, each
//! followed by a settle second that still counts as its phase.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use shardis::{Client, Health, ShardSpec, Topology};
use shardis_testkit::RedisServer;

use crate::load::{PhaseClock, Rng, KILL, RELOAD, STEADY, STOP, SWAP};

const DOWN_FOR: Duration = Duration::from_secs(2);
const SETTLE: Duration = Duration::from_secs(1);
/// The shards that are always in; the fleet's last shard is swapped in and out.
pub const BASE_SHARDS: usize = 3;

/// One primary with one replica per shard; the last shard is the one hot swaps add and remove.
pub struct Fleet {
    pub names: Vec<String>,
    urls: Vec<(String, String)>,
    primaries: Vec<Arc<Mutex<RedisServer>>>,
    _replicas: Vec<RedisServer>,
}

impl Fleet {
    /// Starts the servers and waits until every replica's link is up.
    pub fn start(shards: usize) -> Result<Fleet, shardis_testkit::Error> {
        let (mut names, mut urls, mut primaries, mut replicas) = (vec![], vec![], vec![], vec![]);
        for i in 0..shards {
            let primary = RedisServer::start()?;
            let port = primary.port().to_string();
            let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port])?;
            let deadline = Instant::now() + Duration::from_secs(10);
            while replica
                .info_field("replication", "master_link_status")?
                .as_deref()
                != Some("up")
            {
                assert!(Instant::now() < deadline, "replica link not up in 10 s");
                std::thread::sleep(Duration::from_millis(10));
            }
            names.push(format!("soak-{}", (b'a' + i as u8) as char));
            urls.push((primary.url(), replica.url()));
            primaries.push(Arc::new(Mutex::new(primary)));
            replicas.push(replica);
        }
        Ok(Fleet {
            names,
            urls,
            primaries,
            _replicas: replicas,
        })
    }

    /// Every shard's name and primary URL, the swapped one included.
    pub fn primaries(&self) -> HashMap<String, String> {
        self.names
            .iter()
            .cloned()
            .zip(self.urls.iter().map(|(primary, _)| primary.clone()))
            .collect()
    }

    /// The first `n` shards.
    pub fn topology(&self, n: usize) -> Result<Topology, shardis::ConfigError> {
        Topology::new(
            (0..n)
                .map(|i| ShardSpec::new(&self.names[i], &self.urls[i].0).replica(&self.urls[i].1))
                .collect(),
        )
    }

    /// The config file of the first `n` shards: the soak's settings, `response_timeout_ms`.
    pub fn config_toml(&self, n: usize, response_timeout_ms: u64) -> String {
        let mut toml = format!(
            "[pool]\nresponse_timeout_ms = {response_timeout_ms}\n\n\
             [health]\ninterval_ms = 100\nprobe_timeout_ms = 100\n\n\
             [routing]\nread_from = \"primary_then_replica\"\non_primary_down = \"fail_fast\"\n"
        );
        for i in 0..n {
            let (primary, replica) = &self.urls[i];
            toml += &format!(
                "\n[[shards]]\nname = \"{}\"\nprimary = \"{primary}\"\nreplicas = [\"{replica}\"]\n",
                self.names[i]
            );
        }
        toml
    }
}

/// What the rotation did.
#[derive(Default, Serialize)]
pub struct FaultLog {
    pub kills: u64,
    pub stops: u64,
    pub swaps: u64,
    pub reloads: u64,
    /// Longest `update_topology` / `reload_config` call, in milliseconds.
    pub longest_swap_ms: f64,
    /// Fault actions that failed: a rejected swap or reload, a restart that failed, a shard
    /// not back up within 10 s.
    pub failures: Vec<String>,
}

pub struct Chaos {
    pub client: Client,
    pub fleet: Arc<Fleet>,
    pub clock: Arc<PhaseClock>,
    pub config_path: PathBuf,
    pub response_timeout_ms: u64,
    /// Whether the swapped shard is in.
    pub extra_in: bool,
    pub rng: Rng,
    pub log: FaultLog,
    /// When each shard's primary was last restarted (empty).
    pub restarted: HashMap<String, Instant>,
}

impl Chaos {
    /// Runs the rotation until `stop`, finishing the fault in progress; leaves the swapped
    /// shard out.
    pub async fn run(mut self, every: Duration, stop: Arc<AtomicBool>) -> Chaos {
        let mut next = Instant::now() + every;
        let mut round = 0u64;
        loop {
            while Instant::now() < next {
                if stop.load(Ordering::Relaxed) {
                    if self.extra_in {
                        self.swap().await;
                    }
                    return self;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            match round % 4 {
                0 => self.kill().await,
                1 => self.stop().await,
                2 => self.swap().await,
                _ => self.reload().await,
            }
            round += 1;
            next = (next + every).max(Instant::now());
        }
    }

    async fn kill(&mut self) {
        let i = self.rng.below(BASE_SHARDS as u64) as usize;
        self.clock.set(KILL);
        self.log.kills += 1;
        self.clock
            .trace(|| format!("SIGKILL {}", self.fleet.names[i]));
        let server = self.fleet.primaries[i].clone();
        let _ = tokio::task::spawn_blocking(move || server.lock().expect("server").kill()).await;
        tokio::time::sleep(DOWN_FOR).await;
        // Every write acknowledged before this instant is gone: the process comes back empty
        // and its replica resyncs from it.
        self.restarted
            .insert(self.fleet.names[i].clone(), Instant::now());
        let server = self.fleet.primaries[i].clone();
        self.clock
            .trace(|| format!("restart {}", self.fleet.names[i]));
        match tokio::task::spawn_blocking(move || server.lock().expect("server").restart()).await {
            Ok(Ok(())) => self.wait_up(i).await,
            Ok(Err(e)) => self.fail(format!("restart of {}: {e}", self.fleet.names[i])),
            Err(e) => self.fail(format!("restart of {}: {e}", self.fleet.names[i])),
        }
        self.settle().await;
    }

    async fn stop(&mut self) {
        let i = self.rng.below(BASE_SHARDS as u64) as usize;
        self.clock.set(STOP);
        self.log.stops += 1;
        self.clock
            .trace(|| format!("SIGSTOP {}", self.fleet.names[i]));
        let server = self.fleet.primaries[i].clone();
        if let Err(e) = server.lock().expect("server").pause() {
            self.fail(format!("SIGSTOP of {}: {e}", self.fleet.names[i]));
        }
        tokio::time::sleep(DOWN_FOR).await;
        self.clock
            .trace(|| format!("SIGCONT {}", self.fleet.names[i]));
        if let Err(e) = server.lock().expect("server").resume() {
            self.fail(format!("SIGCONT of {}: {e}", self.fleet.names[i]));
        }
        self.wait_up(i).await;
        self.settle().await;
    }

    async fn swap(&mut self) {
        self.clock.set(SWAP);
        let n = if self.extra_in {
            BASE_SHARDS
        } else {
            BASE_SHARDS + 1
        };
        let started = Instant::now();
        self.clock
            .trace(|| format!("update_topology to {n} shards"));
        let result = match self.fleet.topology(n) {
            Ok(t) => self
                .client
                .update_topology(t)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(_) => {
                self.extra_in = !self.extra_in;
                self.log.swaps += 1;
                self.took(started);
            }
            Err(e) => self.fail(format!("swap to {n} shards: {e}")),
        }
        self.settle().await;
    }

    async fn reload(&mut self) {
        self.clock.set(RELOAD);
        let ms = if self.response_timeout_ms == 300 {
            400
        } else {
            300
        };
        let n = if self.extra_in {
            BASE_SHARDS + 1
        } else {
            BASE_SHARDS
        };
        let started = Instant::now();
        self.clock
            .trace(|| format!("reload_config, response timeout {ms} ms"));
        let result = match tokio::fs::write(&self.config_path, self.fleet.config_toml(n, ms)).await
        {
            Ok(()) => self
                .client
                .reload_config(&self.config_path)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(_) => {
                self.response_timeout_ms = ms;
                self.log.reloads += 1;
                self.took(started);
            }
            Err(e) => self.fail(format!("reload (response timeout {ms} ms): {e}")),
        }
        self.settle().await;
    }

    /// Waits until every endpoint of shard `i` is up again.
    async fn wait_up(&mut self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let status = self.client.status().await;
            let shard = status
                .iter()
                .find(|s| s.name == self.fleet.names[i].as_str());
            if shard.is_some_and(|s| s.endpoints.iter().all(|e| e.health == Health::Up)) {
                self.clock.trace(|| format!("{} up", self.fleet.names[i]));
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.fail(format!("{} not back up within 10 s", self.fleet.names[i]));
    }

    async fn settle(&self) {
        tokio::time::sleep(SETTLE).await;
        self.clock.set(STEADY);
    }

    fn took(&mut self, started: Instant) {
        let ms = started.elapsed().as_secs_f64() * 1e3;
        self.clock.trace(|| format!("done in {ms:.1} ms"));
        self.log.longest_swap_ms = self.log.longest_swap_ms.max(ms);
    }

    fn fail(&mut self, what: String) {
        eprintln!("soak: {what}");
        self.log.failures.push(what);
    }
}
