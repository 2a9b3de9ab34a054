//! Active health checks: one tokio task per endpoint probes it every `interval`
//! and flips its `healthy` flag after `unhealthyThreshold` consecutive failures
//! (out) or `healthyThreshold` consecutive passes (back in).
//!
//! Every check opens a fresh connection (never a pooled one, so connecting is
//! tested too) and closes it when done:
//!
//! - **HTTP** ([`http_probe`]): a `GET path`, `user-agent: meshgate-health`; passes when
//!   the status is in `expectedStatuses` (empty: 200–399) and the headers arrive
//!   within `timeout`; the body is not read.
//! - **TCP**: passes when a connection is accepted within `timeout` (no TLS
//!   handshake, also on a TLS service).
//! - **gRPC** ([`grpc`]): a unary `grpc.health.v1.Health/Check`; passes only on
//!   `SERVING` within `timeout`.
//!
//! On a service with `tls`, HTTP and gRPC checks run over TLS with the service's
//! own settings (CA, `serverName`/SNI, client certificate): a [`TlsOrigin`] built
//! once per service when the checkers start, offering ALPN `h2` for gRPC and the
//! service's protocol for HTTP (the check then speaks what ALPN chose). A failed
//! handshake (unknown CA, wrong name, refused client certificate) is a failed
//! check, and the debug log says why, like any other failure.
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

use http::uri::{Authority, Scheme};
use meshgate_config as config;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::AbortHandle;

use super::TlsOrigin;
use super::state::ServiceHealth;

mod grpc;
mod http_probe;

/// What one check does.
#[derive(Debug, Clone)]
enum Probe {
    Tcp,
    Http(http_probe::HttpProbe),
    Grpc(grpc::GrpcProbe),
}

/// A connection a probe can run over: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Starts one checker per endpoint of `svc` with its health check `cfg` on the
/// current tokio runtime. `authorities[i]` is endpoint i's `host:port`. Errors
/// name a setting or file that cannot be used.
pub fn spawn(
    svc: &config::Service,
    cfg: &config::HealthCheck,
    health: &Arc<ServiceHealth>,
    authorities: &[Authority],
    mesh: Option<&super::MeshClient>,
) -> Result<Vec<AbortHandle>, String> {
    let probe = match (&cfg.http, &cfg.grpc) {
        (None, Some(g)) => Probe::Grpc(grpc::GrpcProbe::new(g)?),
        (Some(h), _) => Probe::Http(http_probe::HttpProbe::new(h)?),
        (None, None) => Probe::Tcp,
    };
    let alpn: &[u8] = match (&probe, svc.protocol) {
        (Probe::Http(_), config::UpstreamProtocol::HTTP1) => b"http/1.1",
        _ => b"h2",
    };
    let tls = match (&svc.tls, mesh, &probe) {
        (_, _, Probe::Tcp) | (None, None, _) => None,
        (Some(tls), _, _) => Some(Arc::new(TlsOrigin::with_alpn(&svc.name, tls, alpn)?)),
        // `services[].mesh`: checks speak mTLS with the workload identity.
        (None, Some(mesh), _) => Some(Arc::new(mesh.origin(Some(alpn))?)),
    };
    let checker = Checker {
        interval: cfg.interval.get().max(Duration::from_millis(1)),
        timeout: cfg.timeout.get(),
        healthy_threshold: cfg.healthy_threshold.max(1),
        unhealthy_threshold: cfg.unhealthy_threshold.max(1),
        probe,
        tls,
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
    /// The service's TLS settings (HTTP and gRPC checks of a `tls` service).
    tls: Option<Arc<TlsOrigin>>,
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
        if matches!(self.probe, Probe::Tcp) {
            return Ok(());
        }
        let _ = stream.set_nodelay(true);
        let Some(origin) = &self.tls else {
            return self.probe(stream, authority, Scheme::HTTP, false).await;
        };
        let tls = origin
            .handshake(stream, authority.host())
            .await
            .map_err(|e| format!("TLS handshake: {}", e.source))?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        self.probe(tls, authority, Scheme::HTTPS, h2).await
    }

    /// Runs the HTTP or gRPC probe over `io`; `h2` when ALPN chose HTTP/2.
    async fn probe(
        &self,
        io: impl Io,
        authority: &Authority,
        scheme: Scheme,
        h2: bool,
    ) -> Result<(), String> {
        match &self.probe {
            Probe::Tcp => Ok(()),
            Probe::Http(probe) => probe.check(io, authority, scheme, h2).await,
            Probe::Grpc(probe) => probe.check(io, authority, scheme).await,
        }
    }
}

/// Aborts a connection's driver task when the check that owns it ends (which
/// closes the connection, answered or not).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    /// Drives `conn` in its own task until the returned guard is dropped.
    fn drive<C>(conn: C) -> Self
    where
        C: Future + Send + 'static,
    {
        AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }))
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
