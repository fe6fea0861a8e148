//! Read coalescing per endpoint (`pool.coalesce_reads`): concurrent `GET`s and `MGET` parts
//! bound for one endpoint while a batch to it is in flight are sent together, as one `MGET`,
//! when that batch has answered.
//!
//! There is no timer. A read that finds no batch in flight leads a batch of its own and is
//! sent at once, so a lone read is never delayed. Reads that arrive while a batch is in flight
//! queue on the endpoint's lane; when the batch answers, the lead passes to the first queued
//! read, which sends every queued read (up to [`MAX_BATCH_KEYS`] keys) as one `MGET` and hands
//! each caller its own values, in its own order, or its own copy of the error.
//!
//! No caller is stranded by another's cancellation: a lead handed to a caller that has gone
//! passes to the next one, and when a leader is dropped while its batch is in flight, its
//! riders enter the lane again (they queue, or lead a batch of their own).
//!
//! A `GET` is always sent as `MGET` here, alone or merged, so its answer does not depend on
//! what else was in flight: a key holding a non-string reads as nil, where `GET` would fail
//! with `WRONGTYPE`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use redis::{Arg, Cmd, Value};
use smallvec::SmallVec;
use tokio::sync::oneshot;

use super::Node;
use crate::error::{Error, ErrorKind, Result};

/// The most keys one merged `MGET` carries. A queued read that would take a batch past it waits
/// for the next batch; a read of this many keys or more is sent as it is, never merged.
pub(crate) const MAX_BATCH_KEYS: usize = 256;

/// Batches in flight at once per endpoint. One: every read that arrives meanwhile rides in the
/// next batch, which is what makes batches large (see the README's measurements).
const MAX_IN_FLIGHT: u32 = 1;

/// One endpoint's queue of reads waiting for the batch in flight.
#[derive(Default)]
pub(crate) struct Lane {
    /// A std mutex: held to push, pop or count, never across an await.
    state: Mutex<LaneState>,
}

#[derive(Default)]
struct LaneState {
    /// Batches in flight (leaderships held or being handed over).
    in_flight: u32,
    queue: VecDeque<Waiter>,
}

impl Lane {
    fn lock(&self) -> MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A queued read: its keys (the arguments after the first of its `GET key` or `MGET key...`),
/// and where its answer goes.
struct Waiter {
    args: KeyBytes,
    keys: usize,
    single: bool,
    tx: oneshot::Sender<Msg>,
}

/// A queued read's keys, back to back, kept inline when short (a `GET` of a typical key, a
/// small `MGET` part): queueing a read copies its keys, and allocates only for long ones.
struct KeyBytes {
    bytes: SmallVec<[u8; 64]>,
    ends: SmallVec<[usize; 4]>,
}

impl KeyBytes {
    /// The arguments of `cmd` after its name.
    fn of(cmd: &Cmd) -> KeyBytes {
        let mut out = KeyBytes {
            bytes: SmallVec::new(),
            ends: SmallVec::new(),
        };
        for a in cmd.args_iter().skip(1) {
            if let Arg::Simple(b) = a {
                out.bytes.extend_from_slice(b);
                out.ends.push(out.bytes.len());
            }
        }
        out
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter())
            .map(|(a, &b)| &self.bytes[a..b])
    }
}

/// What a queued read is told.
enum Msg {
    /// Its answer: a value for a `GET`, an array for an `MGET` part.
    Reply(Result<Value>),
    /// It leads the next batch, with these riders.
    Lead(Turn),
}

/// The right to have a batch in flight on the lane. Giving it up (dropping it) hands it to the
/// reads queued meanwhile, or frees the lane.
struct Leadership(Option<Arc<Lane>>);

impl Drop for Leadership {
    fn drop(&mut self) {
        if let Some(lane) = self.0.take() {
            release(lane);
        }
    }
}

/// A lead handed to a queued read: the reads to send with its own. Dropped unopened (its
/// receiver went away), it puts the riders back at the head of the queue and gives the
/// leadership up, which hands it on.
struct Turn {
    riders: VecDeque<Waiter>,
    leadership: Leadership,
}

impl Turn {
    /// Takes the leadership and the riders out, leaving nothing for `Drop` to do.
    fn open(mut self) -> (Leadership, VecDeque<Waiter>) {
        (
            Leadership(self.leadership.0.take()),
            std::mem::take(&mut self.riders),
        )
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(lane) = &self.leadership.0 {
            let riders = std::mem::take(&mut self.riders);
            let mut state = lane.lock();
            for w in riders.into_iter().rev() {
                state.queue.push_front(w);
            }
        }
    }
}

