//! Encoding a command's arguments: keys and values written straight into one buffer through
//! `RedisWrite` (no allocation per argument), each checked to be one argument within its limit.

use std::time::Duration;

use redis::{RedisWrite, ToRedisArgs};

use crate::error::{Error, Result};

/// Arguments written back to back into one buffer: no allocation per argument.
#[derive(Debug)]
pub(crate) struct FlatArgs {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl FlatArgs {
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub(crate) fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// Total bytes of the arguments at `indices`.
    pub(crate) fn bytes_in(&self, indices: &[usize]) -> usize {
        indices.iter().map(|&i| self.get(i).len()).sum()
    }
}

/// Writes each item (which must be exactly one argument of at most `limit` bytes) into one
/// buffer.
pub(crate) fn flatten<'a, T: ToRedisArgs + 'a>(
    items: impl Iterator<Item = &'a T>,
    what: &str,
    limit: usize,
) -> Result<FlatArgs> {
    let mut flat = FlatArgs {
        bytes: Vec::new(),
        ends: Vec::with_capacity(items.size_hint().0),
    };
    for item in items {
        check_size(what, item, limit)?;
        item.write_redis_args(&mut ArgSink::new(&mut flat.bytes));
        flat.ends.push(flat.bytes.len());
    }
    Ok(flat)
}

/// Redis's largest bulk string by default (`proto-max-bulk-len`): 512 MiB. A longer value is
/// refused before anything is copied or sent.
pub(crate) const MAX_VALUE_BYTES: usize = 512 * 1024 * 1024;

/// Checks that `item` is exactly one argument of at most `limit` bytes, without copying it;
/// returns its length.
pub(crate) fn check_size<T: ToRedisArgs>(what: &str, item: &T, limit: usize) -> Result<usize> {
    let mut count = CountSink::default();
    item.write_redis_args(&mut count);
    check_one(what, count.args, count.bytes, limit)?;
    Ok(count.bytes)
}

/// A `RedisWrite` that only counts arguments and their bytes.
#[derive(Default)]
struct CountSink {
    args: usize,
    bytes: usize,
}

impl std::io::Write for CountSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl RedisWrite for CountSink {
    fn write_arg(&mut self, arg: &[u8]) {
        self.args += 1;
        self.bytes += arg.len();
    }

    fn write_arg_fmt(&mut self, arg: impl std::fmt::Display) {
        use std::io::Write;
        self.args += 1;
        // Counting cannot fail.
        let _ = write!(self, "{arg}");
    }

    fn writer_for_next_arg(&mut self) -> impl std::io::Write + '_ {
        self.args += 1;
        self
    }
}

pub(crate) fn check_one(what: &str, args: usize, len: usize, limit: usize) -> Result<()> {
    if args != 1 {
        return Err(Error::invalid_input(format!(
            "{what} must be exactly one argument, this one is {args}"
        )));
    }
    if len > limit {
        return Err(Error::invalid_input(format!(
            "{what} of {len} bytes is over the limit of {limit} bytes"
        )));
    }
    Ok(())
}

/// A `RedisWrite` that appends every argument to one buffer and counts them.
pub(crate) struct ArgSink<'a> {
    out: &'a mut Vec<u8>,
    pub(crate) args: usize,
}

impl<'a> ArgSink<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> ArgSink<'a> {
        ArgSink { out, args: 0 }
    }
}

impl RedisWrite for ArgSink<'_> {
    fn write_arg(&mut self, arg: &[u8]) {
        self.args += 1;
        self.out.extend_from_slice(arg);
    }

    fn write_arg_fmt(&mut self, arg: impl std::fmt::Display) {
        use std::io::Write;
        self.args += 1;
        // Writing into a Vec cannot fail.
        let _ = write!(self.out, "{arg}");
    }

    fn writer_for_next_arg(&mut self) -> impl std::io::Write + '_ {
        self.args += 1;
        &mut *self.out
    }
}

/// A value as the single argument it must be, and its length.
/// Checked without copying; the command then writes it once.
pub(crate) fn single_value<V: ToRedisArgs>(value: &V) -> Result<(&V, usize)> {
    let len = check_size("a value", value, MAX_VALUE_BYTES)?;
    Ok((value, len))
}

/// An expiry in whole milliseconds, at least 1.
pub(crate) fn millis(ttl: Duration) -> Result<u64> {
    let ms = ttl.as_millis();
    if ms == 0 {
        return Err(Error::invalid_input(format!(
            "an expiry must be at least 1 ms, got {ttl:?}"
        )));
    }
    u64::try_from(ms)
        .ok()
        .filter(|ms| *ms <= i64::MAX as u64)
        .ok_or_else(|| Error::invalid_input(format!("expiry {ttl:?} is too long")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn flat_args_count_and_bound_arguments() {
        let keys = flatten([&"a", &"bcd", &""].into_iter(), "a key", 3).unwrap();
        assert_eq!(
            (keys.len(), keys.get(0), keys.get(1), keys.get(2)),
            (3, &b"a"[..], &b"bcd"[..], &b""[..])
        );
        assert_eq!(keys.bytes_in(&[0, 1]), 4);
        let too_long = flatten([&"abcd"].into_iter(), "a key", 3).unwrap_err();
        // Counted, not copied: a number's formatted length counts too.
        assert!(check_size("a key", &12345i64, 4).is_err());
        assert!(check_size("a key", &1234i64, 4).is_ok());
        assert_eq!(too_long.kind(), ErrorKind::InvalidInput);
        let two = flatten([&vec!["x", "y"]].into_iter(), "a key", 10).unwrap_err();
        assert!(two.to_string().contains("exactly one argument"), "{two}");
        let number = flatten([&42i64].into_iter(), "a key", 10).unwrap();
        assert_eq!(number.get(0), b"42");
    }
}
