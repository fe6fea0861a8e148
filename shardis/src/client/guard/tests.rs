//! Unit tests of the query guard: every refused command, key counts, multi-key shards.
use super::*;
use crate::error::ErrorKind;

/// Shards by the first byte of the key: `a…` on 0, `b…` on 1, anything else on 2.
fn by_first_byte(key: &[u8]) -> Option<usize> {
    Some(match key.first() {
        Some(b'a') => 0,
        Some(b'b') => 1,
        _ => 2,
    })
}

fn cmd(args: &[&str]) -> Cmd {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd
}

fn verdict(routing_key: &str, args: &[&str]) -> Result<()> {
    check(&cmd(args), routing_key.as_bytes(), &by_first_byte)
}

fn refused_with(routing_key: &str, args: &[&str]) -> String {
    let err = verdict(routing_key, args).expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{args:?}: {err}");
    err.to_string()
}

#[test]
fn every_listed_command_is_refused_in_any_case() {
    for name in CONNECTION_STATE.iter().chain(STREAMING).chain(BLOCKING) {
        for spelled in [name.to_string(), name.to_ascii_lowercase()] {
            let msg = refused_with("a", &[&spelled, "a", "0"]);
            assert!(msg.contains(name), "{msg}");
        }
    }
}

#[test]
fn refusals_say_what_to_do_instead() {
    assert!(refused_with("a", &["select", "1"]).contains("endpoint URL"));
    assert!(refused_with("a", &["BLPOP", "a", "0"]).contains("dedicated redis connection"));
    assert!(refused_with("a", &["Multi"]).contains("transactions"));
    assert!(refused_with("a", &["MGET", "a", "b"]).contains("mget/mset/del_many"));
}

#[test]
fn client_subcommands_that_only_read_pass_the_others_are_refused() {
    for sub in CLIENT_READ_ONLY {
        verdict("a", &["client", &sub.to_ascii_lowercase()]).unwrap();
    }
    for sub in [
        "REPLY", "reply", "TRACKING", "CACHING", "SETNAME", "SETINFO", "KILL", "PAUSE", "UNPAUSE",
        "NO-EVICT", "NO-TOUCH",
    ] {
        let msg = refused_with("a", &["CLIENT", sub, "OFF"]);
        assert!(msg.contains(&sub.to_ascii_uppercase()), "{msg}");
    }
    refused_with("a", &["CLIENT"]);
}

#[test]
fn xread_is_refused_with_block_only() {
    verdict("a", &["XREAD", "COUNT", "2", "STREAMS", "a", "0"]).unwrap();
    refused_with("a", &["xread", "block", "0", "STREAMS", "a", "0"]);
    refused_with(
        "a",
        &["XREAD", "COUNT", "1", "BLOCK", "10", "STREAMS", "a", "$"],
    );
    let group = ["XREADGROUP", "GROUP", "block", "block", "STREAMS", "a", ">"];
    verdict("a", &group).unwrap();
    refused_with(
        "a",
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "NOACK",
            "BLOCK",
            "0",
            "STREAMS",
            "a",
            ">",
        ],
    );
    // A group named `streams` is no STREAMS token: the keys are after the real one.
    let named = [
        "XREADGROUP",
        "GROUP",
        "streams",
        "c",
        "STREAMS",
        "a1",
        "a2",
        ">",
        ">",
    ];
    verdict("a", &named).unwrap();
    let named = [
        "XREADGROUP",
        "GROUP",
        "streams",
        "c",
        "STREAMS",
        "a1",
        "b1",
        ">",
        ">",
    ];
    assert!(refused_with("a", &named).contains("span shards"));
    // A stream named `BLOCK` after STREAMS is a key, not the option.
    verdict("a", &["XREAD", "STREAMS", "aBLOCK", "0"]).unwrap();
    refused_with("a", &["XREAD", "STREAMS", "a", "b", "0", "0"]);
    refused_with("a", &["XREAD", "STREAMS", "a", "b", "0"]);
    refused_with("a", &["XREAD", "COUNT", "1"]);
}

