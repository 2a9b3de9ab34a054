//! Checks of `jwt` policies: places to read the token from, an algorithm list that
//! cannot lead to key confusion (no `none`, no HMAC mixed with public-key
//! algorithms), keys that fit those algorithms (HMAC secrets long enough, PEM blocks
//! that are public keys), a usable JWKS URL and refresh timing, and header names.

use crate::Config;
use crate::model::{JwtAlgorithm, JwtKey, JwtPolicy, JwtTokenLocation};
use crate::validate::Issues;

use super::is_token;

/// RFC 7518 §3.2: an HMAC key at least as long as the hash (HS256's 32 bytes).
const MIN_SECRET_BYTES: usize = 32;

/// Checks the settings at `at` (e.g. `policies[3].jwt`).
pub(super) fn check(at: &str, p: &JwtPolicy, _config: &Config, issues: &mut Issues) {
    if p.token_from.is_empty() {
        issues.add(
            format!("{at}.tokenFrom"),
            "list at least one place to read the token from",
        );
    }
    for (i, loc) in p.token_from.iter().enumerate() {
        check_location(&format!("{at}.tokenFrom[{i}]"), loc, issues);
    }
    check_algorithms(at, &p.algorithms, issues);
    if p.keys.is_empty() && p.jwks.is_none() && p.jwks_url.is_none() {
        issues.add(
            at,
            "set keys, jwks or jwksUrl: there is nothing to verify tokens with",
        );
    }
    let hmac = p.algorithms.iter().any(|a| a.is_hmac());
    let public = p.algorithms.iter().any(|a| !a.is_hmac());
    for (i, k) in p.keys.iter().enumerate() {
        let kat = format!("{at}.keys[{i}]");
        check_key(&kat, k, (hmac, public), issues);
        if let Some(kid) = &k.kid
            && let Some(first) = p.keys[..i].iter().position(|o| o.kid.as_ref() == Some(kid))
        {
            issues.add(
                format!("{kat}.kid"),
                format!("duplicate kid {kid:?} (first at keys[{first}])"),
            );
        }
    }
    if let Some(jwks) = &p.jwks {
        check_inline_jwks(&format!("{at}.jwks"), jwks, issues);
    }
    if let Some(url) = &p.jwks_url {
        let host = url
            .strip_prefix("http://")
            .map(|r| r.split('/').next().unwrap_or(""));
        match host {
            Some(h) if !h.is_empty() => {}
            _ if url.starts_with("https://") => issues.add(
                format!("{at}.jwksUrl"),
                format!("{url:?}: https:// is not supported yet (the gateway has no TLS client); use http://"),
            ),
            _ => issues.add(
                format!("{at}.jwksUrl"),
                format!("{url:?} is not an http:// URL with a host"),
            ),
        }
    }
    for (field, d) in [
        ("jwksRefresh", p.jwks_refresh),
        ("jwksMinRefreshInterval", p.jwks_min_refresh_interval),
        ("jwksTimeout", p.jwks_timeout),
    ] {
        if d.get().is_zero() {
            issues.add(format!("{at}.{field}"), "must be longer than 0s");
        }
    }
    if p.jwks_refresh < p.jwks_min_refresh_interval {
        issues.add(
            format!("{at}.jwksRefresh"),
            format!(
                "{} is shorter than jwksMinRefreshInterval ({})",
                p.jwks_refresh, p.jwks_min_refresh_interval
            ),
        );
    }
    if p.issuer.as_deref().is_some_and(|s| s.trim().is_empty()) {
        issues.add(format!("{at}.issuer"), "must not be empty");
    }
    for (field, list) in [
        ("audiences", &p.audiences),
        ("requiredClaims", &p.required_claims),
    ] {
        for (i, s) in list.iter().enumerate() {
            if s.trim().is_empty() {
                issues.add(format!("{at}.{field}[{i}]"), "must not be empty");
            }
        }
    }
    for (field, s) in [
        ("consumerClaim", &p.consumer_claim),
        ("groupsClaim", &p.groups_claim),
    ] {
        if s.trim().is_empty() {
            issues.add(format!("{at}.{field}"), "must not be empty");
        }
    }
    check_headers(at, p, issues);
}

fn check_location(at: &str, loc: &JwtTokenLocation, issues: &mut Issues) {
    let set = [&loc.header, &loc.cookie, &loc.query_param]
        .iter()
        .filter(|v| v.is_some())
        .count();
    if set != 1 {
        issues.add(at, "set exactly one of header, cookie, queryParam");
    }
    if let Some(h) = &loc.header
        && !is_token(h)
    {
        issues.add(
            format!("{at}.header"),
            format!("{h:?} is not a valid header name"),
        );
    }
    if loc.prefix.is_some() && loc.header.is_none() {
        issues.add(format!("{at}.prefix"), "only used with header");
    }
    if let Some(c) = &loc.cookie
        && !is_token(c)
    {
        issues.add(
            format!("{at}.cookie"),
            format!("{c:?} is not a valid cookie name"),
        );
    }
    if loc.query_param.as_deref() == Some("") {
        issues.add(format!("{at}.queryParam"), "must not be empty");
    }
}

