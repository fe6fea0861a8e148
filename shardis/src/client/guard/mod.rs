//! What `query` and `query_read` refuse before sending: commands that would poison the
//! multiplexed connection every clone of the client shares, commands that block it, and
//! multi-key commands whose keys are not all on the routing key's shard.
//!
//! The check is a pure function of the command, the routing key and a way to locate a key's
//! shard; it sends nothing. Every refusal is an [`ErrorKind::InvalidInput`] error naming the
//! command, why it is refused, and what to do instead.
//!
//! [`ErrorKind::InvalidInput`]: crate::error::ErrorKind::InvalidInput

use redis::{Arg, Cmd};

use crate::error::{Error, Result};

/// Commands that change the state of the connection they run on (database, transaction,
/// protocol, user) or close it. The connection is shared by every clone of the client, so the
/// change would apply to every later request on it.
pub(crate) const CONNECTION_STATE: &[&str] = &[
    "SELECT", "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH", "HELLO", "RESET", "QUIT", "AUTH",
];

/// Commands that turn the connection into a stream of pushed messages (pub/sub, `MONITOR`, a
/// replication stream): it answers nothing else afterwards, while health may still see the
/// shard up.
#[rustfmt::skip]
pub(crate) const STREAMING: &[&str] = &[
    "SUBSCRIBE", "UNSUBSCRIBE", "PSUBSCRIBE", "PUNSUBSCRIBE", "SSUBSCRIBE", "SUNSUBSCRIBE",
    "MONITOR", "SYNC", "PSYNC",
];

/// Commands that block until an event or a timeout. On a multiplexed connection a blocked
/// command holds up every request queued behind it, and one that outlasts the response
/// timeout gets the endpoint marked down. `XREAD` and `XREADGROUP` are refused only with
/// their `BLOCK` option.
#[rustfmt::skip]
pub(crate) const BLOCKING: &[&str] = &[
    "BLPOP", "BRPOP", "BLMOVE", "BRPOPLPUSH", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP",
    "WAIT", "WAITAOF",
];

/// The `CLIENT` subcommands allowed: the ones that only read. Every other subcommand is
/// refused: `REPLY`, `TRACKING`, `CACHING`, `NO-EVICT`, `NO-TOUCH`, `SETNAME` and `SETINFO`
/// change the shared connection; `KILL`, `PAUSE` and `UNPAUSE` act on other connections,
/// shardis's own pooled ones and its health probes included.
#[rustfmt::skip]
pub(crate) const CLIENT_READ_ONLY: &[&str] = &[
    "ID", "INFO", "LIST", "GETNAME", "GETREDIR", "TRACKINGINFO", "HELP",
];

/// Where a multi-key command's keys are, counted in arguments (the command name is 0).
#[derive(Debug, Clone, Copy)]
enum Keys {
    /// Every `step`-th argument from `from` on.
    Every { from: usize, step: usize },
    /// The arguments at 1 and 2.
    FirstTwo,
    /// A count of keys at `at`; the keys follow it, every `step`-th argument.
    Counted { at: usize, step: usize },
    /// `XREAD`/`XREADGROUP`: the first half of the arguments after `STREAMS`.
    Streams,
}

/// Every argument from the first: `MGET k1 k2`, `SUNIONSTORE dest k1 k2`.
const ALL: Keys = Keys::Every { from: 1, step: 1 };
/// Every other argument from the first: `MSET k1 v1 k2 v2`.
const PAIRS: Keys = Keys::Every { from: 1, step: 2 };
/// A key count at 1, the keys after it: `ZUNION 2 k1 k2`.
const COUNT_AT_1: Keys = Keys::Counted { at: 1, step: 1 };
/// A key count at 2, the keys after it: `EVAL script 2 k1 k2`, `ZUNIONSTORE dest 2 k1 k2`.
const COUNT_AT_2: Keys = Keys::Counted { at: 2, step: 1 };

