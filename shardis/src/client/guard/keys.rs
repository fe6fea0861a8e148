//! The keys of any command a pipeline, a transaction or a script may carry, found the way Redis
//! defines them (its key specs), from tables: the multi-key commands of the parent module, and
//! below, the single-key commands (key at argument 1) and the keyless ones. A command in none
//! of the tables is refused, never routed by a guess.

use std::collections::HashMap;
use std::sync::LazyLock;

use redis::Cmd;
use smallvec::SmallVec;

use super::{
    arguments, command_name, is_in, key_positions, refuse_blocking_xread, refuse_unsafe, show,
    Argument, Keys, BLOCKING, CONNECTION_STATE, MULTI_KEY, STREAMING,
};
use crate::error::{Error, Result};

/// Single-key commands that only read: the key is argument 1.
#[rustfmt::skip]
const READ_KEY_AT_1: &[&str] = &[
    "GET", "GETRANGE", "SUBSTR", "STRLEN", "GETBIT", "BITCOUNT", "BITPOS", "BITFIELD_RO",
    "TYPE", "TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME", "DUMP",
    "HGET", "HMGET", "HGETALL", "HKEYS", "HVALS", "HLEN", "HEXISTS", "HSTRLEN", "HRANDFIELD",
    "HSCAN", "HTTL", "HPTTL", "HEXPIRETIME", "HPEXPIRETIME",
    "LRANGE", "LINDEX", "LLEN", "LPOS",
    "SMEMBERS", "SISMEMBER", "SMISMEMBER", "SCARD", "SRANDMEMBER", "SSCAN",
    "ZRANGE", "ZRANGEBYSCORE", "ZREVRANGEBYSCORE", "ZRANGEBYLEX", "ZREVRANGEBYLEX", "ZREVRANGE",
    "ZSCORE", "ZMSCORE", "ZRANK", "ZREVRANK", "ZCARD", "ZCOUNT", "ZLEXCOUNT", "ZRANDMEMBER",
    "ZSCAN",
    "GEOPOS", "GEODIST", "GEOHASH", "GEOSEARCH", "GEORADIUS_RO", "GEORADIUSBYMEMBER_RO",
    "XRANGE", "XREVRANGE", "XLEN", "XPENDING",
];

/// Single-key commands that write: the key is argument 1.
#[rustfmt::skip]
const WRITE_KEY_AT_1: &[&str] = &[
    "SET", "SETNX", "SETEX", "PSETEX", "GETSET", "GETDEL", "GETEX", "APPEND", "SETRANGE",
    "INCR", "INCRBY", "INCRBYFLOAT", "DECR", "DECRBY", "SETBIT", "BITFIELD",
    "EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT", "PERSIST", "RESTORE",
    "HSET", "HSETNX", "HMSET", "HDEL", "HINCRBY", "HINCRBYFLOAT", "HEXPIRE", "HPEXPIRE",
    "HEXPIREAT", "HPEXPIREAT", "HPERSIST", "HGETDEL", "HGETEX", "HSETEX",
    "LPUSH", "RPUSH", "LPUSHX", "RPUSHX", "LPOP", "RPOP", "LSET", "LINSERT", "LREM", "LTRIM",
    "SADD", "SREM", "SPOP",
    "ZADD", "ZINCRBY", "ZREM", "ZREMRANGEBYSCORE", "ZREMRANGEBYRANK", "ZREMRANGEBYLEX",
    "ZPOPMIN", "ZPOPMAX",
    "PFADD", "GEOADD", "XADD", "XDEL", "XTRIM", "XACK", "XCLAIM", "XAUTOCLAIM", "XSETID",
];

/// Multi-key commands that only read (the others of the parent's table write).
#[rustfmt::skip]
const READ_MULTI_KEY: &[&str] = &[
    "MGET", "EXISTS", "SINTER", "SUNION", "SDIFF", "PFCOUNT", "ZUNION", "ZINTER", "ZDIFF",
    "SINTERCARD", "ZINTERCARD", "LCS", "EVAL_RO", "EVALSHA_RO", "FCALL_RO", "XREAD",
];

/// Commands without a key: they concern the server or the connection, not one shard's data.
/// `Client::on_every_shard` sends them to every shard.
#[rustfmt::skip]
const KEYLESS: &[&str] = &[
    "PING", "ECHO", "TIME", "INFO", "DBSIZE", "LASTSAVE", "ROLE", "LOLWUT", "FLUSHDB",
    "FLUSHALL", "CONFIG", "COMMAND", "SCAN", "KEYS", "RANDOMKEY", "SCRIPT", "FUNCTION",
    "SLOWLOG", "LATENCY", "MEMORY", "SAVE", "BGSAVE", "BGREWRITEAOF",
];