fn check_algorithms(at: &str, algs: &[JwtAlgorithm], issues: &mut Issues) {
    if algs.is_empty() {
        issues.add(
            format!("{at}.algorithms"),
            "list the accepted algorithms, e.g. [RS256]",
        );
        return;
    }
    let hmac: Vec<String> = algs
        .iter()
        .filter(|a| a.is_hmac())
        .map(|a| format!("{a:?}"))
        .collect();
    let public: Vec<String> = algs
        .iter()
        .filter(|a| !a.is_hmac())
        .map(|a| format!("{a:?}"))
        .collect();
    if !hmac.is_empty() && !public.is_empty() {
        issues.add(
            format!("{at}.algorithms"),
            format!(
                "HMAC ({}) cannot be mixed with public-key algorithms ({}): a public key could then be used as an HMAC secret; use two policies",
                hmac.join(", "),
                public.join(", ")
            ),
        );
    }
}

fn check_key(at: &str, k: &JwtKey, (hmac, public): (bool, bool), issues: &mut Issues) {
    let set = [&k.secret_env, &k.secret, &k.public_key_pem]
        .iter()
        .filter(|v| v.is_some())
        .count();
    if set != 1 {
        issues.add(at, "set exactly one of secretEnv, secret, publicKeyPem");
    }
    if k.kid.as_deref() == Some("") {
        issues.add(format!("{at}.kid"), "must not be empty");
    }
    for (field, secret_kind) in [
        ("secretEnv", k.secret_env.is_some()),
        ("secret", k.secret.is_some()),
    ] {
        if secret_kind && public && !hmac {
            issues.add(
                format!("{at}.{field}"),
                "an HMAC secret needs HS256, HS384 or HS512 in algorithms",
            );
        }
    }
    if let Some(name) = &k.secret_env
        && (name.is_empty() || name.contains(['=', '\0']))
    {
        issues.add(
            format!("{at}.secretEnv"),
            format!("{name:?} is not an environment variable name"),
        );
    }
    if let Some(s) = &k.secret
        && s.len() < MIN_SECRET_BYTES
    {
        issues.add(
            format!("{at}.secret"),
            format!(
                "{} bytes is too short: HMAC secrets need at least {MIN_SECRET_BYTES}",
                s.len()
            ),
        );
    }
    if let Some(pem) = &k.public_key_pem {
        if let Some(problem) = pem_problem(pem) {
            issues.add(format!("{at}.publicKeyPem"), problem);
        } else if hmac && !public {
            issues.add(
                format!("{at}.publicKeyPem"),
                "a public key needs a public-key algorithm (RS*, PS*, ES*, EdDSA) in algorithms",
            );
        }
    }
}

/// Why `pem` is not a public-key PEM block, if it is not (the DER inside is parsed
/// when the policy is compiled).
fn pem_problem(pem: &str) -> Option<String> {
    let t = pem.trim();
    let Some((label, rest)) = t
        .strip_prefix("-----BEGIN ")
        .and_then(|r| r.split_once("-----"))
    else {
        return Some("not a PEM block (expected -----BEGIN PUBLIC KEY-----)".into());
    };
    if label.contains("PRIVATE") {
        return Some(format!(
            "is a {label}: give the public key (private keys never belong in the config)"
        ));
    }
    if label != "PUBLIC KEY" && label != "RSA PUBLIC KEY" {
        return Some(format!(
            "unsupported PEM block {label:?}: expected PUBLIC KEY or RSA PUBLIC KEY"
        ));
    }
    let Some(body) = rest
        .trim_end()
        .strip_suffix(&format!("-----END {label}-----"))
    else {
        return Some(format!("missing -----END {label}-----"));
    };
    let b64: Vec<u8> = body.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let alphabet = |b: &u8| b.is_ascii_alphanumeric() || b"+/=".contains(b);
    if b64.is_empty() || !b64.len().is_multiple_of(4) || !b64.iter().all(alphabet) {
        return Some("the text between BEGIN and END is not base64".into());
    }
    None
}

fn check_inline_jwks(at: &str, jwks: &serde_json::Value, issues: &mut Issues) {
    let Some(keys) = jwks.get("keys").and_then(|k| k.as_array()) else {
        issues.add(at, "expected a JWKS document: {keys: [{kty, kid, …}, …]}");
        return;
    };
    for (i, k) in keys.iter().enumerate() {
        if !k.get("kty").is_some_and(|t| t.is_string()) {
            issues.add(
                format!("{at}.keys[{i}]"),
                "a JWK needs a kty (RSA, EC, OKP or oct)",
            );
        } else if k.get("kty").and_then(|t| t.as_str()) != Some("oct") && k.get("d").is_some() {
            issues.add(
                format!("{at}.keys[{i}]"),
                "holds a private key (d): give the public key only",
            );
        }
    }
}

fn check_headers(at: &str, p: &JwtPolicy, issues: &mut Issues) {
    // (header name, field that set it first)
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut header = |field: String, name: &str, issues: &mut Issues| {
        if !is_token(name) {
            issues.add(
                format!("{at}.{field}"),
                format!("{name:?} is not a valid header name"),
            );
        } else if let Some((_, first)) = seen.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            issues.add(
                format!("{at}.{field}"),
                format!("header {name:?} is already set by {first}"),
            );
        } else {
            seen.push((name.to_owned(), field));
        }
    };
    header("consumerHeader".into(), &p.consumer_header, issues);
    header("groupsHeader".into(), &p.groups_header, issues);
    for (i, c) in p.claim_headers.iter().enumerate() {
        if c.claim.trim().is_empty() {
            issues.add(format!("{at}.claimHeaders[{i}].claim"), "must not be empty");
        }
        header(format!("claimHeaders[{i}].header"), &c.header, issues);
    }
}
