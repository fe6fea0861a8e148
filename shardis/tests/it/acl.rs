//! Redis 6+ ACL users in endpoint URLs, and passwords kept out of the config file
//! (`password_env`, `password_file`, `[defaults]`), read at start and on every reload.

use crate::common;

use std::time::Duration;

use shardis::{Client, Config, ErrorKind};
use shardis_testkit::RedisServer;

use common::{connect, eventually, write_file};

fn server(args: &[&str]) -> RedisServer {
    RedisServer::start_with(args).unwrap_or_else(|e| panic!("cannot start redis-server: {e}"))
}

/// Runs `ACL SETUSER name rules...` on `server` (as the default user, with `admin_password`).
async fn set_user(server: &RedisServer, admin_password: Option<&str>, name: &str, rules: &[&str]) {
    let url = match admin_password {
        Some(pw) => format!("redis://:{pw}@127.0.0.1:{}", server.port()),
        None => server.url(),
    };
    let mut conn = connect(&url).await;
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(name)
        .arg(rules)
        .query_async(&mut conn)
        .await
        .expect("ACL SETUSER");
}

/// The least a shardis user needs: data commands, and `PING`/`ROLE`/`INFO` for the health
/// probes and `status`, and the connection commands of the handshake.
const APP_RULES: &[&str] = &[
    "on",
    ">app-pass-1",
    "~*",
    "+@read",
    "+@write",
    "+@connection",
    "+role",
    "+info",
];

#[tokio::test]
async fn an_acl_user_with_the_right_password_is_served_and_a_wrong_one_refused() {
    let s = server(&[]);
    set_user(&s, None, "app", APP_RULES).await;
    set_user(&s, None, "default", &["off"]).await;
    let url = |pw: &str| format!("redis://app:{pw}@127.0.0.1:{}", s.port());

    let client = Client::builder()
        .shard("a", url("app-pass-1"))
        .health(common::patient_health())
        .build()
        .await
        .expect("the ACL user connects");
    client.set("k", "v").await.unwrap();
    let v: Option<String> = client.get("k").await.unwrap();
    assert_eq!(v.as_deref(), Some("v"));
    // Health probes (ROLE) and status (INFO) work with these rules.
    let status = client.status().await;
    let e = &status[0].endpoints[0];
    assert_eq!(e.server_role.as_deref(), Some("master"), "{status:?}");
    assert!(e.error.is_none(), "{status:?}");
    // A command outside the user's rules is the server's refusal, not a connection failure.
    // (`APP_RULES` leave out `@pubsub`: `PUBLISH` is refused.)
    let err = client
        .query::<_, i64>("k", &redis::cmd("PUBLISH").arg("chan").arg("m").to_owned())
        .await
        .expect_err("PUBLISH is outside the user's rules");
    assert_eq!(err.kind(), ErrorKind::Server, "{err}");
    assert_eq!(err.server_code(), Some("NOPERM"), "{err}");

    for wrong in [
        url("wrong-pass"),
        format!("redis://nobody:app-pass-1@127.0.0.1:{}", s.port()),
    ] {
        let err = Client::builder()
            .shard("a", wrong)
            .connect_timeout(Duration::from_millis(500))
            .build()
            .await
            .expect_err("refused");
        assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
        assert_eq!(err.shard(), Some("a"));
        assert!(err.endpoint().is_some(), "{err}");
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains("app-pass-1") && !shown.contains("wrong-pass"),
            "{shown}"
        );
    }
}

#[tokio::test]
async fn password_env_and_password_file_are_read_at_start_and_on_reload() {
    let a = server(&["--requirepass", "env-pass-1"]);
    let b = server(&["--requirepass", "file-pass-1"]);
    // Unique to this test: the environment is the process's.
    std::env::set_var("SHARDIS_TEST_ACL_PASSWORD_A", "env-pass-1");
    let password_file = write_file("file-pass-1\n");
    let config = |extra: &str| {
        format!(
            r#"
            [[shards]]
            name = "a"
            primary = "redis://127.0.0.1:{}"
            password_env = "SHARDIS_TEST_ACL_PASSWORD_A"
            {extra}
            [[shards]]
            name = "b"
            primary = "redis://127.0.0.1:{}"
            password_file = "{}"
            "#,
            a.port(),
            b.port(),
            password_file.path().display()
        )
    };
    let file = write_file(&config(""));
    let client = Client::from_config_file(file.path()).await.expect("start");
    for i in 0..50 {
        client.set(format!("k{i}"), i).await.unwrap();
    }
    let shown = format!(
        "{:?} {:?}",
        client,
        Config::load(file.path()).await.unwrap()
    );
    assert!(
        !shown.contains("env-pass-1") && !shown.contains("file-pass-1"),
        "{shown}"
    );

    // Rotate b's password: the server first, then the file. The watcher sees the file
    // change (the config file itself is unchanged) and reloads; new connections use it.
    set_config(&b, "file-pass-1", "requirepass", "file-pass-2").await;
    let _watch = client.watch_config(file.path(), Duration::from_millis(50));
    // The watcher takes its first look when its task first runs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(password_file.path(), "file-pass-2\n").unwrap();
    let reloaded = eventually(Duration::from_secs(10), || async {
        client.topology_version() >= 2
    })
    .await;
    assert!(reloaded, "the password file's change was not picked up");
    // Old connections are gone with the old node: kill every client connection on b, the
    // next requests reconnect with the new password.
    kill_clients(&b, "file-pass-2").await;
    let ok = eventually(Duration::from_secs(10), || async {
        client.set("after", "rotation").await.is_ok()
    })
    .await;
    assert!(ok, "requests fail after the rotation");
    for i in 0..50 {
        let v: Option<i64> = client.get(format!("k{i}")).await.unwrap();
        assert_eq!(v, Some(i));
    }

    // An unset variable is refused on reload, naming it, and the running topology stays.
    std::env::remove_var("SHARDIS_TEST_ACL_PASSWORD_A");
    let err = client.reload_config(file.path()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.to_string().contains("SHARDIS_TEST_ACL_PASSWORD_A"),
        "{err}"
    );
    client.set("still", "served").await.unwrap();
    std::env::set_var("SHARDIS_TEST_ACL_PASSWORD_A", "env-pass-1");

    // A URL with its own password beside password_env is ambiguous: refused.
    let err = Config::from_toml_str(&format!(
        "[[shards]]\nname = \"a\"\nprimary = \"redis://:x@127.0.0.1:{}\"\npassword_env = \"SHARDIS_TEST_ACL_PASSWORD_A\"",
        a.port()
    ))
    .unwrap_err();
    assert!(err.to_string().contains("password"), "{err}");
    // Both sources at once: refused.
    let both = config(&format!(
        "password_file = \"{}\"",
        password_file.path().display()
    ));
    let err = Config::from_toml_str(&both).unwrap_err();
    assert!(err.to_string().contains("password_env"), "{err}");
    // An empty password file: refused, naming the file.
    let empty = write_file("\n");
    let err = Config::from_toml_str(&format!(
        "[[shards]]\nname = \"a\"\nprimary = \"redis://127.0.0.1:1\"\npassword_file = \"{}\"",
        empty.path().display()
    ))
    .unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}

