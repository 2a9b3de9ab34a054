//! Semantic checks that the types alone cannot express: references, uniqueness,
//! syntax of names and patterns, per-filter required settings, ranges. Each issue
//! names its field path (`routes[2].matches[0].path.value`), in the path syntax of
//! the parse errors, so `load` can point it at file:line:col.
//!
//! Every check runs and all issues are returned. The walk visits the model in field
//! order (runtime, accessLog, listeners, routes, services; entries by index; within
//! an entry, its fields in declaration order), so issues come out in the order they
//! appear in a document written in that order; no sorting is needed.

mod compression;
mod discovery;
mod error_response;
mod l4;
mod listener_tls;
mod mesh;
mod mesh_authz;
mod mesh_tls;
mod mirror;
mod names;
mod policy;
mod route;
mod route_filter;
mod service;
mod syntax;
mod upstream_tls;

use crate::Config;
use names::{Kind, Known};

/// A semantic problem at a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issue {
    pub path: String,
    pub message: String,
}

/// Collects issues while walking the config.
#[derive(Debug, Default)]
pub(crate) struct Issues(Vec<Issue>);

impl Issues {
    pub(crate) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Issue {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Suspicious policy orders and similar: valid, but probably not what was meant.
pub(crate) fn warnings(config: &Config) -> Vec<Issue> {
    let mut issues = Issues::default();
    policy::warnings(config, &mut issues);
    discovery::warnings(config, &mut issues);
    issues.0
}

/// Every semantic issue of `config`; empty when it is valid.
pub(crate) fn validate(config: &Config) -> Vec<Issue> {
    let mut issues = Issues::default();
    check_runtime(config, &mut issues);
    check_ops(config, &mut issues);
    let known = Known::of(config);
    check_listeners(config, &known, &mut issues);
    for (i, r) in config.routes.iter().enumerate() {
        known.check_name(Kind::Route, i, &mut issues);
        route::check(r, &format!("routes[{i}]"), &known, &mut issues);
        error_response::check(
            &r.error_responses,
            &format!("routes[{i}].errorResponses"),
            &mut issues,
        );
        if let Some(m) = &r.mirror {
            mirror::check(&format!("routes[{i}].mirror"), m, config, &mut issues);
        }
        if let Some(c) = &r.compression {
            compression::check(&format!("routes[{i}].compression"), c, &mut issues);
        }
    }
    for (i, s) in config.services.iter().enumerate() {
        known.check_name(Kind::Service, i, &mut issues);
        service::check(s, &format!("services[{i}]"), &mut issues);
        if let Some(d) = &s.discovery {
            discovery::check(d, &format!("services[{i}]"), &mut issues);
        }
        if let Some(t) = &s.tls {
            upstream_tls::check(&format!("services[{i}].tls"), t, config, &mut issues);
        }
        upstream_tls::check_protocol(&format!("services[{i}]"), s, &mut issues);
        if let Some(m) = &s.mesh {
            mesh_tls::check_service(&format!("services[{i}]"), s, m, &mut issues);
        }
    }
    policy::check(config, &mut issues);
    error_response::check(&config.error_responses, "errorResponses", &mut issues);
    if let Some(m) = &config.mesh {
        mesh::check(m, &mut issues);
    }
    mesh_authz::check(config, &mut issues);
    issues.0
}

/// admin, reload and tracing settings.
fn check_ops(config: &Config, issues: &mut Issues) {
    if config.admin.token.as_deref() == Some("") {
        issues.add(
            "admin.token",
            "must not be empty (omit it to run the admin API without auth, loopback only)",
        );
    }
    if config.admin.live_explain && config.admin.token.is_none() && config.admin.token_env.is_none()
    {
        issues.add(
            "admin.liveExplain",
            "needs admin.token or admin.tokenEnv: requests prove they may see traces with it",
        );
    }
    if config.reload.debounce.get().is_zero() {
        issues.add("reload.debounce", "must be greater than 0");
    }
    let t = &config.tracing;
    if !(0.0..=1.0).contains(&t.sample_ratio) {
        issues.add(
            "tracing.sampleRatio",
            format!("{} is not between 0.0 and 1.0", t.sample_ratio),
        );
    }
    if t.service_name.is_empty() {
        issues.add("tracing.serviceName", "must not be empty");
    }
    if let Some(otlp) = &t.otlp {
        let e = &otlp.endpoint;
        let rest = e
            .strip_prefix("http://")
            .or_else(|| e.strip_prefix("https://"));
        if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
            issues.add(
                "tracing.otlp.endpoint",
                format!("{e:?} is not an http:// or https:// URL, e.g. http://127.0.0.1:4317"),
            );
        }
        if otlp.max_batch == 0 {
            issues.add("tracing.otlp.maxBatch", "must be at least 1");
        }
        if otlp.timeout.get().is_zero() {
            issues.add("tracing.otlp.timeout", "must be greater than 0");
        }
    }
}

fn check_runtime(config: &Config, issues: &mut Issues) {
    if let Some(n) = config.runtime.worker_threads
        && !(1..=1024).contains(&n)
    {
        issues.add(
            "runtime.workerThreads",
            format!("must be 1-1024 (got {n}); omit it for one per CPU core"),
        );
    }
    if config.access_log.path.trim().is_empty() {
        issues.add(
            "accessLog.path",
            "must not be empty: expected stdout, stderr, off or a file path",
        );
    }
}

fn check_listeners(config: &Config, known: &Known<'_>, issues: &mut Issues) {
    for (i, l) in config.listeners.iter().enumerate() {
        known.check_name(Kind::Listener, i, issues);
        // Port 0 asks the OS for a fresh port each time, so it never collides.
        let duplicate = l.address.port() != 0;
        if let Some(first) = config.listeners[..i]
            .iter()
            .position(|o| duplicate && o.address == l.address)
        {
            let other = &config.listeners[first].name;
            issues.add(
                format!("listeners[{i}].address"),
                format!(
                    "address {} is already used by listener {other:?} (listeners[{first}])",
                    l.address
                ),
            );
        }
        check_listener_protocol(config, l, &format!("listeners[{i}]"), issues);
        if let Some(m) = &l.mesh {
            mesh_tls::check_listener(&format!("listeners[{i}]"), l, m, issues);
        }
    }
}

/// The settings each protocol needs, and none it does not use.
fn check_listener_protocol(config: &Config, l: &crate::Listener, at: &str, issues: &mut Issues) {
    use crate::ListenerProtocol as P;
    let wants_tls = l.protocol == P::HTTPS;
    let wants_l4 = matches!(l.protocol, P::TCP | P::TLS);
    match (&l.tls, wants_tls) {
        (None, true) => issues.add(format!("{at}.tls"), "required when protocol is HTTPS"),
        (Some(_), false) => issues.add(
            format!("{at}.tls"),
            format!("not allowed when protocol is {:?}", l.protocol),
        ),
        (Some(t), true) => listener_tls::check(&format!("{at}.tls"), t, config, issues),
        (None, false) => {}
    }
    match (&l.l4, wants_l4) {
        (None, true) => issues.add(
            format!("{at}.l4"),
            format!("required when protocol is {:?}", l.protocol),
        ),
        (Some(_), false) => issues.add(
            format!("{at}.l4"),
            format!("not allowed when protocol is {:?}", l.protocol),
        ),
        (Some(x), true) => l4::check(&format!("{at}.l4"), x, config, issues),
        (None, false) => {}
    }
    if wants_l4 && !l.policies.is_empty() {
        issues.add(
            format!("{at}.policies"),
            "HTTP policies cannot run on a TCP or TLS passthrough listener",
        );
    }
}
