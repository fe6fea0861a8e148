//! The Prometheus exporter (feature `prometheus`): a global recorder and an HTTP listener that
//! serves `/metrics`, for services without an exporter of their own.

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use metrics_util::MetricKindMask;

use crate::error::{Error, ErrorKind, Result};

/// Histogram buckets of the `_seconds` metrics: 50 µs to 5 s, for loopback and cross-zone
/// requests alike.
const SECONDS_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
];

/// Gauges not set for this long are dropped from the scrape: an endpoint that left the
/// topology, or a role an endpoint no longer has. Live gauges are set on every probe round.
const GAUGE_IDLE: Duration = Duration::from_secs(300);

/// Installs a Prometheus recorder as the process's **global** `metrics` recorder and serves the
/// text format on `http://addr/metrics` (any path answers), from a task on the current Tokio
/// runtime.
///
/// Every metric of the process goes to it — shardis's and the application's own `metrics`
/// calls. There is only one global recorder per process: this fails if one is already
/// installed, and a service that already exports `metrics` should not call it. Histograms are
/// exported as Prometheus histograms (buckets from 50 µs to 5 s); gauges not updated for 5
/// minutes are dropped.
///
/// Bind to a private interface or loopback: the endpoint has no authentication. Call it
/// from within a Tokio runtime, before or after building clients (gauges catch up within one
/// probe round).
///
/// ```no_run
/// # async fn run() -> shardis::Result<()> {
/// shardis::metrics::serve_prometheus("127.0.0.1:9187".parse().unwrap())?;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// `io` when `addr` cannot be bound or no Tokio runtime is running; `config` when a global
/// recorder is already installed.
pub fn serve_prometheus(addr: SocketAddr) -> Result<()> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
        Error::new(
            ErrorKind::Io,
            "serve_prometheus must be called within a Tokio runtime",
        )
    })?;
    let builder = PrometheusBuilder::new()
        .with_http_listener(addr)
        .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE))
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .map_err(|e| Error::new(ErrorKind::Config, e.to_string()))?;
    let (recorder, exporter) = {
        let _entered = runtime.enter();
        builder.build().map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot serve metrics on {addr}: {e}"),
            )
        })?
    };
    // Installed before the listener serves: if another recorder is there, nothing listens.
    ::metrics::set_global_recorder(recorder).map_err(|_| {
        Error::new(
            ErrorKind::Config,
            "a global metrics recorder is already installed in this process",
        )
    })?;
    runtime.spawn(async move {
        if let Err(e) = exporter.await {
            tracing::error!("shardis: the Prometheus listener stopped: {e:?}");
        }
    });
    super::describe();
    tracing::info!(%addr, "shardis: serving Prometheus metrics on /metrics");
    Ok(())
}
