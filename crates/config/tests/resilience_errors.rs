//! Bad resilience settings and the exact errors they produce: active health
//! checks (`healthCheck`), outlier detection (`outlierDetection`) and the circuit
//! breaker (`circuitBreaker`) of a service.

#[macro_use]
mod common;

use common::check_table;
use meshgate_config::parse_str;

/// (document, expected errors), one line per error.
const TABLE: &[(&str, &str)] = &[
    // ---- healthCheck ----
    (
        "
        services:
          - name: s
            endpoints: [10.0.0.1:80]
            healthCheck: {interval: 1s}
        ",
        "t.yaml:4:18: services[0].healthCheck: set exactly one of http or tcp (got none)",
    ),
    (
        "
        services:
          - name: s
            endpoints: [10.0.0.1:80]
            healthCheck:
              http: {}
              tcp: {}
        ",
        "t.yaml:5:7: services[0].healthCheck: set exactly one of http or tcp (got http and tcp)",
    ),
    (
        "
        services:
          - name: s
            endpoints: [10.0.0.1:80]
            healthCheck:
              interval: 0s
              timeout: 0ms
              healthyThreshold: 0
              unhealthyThreshold: 0
              tcp: {}
        ",
        "t.yaml:5:17: services[0].healthCheck.interval: must be greater than 0, e.g. 5s\n\
         t.yaml:6:16: services[0].healthCheck.timeout: must be greater than 0, e.g. 1s\n\
         t.yaml:7:25: services[0].healthCheck.healthyThreshold: must be at least 1 (got 0)\n\
         t.yaml:8:27: services[0].healthCheck.unhealthyThreshold: must be at least 1 (got 0)",
    ),
    (
        "
        services:
          - name: s
            endpoints: [10.0.0.1:80]
            healthCheck:
              interval: 1s
              timeout: 2s
              http:
                path: healthz
                host: \"\"
                expectedStatuses: [200, 99, 600]
        ",
        "t.yaml:6:16: services[0].healthCheck.timeout: must not exceed interval (1s), got 2s\n\
         t.yaml:8:15: services[0].healthCheck.http.path: invalid path \"healthz\": must start with \"/\"\n\
         t.yaml:9:15: services[0].healthCheck.http.host: must not be empty: omit it to send the endpoint's host:port\n\
         t.yaml:10:33: services[0].healthCheck.http.expectedStatuses[1]: must be an HTTP status 100-599 (got 99)\n\
         t.yaml:10:37: services[0].healthCheck.http.expectedStatuses[2]: must be an HTTP status 100-599 (got 600)",
    ),
    (
        "
        services:
          - name: s
            endpoints: [10.0.0.1:80]
            healthCheck:
              http: {path: \"/health check\"}
        ",
        "t.yaml:5:20: services[0].healthCheck.http.path: invalid path \"/health check\": must not contain \"#\", whitespace or control characters",
    ),
    // ---- outlierDetection ----
    (
        "
        services:
          - name: s
            endpoints: [10.0.0.1:80]
            outlierDetection:
              baseEjectionTime: 10m
              maxEjectionTime: 1m
              maxEjectionPercent: 101
        ",
        "t.yaml:5:25: services[0].outlierDetection.baseEjectionTime: must not exceed maxEjectionTime (1m), got 10m\n\
         t.yaml:7:27: services[0].outlierDetection.maxEjectionPercent: must be 0-100 (got 101)",
    ),
    (
        "
        services:
          - name: s
            endpoints: [10.0.0.1:80]
            outlierDetection:
              failureRate: {thresholdPercent: 0, window: 0s}
              baseEjectionTime: 0s
          - name: t
            endpoints: [10.0.0.1:80]
            outlierDetection:
              failureRate: {thresholdPercent: 101}
        ",
        "t.yaml:5:39: services[0].outlierDetection.failureRate.thresholdPercent: must be 1-100 (got 0)\n\
         t.yaml:5:50: services[0].outlierDetection.failureRate.window: must be greater than 0, e.g. 10s\n\
         t.yaml:6:25: services[0].outlierDetection.baseEjectionTime: must be greater than 0, e.g. 30s\n\
         t.yaml:10:39: services[1].outlierDetection.failureRate.thresholdPercent: must be 1-100 (got 101)",
    ),
    // ---- circuitBreaker (maxRetries: 0 is allowed: no retries for the service) ----
    (
        "
        services:
          - name: s
            endpoints: [10.0.0.1:80]
            circuitBreaker:
              maxConnections: 0
              maxPendingRequests: 0
              maxRequests: 0
              maxRetries: 0
        ",
        "t.yaml:5:23: services[0].circuitBreaker.maxConnections: must be at least 1 (got 0): 0 would refuse every request\n\
         t.yaml:6:27: services[0].circuitBreaker.maxPendingRequests: must be at least 1 (got 0): 0 would refuse every request\n\
         t.yaml:7:20: services[0].circuitBreaker.maxRequests: must be at least 1 (got 0): 0 would refuse every request",
    ),
    (
        "
        services:
          - name: s
            endpoints: [10.0.0.1:80]
            circuitBreaker: {maxRequests: -1}
        ",
        "t.yaml:4:35: services[0].circuitBreaker.maxRequests: invalid u32",
    ),
    (
        "
        services:
          - name: s
            endpoints: [10.0.0.1:80]
            outlierDetection: {consecutive5xx: 3, ejectAfter: 2}
        ",
        "t.yaml:4:43: services[0].outlierDetection.ejectAfter: unknown field `ejectAfter`, expected one of consecutive5xx, consecutiveFailures, failureRate, baseEjectionTime, maxEjectionTime, maxEjectionPercent",
    ),
];

#[test]
fn table_of_bad_resilience_settings() {
    check_table(TABLE);
}

/// Every resilience field set to a sensible value is accepted, and the defaults
/// of omitted fields are the documented ones.
#[test]
fn valid_settings_and_defaults() {
    let src = common::dedent(
        "
        services:
          - name: s
            endpoints: [10.0.0.1:80, 10.0.0.2:80]
            healthCheck:
              interval: 2s
              timeout: 2s
              healthyThreshold: 1
              unhealthyThreshold: 1
              http: {path: \"/healthz?deep=1\", host: s.internal, expectedStatuses: [200, 204]}
              panicMode: true
            outlierDetection:
              consecutive5xx: 0
              failureRate: {thresholdPercent: 100}
              baseEjectionTime: 5m
              maxEjectionTime: 5m
              maxEjectionPercent: 100
            circuitBreaker: {maxRetries: 0}
          - name: t
            endpoints: [10.0.0.3:80]
            healthCheck: {tcp: {}}
            outlierDetection: {}
        ",
    );
    let config = parse_str(&src, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    let s = &config.services[0];
    assert_eq!(s.circuit_breaker.max_retries, 0);
    assert_eq!(s.circuit_breaker.max_requests, 1024);
    let t = &config.services[1];
    let h = t.health_check.as_ref().unwrap();
    assert_eq!(h.interval.get().as_secs(), 5);
    assert_eq!(h.timeout.get().as_secs(), 1);
    assert_eq!((h.healthy_threshold, h.unhealthy_threshold), (2, 3));
    assert!(!h.panic_mode);
    let o = t.outlier_detection.as_ref().unwrap();
    assert_eq!((o.consecutive_5xx, o.consecutive_failures), (5, 5));
    assert_eq!(o.base_ejection_time.get().as_secs(), 30);
    assert_eq!(o.max_ejection_time.get().as_secs(), 300);
    assert_eq!(o.max_ejection_percent, 50);
    assert!(o.failure_rate.is_none());
    let rate = s
        .outlier_detection
        .as_ref()
        .unwrap()
        .failure_rate
        .as_ref()
        .unwrap();
    assert_eq!(
        (rate.minimum_requests, rate.window.get().as_secs()),
        (20, 10)
    );
    assert_eq!(
        t.circuit_breaker,
        meshgate_config::CircuitBreaker::default()
    );
}
