//! Retry policy: which failures are retried, how long to wait between tries
//! (exponential backoff, full jitter), and whether a request may be retried at all.
//!
//! gRPC conditions (`grpc-unavailable`, …) are judged on trailers-only answers
//! (`grpc-status` in the response headers); a status in real trailers comes after
//! the response has started streaming to the client and cannot be retried. Every
//! gRPC call is a POST, so naming a gRPC condition is itself the opt-in: it is not
//! gated on the method's idempotency (as in gRPC's own retry policy, gRFC A6).
//!
//! Whatever the policy wants, a try is sent again only if its body can be: a body
//! held whole (`content-length` ≤ `bodyBufferBytes`), or a streamed one whose copy
//! is still complete (`body::replay`: unsized bodies such as gRPC calls and chunked
//! uploads, until more than `bodyBufferBytes` of them has been read).

use std::time::Duration;

use http::{Method, StatusCode};
use meshgate_config::{self as config, RetryOn};

/// A failed try, as the retry policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    ConnectFailure,
    Reset,
    Timeout,
    Status(StatusCode),
    /// A trailers-only gRPC answer with this non-zero `grpc-status`.
    Grpc(u8),
}

/// A route's retry policy, compiled.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub attempts: u32,
    retry_on: Vec<RetryOn>,
    /// Does `retry_on` name a gRPC status? (Only then are response headers read.)
    pub grpc: bool,
    base: Duration,
    max: Duration,
    retry_non_idempotent: bool,
    pub body_buffer_bytes: u64,
}

impl RetryPolicy {
    pub fn from_config(r: &config::Retry) -> Self {
        RetryPolicy {
            attempts: r.attempts,
            retry_on: r.retry_on.clone(),
            grpc: r.retry_on.iter().any(|on| matches!(on, RetryOn::Grpc(_))),
            base: r.backoff.base.get(),
            max: r.backoff.max.get(),
            retry_non_idempotent: r.retry_non_idempotent,
            body_buffer_bytes: r.body_buffer_bytes,
        }
    }

    /// Does the policy name this failure, and may this method be sent again?
    pub fn wants(&self, failure: Failure, method: &Method) -> bool {
        let named = self.retry_on.iter().any(|on| match failure {
            Failure::ConnectFailure => *on == RetryOn::ConnectFailure,
            Failure::Reset => *on == RetryOn::Reset,
            Failure::Timeout => *on == RetryOn::Timeout,
            Failure::Status(s) => on.covers_status(s.as_u16()),
            Failure::Grpc(code) => on.covers_grpc(code),
        });
        // A connect failure means nothing reached the upstream: safe for any method.
        named
            && (matches!(failure, Failure::ConnectFailure | Failure::Grpc(_))
                || self.retry_non_idempotent
                || is_idempotent(method))
    }

    /// Wait before retry number `retry` (0-based): uniform in [0, min(max, base·2^retry)].
    pub fn backoff(&self, retry: u32) -> Duration {
        let cap = self
            .base
            .saturating_mul(1u32 << retry.min(16))
            .min(self.max);
        let nanos = cap.as_nanos().min(u64::MAX as u128) as u64;
        Duration::from_nanos(if nanos == 0 {
            0
        } else {
            fastrand::u64(0..=nanos)
        })
    }
}

pub fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(non_idempotent: bool) -> RetryPolicy {
        RetryPolicy {
            attempts: 2,
            retry_on: config::Retry::default_retry_on(),
            grpc: false,
            base: Duration::from_millis(10),
            max: Duration::from_millis(100),
            retry_non_idempotent: non_idempotent,
            body_buffer_bytes: 0,
        }
    }

    #[test]
    fn idempotency_gates_everything_but_connect_failures() {
        let p = policy(false);
        assert!(p.wants(Failure::Status(StatusCode::BAD_GATEWAY), &Method::GET));
        assert!(!p.wants(Failure::Status(StatusCode::BAD_GATEWAY), &Method::POST));
        assert!(p.wants(Failure::ConnectFailure, &Method::POST));
        assert!(!p.wants(Failure::Reset, &Method::POST));
        assert!(policy(true).wants(Failure::Reset, &Method::POST));
        assert!(!p.wants(
            Failure::Status(StatusCode::INTERNAL_SERVER_ERROR),
            &Method::GET
        ));
        assert!(
            !p.wants(Failure::Timeout, &Method::GET),
            "timeout is not in the default list"
        );
    }

    #[test]
    fn grpc_conditions_are_named_ones_for_any_method() {
        let mut p = policy(false);
        p.retry_on = vec!["grpc-unavailable".parse().unwrap()];
        assert!(p.wants(Failure::Grpc(14), &Method::POST));
        assert!(!p.wants(Failure::Grpc(13), &Method::POST));
        assert!(!p.wants(Failure::Grpc(5), &Method::POST), "NOT_FOUND");
        assert!(!policy(false).wants(Failure::Grpc(14), &Method::POST));
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let p = policy(false);
        for retry in 0..20 {
            let cap =
                Duration::from_millis(10 * (1 << retry.min(16))).min(Duration::from_millis(100));
            for _ in 0..100 {
                assert!(p.backoff(retry) <= cap);
            }
        }
        let distinct: std::collections::HashSet<_> = (0..50).map(|_| p.backoff(3)).collect();
        assert!(distinct.len() > 10, "jitter spreads waits");
    }
}
