//! Bad configs and the exact errors they produce: parse-time errors (unknown
//! fields, bad variants, durations, addresses, YAML syntax, wrong types) and the
//! semantic checks of names, references, routes, matches, retries, services and
//! runtime, each rendered as `file:line:col: path: message`. Filter checks are in
//! `filter_errors.rs`.

#[macro_use]
mod common;

use common::{check_table, dedent, errors};
use meshgate_config::parse_str;

/// (document, expected errors), one line per error.
const TABLE: &[(&str, &str)] = &[
    // ---- parse-time errors ----
    (
        "
        listners: []
        ",
        "t.yaml:1:1: listners: unknown field `listners`, expected one of runtime, accessLog, admin, reload, tracing, listeners, routes, services, policies, consumers, errorResponses, mesh",
    ),
    (
        "
        routes:
          - name: r
            filters:
              - type: Redirect
        ",
        "t.yaml:4:15: routes[0].filters[0].type: unknown variant `Redirect`, expected one of RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, URLRewrite, DirectResponse",
    ),
    (
        "
        routes:
          - name: r
            retry:
              backoff: {base: fast}
        ",
        "t.yaml:4:23: routes[0].retry.backoff.base: invalid duration \"fast\": expected a number and a unit (ms, s, m, h), e.g. 250ms or 5s",
    ),
    (
        "
        listeners:
          - name: web
            address: localhost:8080
        ",
        "t.yaml:3:14: listeners[0].address: invalid socket address syntax",
    ),
    (
        "
        routes:
          - name: r
           hostnames: [a.example]
        ",
        "t.yaml:3:4: routes: while parsing a block collection, did not find expected '-' indicator",
    ),
    (
        "
        routes:
          - name: r
            retry: {attempts: many}
        ",
        "t.yaml:3:23: routes[0].retry.attempts: invalid u32",
    ),
    (
        "
        routes:
          - name: r
            hostnames: api.example.com
        ",
        "t.yaml:3:16: routes[0].hostnames: expected sequence start",
    ),
    (
        "
        services:
          - name: s
        ",
        "t.yaml:2:5: services[0].endpoints: must list at least one endpoint",
    ),
    // ---- names and references ----
    (
        "
        listeners:
          - {name: web, address: 127.0.0.1:8080}
          - {name: web, address: 127.0.0.1:8081}
        ",
        "t.yaml:3:12: listeners[1].name: duplicate listener name \"web\" (first at listeners[0])",
    ),
    (
        "
        listeners:
          - {name: web, address: 127.0.0.1:8080}
          - {name: admin, address: 127.0.0.1:8080}
        ",
        "t.yaml:3:28: listeners[1].address: address 127.0.0.1:8080 is already used by listener \"web\" (listeners[0])",
    ),
    (
        with_s!(
            "
        routes:
          - {name: api, backendRefs: [{name: s}]}
          - {name: api, backendRefs: [{name: s}]}
        "
        ),
        "t.yaml:3:12: routes[1].name: duplicate route name \"api\" (first at routes[0])",
    ),
    (
        "
        services:
          - {name: orders, endpoints: [10.0.0.1:80]}
          - {name: orders, endpoints: [10.0.0.2:80]}
        ",
        "t.yaml:3:12: services[1].name: duplicate service name \"orders\" (first at services[0])",
    ),
    (
        with_s!(
            "
        listeners:
          - {name: public, address: 0.0.0.0:8080}
        routes:
          - name: r
            listeners: [pubic]
            backendRefs: [{name: s}]
        "
        ),
        "t.yaml:5:17: routes[0].listeners[0]: unknown listener \"pubic\" (did you mean \"public\"?)",
    ),
    (
        "
        routes:
          - name: r
            backendRefs:
              - name: ordrs
        services:
          - {name: orders, endpoints: [10.0.0.1:80]}
        ",
        "t.yaml:4:15: routes[0].backendRefs[0].name: unknown service \"ordrs\" (did you mean \"orders\"?)",
    ),
    (
        with_s!(
            "
        routes:
          - name: r
            backendRefs: [{name: payments}]
        "
        ),
        "t.yaml:3:26: routes[0].backendRefs[0].name: unknown service \"payments\": expected one of \"s\"",
    ),
    (
        "
        routes:
          - name: r
            matches: [{path: {value: /api}}]
        ",
        "t.yaml:2:5: routes[0].backendRefs: required unless a RequestRedirect or DirectResponse filter answers the request: list at least one service to forward to",
    ),
    // ---- hostnames, matches ----
    (
        with_s!(
            "
        routes:
          - name: r
            hostnames: [api.example.com, \"api.example.com:443\", \"api.*.com\"]
            backendRefs: [{name: s}]
        "
        ),
        "t.yaml:3:34: routes[0].hostnames[1]: invalid hostname \"api.example.com:443\": a port is not allowed; expected a DNS name such as api.example.com or *.example.com\n\
         t.yaml:3:57: routes[0].hostnames[2]: invalid hostname \"api.*.com\": a wildcard is only allowed as a single leading \"*.\"; expected a DNS name such as api.example.com or *.example.com",
    ),
    (
        with_s!(
            "
        routes:
          - name: r
            matches:
              - path: {type: Exact, value: api/users}
            backendRefs: [{name: s}]
        "
        ),
        "t.yaml:4:36: routes[0].matches[0].path.value: invalid path \"api/users\": must start with \"/\"",
    ),
    (
        with_s!(
            "
        routes:
          - name: r
            matches:
              - path: {type: RegularExpression, value: \"/users/([0-9]+\"}
            backendRefs: [{name: s}]
        "
        ),
        "t.yaml:4:48: routes[0].matches[0].path.value: invalid regular expression \"/users/([0-9]+\": unclosed group",
    ),
    (
        with_s!(
            "
        routes:
          - name: r
            matches:
              - headers:
                  - {type: RegularExpression, name: x-version, value: \"v[2-\"}
                queryParams:
                  - {type: RegularExpression, name: page, value: \"*\"}
            backendRefs: [{name: s}]
        "
        ),
        "t.yaml:5:63: routes[0].matches[0].headers[0].value: invalid regular expression \"v[2-\": unclosed character class\n\
         t.yaml:7:58: routes[0].matches[0].queryParams[0].value: invalid regular expression \"*\": repetition operator missing expression",
    ),
    (
        with_s!(
            "
        routes:
          - name: r
            matches:
              - method: get
                headers: [{name: \"x user\", value: a}]
            backendRefs: [{name: s}]
        "
        ),
        "t.yaml:4:17: routes[0].matches[0].method: invalid method \"get\": expected an uppercase token such as GET, POST or PURGE\n\
         t.yaml:5:26: routes[0].matches[0].headers[0].name: invalid header name \"x user\": expected a token of letters, digits and !#$%&'*+-.^_`|~ (RFC 9110)",
    ),
    // ---- retry ----
    (
        with_s!(
            "
        routes:
          - name: r
            backendRefs: [{name: s}]
            retry:
              attempts: 11
              backoff: {base: 1s}
        "
        ),
        "t.yaml:5:17: routes[0].retry.attempts: must be at most 10 retries after the first try (got 11)\n\
         t.yaml:6:23: routes[0].retry.backoff.base: must not exceed backoff.max (250ms), got 1s",
    ),
    // ---- services ----
    (
        "
        services:
          - name: s
            endpoints: []
        ",
        "t.yaml:3:16: services[0].endpoints: must list at least one endpoint",
    ),
    (
        "
        services:
          - name: s
            endpoints:
              - 10.0.0.1
              - \"::1:80\"
              - {address: \"10.0.0.2:0\", weight: 0}
        ",
        "t.yaml:4:9: services[0].endpoints[0].address: invalid endpoint address \"10.0.0.1\": missing port; expected host:port, e.g. 10.0.0.7:8080, orders.internal:80 or [::1]:8080\n\
         t.yaml:5:9: services[0].endpoints[1].address: invalid endpoint address \"::1:80\": an IPv6 address must be in brackets; expected host:port, e.g. 10.0.0.7:8080, orders.internal:80 or [::1]:8080\n\
         t.yaml:6:19: services[0].endpoints[2].address: invalid endpoint address \"10.0.0.2:0\": port 0 is out of range 1-65535; expected host:port, e.g. 10.0.0.7:8080, orders.internal:80 or [::1]:8080\n\
         t.yaml:6:41: services[0].endpoints[2].weight: must be 1-10000 (got 0)",
    ),
    (
        "
        services:
          - name: a
            endpoints: [10.0.0.1:80]
            loadBalancer: {policy: RingHash}
          - name: b
            endpoints: [10.0.0.1:80]
            loadBalancer:
              policy: RingHash
              hashOn: {header: x-user, cookie: session}
          - name: c
            endpoints: [10.0.0.1:80]
            loadBalancer:
              hashOn: {clientIp: true}
        ",
        "t.yaml:4:19: services[0].loadBalancer.hashOn: required when policy is RingHash: set one of header, cookie or clientIp\n\
         t.yaml:9:15: services[1].loadBalancer.hashOn: set exactly one of header, cookie or clientIp (got header and cookie)\n\
         t.yaml:13:15: services[2].loadBalancer.hashOn: only allowed when policy is RingHash (policy is RoundRobin)",
    ),
    (
        "
        services:
          - name: s
            endpoints: [10.0.0.1:80]
            pool: {maxIdlePerEndpoint: 200000}
            retryBudget: {percent: 2000}
        ",
        "t.yaml:4:32: services[0].pool.maxIdlePerEndpoint: must be at most 100000 (got 200000)\n\
         t.yaml:5:28: services[0].retryBudget.percent: must be 0-1000 (got 2000)",
    ),
    // ---- runtime ----
    (
        "
        runtime:
          workerThreads: 0
        ",
        "t.yaml:2:18: runtime.workerThreads: must be 1-1024 (got 0); omit it for one per CPU core",
    ),
    // ---- further checks ----
    (
        "
        accessLog: {path: \"\"}
        listeners:
          - {name: \"\", address: 127.0.0.1:8080}
        ",
        "t.yaml:1:19: accessLog.path: must not be empty: expected stdout, stderr, off or a file path\n\
         t.yaml:3:12: listeners[0].name: must not be empty: every listener needs a unique name",
    ),
    (
        with_s!(
            "
        routes:
          - name: r
            matches:
              - path: {value: \"/search?q=1\"}
                queryParams: [{name: \"\", value: x}]
            backendRefs: [{name: s, weight: 2000000}]
            timeouts: {request: 1s, backendRequest: 2s}
        "
        ),
        "t.yaml:4:23: routes[0].matches[0].path.value: invalid path \"/search?q=1\": must not contain \"?\", \"#\" or whitespace (match query strings with queryParams)\n\
         t.yaml:5:30: routes[0].matches[0].queryParams[0].name: must not be empty: expected a query parameter name\n\
         t.yaml:6:37: routes[0].backendRefs[0].weight: must be at most 1000000 (got 2000000)\n\
         t.yaml:7:45: routes[0].timeouts.backendRequest: must not exceed timeouts.request (1s), got 2s",
    ),
    (
        "
        services:
          - name: s
            endpoints: [10.0.0.1:80, 10.0.0.1:80]
            loadBalancer:
              policy: RingHash
              hashOn: {cookie: \"my session\"}
            connectTimeout: 0s
            retryBudget: {window: 0ms}
        ",
        "t.yaml:3:30: services[0].endpoints[1].address: duplicate endpoint \"10.0.0.1:80\" (first at endpoints[0]); raise its weight instead\n\
         t.yaml:6:24: services[0].loadBalancer.hashOn.cookie: invalid cookie name \"my session\": expected a token (RFC 6265)\n\
         t.yaml:7:21: services[0].connectTimeout: must be greater than 0, e.g. 1s\n\
         t.yaml:8:27: services[0].retryBudget.window: must be greater than 0, e.g. 10s",
    ),
];

#[test]
fn table_of_bad_configs() {
    check_table(TABLE);
}

/// One document with mistakes in every section: all of them are reported, in order.
#[test]
fn reports_every_error_at_once() {
    let src = "
        runtime: {workerThreads: 2048}
        listeners:
          - {name: web, address: 0.0.0.0:80}
          - {name: web, address: 0.0.0.0:80}
        routes:
          - name: a
            hostnames: [\"bad_host.example\"]
            listeners: [wbe]
            matches: [{path: {type: RegularExpression, value: \"(\"}, method: post}]
            backendRefs: [{name: usres}]
          - name: a
            filters: [{type: URLRewrite}]
        services:
          - {name: users, endpoints: [\"users:0\"]}
        ";
    let want = [
        "t.yaml:1:26: runtime.workerThreads: must be 1-1024 (got 2048); omit it for one per CPU core",
        "t.yaml:4:12: listeners[1].name: duplicate listener name \"web\" (first at listeners[0])",
        "t.yaml:4:26: listeners[1].address: address 0.0.0.0:80 is already used by listener \"web\" (listeners[0])",
        "t.yaml:7:17: routes[0].hostnames[0]: invalid hostname \"bad_host.example\": label \"bad_host\" may only contain letters, digits and \"-\"; expected a DNS name such as api.example.com or *.example.com",
        "t.yaml:8:17: routes[0].listeners[0]: unknown listener \"wbe\" (did you mean \"web\"?)",
        "t.yaml:9:55: routes[0].matches[0].path.value: invalid regular expression \"(\": unclosed group",
        "t.yaml:9:69: routes[0].matches[0].method: invalid method \"post\": expected an uppercase token such as GET, POST or PURGE",
        "t.yaml:10:26: routes[0].backendRefs[0].name: unknown service \"usres\" (did you mean \"users\"?)",
        "t.yaml:11:11: routes[1].name: duplicate route name \"a\" (first at routes[0])",
        "t.yaml:12:15: routes[1].filters[0].urlRewrite: required when type is URLRewrite",
        "t.yaml:11:5: routes[1].backendRefs: required unless a RequestRedirect or DirectResponse filter answers the request: list at least one service to forward to",
        "t.yaml:14:31: services[0].endpoints[0].address: invalid endpoint address \"users:0\": port 0 is out of range 1-65535; expected host:port, e.g. 10.0.0.7:8080, orders.internal:80 or [::1]:8080",
    ];
    let got = errors(src);
    assert_eq!(got.lines().collect::<Vec<_>>(), want);
    let parsed = parse_str(&dedent(src), "t.yaml").unwrap_err();
    assert_eq!(parsed.0.len(), want.len());
}
