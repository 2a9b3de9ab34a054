//! Checks of `listeners[].l4`: what each protocol needs (`TCP` one service, `TLS`
//! routes and/or a default service, unless `TCP` routes by original destination),
//! that referenced services exist and speak plain TCP, SNI hostname syntax and
//! uniqueness, and timeouts.

use crate::model::{L4Listener, SniRoute};
use crate::{Config, ListenerProtocol};

use super::Issues;
use super::names::Known;
use super::syntax;

/// Checks the settings at `at` (e.g. `listeners[0].l4`).
pub(super) fn check(at: &str, s: &L4Listener, config: &Config, issues: &mut Issues) {
    // `s` is borrowed from its listener in `config`: that listener says the protocol.
    let protocol = config
        .listeners
        .iter()
        .find(|l| l.l4.as_ref().is_some_and(|x| std::ptr::eq(x, s)))
        .map_or(ListenerProtocol::TCP, |l| l.protocol);
    let known = Known::of(config);
    match protocol {
        ListenerProtocol::TLS => {
            if s.original_destination {
                issues.add(
                    format!("{at}.originalDestination"),
                    "only allowed when protocol is TCP: a TLS listener routes by server name",
                );
            }
            if s.service.is_none() && s.routes.is_empty() {
                issues.add(
                    format!("{at}.routes"),
                    "set routes, service or both: a TLS listener needs somewhere to send \
                     connections",
                );
            }
        }
        _ => {
            if s.service.is_none() && !s.original_destination {
                issues.add(
                    format!("{at}.service"),
                    "required when protocol is TCP: the service connections are proxied to",
                );
            }
            if !s.routes.is_empty() {
                issues.add(
                    format!("{at}.routes"),
                    "only allowed when protocol is TLS: a TCP connection carries no server \
                     name to route by",
                );
            }
        }
    }
    if let Some(name) = &s.service {
        check_service(&format!("{at}.service"), name, config, &known, issues);
    }
    for (j, route) in s.routes.iter().enumerate() {
        check_route(at, j, route, &s.routes[..j], config, &known, issues);
    }
    if s.idle_timeout.get().is_zero() {
        issues.add(format!("{at}.idleTimeout"), "must be greater than 0");
    }
    if s.client_hello_timeout.get().is_zero() {
        issues.add(format!("{at}.clientHelloTimeout"), "must be greater than 0");
    }
}

/// One SNI route `routes[j]`; `earlier` are the routes before it, whose hostnames it
/// must not repeat.
fn check_route(
    at: &str,
    j: usize,
    route: &SniRoute,
    earlier: &[SniRoute],
    config: &Config,
    known: &Known<'_>,
    issues: &mut Issues,
) {
    let base = format!("{at}.routes[{j}]");
    if route.hostnames.is_empty() {
        issues.add(
            format!("{base}.hostnames"),
            "must list at least one server name, e.g. db.example.com or *.example.com",
        );
    }
    for (k, h) in route.hostnames.iter().enumerate() {
        let path = format!("{base}.hostnames[{k}]");
        if let Some(msg) = syntax::route_hostname(h) {
            issues.add(path, msg);
            continue;
        }
        let same = |o: &String| o.eq_ignore_ascii_case(h);
        let first = earlier
            .iter()
            .enumerate()
            .find_map(|(j0, r)| Some((j0, r.hostnames.iter().position(same)?)))
            .or_else(|| Some((j, route.hostnames[..k].iter().position(same)?)));
        if let Some((j0, k0)) = first {
            issues.add(
                path,
                format!("duplicate server name {h:?} (first at {at}.routes[{j0}].hostnames[{k0}])"),
            );
        }
    }
    check_service(
        &format!("{base}.service"),
        &route.service,
        config,
        known,
        issues,
    );
}

/// A service reference: the service must exist and must not originate TLS (an L4
/// listener forwards the client's bytes as they are).
fn check_service(path: &str, name: &str, config: &Config, known: &Known<'_>, issues: &mut Issues) {
    if let Some(msg) = known.service(name) {
        issues.add(path, msg);
        return;
    }
    if let Some(i) = config
        .services
        .iter()
        .position(|svc| svc.name == name && svc.tls.is_some())
    {
        issues.add(
            path,
            format!(
                "service {name:?} originates TLS (services[{i}].tls), but an L4 listener \
                 passes the client's bytes through unchanged: use a service without tls"
            ),
        );
    }
}