/// Gives up a leadership: hands it, with the next batch, to the first queued read still
/// waiting, or frees the lane when none is.
fn release(lane: Arc<Lane>) {
    loop {
        let mut batch = {
            let mut state = lane.lock();
            if state.queue.is_empty() {
                state.in_flight -= 1;
                return;
            }
            let mut keys = 0;
            let mut n = 0;
            for w in &state.queue {
                if n > 0 && keys + w.keys > MAX_BATCH_KEYS {
                    break;
                }
                keys += w.keys;
                n += 1;
            }
            state.queue.drain(..n).collect::<VecDeque<Waiter>>()
        };
        while let Some(first) = batch.pop_front() {
            let turn = Turn {
                riders: batch,
                leadership: Leadership(Some(lane.clone())),
            };
            match first.tx.send(Msg::Lead(turn)) {
                Ok(()) => return,
                // That caller has gone: the next one leads.
                Err(Msg::Lead(turn)) => {
                    let (mut leadership, riders) = turn.open();
                    leadership.0 = None; // still ours: no release from this copy
                    batch = riders;
                }
                Err(Msg::Reply(_)) => return,
            }
        }
    }
}

impl Node {
    /// Runs `cmd` — `GET key` (`single`) or an `MGET` part — merged with the reads of other
    /// callers to this endpoint (see the module doc). Returns the caller's answer and, if this
    /// caller sent the batch, how many callers' reads it carried (0 if it rode in another's).
    pub(crate) async fn read_merged(&self, cmd: &Cmd, single: bool) -> (Result<Value>, usize) {
        let keys = if single {
            1
        } else {
            cmd.args_iter().count().saturating_sub(1)
        };
        if keys >= MAX_BATCH_KEYS {
            return (self.query(cmd).await, 1);
        }
        loop {
            let rx = {
                let mut state = self.lane.lock();
                if state.in_flight < MAX_IN_FLIGHT {
                    state.in_flight += 1;
                    None
                } else {
                    let (tx, rx) = oneshot::channel();
                    state.queue.push_back(Waiter {
                        args: KeyBytes::of(cmd),
                        keys,
                        single,
                        tx,
                    });
                    Some(rx)
                }
            };
            let (leadership, riders) = match rx {
                None => (Leadership(Some(self.lane.clone())), VecDeque::new()),
                Some(rx) => match rx.await {
                    Ok(Msg::Reply(reply)) => return (reply, 0),
                    Ok(Msg::Lead(turn)) => turn.open(),
                    // The leader of our batch was dropped mid-flight: in again.
                    Err(_) => continue,
                },
            };
            return self.lead(cmd, keys, single, leadership, riders).await;
        }
    }

    /// Sends this caller's read with its riders' as one `MGET`, gives the lane to the next
    /// batch, and hands out the answers.
    async fn lead(
        &self,
        cmd: &Cmd,
        keys: usize,
        single: bool,
        leadership: Leadership,
        riders: VecDeque<Waiter>,
    ) -> (Result<Value>, usize) {
        let callers = riders.len() + 1;
        let total = keys + riders.iter().map(|w| w.keys).sum::<usize>();
        let reply = if riders.is_empty() && !single {
            self.query(cmd).await
        } else {
            self.query(&merged(cmd, &riders, total)).await
        };
        // The next batch goes out before this one's answers are handed around.
        drop(leadership);
        let values = match reply {
            Ok(Value::Array(values)) if values.len() == total => values,
            Ok(other) => {
                let message = match other {
                    Value::Array(v) => format!("MGET answered {} values for {total} keys", v.len()),
                    other => format!("MGET answered {other:?} instead of an array"),
                };
                let e = self.error(Error::new(ErrorKind::Type, message));
                return (Err(share(e, riders)), callers);
            }
            Err(e) => return (Err(share(e, riders)), callers),
        };
        let mut values = values.into_iter();
        let own = shape(&mut values, keys, single);
        for w in riders {
            let _ =
                w.tx.send(Msg::Reply(Ok(shape(&mut values, w.keys, w.single))));
        }
        (Ok(own), callers)
    }
}

/// Gives every rider its own copy of `e`, and returns `e`.
fn share(e: Error, riders: VecDeque<Waiter>) -> Error {
    for w in riders {
        let _ = w.tx.send(Msg::Reply(Err(e.duplicate())));
    }
    e
}

/// One `MGET` of the leader's keys, then each rider's, in queue order.
fn merged(cmd: &Cmd, riders: &VecDeque<Waiter>, total: usize) -> Cmd {
    let own = || {
        cmd.args_iter().skip(1).filter_map(|a| match a {
            Arg::Simple(b) => Some(b),
            _ => None,
        })
    };
    let size = own().map(<[u8]>::len).sum::<usize>()
        + riders.iter().map(|w| w.args.bytes.len()).sum::<usize>();
    let mut batch = Cmd::with_capacity(total + 1, size + 4);
    batch.arg("MGET");
    for b in own() {
        batch.arg(b);
    }
    for w in riders {
        for b in w.args.iter() {
            batch.arg(b);
        }
    }
    batch
}

