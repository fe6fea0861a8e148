//! Installing a table, and the changes that replace the topology: `update_topology`,
//! `reload_config` (and through it the config watcher).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::build::{build_off_thread, check_connected, Control};
use super::Shared;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::health::Event;
use crate::metrics;
use crate::node::Node;
use crate::options::{OnPrimaryDown, Options};
use crate::router::RoutingTable;
use crate::topology::{ShardName, Topology};

impl Shared {
    /// Builds the table for `control` from the current one, off the async workers.
    pub(super) async fn build(
        self: &Arc<Self>,
        control: &Control,
    ) -> Result<(RoutingTable, Vec<Arc<Node>>)> {
        build_off_thread(&self.registry, control, Some(self.router.load())).await
    }

    /// Makes `table` current. The table it replaces is freed when the last request using it
    /// ends; its placement stays reachable in the router.
    pub(super) fn install(self: &Arc<Self>, table: RoutingTable) {
        let version = table.version();
        self.router.swap(table);
        metrics::table_version(version);
        tracing::info!(version, "shardis: routing table {version} in force");
        self.emit(Event::TopologyChanged { version });
    }

    /// Applies `change` to a copy of `control` under a new version, installs the table it
    /// gives, and only then keeps the copy and emits `event`.
    pub(super) async fn apply<R>(
        self: &Arc<Self>,
        control: &mut Control,
        change: impl FnOnce(&mut Control) -> R,
        event: Event,
    ) -> Result<()> {
        self.apply_then(control, change, |_| {}, event).await
    }

    /// [`apply`](Self::apply), with `ready` run on the new table before it is installed
    /// (e.g. to clear a health state the change makes obsolete, so that no request sees it).
    pub(super) async fn apply_then<R>(
        self: &Arc<Self>,
        control: &mut Control,
        change: impl FnOnce(&mut Control) -> R,
        ready: impl FnOnce(&RoutingTable),
        event: Event,
    ) -> Result<()> {
        let mut next = control.clone();
        change(&mut next);
        next.version += 1;
        let (table, _) = self.build(&next).await?;
        ready(&table);
        self.install(table);
        *control = next;
        self.emit(event);
        Ok(())
    }

    /// Replaces the topology (and, with `options`, the settings). Rejected changes leave the
    /// current table in force.
    pub(crate) async fn update(
        self: &Arc<Self>,
        topology: Topology,
        options: Option<Options>,
    ) -> Result<u64> {
        let mut control = self.control.lock().await;
        let mut next = Control::new(
            topology,
            options.unwrap_or_else(|| control.options.clone()),
            control.version + 1,
        );
        let result = async {
            next.options.validate()?;
            #[cfg(feature = "sentinel")]
            let answers = {
                super::sentinel::check_policy(&next)?;
                super::sentinel::resolve(&mut next, Some(&control)).await?
            };
            let (table, opened) = self.build(&next).await?;
            check_connected(&table, &opened).await?;
            // New endpoints prove their roles before the table serves a request.
            self.probe_opened(&table, &opened).await;
            #[cfg(not(feature = "sentinel"))]
            let answers = ();
            Ok::<_, Error>((table, answers))
        }
        .await;
        let (mut table, _answers) = match result {
            Ok(t) => t,
            Err(e) => {
                self.reject(&e);
                return Err(e);
            }
        };
        // A shard whose reused primary is already down stays out, as it would have been.
        if next.options.routing.on_primary_down == OnPrimaryDown::Eject {
            let down: Vec<ShardName> = table
                .shards()
                .iter()
                .filter(|r| !r.primary.health().is_usable())
                .map(|r| r.name.clone())
                // A Sentinel shard is never ejected: its sentinels fail it over.
                .filter(|name| {
                    #[cfg(feature = "sentinel")]
                    return next
                        .topology
                        .shard(name.as_str())
                        .is_some_and(|s| s.sentinel().is_none());
                    #[cfg(not(feature = "sentinel"))]
                    return {
                        let _ = name;
                        true
                    };
                })
                .collect();
            if !down.is_empty() {
                next.ejected.extend(down);
                table = self.build(&next).await?.0;
            }
        }
        let version = next.version;
        #[cfg(feature = "warm")]
        let from = self.router.load();
        self.install(table);
        #[cfg(feature = "warm")]
        self.after_change(from, &self.router.load(), &next.options.resharding);
        self.max_key_bytes
            .store(next.options.max_key_bytes, Ordering::Relaxed);
        *control = next;
        #[cfg(feature = "sentinel")]
        self.sync_sentinels(&control, &_answers);
        Ok(version)
    }

    /// Reads a config file and applies its topology and settings.
    pub(crate) async fn reload(self: &Arc<Self>, path: &Path) -> Result<u64> {
        let config = match Config::load(path).await {
            Ok(c) => c,
            Err(e) => {
                self.reject(&e);
                return Err(e);
            }
        };
        let (topology, options) = config.into_parts();
        self.update(topology, Some(options)).await
    }

    /// Reports a rejected topology or config (log and event); the current one stays.
    fn reject(&self, e: &Error) {
        tracing::warn!("shardis: new topology rejected: {e}");
        self.emit(Event::ConfigRejected {
            error: e.to_string(),
        });
    }
}
