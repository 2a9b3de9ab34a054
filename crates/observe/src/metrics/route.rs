//! Per-route metric handles, resolved when routes are compiled so the request
//! path touches only atomics, and the bounded label values (method, status class).

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;

use super::*;
use crate::access_log::AccessRecord;

/// Handles of one route's metrics, resolved once when the route is compiled so the
/// request path never looks a label set up (no lock, no hashing of names).
pub struct RouteMetrics {
    route: Name,
    /// The route's backend services; the slot after the last is "none".
    services: Vec<Name>,
    duration: LatencyHistogram,
    bytes_in: Counter,
    bytes_out: Counter,
    /// Counters by (service slot, method, status class), each created on first use.
    requests: OnceLock<Box<[OnceLock<Counter>]>>,
    family: Family<RequestLabels, Counter>,
}

const METHODS: [&str; 10] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "OTHER",
];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteMetrics")
            .field("route", &self.route.0)
            .finish_non_exhaustive()
    }
}

impl RouteMetrics {
    /// Records a finished request of this route.
    pub fn on_request(&self, r: &AccessRecord) {
        let slot = r
            .service
            .as_ref()
            .and_then(|s| {
                self.services
                    .iter()
                    .position(|n| Arc::ptr_eq(&n.0, s) || *n.0 == **s)
            })
            .unwrap_or(self.services.len());
        let method = METHODS
            .iter()
            .position(|m| *m == method_label(&r.method))
            .unwrap_or(METHODS.len() - 1);
        let class = CLASSES
            .iter()
            .position(|c| *c == status_class(r.status))
            .unwrap_or(4);
        let slots = self.requests.get_or_init(|| {
            (0..(self.services.len() + 1) * METHODS.len() * CLASSES.len())
                .map(|_| OnceLock::new())
                .collect()
        });
        let counter =
            slots[(slot * METHODS.len() + method) * CLASSES.len() + class].get_or_init(|| {
                let service = self
                    .services
                    .get(slot)
                    .cloned()
                    .unwrap_or_else(|| Name(NONE.clone()));
                let labels = RequestLabels {
                    route: self.route.clone(),
                    service,
                    method: METHODS[method],
                    status_class: CLASSES[class],
                };
                self.family.get_or_create(&labels).clone()
            });
        counter.inc();
        self.duration.observe(r.duration);
        let bytes_in = r.bytes_in_total();
        if bytes_in > 0 {
            self.bytes_in.inc_by(bytes_in);
        }
        if r.bytes_out > 0 {
            self.bytes_out.inc_by(r.bytes_out);
        }
    }
}

impl Metrics {
    /// Resolves the handles of route `name`, whose backends are `services`.
    pub fn route(&self, name: &Arc<str>, services: &[Arc<str>]) -> RouteMetrics {
        let label = RouteLabel {
            route: Name(name.clone()),
        };
        RouteMetrics {
            route: Name(name.clone()),
            services: services.iter().map(|s| Name(s.clone())).collect(),
            duration: self.request_duration.get_or_create(&label).clone(),
            bytes_in: self.request_bytes.get_or_create(&label).clone(),
            bytes_out: self.response_bytes.get_or_create(&label).clone(),
            requests: OnceLock::new(),
            family: self.requests.clone(),
        }
    }
}

pub(super) static NONE: std::sync::LazyLock<Arc<str>> =
    std::sync::LazyLock::new(|| Arc::from("none"));

pub fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}
