//! The load: tasks of 80/20 GET/SET. Each task is the only writer of its own keys (key number
//! ≡ task number modulo the task count), so a key's writes are sequential and its versions
//! rise; it reads every key. A request's latency and error count under the fault phase in force
//! when it ended, else under the phase in force when it started: a request that a fault caught
//! is the fault's, even if it began in steady state.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shardis::{Client, ShardName};

/// The phases a request can fall in, by what the fault rotation is doing.
pub const PHASES: [&str; 5] = ["steady", "kill", "stop", "swap", "reload"];
pub const STEADY: usize = 0;
pub const KILL: usize = 1;
pub const STOP: usize = 2;
pub const SWAP: usize = 3;
pub const RELOAD: usize = 4;

/// Every value is this long: a version, the key number, padding.
pub const VALUE_BYTES: usize = 64;

/// The phase in force, and how long each phase has lasted so far.
pub struct PhaseClock {
    /// Read by every request, so an atomic; the bookkeeping below changes a few times a fault.
    current: AtomicU8,
    /// Since when the current phase runs, and the time spent in each phase before it.
    spent: Mutex<(Instant, [Duration; PHASES.len()])>,
    /// When the clock started, for the trace.
    started: Instant,
    /// `SOAK_TRACE=1`: every fault action and every failed request but a fail-fast one goes to
    /// stderr with its time.
    trace: bool,
}

impl PhaseClock {
    pub fn new() -> PhaseClock {
        PhaseClock {
            current: AtomicU8::new(STEADY as u8),
            spent: Mutex::new((Instant::now(), [Duration::ZERO; PHASES.len()])),
            started: Instant::now(),
            trace: std::env::var_os("SOAK_TRACE").is_some_and(|v| v == "1"),
        }
    }

    pub fn trace(&self, what: impl FnOnce() -> String) {
        if self.trace {
            let at = self.started.elapsed().as_secs_f64();
            eprintln!("{at:9.3} {:<6} {}", PHASES[self.current()], what());
        }
    }

    pub fn current(&self) -> usize {
        usize::from(self.current.load(Ordering::Relaxed))
    }

    /// The phase a request that started in `started` and ends now counts under.
    fn of_request(&self, started: usize) -> usize {
        match self.current() {
            STEADY => started,
            fault => fault,
        }
    }

    pub fn set(&self, phase: usize) {
        self.trace(|| format!("-> {}", PHASES[phase]));
        self.switch(phase);
    }

    fn switch(&self, phase: usize) {
        let mut spent = self.spent.lock().expect("phase clock");
        let now = Instant::now();
        let (since, totals) = &mut *spent;
        totals[self.current()] += now - *since;
        *since = now;
        self.current.store(phase as u8, Ordering::Relaxed);
    }

    /// The time spent in each phase, the running one included.
    pub fn spent(&self) -> [Duration; PHASES.len()] {
        self.switch(self.current());
        self.spent.lock().expect("phase clock").1
    }
}

/// What one task saw in one phase.
pub struct PhaseStats {
    /// Every request's latency in microseconds, failed ones included (the caller waits for
    /// those too).
    pub latency: Histogram<u64>,
    pub reads: u64,
    pub writes: u64,
    pub read_errors: BTreeMap<&'static str, u64>,
    pub write_errors: BTreeMap<&'static str, u64>,
    /// Failed writes that may have been applied (`is_outcome_unknown()`).
    pub unknown_outcome: u64,
    /// Reads that returned a value written for another key.
    pub wrong_values: u64,
}

impl PhaseStats {
    pub fn new() -> PhaseStats {
        PhaseStats {
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
            reads: 0,
            writes: 0,
            read_errors: BTreeMap::new(),
            write_errors: BTreeMap::new(),
            unknown_outcome: 0,
            wrong_values: 0,
        }
    }

    pub fn merge(&mut self, other: &PhaseStats) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.reads += other.reads;
        self.writes += other.writes;
        for (k, n) in &other.read_errors {
            *self.read_errors.entry(k).or_default() += n;
        }
        for (k, n) in &other.write_errors {
            *self.write_errors.entry(k).or_default() += n;
        }
        self.unknown_outcome += other.unknown_outcome;
        self.wrong_values += other.wrong_values;
    }
}