/// Multi-key commands and where their keys are. A command not listed is routed by the key the
/// caller gives, as sent: its keys are not checked.
#[rustfmt::skip]
const MULTI_KEY: &[(&str, Keys)] = &[
    ("MGET", ALL), ("DEL", ALL), ("UNLINK", ALL), ("EXISTS", ALL), ("TOUCH", ALL),
    ("SINTER", ALL), ("SUNION", ALL), ("SDIFF", ALL),
    ("SINTERSTORE", ALL), ("SUNIONSTORE", ALL), ("SDIFFSTORE", ALL),
    ("PFCOUNT", ALL), ("PFMERGE", ALL),
    ("MSET", PAIRS), ("MSETNX", PAIRS),
    ("BITOP", Keys::Every { from: 2, step: 1 }),
    ("SMOVE", Keys::FirstTwo), ("RENAME", Keys::FirstTwo), ("RENAMENX", Keys::FirstTwo),
    ("COPY", Keys::FirstTwo), ("LMOVE", Keys::FirstTwo), ("RPOPLPUSH", Keys::FirstTwo),
    ("LCS", Keys::FirstTwo), ("GEOSEARCHSTORE", Keys::FirstTwo), ("ZRANGESTORE", Keys::FirstTwo),
    ("ZUNION", COUNT_AT_1), ("ZINTER", COUNT_AT_1), ("ZDIFF", COUNT_AT_1),
    ("SINTERCARD", COUNT_AT_1), ("ZINTERCARD", COUNT_AT_1),
    ("LMPOP", COUNT_AT_1), ("ZMPOP", COUNT_AT_1),
    ("MSETEX", Keys::Counted { at: 1, step: 2 }),
    ("ZUNIONSTORE", COUNT_AT_2), ("ZINTERSTORE", COUNT_AT_2), ("ZDIFFSTORE", COUNT_AT_2),
    ("EVAL", COUNT_AT_2), ("EVALSHA", COUNT_AT_2), ("EVAL_RO", COUNT_AT_2),
    ("EVALSHA_RO", COUNT_AT_2), ("FCALL", COUNT_AT_2), ("FCALL_RO", COUNT_AT_2),
    ("XREAD", Keys::Streams), ("XREADGROUP", Keys::Streams),
];

/// One argument of a command: its bytes, or `None` for a cursor, whose value `Cmd` keeps apart.
type Argument<'a> = Option<&'a [u8]>;

/// What to do instead of a blocking command.
const BLOCKING_ADVICE: &str = "use a dedicated redis connection for blocking commands";

/// Checks that `query` may send `cmd`, routed by `routing_key`, on the shared connection.
///
/// `locate` answers the shard index of a key (`None` when no shard can take it). It is called
/// only for a listed multi-key command, and only when one of its keys differs from
/// `routing_key`, so a caller may load its routing table lazily inside it: other commands cost
/// a comparison of their name against the lists, and no allocation.
pub(crate) fn check(
    cmd: &Cmd,
    routing_key: &[u8],
    locate: &dyn Fn(&[u8]) -> Option<usize>,
) -> Result<()> {
    const WHO: &str = "query";
    let mut args = arguments(cmd);
    let name = command_name(WHO, args.next())?;
    refuse_unsafe(WHO, name, || args.clone().next().flatten())?;
    let Some(keys) = multi_key(name) else {
        return Ok(());
    };
    let args: Vec<Argument<'_>> = std::iter::once(Some(name)).chain(args).collect();
    refuse_blocking_xread(WHO, name, keys, &args)?;
    let positions = key_positions(WHO, name, keys, &args)?;
    check_same_shard(name, &args, &positions, routing_key, locate)
}

/// The arguments of `cmd`, the name first; a cursor is `None`.
fn arguments(cmd: &Cmd) -> impl Iterator<Item = Argument<'_>> + Clone {
    cmd.args_iter().map(|a| match a {
        Arg::Simple(bytes) => Some(bytes),
        // A cursor, whose value `Cmd` keeps apart (and any future kind of argument).
        _ => None,
    })
}

/// The command name, or why there is none.
fn command_name<'a>(who: &str, first: Option<Argument<'a>>) -> Result<&'a [u8]> {
    match first {
        Some(Some(name)) => Ok(name),
        Some(None) => Err(Error::invalid_input(format!(
            "{who}: the command name is a cursor"
        ))),
        None => Err(Error::invalid_input(format!("{who}: the command is empty"))),
    }
}

