//! Response diffing: the primary's and the shadow's response (status, selected
//! headers, body) compared once both are complete; divergences counted by kind and
//! logged as sampled records, at most `sampleLogPerMinute` a minute per route.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use meshgate_config as config;
use meshgate_observe::Metrics;
use meshgate_observe::metrics::{MirrorDiffLabels, Name, RouteLabel};
use prometheus_client::metrics::counter::Counter;

use super::json::{self, Path};

/// Longest value shown in a divergence record (characters).
const SHOWN: usize = 200;

/// One side of a comparison.
#[derive(Debug)]
pub(super) struct Captured {
    pub status: StatusCode,
    /// The compared headers, in `compareHeaders` order (`None`: absent).
    pub headers: Vec<Option<HeaderValue>>,
    /// `None`: larger than `maxBodyBytes`, not compared.
    pub body: Option<Bytes>,
}

/// A route's compiled `mirror.diff` settings and counters.
#[derive(Debug)]
pub(super) struct Differ {
    names: Arc<[HeaderName]>,
    ignore: Vec<Path>,
    sampler: Sampler,
    compared: Counter,
    status: Counter,
    header: Counter,
    body: Counter,
}

impl Differ {
    pub fn compile(
        d: &config::MirrorDiff,
        route: &Arc<str>,
        metrics: &Metrics,
    ) -> Result<Self, String> {
        let names = d
            .compare_headers
            .iter()
            .map(|h| {
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| format!("mirror.diff: invalid header name {h:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ignore = d
            .ignore_json_fields
            .iter()
            .map(|p| config::parse_json_path(p).map_err(|e| format!("mirror.diff: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let kind = |kind| {
            metrics
                .mirror_diffs
                .get_or_create(&MirrorDiffLabels {
                    route: Name(route.clone()),
                    kind,
                })
                .clone()
        };
        Ok(Differ {
            names: names.into(),
            ignore,
            sampler: Sampler::new(d.sample_log_per_minute),
            compared: metrics
                .mirror_compared
                .get_or_create(&RouteLabel {
                    route: Name(route.clone()),
                })
                .clone(),
            status: kind("status"),
            header: kind("header"),
            body: kind("body"),
        })
    }

    pub fn header_names(&self) -> Arc<[HeaderName]> {
        self.names.clone()
    }

    pub fn select(&self, headers: &HeaderMap) -> Vec<Option<HeaderValue>> {
        select_headers(&self.names, headers)
    }

    /// Compares the two responses; counts and logs what differs.
    pub fn compare(&self, route: &str, request_id: &str, primary: &Captured, shadow: &Captured) {
        self.compared.inc();
        let report = |kind: &'static str, at: &str, p: &str, s: &str| {
            if self.sampler.allow() {
                tracing::info!(
                    target: "meshgate::mirror",
                    route,
                    request_id,
                    kind,
                    at,
                    primary = %shown(p),
                    shadow = %shown(s),
                    "shadow response differs"
                );
            }
        };
        if primary.status != shadow.status {
            self.status.inc();
            report(
                "status",
                "status",
                primary.status.as_str(),
                shadow.status.as_str(),
            );
        }
        let differing = self
            .names
            .iter()
            .zip(primary.headers.iter().zip(&shadow.headers))
            .find(|(_, (p, s))| p != s);
        if let Some((name, (p, s))) = differing {
            self.header.inc();
            let text = |v: &Option<HeaderValue>| {
                v.as_ref().map_or("(absent)".into(), |v| {
                    String::from_utf8_lossy(v.as_bytes()).into_owned()
                })
            };
            report("header", name.as_str(), &text(p), &text(s));
        }
        if let (Some(p), Some(s)) = (&primary.body, &shadow.body)
            && let Some(d) = self.body_difference(p, s)
        {
            self.body.inc();
            report("body", &d.at, &d.primary, &d.shadow);
        }
    }

    /// JSON bodies compared structurally without the ignored fields; anything else
    /// byte for byte.
    fn body_difference(&self, p: &Bytes, s: &Bytes) -> Option<json::Difference> {
        let parsed = (
            serde_json::from_slice::<serde_json::Value>(p),
            serde_json::from_slice::<serde_json::Value>(s),
        );
        if let (Ok(mut p), Ok(mut s)) = parsed {
            for path in &self.ignore {
                json::remove(&mut p, path);
                json::remove(&mut s, path);
            }
            return json::first_difference(&p, &s);
        }
        (p != s).then(|| json::Difference {
            at: "body".into(),
            primary: String::from_utf8_lossy(p).into_owned(),
            shadow: String::from_utf8_lossy(s).into_owned(),
        })
    }
}

/// The values of the compared headers (several values joined as the first one).
pub(super) fn select_headers(
    names: &[HeaderName],
    headers: &HeaderMap,
) -> Vec<Option<HeaderValue>> {
    names.iter().map(|n| headers.get(n).cloned()).collect()
}

/// A value cut to `SHOWN` characters.
fn shown(v: &str) -> String {
    match v.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &v[..cut]),
        None => v.to_owned(),
    }
}

/// Allows at most `per_minute` log records in each minute since compilation.
#[derive(Debug)]
struct Sampler {
    per_minute: u32,
    epoch: Instant,
    minute: AtomicU64,
    used: AtomicU32,
}

impl Sampler {
    fn new(per_minute: u32) -> Self {
        Sampler {
            per_minute,
            epoch: Instant::now(),
            minute: AtomicU64::new(0),
            used: AtomicU32::new(0),
        }
    }

    fn allow(&self) -> bool {
        if self.per_minute == 0 {
            return false;
        }
        let now = self.epoch.elapsed().as_secs() / 60;
        let seen = self.minute.load(Relaxed);
        // One task wins the switch to a new minute and resets the count; a record
        // racing it may land in either minute, which is fine for sampling.
        if seen != now
            && self
                .minute
                .compare_exchange(seen, now, Relaxed, Relaxed)
                .is_ok()
        {
            self.used.store(0, Relaxed);
        }
        self.used.fetch_add(1, Relaxed) < self.per_minute
    }
}

#[cfg(test)]
mod tests {
    use super::{Sampler, shown};

    #[test]
    fn sampler_caps_a_minute() {
        let s = Sampler::new(3);
        assert_eq!((0..10).filter(|_| s.allow()).count(), 3);
        assert!(!Sampler::new(0).allow());
    }

    #[test]
    fn long_values_are_cut() {
        assert_eq!(shown("abc"), "abc");
        let long = "é".repeat(300);
        assert_eq!(shown(&long).chars().count(), 201);
    }
}