/// What the soak knows about one key's writes.
#[derive(Default, Clone)]
pub struct KeyState {
    /// The last acknowledged version; 0 when no write was acknowledged.
    pub acked: u64,
    /// When that acknowledgement arrived.
    pub acked_at: Option<Instant>,
    /// The shard that write went to: the key's owner when it was sent...
    pub owner: Option<ShardName>,
    /// ...or this one, its owner when the acknowledgement came, if a swap moved the key while
    /// the write ran (the write used one of the two tables).
    pub owner_after: Option<ShardName>,
    /// Versions whose write failed with an unknown outcome: the server may have applied them.
    pub maybe: Vec<u64>,
    /// Acknowledged writes in all.
    pub acks: u64,
}

/// What a task hands back: its statistics per phase and its keys' states (key number, state).
pub struct TaskOutput {
    pub stats: Vec<PhaseStats>,
    pub keys: Vec<(u64, KeyState)>,
}

pub fn key(k: u64) -> String {
    format!("soak:{k:06}")
}

pub fn value(k: u64, version: u64) -> Vec<u8> {
    let mut v = format!("v{version:019}:k{k:08}:").into_bytes();
    v.resize(VALUE_BYTES, b'.');
    v
}

/// (key number, version) of a value written by [`value`].
pub fn parse(value: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(value.get(..31)?).ok()?;
    let version = text.get(1..20)?.parse().ok()?;
    let k = text.get(22..30)?.parse().ok()?;
    Some((k, version))
}

/// splitmix64: enough randomness for choosing keys, with no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n.max(1)
    }
}

/// One task: requests until `stop`, then its statistics and key states.
pub async fn task(
    client: Client,
    id: u64,
    tasks: u64,
    keys: u64,
    clock: Arc<PhaseClock>,
    stop: Arc<AtomicBool>,
) -> TaskOutput {
    let mut stats: Vec<PhaseStats> = PHASES.iter().map(|_| PhaseStats::new()).collect();
    let owned = keys.saturating_sub(id).div_ceil(tasks);
    let mut states = vec![KeyState::default(); owned as usize];
    let mut rng = Rng::new(id.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ seed());
    let mut version = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let phase = clock.current();
        let started = Instant::now();
        if rng.below(5) != 0 || owned == 0 {
            let k = rng.below(keys);
            let got = client.get::<_, Option<Vec<u8>>>(key(k).as_str()).await;
            let s = &mut stats[clock.of_request(phase)];
            s.latency
                .saturating_record(started.elapsed().as_micros() as u64);
            s.reads += 1;
            match got {
                Ok(Some(v)) if parse(&v).map(|(kk, _)| kk) != Some(k) => s.wrong_values += 1,
                Ok(_) => {}
                Err(e) => {
                    *s.read_errors.entry(e.kind().as_str()).or_default() += 1;
                    clock.trace(|| format!("GET {k}: {e}"));
                }
            }
        } else {
            let slot = rng.below(owned);
            let k = id + slot * tasks;
            let name = key(k);
            version += 1;
            let owner = client.locate(name.as_str());
            let done = client.set(name.as_str(), value(k, version)).await;
            let s = &mut stats[clock.of_request(phase)];
            s.latency
                .saturating_record(started.elapsed().as_micros() as u64);
            s.writes += 1;
            let state = &mut states[slot as usize];
            match done {
                Ok(()) => {
                    state.acked = version;
                    state.acked_at = Some(Instant::now());
                    let after = client.locate(name.as_str());
                    state.owner_after = (after != owner).then_some(after);
                    state.owner = Some(owner);
                    state.acks += 1;
                }
                Err(e) => {
                    *s.write_errors.entry(e.kind().as_str()).or_default() += 1;
                    if e.kind() != shardis::ErrorKind::ShardUnavailable {
                        clock.trace(|| format!("SET {k} v{version}: {e}"));
                    }
                    if e.is_outcome_unknown() {
                        s.unknown_outcome += 1;
                        state.maybe.push(version);
                    }
                }
            }
        }
    }
    let keys = states
        .into_iter()
        .enumerate()
        .map(|(slot, state)| (id + slot as u64 * tasks, state))
        .collect();
    TaskOutput { stats, keys }
}

/// A different seed every run.
fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
