//! Active health checks: one tokio task per endpoint probes it every `interval`
//! and flips its `healthy` flag after `unhealthyThreshold` consecutive failures
//! (out) or `healthyThreshold` consecutive passes (back in).
//!
//! - **HTTP**: a `GET path` on a fresh HTTP/1.1 connection (never a pooled one, so
//!   connecting is tested too), `Host` = `http.host` or the endpoint's `host:port`,
//!   `user-agent: meshgate-health`, `connection: close`. It passes when the status
//!   is in `expectedStatuses` (empty: 200–399) and the headers arrive within
//!   `timeout`; the body is not read.
//! - **TCP**: passes when a connection is accepted within `timeout`.
//! - **gRPC**: a unary `grpc.health.v1.Health/Check` on a fresh h2c connection
//!   ([`grpc`]); passes only on `SERVING` within `timeout`.
//!
//! Endpoints start healthy, so a fresh config serves at once; a dead endpoint
//! costs failed requests only until `unhealthyThreshold` checks have failed. The
//! first check of each endpoint waits a random part of `interval`, so endpoints
//! (and gateways) do not probe in lockstep. Transitions are logged (warn when an
//! endpoint goes out, info when it comes back) and set `endpoint_healthy`.
//!
//! The tasks hold only the service's [`ServiceHealth`], never the `Upstream`, and
//! the `Upstream` aborts them when it is dropped (its service was changed or
//! removed by a reload); an `Upstream` reused across a reload keeps its checkers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, HOST, USER_AGENT};
use http::uri::Authority;
use http::{HeaderValue, Request, Uri};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use meshgate_config as config;
use tokio::net::TcpStream;
use tokio::task::AbortHandle;

use super::state::ServiceHealth;

mod grpc;

/// What one check does.
#[derive(Debug, Clone)]
enum Probe {
    Tcp,
    Http {
        uri: Uri,
        host: Option<HeaderValue>,
        expected: Arc<[u16]>,
    },
    Grpc(grpc::GrpcProbe),
}

/// Starts one checker per endpoint on the current tokio runtime. `authorities[i]`
/// is endpoint i's `host:port`. Errors name a setting that cannot be used.
pub fn spawn(
    cfg: &config::HealthCheck,
    health: &Arc<ServiceHealth>,
    authorities: &[Authority],
) -> Result<Vec<AbortHandle>, String> {
    let probe = match (&cfg.http, &cfg.grpc) {
        (None, Some(g)) => Probe::Grpc(grpc::GrpcProbe::new(g)?),
        (Some(http), _) => Probe::Http {
            uri: http
                .path
                .parse()
                .map_err(|e| format!("healthCheck.http.path {:?}: {e}", http.path))?,
            host: http
                .host
                .as_deref()
                .map(HeaderValue::from_str)
                .transpose()
                .map_err(|e| format!("healthCheck.http.host: {e}"))?,
            expected: http.expected_statuses.iter().copied().collect(),
        },
        (None, None) => Probe::Tcp,
    };
    let checker = Checker {
        interval: cfg.interval.get().max(Duration::from_millis(1)),
        timeout: cfg.timeout.get(),
        healthy_threshold: cfg.healthy_threshold.max(1),
        unhealthy_threshold: cfg.unhealthy_threshold.max(1),
        probe,
    };
    Ok(authorities
        .iter()
        .enumerate()
        .map(|(i, authority)| {
            let task = checker.clone().run(health.clone(), i, authority.clone());
            tokio::spawn(task).abort_handle()
        })
        .collect())
}

#[derive(Debug, Clone)]
struct Checker {
    interval: Duration,
    timeout: Duration,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
    probe: Probe,
}

impl Checker {
    async fn run(self, health: Arc<ServiceHealth>, i: usize, authority: Authority) {
        use tokio::time::{MissedTickBehavior, interval_at, sleep};
        let jitter = fastrand::u64(0..self.interval.as_millis().max(1) as u64);
        sleep(Duration::from_millis(jitter)).await;
        let mut ticks = interval_at(tokio::time::Instant::now(), self.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let state = health.state(i);
        let (mut passes, mut failures) = (0u32, 0u32);
        loop {
            ticks.tick().await;
            let checked = tokio::time::timeout(self.timeout, self.check(&authority)).await;
            match checked.unwrap_or_else(|_| Err(format!("no answer within {:?}", self.timeout))) {
                Ok(()) => {
                    failures = 0;
                    passes = passes.saturating_add(1);
                    if passes >= self.healthy_threshold && state.set_healthy(true) {
                        tracing::info!(service = %health.service, endpoint = %authority, passes, "endpoint passes health checks again");
                    }
                }
                Err(why) => {
                    passes = 0;
                    failures = failures.saturating_add(1);
                    tracing::debug!(service = %health.service, endpoint = %authority, failures, why, "health check failed");
                    if failures >= self.unhealthy_threshold && state.set_healthy(false) {
                        tracing::warn!(service = %health.service, endpoint = %authority, failures, why, "endpoint fails health checks, taking it out");
                    }
                }
            }
        }
    }

    /// One check, without the timeout; `Err` says why it failed.
    async fn check(&self, authority: &Authority) -> Result<(), String> {
        let stream = TcpStream::connect(authority.as_str())
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (uri, host, expected) = match &self.probe {
            Probe::Tcp => return Ok(()),
            Probe::Grpc(probe) => return probe.check(stream, authority).await,
            Probe::Http {
                uri,
                host,
                expected,
            } => (uri, host, expected),
        };
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        // The connection is driven by its own task, aborted when the check ends
        // (which closes the connection, answered or not).
        let driver = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let host = match host {
            Some(h) => h.clone(),
            None => HeaderValue::from_str(authority.as_str()).map_err(|e| e.to_string())?,
        };
        let req = Request::get(uri.clone())
            .header(HOST, host)
            .header(USER_AGENT, "meshgate-health")
            .header(CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let status = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?
            .status()
            .as_u16();
        drop(driver);
        let pass = if expected.is_empty() {
            (200..400).contains(&status)
        } else {
            expected.contains(&status)
        };
        if pass {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    }
}

/// Aborts a connection's driver task when the check that owns it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
