//! The config file watcher: reloads the client when the file's content changes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::Shared;

/// Watches a config file and reloads the client when its content changes. Stops when dropped.
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
            let mut last = tokio::fs::read(&path).await.ok();
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                let now = tokio::fs::read(&path).await.ok();
                if now.is_some() && now != last {
                    last = now;
                    // A rejected file is reported (event, log) and the old topology stays.
                    let _ = shared.reload(&path).await;
                }
            }
        });
        ConfigWatch { task }
    }
}
