//! The rate-limit response headers (draft-ietf-httpapi-ratelimit-headers):
//! `RateLimit-Limit` (the bucket size), `RateLimit-Remaining`, `RateLimit-Reset`
//! (seconds until the bucket is full again) and, on 429, `Retry-After` (seconds
//! until the next request can pass). Small numbers are formatted once at compile
//! time, so a typical response costs no formatting or allocation.

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use meshgate_core::filter::RequestCx;

const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// Numbers below this come from the table.
const TABLE_MAX: u64 = 256;

#[derive(Debug)]
pub struct Headers {
    limit: HeaderValue,
    numbers: Box<[HeaderValue]>,
}

impl Headers {
    pub fn new(burst: u32) -> Self {
        Headers {
            limit: HeaderValue::from(burst),
            numbers: (0..TABLE_MAX).map(HeaderValue::from).collect(),
        }
    }

    fn number(&self, n: u64) -> HeaderValue {
        match self.numbers.get(n as usize) {
            Some(v) => v.clone(),
            None => HeaderValue::from(n),
        }
    }

    /// Adds the headers of a decision to whatever response goes back.
    pub fn push(
        &self,
        cx: &mut RequestCx<'_>,
        remaining: u32,
        reset: Duration,
        retry_after: Option<Duration>,
    ) {
        let h = &mut cx.response_headers;
        h.reserve(if retry_after.is_some() { 4 } else { 3 });
        h.push((LIMIT, self.limit.clone()));
        h.push((REMAINING, self.number(u64::from(remaining))));
        h.push((RESET, self.number(seconds_up(reset))));
        if let Some(retry) = retry_after {
            // Never 0: a client told to retry in 0 s would retry at once and be refused.
            h.push((
                http::header::RETRY_AFTER,
                self.number(seconds_up(retry).max(1)),
            ));
        }
    }
}

/// Whole seconds, rounded up.
pub fn seconds_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_up() {
        assert_eq!(seconds_up(Duration::ZERO), 0);
        assert_eq!(seconds_up(Duration::from_millis(1)), 1);
        assert_eq!(seconds_up(Duration::from_secs(6)), 6);
        assert_eq!(seconds_up(Duration::from_millis(6001)), 7);
    }

    #[test]
    fn table_and_formatted_numbers_agree() {
        let h = Headers::new(10);
        assert_eq!(h.number(0), "0");
        assert_eq!(h.number(255), "255");
        assert_eq!(h.number(256), "256");
        assert_eq!(h.number(86_400), "86400");
        assert_eq!(h.limit, "10");
    }
}