/// Script calls, which may have no key.
const SCRIPTS: &[&str] = &[
    "EVAL",
    "EVALSHA",
    "EVAL_RO",
    "EVALSHA_RO",
    "FCALL",
    "FCALL_RO",
];

/// How a multi-key command is split per shard in a non-atomic pipeline, and its reply put
/// back together. Other multi-key commands must have all their keys on one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Split {
    /// `MGET`: one array per shard, values put back at their keys' positions.
    Values,
    /// `DEL`, `UNLINK`, `EXISTS`, `TOUCH`: one count per shard, summed.
    Count,
    /// `MSET`: `OK` from every shard.
    Ok,
}

/// The split of the commands that have one.
const SPLITS: &[(&str, Split)] = &[
    ("MGET", Split::Values),
    ("DEL", Split::Count),
    ("UNLINK", Split::Count),
    ("EXISTS", Split::Count),
    ("TOUCH", Split::Count),
    ("MSET", Split::Ok),
];

/// What the tables say of a command name.
#[derive(Debug, Clone, Copy)]
enum Class {
    /// Refused by `refuse_unsafe` (or `CLIENT`, refused but for its read-only subcommands).
    Unsafe,
    /// A multi-key command of the parent's table.
    Multi {
        layout: Keys,
        read: bool,
        split: Option<Split>,
    },
    /// A single-key command: the key is argument 1.
    Single { read: bool },
    /// No key.
    Keyless,
}

/// Every name of the tables, upper case, with its class: one lookup per command. Hashed with
/// foldhash, not SipHash: the keys are this fixed table's names, and the lookup is on the path of
/// every routed command (a 100-command pipeline makes 100 of them).
static CLASSES: LazyLock<HashMap<&'static [u8], Class, foldhash::fast::RandomState>> =
    LazyLock::new(|| {
        let mut map = HashMap::default();
        for n in KEYLESS {
            map.insert(n.as_bytes(), Class::Keyless);
        }
        for n in READ_KEY_AT_1 {
            map.insert(n.as_bytes(), Class::Single { read: true });
        }
        for n in WRITE_KEY_AT_1 {
            map.insert(n.as_bytes(), Class::Single { read: false });
        }
        for (n, layout) in MULTI_KEY {
            let split = SPLITS.iter().find(|(s, _)| s == n).map(|(_, s)| *s);
            let read = READ_MULTI_KEY.contains(n);
            map.insert(
                n.as_bytes(),
                Class::Multi {
                    layout: *layout,
                    read,
                    split,
                },
            );
        }
        for n in CONNECTION_STATE.iter().chain(STREAMING).chain(BLOCKING) {
            map.insert(n.as_bytes(), Class::Unsafe);
        }
        map.insert(b"CLIENT", Class::Unsafe);
        map
    });

/// The class of a command name, in any case; `None` for a name in no table.
fn classify(name: &[u8]) -> Option<Class> {
    let mut upper = [0u8; 32];
    let upper = upper.get_mut(..name.len())?;
    for (u, b) in upper.iter_mut().zip(name) {
        *u = b.to_ascii_uppercase();
    }
    CLASSES.get(&*upper).copied()
}

/// A command's name, arguments and keys, found before anything is sent.
#[derive(Debug)]
pub(crate) struct CommandKeys<'a> {
    /// The command name as written.
    pub(crate) name: &'a [u8],
    /// Every argument, the name first; a cursor is `None`. Empty for a single-key command,
    /// whose key is `single`: a pipeline of single-key commands allocates nothing per command
    /// here, and its records stay small.
    pub(crate) args: Vec<Argument<'a>>,
    /// The indices in the command's arguments of the keys, in order; empty for a keyless
    /// command.
    pub(crate) positions: SmallVec<[usize; 2]>,
    /// The key of a single-key command (argument 1).
    single: Option<&'a [u8]>,
    /// The command only reads: it may follow the read policy.
    pub(crate) read: bool,
    /// How the command is split per shard, when it can be.
    pub(crate) split: Option<Split>,
}

impl<'a> CommandKeys<'a> {
    /// The key at `positions[i]`.
    pub(crate) fn key(&self, i: usize) -> &'a [u8] {
        match self.single {
            Some(key) => key,
            // `command_keys` checked that every key position holds plain bytes.
            None => self.args[self.positions[i]].unwrap_or_default(),
        }
    }

    /// Every key, in order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (0..self.positions.len()).map(|i| self.key(i))
    }

    /// The command name in capitals, for messages.
    pub(crate) fn shown(&self) -> String {
        show(self.name)
    }
}

