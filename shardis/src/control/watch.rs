//! The config file watcher: reloads the client when the file's content changes, or the content
//! of a file it names (a shard's or its sentinels' `password_file`, a `[tls]` certificate or
//! key).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::Shared;

/// Watches a config file and reloads the client when its content changes, or the content of
/// a `password_file` or `[tls]` file it names. Stops when dropped.
#[derive(Debug)]
pub struct ConfigWatch {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ConfigWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ConfigWatch {
    pub(crate) fn start(shared: &Arc<Shared>, path: PathBuf, every: Duration) -> ConfigWatch {
        let weak = Arc::downgrade(shared);
        let task = tokio::spawn(async move {
            let mut last = stamp(&path).await;
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                let now = stamp(&path).await;
                if now.0.is_some() && now != last {
                    last = now;
                    // A rejected file is reported (event, log) and the old topology stays.
                    let _ = shared.reload(&path).await;
                }
            }
        });
        ConfigWatch { task }
    }
}

/// The config file's bytes, and the bytes of every file it names (`None` when unreadable).
type Stamp = (Option<Vec<u8>>, Vec<(PathBuf, Option<Vec<u8>>)>);

async fn stamp(path: &PathBuf) -> Stamp {
    let text = tokio::fs::read(path).await.ok();
    let files = text
        .as_deref()
        .and_then(|t| std::str::from_utf8(t).ok())
        .map(crate::config::watched_files)
        .unwrap_or_default();
    let mut named = Vec::with_capacity(files.len());
    for file in files {
        let bytes = tokio::fs::read(&file).await.ok();
        named.push((file, bytes));
    }
    (text, named)
}
