//! Checks of `oidc` policies: the issuer URL, the client, the paths the policy
//! serves, the cookie and its key material, claims and headers.

use crate::Config;
use crate::model::OidcPolicy;
use crate::validate::Issues;

use super::ext_authz::http_url_problem;
use super::is_token;

/// Least key material for the session cookie (AES-256 needs 32 bytes of entropy).
const MIN_COOKIE_SECRET: usize = 32;

/// Checks the settings at `at` (e.g. `policies[3].oidc`).
pub(super) fn check(at: &str, p: &OidcPolicy, _config: &Config, issues: &mut Issues) {
    if let Some(problem) = http_url_problem(&p.issuer) {
        issues.add(format!("{at}.issuer"), problem);
    }
    if p.client_id.trim().is_empty() {
        issues.add(format!("{at}.clientId"), "must not be empty");
    }
    one_secret(
        at,
        ("clientSecretEnv", &p.client_secret_env),
        ("clientSecret", &p.client_secret),
        issues,
    );
    for (field, path) in [
        ("redirectPath", &p.redirect_path),
        ("logoutPath", &p.logout_path),
    ] {
        if !is_local_path(path) {
            issues.add(
                format!("{at}.{field}"),
                format!("{path:?} is not a path (starting with /, without query)"),
            );
        }
    }
    if p.logout_path == p.redirect_path {
        issues.add(format!("{at}.logoutPath"), "must differ from redirectPath");
    }
    let redirect = &p.logout_redirect;
    if !(is_local_path(redirect) && !redirect.starts_with("//")
        || redirect.starts_with("http://")
        || redirect.starts_with("https://"))
    {
        issues.add(
            format!("{at}.logoutRedirect"),
            format!("{redirect:?} is neither a path (/…) nor an http(s):// URL"),
        );
    }
    if !p.scopes.iter().any(|s| s == "openid") {
        issues.add(format!("{at}.scopes"), "must include openid");
    }
    for (i, s) in p.scopes.iter().enumerate() {
        if s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        {
            issues.add(
                format!("{at}.scopes[{i}]"),
                format!("{s:?} is not a scope (visible characters, no spaces)"),
            );
        }
    }
    if !is_token(&p.cookie_name) {
        issues.add(
            format!("{at}.cookieName"),
            format!("{:?} is not a valid cookie name", p.cookie_name),
        );
    }
    if p.session_ttl.get().is_zero() {
        issues.add(format!("{at}.sessionTtl"), "must be more than 0s");
    }
    let cookie_secret_set = one_secret(
        at,
        ("cookieSecretEnv", &p.cookie_secret_env),
        ("cookieSecret", &p.cookie_secret),
        issues,
    );
    if !cookie_secret_set {
        issues.add(
            at,
            "set cookieSecretEnv (or cookieSecret): the key material of the session cookie",
        );
    }
    if let Some(s) = &p.cookie_secret
        && s.len() < MIN_COOKIE_SECRET
    {
        issues.add(
            format!("{at}.cookieSecret"),
            format!(
                "must be at least {MIN_COOKIE_SECRET} bytes (got {}); e.g. `openssl rand -base64 32`",
                s.len()
            ),
        );
    }
    for (field, claim) in [
        ("consumerClaim", &p.consumer_claim),
        ("groupsClaim", &p.groups_claim),
    ] {
        if claim.trim().is_empty() {
            issues.add(format!("{at}.{field}"), "must not be empty");
        }
    }
    for (field, name) in [
        ("consumerHeader", &p.consumer_header),
        ("groupsHeader", &p.groups_header),
    ] {
        if !is_token(name) {
            issues.add(
                format!("{at}.{field}"),
                format!("{name:?} is not a valid header name"),
            );
        }
    }
    if p.timeout.get().is_zero() {
        issues.add(format!("{at}.timeout"), "must be more than 0s");
    }
}

/// Checks a secret given either through an environment variable or inline; whether
/// one of the two is set.
fn one_secret(
    at: &str,
    (env_field, env): (&str, &Option<String>),
    (inline_field, inline): (&str, &Option<String>),
    issues: &mut Issues,
) -> bool {
    if env.as_deref().is_some_and(|e| e.trim().is_empty()) {
        issues.add(format!("{at}.{env_field}"), "must not be empty");
    }
    if env.is_some() && inline.is_some() {
        issues.add(
            format!("{at}.{inline_field}"),
            format!("set {env_field} or {inline_field}, not both"),
        );
    }
    env.is_some() || inline.is_some()
}

/// `/…` in visible ASCII, without query or fragment.
fn is_local_path(p: &str) -> bool {
    p.starts_with('/')
        && p.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
}