/// Finds the keys of `cmd`, refusing first what [`check`](super::check) refuses (connection
/// state, streams, blocking, `CLIENT` subcommands that change the connection). `who` names the
/// caller's API in the messages. A command in no table is an `InvalidInput` error.
pub(crate) fn command_keys<'a>(who: &str, cmd: &'a Cmd) -> Result<CommandKeys<'a>> {
    let mut iter = arguments(cmd);
    let name = command_name(who, iter.next())?;
    let class = classify(name);
    if matches!(class, Some(Class::Unsafe)) {
        refuse_unsafe(who, name, || iter.clone().next().flatten())?;
    }
    // A single-key command keeps its key only; any other its whole argument list.
    if let Some(Class::Single { read }) = class {
        let key = match iter.next() {
            Some(Some(key)) => key,
            Some(None) => {
                return Err(Error::invalid_input(format!(
                    "{who}: argument 1 of {} is a key and cannot be a cursor",
                    show(name)
                )))
            }
            None => {
                return Err(Error::invalid_input(format!(
                    "{who}: {} has no key argument",
                    show(name)
                )))
            }
        };
        return Ok(CommandKeys {
            name,
            args: Vec::new(),
            positions: SmallVec::from_slice(&[1]),
            single: Some(key),
            read,
            split: None,
        });
    }
    let args: Vec<Argument<'a>> = std::iter::once(Some(name)).chain(iter).collect();
    let (positions, read, split): (SmallVec<[usize; 2]>, bool, Option<Split>) = match class {
        Some(Class::Multi {
            layout,
            read,
            split,
        }) => {
            refuse_blocking_xread(who, name, layout, &args)?;
            let positions = key_positions(who, name, layout, &args)?;
            (SmallVec::from_vec(positions), read, split)
        }
        // Returned above.
        Some(Class::Single { read }) => (SmallVec::from_slice(&[1]), read, None),
        // `CLIENT` with a subcommand that only reads passed `refuse_unsafe`: keyless.
        Some(Class::Keyless | Class::Unsafe) => (SmallVec::new(), false, None),
        None => {
            return Err(Error::invalid_input(format!(
                "{who}: shardis does not know where the keys of {} are, so it cannot route \
                 it; send it alone with query(key, cmd), which routes by the key you give",
                show(name)
            )))
        }
    };
    if let Some(&i) = positions.iter().find(|&&i| args[i].is_none()) {
        return Err(Error::invalid_input(format!(
            "{who}: argument {i} of {} is a key and cannot be a cursor",
            show(name)
        )));
    }
    // `MGET` with no key, `ZUNION 0`: Redis refuses them; only scripts may have no key.
    if positions.is_empty()
        && matches!(
            class,
            Some(Class::Multi {
                layout: Keys::Every { .. } | Keys::Counted { .. },
                ..
            })
        )
        && !is_in(name, SCRIPTS)
    {
        return Err(Error::invalid_input(format!(
            "{who}: {} has no key",
            show(name)
        )));
    }
    Ok(CommandKeys {
        name,
        args,
        positions,
        single: None,
        read,
        split,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn cmd(args: &[&str]) -> Cmd {
        let mut c = redis::cmd(args[0]);
        for a in &args[1..] {
            c.arg(*a);
        }
        c
    }

    fn keys_of(args: &[&str]) -> Result<Vec<String>> {
        let c = cmd(args);
        let k = command_keys("test", &c)?;
        Ok(k.keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect())
    }

    #[test]
    fn keys_are_found_as_redis_defines_them() {
        assert_eq!(keys_of(&["get", "a"]).unwrap(), ["a"]);
        assert_eq!(keys_of(&["MSET", "a", "1", "b", "2"]).unwrap(), ["a", "b"]);
        assert_eq!(
            keys_of(&["EVALSHA", "x", "2", "a", "b", "v"]).unwrap(),
            ["a", "b"]
        );
        assert_eq!(
            keys_of(&["EVAL", "return 1", "0"]).unwrap(),
            Vec::<String>::new()
        );
        let xread = ["XREAD", "COUNT", "2", "STREAMS", "s1", "s2", "0", "0"];
        assert_eq!(keys_of(&xread).unwrap(), ["s1", "s2"]);
        assert_eq!(keys_of(&["PING"]).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn reads_splits_and_refusals() {
        let c = cmd(&["MGET", "a", "b"]);
        let k = command_keys("test", &c).unwrap();
        assert!(k.read);
        assert_eq!(k.split, Some(Split::Values));
        let c = cmd(&["HSET", "h", "f", "v"]);
        let k = command_keys("test", &c).unwrap();
        assert!(!k.read);
        assert_eq!(k.split, None);
        for bad in [
            &["FROBNICATE", "a"][..],
            &["GET"],
            &["MGET"],
            &["SELECT", "1"],
            &["BLPOP", "a", "0"],
            &["XREAD", "BLOCK", "0", "STREAMS", "s", "0"],
            &["EVAL", "x", "3", "a"],
        ] {
            let e = keys_of(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}");
            assert!(e.to_string().contains("test"), "{e}");
        }
    }
}
