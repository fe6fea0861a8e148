//! A pipeline as data first: which shard runs which command (or which part of a split
//! multi-key command), then the gathering of the shards' replies back into the pipeline's
//! order. Pure: nothing here sends anything.

use redis::{Cmd, Pipeline, Value};

use crate::client::guard::{CommandKeys, Split};
use crate::error::{quoted, Error, ErrorKind, Result};

/// One command of the caller's pipeline, or one shard's part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    /// The whole command.
    Whole,
    /// A split multi-key command's keys on this shard: indices into its keys, in order.
    Split(Split, Vec<usize>),
}

/// What one shard runs: its pieces, each naming the caller's command it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Batch {
    /// The shard's index in the routing table.
    pub(crate) shard: usize,
    /// `(command index in the caller's pipeline, part)`, in pipeline order.
    pub(crate) pieces: Vec<(usize, Part)>,
    /// Every piece only reads: the batch may follow the read policy.
    pub(crate) read: bool,
}

/// Where each command of a pipeline goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// One batch per shard that has a command, by shard index.
    pub(crate) batches: Vec<Batch>,
}

/// The shard of a key (`None`: no shard takes keys), and a shard's name for messages.
pub(crate) struct Placement<'a> {
    pub(crate) locate: &'a (dyn Fn(&[u8]) -> Option<usize> + Sync),
    pub(crate) name: &'a (dyn Fn(usize) -> String + Sync),
}

impl Placement<'_> {
    fn shard(&self, key: &[u8]) -> Result<usize> {
        (self.locate)(key).ok_or_else(|| {
            Error::new(
                ErrorKind::ShardUnavailable,
                "every shard is ejected (its primary down); no shard can take the key",
            )
        })
    }
}

/// The error of keys that must share a shard and do not: names two keys and their shards.
pub(crate) fn cross_shard(
    what: &str,
    (a, shard_a): (&[u8], String),
    (b, shard_b): (&[u8], String),
) -> Error {
    Error::new(
        ErrorKind::CrossShard,
        format!(
            "{what} has keys on more than one shard: {} on `{shard_a}` and {} on `{shard_b}`; \
             nothing was sent. Give the keys one hash tag (`{{user:1}}:a`, `{{user:1}}:b` with \
             hash_tag = \"{{}}\")",
            quoted(&String::from_utf8_lossy(a)),
            quoted(&String::from_utf8_lossy(b)),
        ),
    )
}

