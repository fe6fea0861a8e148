use super::*;
use crate::client::guard::command_keys;

/// Keys starting with `a` are on shard 0, `b` on 1, anything else on 2.
fn by_first_byte(key: &[u8]) -> Option<usize> {
    Some(match key.first() {
        Some(b'a') => 0,
        Some(b'b') => 1,
        _ => 2,
    })
}

fn name(shard: usize) -> String {
    format!("s{shard}")
}

fn cmds(list: &[&[&str]]) -> Vec<Cmd> {
    list.iter()
        .map(|args| {
            let mut c = redis::cmd(args[0]);
            for a in &args[1..] {
                c.arg(*a);
            }
            c
        })
        .collect()
}

fn plan_of(cmds: &[Cmd]) -> Result<Plan> {
    let keys: Vec<_> = cmds
        .iter()
        .map(|c| command_keys("test", c))
        .collect::<Result<_>>()?;
    let at = Placement {
        locate: &by_first_byte,
        name: &name,
    };
    Plan::new(&keys, &at)
}

#[test]
fn commands_go_to_their_keys_shard_and_splits_are_divided() {
    let cmds = cmds(&[
        &["GET", "a1"],
        &["SET", "b1", "v"],
        &["MGET", "a2", "c1", "a3"],
        &["INCR", "a4"],
        &["MSET", "b2", "1", "a5", "2"],
    ]);
    let plan = plan_of(&cmds).unwrap();
    let shards: Vec<usize> = plan.batches.iter().map(|b| b.shard).collect();
    assert_eq!(shards, [0, 1, 2]);
    let values = |keys: &[usize]| Part::Split(Split::Values, keys.to_vec());
    let ok = |keys: &[usize]| Part::Split(Split::Ok, keys.to_vec());
    assert_eq!(
        plan.batches[0].pieces,
        vec![
            (0, Part::Whole),
            (2, values(&[0, 2])),
            (3, Part::Whole),
            (4, ok(&[1]))
        ]
    );
    assert_eq!(
        plan.batches[1].pieces,
        vec![(1, Part::Whole), (4, ok(&[0]))]
    );
    assert_eq!(plan.batches[2].pieces, vec![(2, values(&[1]))]);
    assert!(!plan.batches[0].read && !plan.batches[1].read && plan.batches[2].read);
}

#[test]
fn cross_shard_and_keyless_commands_are_refused() {
    let e = plan_of(&cmds(&[&["GET", "a"], &["RENAME", "a1", "b1"]])).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CrossShard);
    let shown = e.to_string();
    assert!(
        shown.contains("`a1` on `s0`") && shown.contains("`b1` on `s1`"),
        "{shown}"
    );
    assert!(shown.contains("command 1 (RENAME)"), "{shown}");
    let e = plan_of(&cmds(&[&["PING"]])).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("on_every_shard"), "{e}");
}

#[test]
fn gathering_restores_order_sums_counts_and_keeps_the_first_error() {
    let cmds = cmds(&[
        &["MGET", "a1", "b1", "a2"],
        &["DEL", "a1", "b1"],
        &["GET", "b2"],
        &["MSET", "a1", "1", "b1", "2"],
    ]);
    let keys: Vec<_> = cmds.iter().map(|c| command_keys("t", c).unwrap()).collect();
    let at = Placement {
        locate: &by_first_byte,
        name: &name,
    };
    let plan = Plan::new(&keys, &at).unwrap();
    let mut g = Gathered::new(&keys);
    let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
    let err = Value::ServerError(server_error());
    // Shard 0: MGET a1 a2, DEL a1, MSET a1.
    let s0 = Value::Array(vec![
        Value::Array(vec![bulk("A1"), bulk("A2")]),
        Value::Int(1),
        Value::Okay,
    ]);
    // Shard 1: MGET b1, DEL b1, GET b2, MSET b1 (an error).
    let s1 = Value::Array(vec![
        Value::Array(vec![bulk("B1")]),
        Value::Int(1),
        bulk("B2"),
        err.clone(),
    ]);
    g.add(&plan.batches[0], s0).unwrap();
    g.add(&plan.batches[1], s1).unwrap();
    assert_eq!(
        g.replies[0],
        Value::Array(vec![bulk("A1"), bulk("B1"), bulk("A2")])
    );
    assert_eq!(g.replies[1], Value::Int(2));
    assert_eq!(g.replies[2], bulk("B2"));
    assert_eq!(g.replies[3], err);
    assert_eq!(g.shards, vec![0, 0, 1, 1]);
    // A reply of the wrong length is a type error, not a panic.
    let short = Value::Array(vec![Value::Nil]);
    assert_eq!(
        g.add(&plan.batches[0], short).unwrap_err().kind(),
        ErrorKind::Type
    );
}

fn server_error() -> redis::ServerError {
    redis::ServerError::try_from(redis::make_extension_error("ERR".into(), Some("x".into())))
        .unwrap()
}
