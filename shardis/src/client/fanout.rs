//! Multi-key commands as data first: a pure plan (which keys go to which shard, at which
//! positions of the caller's input), then scatter (one command per shard, sent at once, by
//! `exec`), then gather in input order. Never routed by the first key.

use std::ops::Range;

use redis::Value;

use crate::error::{Error, ErrorKind, Result};

/// Which keys go to which shard: key indices sorted by owning shard, and one group per shard
/// naming its slice of that order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Key indices (positions in the caller's input), grouped by shard, each group in input
    /// order.
    pub(crate) order: Vec<usize>,
    /// `(shard index, range of order)`, one per shard that owns a key, by shard index.
    pub(crate) groups: Vec<(usize, Range<usize>)>,
}

impl Plan {
    /// The plan for keys whose owners are `owners` (the shard index of each key, in input
    /// order).
    pub(crate) fn new(owners: &[usize]) -> Plan {
        let mut order: Vec<usize> = (0..owners.len()).collect();
        // Stable: keys of one shard keep their input order.
        order.sort_by_key(|i| owners[*i]);
        let mut groups: Vec<(usize, Range<usize>)> = Vec::new();
        for (at, &i) in order.iter().enumerate() {
            match groups.last_mut() {
                Some((shard, range)) if *shard == owners[i] => range.end = at + 1,
                _ => groups.push((owners[i], at..at + 1)),
            }
        }
        Plan { order, groups }
    }

    /// The input positions of the keys in `range` of the order.
    pub(crate) fn positions(&self, range: &Range<usize>) -> &[usize] {
        &self.order[range.clone()]
    }
}

/// Puts a shard's array reply (`MGET`) at its keys' input positions.
pub(crate) fn gather(out: &mut [Value], positions: &[usize], reply: Value) -> Result<()> {
    let Value::Array(values) = reply else {
        return Err(Error::new(
            ErrorKind::Type,
            format!("MGET answered {reply:?} instead of an array"),
        ));
    };
    if values.len() != positions.len() {
        return Err(Error::new(
            ErrorKind::Type,
            format!(
                "MGET answered {} values for {} keys",
                values.len(),
                positions.len()
            ),
        ));
    }
    for (&i, v) in positions.iter().zip(values) {
        out[i] = v;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_groups_by_shard_and_keeps_input_order_within_a_shard() {
        let plan = Plan::new(&[2, 0, 2, 1, 0]);
        assert_eq!(plan.order, vec![1, 4, 3, 0, 2]);
        assert_eq!(plan.groups, vec![(0, 0..2), (1, 2..3), (2, 3..5)]);
        assert_eq!(plan.positions(&(3..5)), &[0, 2]);
        assert_eq!(Plan::new(&[]).groups, vec![]);
    }

    #[test]
    fn gather_restores_input_order_and_checks_lengths() {
        let plan = Plan::new(&[1, 0, 1]);
        let mut out = vec![Value::Nil; 3];
        for (shard, range) in &plan.groups {
            let values = plan
                .positions(range)
                .iter()
                .map(|i| Value::Int((*i as i64) * 10 + *shard as i64))
                .collect();
            gather(&mut out, plan.positions(range), Value::Array(values)).unwrap();
        }
        assert_eq!(out, vec![Value::Int(1), Value::Int(10), Value::Int(21)]);
        let short = gather(&mut out, &[0, 1], Value::Array(vec![Value::Nil]));
        assert_eq!(short.unwrap_err().kind(), ErrorKind::Type);
        let not_array = gather(&mut out, &[0], Value::Int(1));
        assert_eq!(not_array.unwrap_err().kind(), ErrorKind::Type);
    }
}