/// The key layout of a listed multi-key command.
fn multi_key(name: &[u8]) -> Option<Keys> {
    MULTI_KEY
        .iter()
        .find(|(n, _)| name.eq_ignore_ascii_case(n.as_bytes()))
        .map(|(_, keys)| *keys)
}

/// Refuses the commands that poison, stream or block the shared connection, and the `CLIENT`
/// subcommands that change it; `second` gives the argument after the name, asked only for
/// `CLIENT`. `who` names the caller's API in the message.
fn refuse_unsafe<'a>(
    who: &str,
    name: &[u8],
    second: impl FnOnce() -> Option<&'a [u8]>,
) -> Result<()> {
    let shared = "the connection, which every clone of the client shares";
    if is_in(name, CONNECTION_STATE) {
        let why = format!("it changes the state of {shared}");
        return Err(refused(who, name, &why, state_advice(name)));
    }
    if is_in(name, STREAMING) {
        let why = format!("it turns {shared}, into a stream of pushed messages");
        let advice = "use a dedicated redis connection for pub/sub, MONITOR and replication";
        return Err(refused(who, name, &why, advice));
    }
    if is_in(name, BLOCKING) {
        let why = format!("it blocks {shared}");
        return Err(refused(who, name, &why, BLOCKING_ADVICE));
    }
    if name.eq_ignore_ascii_case(b"CLIENT") {
        return check_client(who, second());
    }
    Ok(())
}

/// Refuses `XREAD`/`XREADGROUP` with `BLOCK`.
fn refuse_blocking_xread(who: &str, name: &[u8], keys: Keys, args: &[Argument<'_>]) -> Result<()> {
    if matches!(keys, Keys::Streams) && scan_xread(args) == Xread::Block {
        let why = "with BLOCK it blocks the connection, which every clone of the client shares";
        return Err(refused(who, name, why, BLOCKING_ADVICE));
    }
    Ok(())
}

/// The command name as shown in an error.
fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name).to_ascii_uppercase()
}

/// True if `name` is one of `list`, ignoring ASCII case.
fn is_in(name: &[u8], list: &[&str]) -> bool {
    list.iter().any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
}

fn refused(who: &str, name: &[u8], why: &str, advice: &str) -> Error {
    Error::invalid_input(format!("{who} refuses {}: {why}; {advice}", show(name)))
}

/// What to do instead of a command of [`CONNECTION_STATE`].
fn state_advice(name: &[u8]) -> &'static str {
    if name.eq_ignore_ascii_case(b"SELECT") {
        "put the database in the endpoint URL (redis://host:port/1)"
    } else if is_in(name, &["AUTH", "HELLO"]) {
        "put the credentials in the endpoint URL"
    } else if is_in(name, &["QUIT", "RESET"]) {
        "drop the client to close its connections"
    } else {
        "use a dedicated redis connection for transactions, or a Lua script on one shard"
    }
}

/// Allows the `CLIENT` subcommands of [`CLIENT_READ_ONLY`].
fn check_client(who: &str, sub: Option<&[u8]>) -> Result<()> {
    match sub {
        Some(sub) if is_in(sub, CLIENT_READ_ONLY) => Ok(()),
        Some(sub) => Err(Error::invalid_input(format!(
            "{who} refuses CLIENT {}: it changes the connection every clone of the client \
             shares, or acts on other connections (shardis's own included); use redis-cli or \
             a dedicated redis connection",
            show(sub)
        ))),
        None => Err(Error::invalid_input(format!(
            "{who} refuses CLIENT without a plain subcommand"
        ))),
    }
}

/// What the options of an `XREAD`/`XREADGROUP` before `STREAMS` say.
#[derive(Debug, PartialEq, Eq)]
enum Xread {
    /// The `BLOCK` option.
    Block,
    /// No `BLOCK`; the keys start after `STREAMS` at this index.
    Streams(usize),
    /// No `STREAMS`.
    NoStreams,
}