/// The next `keys` values as one caller's answer: the value itself for a `GET`, an array for
/// an `MGET` part.
fn shape(values: &mut impl Iterator<Item = Value>, keys: usize, single: bool) -> Value {
    if single {
        values.next().unwrap_or(Value::Nil)
    } else {
        Value::Array(values.take(keys).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(name: &str, keys: &[&str]) -> Cmd {
        let mut c = redis::cmd(name);
        for k in keys {
            c.arg(*k);
        }
        c
    }

    fn args(c: &Cmd) -> Vec<Vec<u8>> {
        c.args_iter()
            .filter_map(|a| match a {
                Arg::Simple(b) => Some(b.to_vec()),
                _ => None,
            })
            .collect()
    }

    fn waiter(c: Cmd, single: bool) -> (Waiter, oneshot::Receiver<Msg>) {
        let (tx, rx) = oneshot::channel();
        let keys = if single { 1 } else { c.args_iter().count() - 1 };
        (
            Waiter {
                args: KeyBytes::of(&c),
                keys,
                single,
                tx,
            },
            rx,
        )
    }

    #[test]
    fn merged_puts_the_leaders_keys_first_then_each_riders_in_order() {
        let (a, _ra) = waiter(cmd("MGET", &["b1", "b2"]), false);
        let (b, _rb) = waiter(cmd("GET", &["c"]), true);
        let riders: VecDeque<Waiter> = [a, b].into_iter().collect();
        let m = merged(&cmd("GET", &["a"]), &riders, 4);
        let want: Vec<Vec<u8>> = ["MGET", "a", "b1", "b2", "c"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        assert_eq!(args(&m), want);
    }

    #[test]
    fn key_bytes_keep_each_key_whole_inline_or_spilled() {
        let long = "k".repeat(100);
        let c = cmd("MGET", &["a", "", &long, "bc"]);
        let kb = KeyBytes::of(&c);
        let got: Vec<&[u8]> = kb.iter().collect();
        let want: Vec<&[u8]> = vec![b"a", b"", long.as_bytes(), b"bc"];
        assert_eq!(got, want);
        assert_eq!(KeyBytes::of(&cmd("GET", &["x"])).iter().count(), 1);
    }

    #[test]
    fn shape_gives_a_get_its_value_and_a_part_its_array() {
        let mut values = (1..=4).map(Value::Int);
        assert_eq!(shape(&mut values, 1, true), Value::Int(1));
        assert_eq!(
            shape(&mut values, 2, false),
            Value::Array(vec![Value::Int(2), Value::Int(3)])
        );
        assert_eq!(shape(&mut values, 1, true), Value::Int(4));
    }

    /// A lane with one leadership held and `n` reads queued behind it.
    fn busy_lane(n: usize) -> (Arc<Lane>, Vec<oneshot::Receiver<Msg>>) {
        let lane = Arc::new(Lane::default());
        let mut rxs = Vec::new();
        let mut state = lane.lock();
        state.in_flight = 1;
        for i in 0..n {
            let (w, rx) = waiter(cmd("GET", &[&format!("k{i}")]), true);
            state.queue.push_back(w);
            rxs.push(rx);
        }
        drop(state);
        (lane, rxs)
    }

    #[test]
    fn release_hands_the_lead_to_the_first_live_waiter_with_the_rest_as_riders() {
        let (lane, mut rxs) = busy_lane(3);
        drop(rxs.remove(0)); // the first caller has gone
        release(lane.clone());
        match rxs[0].try_recv() {
            Ok(Msg::Lead(turn)) => {
                let (leadership, riders) = turn.open();
                assert_eq!(riders.len(), 1);
                assert_eq!(lane.lock().in_flight, 1);
                drop(riders);
                drop(leadership);
            }
            _ => panic!("the second waiter should lead"),
        }
        assert_eq!(lane.lock().in_flight, 0, "the lane is free again");
    }

    #[test]
    fn a_turn_dropped_unopened_puts_its_riders_back_and_passes_the_lead() {
        let (lane, mut rxs) = busy_lane(3);
        release(lane.clone());
        // The leader-to-be goes away without opening its turn.
        drop(rxs.remove(0));
        match rxs[0].try_recv() {
            Ok(Msg::Lead(turn)) => {
                let (leadership, riders) = turn.open();
                assert_eq!(riders.len(), 1, "the third waiter rides with the second");
                drop(riders);
                drop(leadership);
            }
            _ => panic!("the lead should have passed on"),
        }
        assert_eq!(lane.lock().in_flight, 0);
    }

    #[test]
    fn a_batch_stops_at_the_key_cap() {
        let lane = Arc::new(Lane::default());
        let mut rxs = Vec::new();
        {
            let mut state = lane.lock();
            state.in_flight = 1;
            for _ in 0..3 {
                let keys: Vec<String> = (0..MAX_BATCH_KEYS / 2).map(|i| format!("k{i}")).collect();
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                let (w, rx) = waiter(cmd("MGET", &keys), false);
                state.queue.push_back(w);
                rxs.push(rx);
            }
        }
        release(lane.clone());
        match rxs[0].try_recv() {
            Ok(Msg::Lead(turn)) => {
                let (leadership, riders) = turn.open();
                assert_eq!(riders.len(), 1, "two halves fill a batch");
                assert_eq!(lane.lock().queue.len(), 1, "the third waits");
                drop(riders);
                drop(leadership);
            }
            _ => panic!("the first waiter should lead"),
        }
    }
}
