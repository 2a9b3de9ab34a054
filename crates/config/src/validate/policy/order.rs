//! Warnings about policy order: pipelines that validate but cannot do what their
//! author most likely meant (a consumer-keyed rate limit before anyone is
//! authenticated, an authorization check before authentication, CORS behind a
//! credential check that preflights cannot pass) and policies nothing uses.

use crate::Config;
use crate::model::{Policy, PolicyType, RateLimitKey};
use crate::validate::Issues;

pub(crate) fn warnings(config: &Config, issues: &mut Issues) {
    super::client_cert::warnings(config, issues);
    let find = |name: &str| config.policies.iter().find(|p| p.name == name);
    for (ri, r) in config.routes.iter().enumerate() {
        // The route's pipeline on each listener it is served on: listener policies first.
        let listeners = config
            .listeners
            .iter()
            .enumerate()
            .filter(|(_, l)| r.listeners.is_empty() || r.listeners.contains(&l.name));
        let mut seen_prefixes: Vec<&[String]> = Vec::new();
        for (li, l) in listeners {
            if seen_prefixes.contains(&l.policies.as_slice()) {
                continue;
            }
            seen_prefixes.push(&l.policies);
            let steps = l
                .policies
                .iter()
                .enumerate()
                .map(|(j, n)| (format!("listeners[{li}].policies[{j}]"), n))
                .chain(
                    r.policies
                        .iter()
                        .enumerate()
                        .map(|(j, n)| (format!("routes[{ri}].policies[{j}]"), n)),
                );
            check_pipeline(
                steps.filter_map(|(at, n)| Some((at, find(n)?))),
                &r.name,
                issues,
            );
        }
    }
    for (i, p) in config.policies.iter().enumerate() {
        let used = config
            .listeners
            .iter()
            .any(|l| l.policies.contains(&p.name))
            || config.routes.iter().any(|r| r.policies.contains(&p.name));
        if !used {
            issues.add(
                format!("policies[{i}].name"),
                format!("policy {:?} is not used by any listener or route", p.name),
            );
        }
    }
}

fn check_pipeline<'a>(
    steps: impl Iterator<Item = (String, &'a Policy)>,
    route: &str,
    issues: &mut Issues,
) {
    let mut authenticated_by: Option<&str> = None;
    for (at, p) in steps {
        let warning = match p.kind {
            PolicyType::RateLimit
                if authenticated_by.is_none()
                    && p.rate_limit.as_ref().map(|r| r.key) == Some(RateLimitKey::Consumer) =>
            {
                Some(format!(
                    "rate limit {:?} is keyed by consumer but runs before any authentication \
                     on route {route:?}: every request shares the anonymous bucket; \
                     put it after the authentication policy",
                    p.name
                ))
            }
            PolicyType::Authorize if authenticated_by.is_none() => Some(format!(
                "authorization {:?} runs before any authentication on route {route:?}: \
                 rules on consumers, groups or claims can never match; \
                 put it after the authentication policy",
                p.name
            )),
            PolicyType::Cors => authenticated_by.map(|auth| {
                format!(
                    "CORS {:?} runs after authentication {auth:?} on route {route:?}: \
                     browsers send preflights without credentials, so they will be refused; \
                     put CORS first",
                    p.name
                )
            }),
            _ => None,
        };
        if let Some(w) = warning {
            issues.add(at, w);
        }
        if p.kind.authenticates() && authenticated_by.is_none() {
            authenticated_by = Some(&p.name);
        }
    }
}