/// The one shard every key of `keys` is on, or a `CrossShard` error naming two of them;
/// `None` when there is no key.
pub(crate) fn one_shard<'k>(
    what: &dyn Fn() -> String,
    keys: impl Iterator<Item = &'k [u8]>,
    at: &Placement<'_>,
) -> Result<Option<usize>> {
    let mut first: Option<(&[u8], usize)> = None;
    for key in keys {
        let shard = at.shard(key)?;
        match first {
            None => first = Some((key, shard)),
            Some((k0, s0)) if s0 != shard => {
                return Err(cross_shard(
                    &what(),
                    (k0, (at.name)(s0)),
                    (key, (at.name)(shard)),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(first.map(|(_, s)| s))
}

impl Plan {
    /// The plan of a non-atomic pipeline: each command to the shard of its keys; a split
    /// multi-key command (`MGET`, `MSET`, `DEL`, `UNLINK`, `EXISTS`, `TOUCH`) over shards
    /// divided per shard; another command whose keys span shards is `CrossShard`; a keyless
    /// command is `InvalidInput`.
    pub(crate) fn new(commands: &[CommandKeys<'_>], at: &Placement<'_>) -> Result<Plan> {
        let mut batches: Vec<Batch> = Vec::new();
        let mut batch_of = |shard: usize| -> usize {
            match batches.iter().position(|b| b.shard == shard) {
                Some(i) => i,
                None => {
                    batches.push(Batch {
                        shard,
                        pieces: Vec::new(),
                        read: true,
                    });
                    batches.len() - 1
                }
            }
        };
        // First each command's batch (`u32::MAX`: a split command, whose parts are apart), then
        // each batch's pieces sized exactly and filled in pipeline order: a pipeline without
        // split commands allocates one small index per command here.
        let mut owner: Vec<u32> = Vec::with_capacity(commands.len());
        let mut splits: Vec<(usize, usize, Part)> = Vec::new();
        for (i, c) in commands.iter().enumerate() {
            if c.positions.is_empty() {
                return Err(Error::invalid_input(format!(
                    "query_pipeline: command {i} ({}) has no key, so no shard to run on; \
                     use on_every_shard for keyless commands",
                    c.shown()
                )));
            }
            match c.split {
                Some(split) => {
                    let mut parts: Vec<(usize, Vec<usize>)> = Vec::new();
                    for (j, key) in c.keys().enumerate() {
                        let shard = at.shard(key)?;
                        match parts.iter_mut().find(|(s, _)| *s == shard) {
                            Some((_, keys)) => keys.push(j),
                            None => parts.push((shard, vec![j])),
                        }
                    }
                    for (shard, keys) in parts {
                        splits.push((batch_of(shard), i, Part::Split(split, keys)));
                    }
                    owner.push(u32::MAX);
                }
                None => {
                    let shard = if c.positions.len() == 1 {
                        at.shard(c.key(0))?
                    } else {
                        let what = || format!("query_pipeline: command {i} ({})", c.shown());
                        one_shard(&what, c.keys(), at)?.unwrap_or_default()
                    };
                    owner.push(batch_of(shard) as u32);
                }
            }
        }
        let mut counts = vec![0usize; batches.len()];
        for &b in owner.iter().filter(|&&b| b != u32::MAX) {
            counts[b as usize] += 1;
        }
        for (b, ..) in &splits {
            counts[*b] += 1;
        }
        for (batch, n) in batches.iter_mut().zip(counts) {
            batch.pieces.reserve_exact(n);
        }
        let mut splits = splits.into_iter().peekable();
        for (i, (&b, c)) in owner.iter().zip(commands).enumerate() {
            if b != u32::MAX {
                let batch = &mut batches[b as usize];
                batch.pieces.push((i, Part::Whole));
                batch.read &= c.read;
                continue;
            }
            while let Some((b, _, part)) = splits.next_if(|(_, j, _)| *j == i) {
                batches[b].pieces.push((i, part));
                batches[b].read &= c.read;
            }
        }
        batches.sort_by_key(|b| b.shard);
        Ok(Plan { batches })
    }
}

/// The pipeline one shard runs for `batch` (its replies come back each in place, errors too:
/// see `Request::Pipeline`).
pub(crate) fn sub_pipeline(
    batch: &Batch,
    commands: &[CommandKeys<'_>],
    originals: &[&Cmd],
) -> Result<Pipeline> {
    let mut pipe = Pipeline::with_capacity(batch.pieces.len());
    for (i, part) in &batch.pieces {
        match part {
            Part::Whole => {
                pipe.add_command(originals[*i].clone());
            }
            Part::Split(split, keys) => {
                let c = &commands[*i];
                let mut cmd = Cmd::with_capacity(keys.len() * 2 + 1, 0);
                cmd.arg(c.name);
                for &j in keys {
                    cmd.arg(c.key(j));
                    if *split == Split::Ok {
                        let value = c.args.get(c.positions[j] + 1).copied().flatten();
                        let value = value.ok_or_else(|| {
                            Error::invalid_input(format!(
                                "query_pipeline: command {i} ({}) has a value that is a cursor",
                                c.shown()
                            ))
                        })?;
                        cmd.arg(value);
                    }
                }
                pipe.add_command(cmd);
            }
        }
    }
    Ok(pipe)
}

/// The replies in the caller's order, and for each command the shard that answered it (for a
/// split command: the first shard that answered an error, else the first shard).
pub(crate) struct Gathered {
    pub(crate) replies: Vec<Value>,
    pub(crate) shards: Vec<usize>,
}

impl Gathered {
    /// Room for `commands`, each reply set to what an empty split starts from.
    pub(crate) fn new(commands: &[CommandKeys<'_>]) -> Gathered {
        let replies = commands
            .iter()
            .map(|c| match c.split {
                Some(Split::Values) => Value::Array(vec![Value::Nil; c.positions.len()]),
                Some(Split::Count) => Value::Int(0),
                Some(Split::Ok) => Value::Okay,
                None => Value::Nil,
            })
            .collect();
        Gathered {
            replies,
            shards: vec![usize::MAX; commands.len()],
        }
    }

    /// Puts one shard's replies (`Value::Array`, one per piece) in place.
    pub(crate) fn add(&mut self, batch: &Batch, reply: Value) -> Result<()> {
        let values = match reply {
            Value::Array(values) if values.len() == batch.pieces.len() => values,
            other => {
                return Err(Error::new(
                    ErrorKind::Type,
                    format!(
                        "a pipeline of {} commands was answered {}",
                        batch.pieces.len(),
                        describe(&other)
                    ),
                ))
            }
        };
        for ((i, part), value) in batch.pieces.iter().zip(values) {
            let i = *i;
            if matches!(self.replies[i], Value::ServerError(_)) {
                continue; // the first error of a split command stands
            }
            if self.shards[i] == usize::MAX || matches!(value, Value::ServerError(_)) {
                self.shards[i] = batch.shard;
            }
            match (part, value) {
                (_, e @ Value::ServerError(_)) | (Part::Whole, e) => self.replies[i] = e,
                (Part::Split(Split::Values, keys), Value::Array(values))
                    if values.len() == keys.len() =>
                {
                    if let Value::Array(out) = &mut self.replies[i] {
                        for (&j, v) in keys.iter().zip(values) {
                            out[j] = v;
                        }
                    }
                }
                (Part::Split(Split::Count, _), Value::Int(n)) => {
                    if let Value::Int(sum) = &mut self.replies[i] {
                        *sum += n;
                    }
                }
                (Part::Split(Split::Ok, _), Value::Okay) => {}
                (Part::Split(..), other) => {
                    return Err(Error::new(
                        ErrorKind::Type,
                        format!(
                            "a shard's part of pipeline command {i} was answered {}",
                            describe(&other)
                        ),
                    ))
                }
            }
        }
        Ok(())
    }
}

/// A reply's shape, never its content (it may hold user data).
fn describe(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Int(_) => "an integer",
        Value::Array(_) => "an array of another length",
        Value::Okay | Value::SimpleString(_) => "a status",
        Value::BulkString(_) => "a string",
        Value::ServerError(_) => "an error",
        _ => "another type",
    }
}

#[cfg(test)]
mod tests;
