//! Connections to etcd: one lazily connected gRPC channel per configured
//! endpoint, a "current" endpoint that every call uses, and failover: a call that
//! cannot reach its endpoint (connection refused, no answer in time, no leader)
//! moves the current endpoint to the next one and is tried there, once per
//! endpoint. Also the reconnect backoff and the stop signal of background tasks.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::store::StoreError;

/// Longest wait for one unary call (etcd answers in milliseconds when healthy).
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Responses (a range over a large registry) may be big; etcd itself allows more
/// than tonic's 4 MiB default.
pub(super) const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// The etcd endpoints and which one is in use.
pub(super) struct Conn {
    members: Vec<Member>,
    current: AtomicUsize,
}

struct Member {
    url: String,
    channel: Channel,
}

/// The endpoint a call goes to.
pub(super) struct Picked {
    pub index: usize,
    pub url: String,
    pub channel: Channel,
}

/// Why a call to etcd failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// etcd answered with an error.
    Refused {
        what: &'static str,
        url: String,
        code: Code,
        message: String,
    },
    /// No endpoint answered.
    Unreachable { what: &'static str, last: String },
}

impl Failure {
    /// etcd says the lease does not exist (expired, revoked, never granted).
    pub fn lease_not_found(&self) -> bool {
        matches!(self, Failure::Refused { code: Code::NotFound, message, .. }
            if message.contains("lease not found"))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Refused {
                what,
                url,
                code,
                message,
            } => write!(f, "{what} refused by {url}: {code:?}: {message}"),
            Failure::Unreachable { what, last } => {
                write!(f, "{what} failed: etcd unreachable ({last})")
            }
        }
    }
}

impl From<Failure> for StoreError {
    fn from(failure: Failure) -> Self {
        StoreError::Etcd(failure.to_string())
    }
}

impl Conn {
    /// Channels to `endpoints` (`http://host:port` or `host:port`); nothing
    /// connects until the first call.
    pub fn new(endpoints: &[String]) -> Result<Self, StoreError> {
        if endpoints.is_empty() {
            return Err(StoreError::Etcd("no etcd endpoint configured".into()));
        }
        let mut members = Vec::with_capacity(endpoints.len());
        for raw in endpoints {
            let url = if raw.contains("://") {
                raw.clone()
            } else {
                format!("http://{raw}")
            };
            if !url.starts_with("http://") {
                return Err(StoreError::Etcd(format!(
                    "etcd endpoint {raw}: only plain http:// endpoints are supported (TLS to etcd is not implemented yet)"
                )));
            }
            let endpoint = Endpoint::from_shared(url.clone())
                .map_err(|e| StoreError::Etcd(format!("etcd endpoint {raw}: {e}")))?
                .connect_timeout(Duration::from_secs(2))
                .tcp_nodelay(true)
                // Detects a dead peer under a quiet watch stream. etcd closes
                // connections that ping more often than every 5 s, or ping
                // with no stream open (its keep-alive enforcement policy).
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(5))
                .keep_alive_while_idle(false);
            members.push(Member {
                url,
                channel: endpoint.connect_lazy(),
            });
        }
        Ok(Conn {
            members,
            current: AtomicUsize::new(0),
        })
    }

    /// The endpoint in use.
    pub fn pick(&self) -> Picked {
        let index = self.current.load(Ordering::Relaxed) % self.members.len();
        let member = &self.members[index];
        Picked {
            index,
            url: member.url.clone(),
            channel: member.channel.clone(),
        }
    }

    /// Moves off endpoint `failed`, unless another caller already has.
    pub fn fail(&self, failed: usize) {
        let next = (failed + 1) % self.members.len();
        let _ = self
            .current
            .compare_exchange(failed, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Runs `call` against the current endpoint, failing over to the next ones
    /// while endpoints are unreachable.
    pub async fn call<T, F, Fut>(&self, what: &'static str, mut call: F) -> Result<T, Failure>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut last = String::new();
        for _ in 0..self.members.len() {
            let picked = self.pick();
            match tokio::time::timeout(REQUEST_TIMEOUT, call(picked.channel)).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(status)) if !unreachable(&status) => {
                    return Err(Failure::Refused {
                        what,
                        url: picked.url,
                        code: status.code(),
                        message: status.message().to_owned(),
                    });
                }
                Ok(Err(status)) => last = format!("{}: {}", picked.url, describe(&status)),
                Err(_) => last = format!("{}: no answer within {REQUEST_TIMEOUT:?}", picked.url),
            }
            self.fail(picked.index);
        }
        Err(Failure::Unreachable { what, last })
    }
}

/// Whether another endpoint may do better than the one that answered `status`.
pub(super) fn unreachable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Internal
    )
}

/// A status with the chain of its causes ("tcp connect error: Connection
/// refused"), which tonic keeps out of the message.
pub(super) fn describe(status: &Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let mut cause = std::error::Error::source(status);
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !text.contains(&c_text) {
            text.push_str(": ");
            text.push_str(&c_text);
        }
        cause = c.source();
    }
    text
}

/// Reconnect delays: 100 ms doubling to 5 s, each drawn from its upper half so
/// replicas that lost etcd together do not come back in lockstep.
pub(super) struct Backoff {
    next: Duration,
}

const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

impl Backoff {
    pub fn new() -> Self {
        Backoff {
            next: BACKOFF_FIRST,
        }
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_FIRST;
    }

    /// The delay to wait now; the next one doubles.
    pub fn delay(&mut self) -> Duration {
        let upper = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        upper / 2 + upper.mul_f64(fastrand::f64() / 2.0)
    }
}

/// Tells background tasks that the store is gone: the store holds the sender,
/// dropping it ends every task at its next await.
#[derive(Clone)]
pub(super) struct Stop(pub watch::Receiver<()>);

impl Stop {
    /// Runs `work` unless the store goes away first (then `None`).
    pub async fn until<F: Future>(&mut self, work: F) -> Option<F::Output> {
        tokio::select! {
            out = work => Some(out),
            _ = self.stopped() => None,
        }
    }

    /// Sleeps, unless the store goes away first (then `false`).
    pub async fn sleep(&mut self, delay: Duration) -> bool {
        self.until(tokio::time::sleep(delay)).await.is_some()
    }

    async fn stopped(&mut self) {
        // Nothing is ever sent: `changed` fails once the sender is dropped.
        while self.0.changed().await.is_ok() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let mut backoff = Backoff::new();
        let first = backoff.delay();
        assert!(first >= Duration::from_millis(50) && first <= BACKOFF_FIRST);
        for _ in 0..20 {
            assert!(backoff.delay() <= BACKOFF_MAX);
        }
        assert!(backoff.delay() >= BACKOFF_MAX / 2);
        backoff.reset();
        assert!(backoff.delay() <= BACKOFF_FIRST);
    }

    #[test]
    fn endpoints_must_be_plain_http() {
        assert!(Conn::new(&[]).is_err());
        let err = Conn::new(&["https://etcd:2379".into()]).err().unwrap();
        assert!(err.to_string().contains("TLS"), "{err}");
    }
}