#[tokio::test]
async fn defaults_give_every_shard_an_acl_users_password() {
    let servers: Vec<RedisServer> = (0..3).map(|_| server(&[])).collect();
    for s in &servers {
        set_user(s, None, "app", APP_RULES).await;
        set_user(s, None, "default", &["off"]).await;
    }
    let password_file = write_file("app-pass-1");
    let mut text = format!(
        "[defaults]\npassword_file = \"{}\"\n",
        password_file.path().display()
    );
    for (i, s) in servers.iter().enumerate() {
        text.push_str(&format!(
            "[[shards]]\nname = \"s{i}\"\nprimary = \"redis://app@127.0.0.1:{}\"\n",
            s.port()
        ));
    }
    let client = Client::from_config(Config::from_toml_str(&text).unwrap())
        .await
        .expect("every shard authenticates as app");
    for i in 0..100 {
        client.set(format!("k{i}"), i).await.unwrap();
    }
    for s in &servers {
        let mut conn = connect(&format!("redis://app:app-pass-1@127.0.0.1:{}", s.port())).await;
        let n: usize = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
        assert!(n > 0, "a shard got no key");
    }
}

/// `CONFIG SET name value` on `server`, authenticated with `password`.
async fn set_config(server: &RedisServer, password: &str, name: &str, value: &str) {
    let mut conn = admin(server, password).await;
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query_async(&mut conn)
        .await
        .expect("CONFIG SET");
}

/// Closes every normal client connection of `server` but the caller's.
async fn kill_clients(server: &RedisServer, password: &str) {
    let mut conn = admin(server, password).await;
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut conn)
        .await
        .expect("CLIENT KILL");
}

async fn admin(server: &RedisServer, password: &str) -> redis::aio::MultiplexedConnection {
    connect(&format!("redis://:{password}@127.0.0.1:{}", server.port())).await
}

#[tokio::test]
async fn the_deploy_recipe_serves_an_acl_user() {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/redis");
    // The recipe's ACL file with its placeholder passwords replaced, as an operator would.
    let users = std::fs::read_to_string(deploy.join("users.acl")).expect("deploy/redis/users.acl");
    assert!(users.contains("user default off"), "{users}");
    let users = users
        .replace(">CHANGE-ME-TOO", ">admin-pass-1")
        .replace(">CHANGE-ME", ">app-pass-1");
    let acl = write_file(&users);
    let acl_path = acl.path().display().to_string();
    let s =
        RedisServer::start_from_conf(&deploy.join("cache-shard.conf"), &["--aclfile", &acl_path])
            .unwrap_or_else(|e| panic!("cannot start redis-server from the recipe: {e}"));
    // The recipe's cache settings are in force.
    let mut admin = connect(&format!(
        "redis://admin:admin-pass-1@127.0.0.1:{}",
        s.port()
    ))
    .await;
    let policy: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(policy[1], "allkeys-lru");

    let password = write_file("app-pass-1\n");
    let text = format!(
        "[defaults]\npassword_file = \"{}\"\n[[shards]]\nname = \"a\"\nprimary = \"redis://app@127.0.0.1:{}\"\n",
        password.path().display(),
        s.port()
    );
    let client = Client::from_config(Config::from_toml_str(&text).unwrap())
        .await
        .expect("the app user of the recipe connects");
    client.set("k", "v").await.unwrap();
    let status = client.status().await;
    assert!(status[0].endpoints[0].error.is_none(), "{status:?}");
    // The default user is off: no password, no service.
    let err = Client::builder()
        .shard("a", s.url())
        .connect_timeout(Duration::from_millis(500))
        .build()
        .await
        .expect_err("the default user is off");
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
}