#[test]
fn single_key_and_unlisted_commands_pass_without_locating() {
    let never = |_: &[u8]| -> Option<usize> { panic!("located a key") };
    for args in [
        &["GET", "b"][..],
        &["HSET", "b", "f", "v"],
        &["DEL", "k"],
        &["MGET", "k", "k"],
        &["EVAL", "return 1", "0"],
        &["SORT", "k", "STORE", "elsewhere"],
    ] {
        check(&cmd(args), b"k", &never).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    }
}

#[test]
fn multi_key_commands_pass_only_on_the_routing_keys_shard() {
    let same: &[&[&str]] = &[
        &["MGET", "a1", "a2", "a3"],
        &["mset", "a1", "b-value", "a2", "b-value"],
        &["DEL", "a1", "a2"],
        &["SINTERSTORE", "a0", "a1", "a2"],
        &["BITOP", "AND", "a0", "a1"],
        &["SMOVE", "a1", "a2", "b-member"],
        &["RENAME", "a1", "a2"],
        &["ZUNIONSTORE", "a0", "2", "a1", "a2", "WEIGHTS", "1", "2"],
        &["ZUNION", "2", "a1", "a2", "WITHSCORES"],
        &["LMPOP", "2", "a1", "a2", "LEFT"],
        &["MSETEX", "2", "a1", "b", "a2", "b", "EX", "10"],
        &["EVAL", "return 1", "2", "a1", "a2", "b-arg"],
        &["FCALL_RO", "f", "1", "a1", "b-arg"],
        &["XREAD", "STREAMS", "a1", "a2", "0", "0"],
    ];
    for args in same {
        verdict("a", args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    }
    let spanning: &[&[&str]] = &[
        &["MGET", "a1", "b1"],
        &["MSET", "a1", "v", "b1", "v"],
        &["EXISTS", "a1", "c1"],
        &["SDIFF", "a1", "b1"],
        &["BITOP", "OR", "a0", "b1"],
        &["RPOPLPUSH", "a1", "b1"],
        &["ZINTERSTORE", "a0", "2", "a1", "b1"],
        &["SINTERCARD", "2", "a1", "b1", "LIMIT", "1"],
        &["evalsha", "abc", "2", "a1", "b1"],
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "STREAMS",
            "a1",
            "b1",
            ">",
            ">",
        ],
    ];
    for args in spanning {
        let msg = refused_with("a", args);
        assert!(msg.contains("span shards"), "{args:?}: {msg}");
    }
    // Keys together, but on another shard than the one the command would run on.
    let msg = refused_with("a", &["MGET", "b1", "b2"]);
    assert!(msg.contains("wrong shard"), "{msg}");
    refused_with("c", &["EVAL", "return 1", "1", "b1"]);
}

#[test]
fn key_counts_that_are_not_counts_are_refused_never_panic() {
    for count in [
        "x",
        "-1",
        "+1",
        " 1",
        "",
        "1.0",
        "99999999999999999999999",
        "3",
    ] {
        for args in [
            &["EVAL", "return 1", count, "a1", "a2"][..],
            &["ZUNIONSTORE", "a0", count, "a1", "a2"],
            &["ZINTER", count, "a1", "a2"],
            &["MSETEX", count, "a1", "v", "a2"],
        ] {
            refused_with("a", args);
        }
    }
    refused_with("a", &["EVAL", "return 1"]);
    refused_with("a", &["ZINTER"]);
    let huge = usize::MAX.to_string();
    refused_with("a", &["MSETEX", &huge, "a1", "v"]);
    verdict("a", &["EVAL", "return 1", "0"]).unwrap();
}

#[test]
fn cursors_and_empty_commands_are_refused() {
    let mut with_cursor = redis::cmd("MGET");
    with_cursor.arg("a1").cursor_arg(0);
    refused_with_cmd(&with_cursor, "cursor");
    let mut count_cursor = redis::cmd("EVAL");
    count_cursor.arg("return 1").cursor_arg(0);
    refused_with_cmd(&count_cursor, "key count");
    refused_with_cmd(&Cmd::new(), "empty");
    let mut scan = redis::cmd("SCAN");
    scan.cursor_arg(0).arg("MATCH").arg("a*");
    check(&scan, b"a", &by_first_byte).unwrap();
}

fn refused_with_cmd(cmd: &Cmd, needle: &str) {
    let err = check(cmd, b"a", &by_first_byte).expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains(needle), "{err}");
}