/// Reads the options of an `XREAD`/`XREADGROUP` up to `STREAMS`. The values of `GROUP` (2)
/// and `COUNT` (1) are skipped, so a group or consumer named `block` or `streams` is no option.
fn scan_xread(args: &[Argument<'_>]) -> Xread {
    let is = |arg: &Argument<'_>, word: &[u8]| arg.is_some_and(|a| a.eq_ignore_ascii_case(word));
    let mut i = 1;
    while let Some(arg) = args.get(i) {
        i += if is(arg, b"STREAMS") {
            return Xread::Streams(i + 1);
        } else if is(arg, b"BLOCK") {
            return Xread::Block;
        } else if is(arg, b"GROUP") {
            3
        } else if is(arg, b"COUNT") {
            2
        } else {
            1
        };
    }
    Xread::NoStreams
}

/// The indices in `args` of the command's keys.
fn key_positions(who: &str, name: &[u8], keys: Keys, args: &[Argument<'_>]) -> Result<Vec<usize>> {
    Ok(match keys {
        Keys::Every { from, step } => (from..args.len()).step_by(step).collect(),
        Keys::FirstTwo => (1..args.len().min(3)).collect(),
        Keys::Counted { at, step } => {
            let count = args
                .get(at)
                .copied()
                .flatten()
                .and_then(numkeys)
                .ok_or_else(|| {
                    Error::invalid_input(format!(
                        "{who}: the key count of {} (argument {at}) is not a non-negative \
                         integer",
                        show(name)
                    ))
                })?;
            let end = count.checked_mul(step).and_then(|n| n.checked_add(at + 1));
            match end {
                Some(end) if end <= args.len() => (at + 1..end).step_by(step).collect(),
                _ => {
                    return Err(Error::invalid_input(format!(
                        "{who}: {} counts {count} keys but has fewer arguments",
                        show(name)
                    )))
                }
            }
        }
        Keys::Streams => {
            let first = match scan_xread(args) {
                Xread::Streams(first) => first,
                _ => {
                    return Err(Error::invalid_input(format!(
                        "{who}: {} without STREAMS",
                        show(name)
                    )))
                }
            };
            let rest = args.len().saturating_sub(first);
            if rest == 0 || !rest.is_multiple_of(2) {
                return Err(Error::invalid_input(format!(
                    "{who}: {} needs one id per key after STREAMS",
                    show(name)
                )));
            }
            (first..first + rest / 2).collect()
        }
    })
}

/// A key count: ASCII digits only (no sign, no space), within `usize`.
fn numkeys(arg: &[u8]) -> Option<usize> {
    if arg.is_empty() || !arg.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(arg).ok()?.parse().ok()
}

/// Checks that every key at `positions` is on the routing key's shard.
fn check_same_shard(
    name: &[u8],
    args: &[Argument<'_>],
    positions: &[usize],
    routing_key: &[u8],
    locate: &dyn Fn(&[u8]) -> Option<usize>,
) -> Result<()> {
    let mut keys = Vec::with_capacity(positions.len());
    for &i in positions {
        match args.get(i).copied().flatten() {
            Some(key) => keys.push(key),
            None => {
                return Err(Error::invalid_input(format!(
                    "query: argument {i} of {} is a key and cannot be a cursor",
                    show(name)
                )))
            }
        }
    }
    if keys.iter().all(|k| *k == routing_key) {
        return Ok(());
    }
    let home = locate(routing_key);
    if keys.iter().all(|k| *k == routing_key || locate(k) == home) {
        return Ok(());
    }
    let first = keys.first().map(|k| locate(k));
    let why = if keys.iter().all(|k| Some(locate(k)) == first) {
        "its keys are on another shard than the routing key, so it would run on the wrong \
         shard; route it by one of its keys"
    } else {
        "its keys span shards and one shard would answer for all; use mget/mset/del_many for \
         multi-key commands, or give the keys one hash tag"
    };
    Err(Error::invalid_input(format!(
        "query refuses {}: {why}",
        show(name)
    )))
}

mod keys;
pub(crate) use keys::{command_keys, CommandKeys, Split};

#[cfg(test)]
mod tests;
