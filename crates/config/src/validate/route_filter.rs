//! Filter checks: the settings field named after `type` is present and the others
//! absent; each kind's settings are valid; a route's filters do not contradict each
//! other (one redirect, no redirect together with a rewrite or a direct response).

use super::Issues;
use super::syntax;
use crate::{
    DirectResponse, Filter, FilterType, HeaderModifier, HeaderValue, PathMatchType, PathModifier,
    PathModifierType, RequestRedirect, Route, UrlRewrite,
};

/// Status codes a redirect may use.
const REDIRECT_STATUSES: [u16; 5] = [301, 302, 303, 307, 308];

/// Checks every filter of route `r` at `base` (`routes[i]`).
pub(super) fn check_all(r: &Route, base: &str, issues: &mut Issues) {
    for (i, f) in r.filters.iter().enumerate() {
        let at = format!("{base}.filters[{i}]");
        check_fields(f, &at, issues);
        check_settings(f, r, &at, issues);
        check_combination(&r.filters, i, &at, issues);
    }
}

/// The settings field named after the type is required; the others are not allowed.
fn check_fields(f: &Filter, at: &str, issues: &mut Issues) {
    let present = [
        (
            FilterType::RequestHeaderModifier,
            f.request_header_modifier.is_some(),
        ),
        (
            FilterType::ResponseHeaderModifier,
            f.response_header_modifier.is_some(),
        ),
        (FilterType::RequestRedirect, f.request_redirect.is_some()),
        (FilterType::URLRewrite, f.url_rewrite.is_some()),
        (FilterType::DirectResponse, f.direct_response.is_some()),
    ];
    for (kind, is_some) in present {
        if kind == f.kind && !is_some {
            issues.add(
                format!("{at}.{}", kind.field()),
                format!("required when type is {:?}", f.kind),
            );
        } else if kind != f.kind && is_some {
            issues.add(
                format!("{at}.{}", kind.field()),
                format!(
                    "not allowed when type is {:?} (only {} applies)",
                    f.kind,
                    f.kind.field()
                ),
            );
        }
    }
}

fn check_settings(f: &Filter, r: &Route, at: &str, issues: &mut Issues) {
    let at = format!("{at}.{}", f.kind.field());
    match f.kind {
        FilterType::RequestHeaderModifier => f
            .request_header_modifier
            .iter()
            .for_each(|m| header_mod(m, &at, issues)),
        FilterType::ResponseHeaderModifier => f
            .response_header_modifier
            .iter()
            .for_each(|m| header_mod(m, &at, issues)),
        FilterType::RequestRedirect => f
            .request_redirect
            .iter()
            .for_each(|rr| redirect(rr, r, &at, issues)),
        FilterType::URLRewrite => f
            .url_rewrite
            .iter()
            .for_each(|u| rewrite(u, r, &at, issues)),
        FilterType::DirectResponse => f
            .direct_response
            .iter()
            .for_each(|d| direct(d, &at, issues)),
    }
}

/// One redirect per route; a redirect answers the request, so it cannot be combined
/// with a rewrite or a direct response.
fn check_combination(filters: &[Filter], i: usize, at: &str, issues: &mut Issues) {
    use FilterType::{DirectResponse, RequestRedirect, URLRewrite};
    let kind = filters[i].kind;
    let earlier = |k: FilterType| filters[..i].iter().position(|f| f.kind == k);
    if matches!(kind, RequestRedirect | URLRewrite | DirectResponse)
        && let Some(first) = earlier(kind)
    {
        issues.add(
            format!("{at}.type"),
            format!("a route may have only one {kind:?} filter (first at filters[{first}])"),
        );
        return;
    }
    let conflicts: &[FilterType] = match kind {
        RequestRedirect => &[URLRewrite, DirectResponse],
        URLRewrite | DirectResponse => &[RequestRedirect],
        _ => &[],
    };
    for &other in conflicts {
        if let Some(first) = earlier(other) {
            issues.add(
                format!("{at}.type"),
                format!(
                    "a route may not have both {other:?} (filters[{first}]) and {kind:?}: \
                     a redirect answers the request itself"
                ),
            );
        }
    }
}

fn header_mod(m: &HeaderModifier, at: &str, issues: &mut Issues) {
    header_values(&m.set, &format!("{at}.set"), issues);
    header_values(&m.add, &format!("{at}.add"), issues);
    for (k, name) in m.remove.iter().enumerate() {
        if let Some(msg) = syntax::header_name(name) {
            issues.add(format!("{at}.remove[{k}]"), msg);
        }
    }
}

fn header_values(list: &[HeaderValue], at: &str, issues: &mut Issues) {
    for (k, h) in list.iter().enumerate() {
        if let Some(msg) = syntax::header_name(&h.name) {
            issues.add(format!("{at}[{k}].name"), msg);
        }
        if let Some(msg) = syntax::header_value(&h.value) {
            issues.add(format!("{at}[{k}].value"), msg);
        }
    }
}

fn redirect(rr: &RequestRedirect, r: &Route, at: &str, issues: &mut Issues) {
    if let Some(s) = &rr.scheme
        && s != "http"
        && s != "https"
    {
        issues.add(
            format!("{at}.scheme"),
            format!("unsupported scheme {s:?}: expected http or https"),
        );
    }
    if let Some(msg) = rr.hostname.as_deref().and_then(syntax::plain_hostname) {
        issues.add(format!("{at}.hostname"), msg);
    }
    if rr.port == Some(0) {
        issues.add(format!("{at}.port"), "must be 1-65535 (got 0)");
    }
    if let Some(p) = &rr.path {
        path_modifier(p, r, &format!("{at}.path"), issues);
    }
    if !REDIRECT_STATUSES.contains(&rr.status_code) {
        issues.add(
            format!("{at}.statusCode"),
            format!(
                "unsupported redirect status {}: expected 301, 302, 303, 307 or 308",
                rr.status_code
            ),
        );
    }
}

fn rewrite(u: &UrlRewrite, r: &Route, at: &str, issues: &mut Issues) {
    if let Some(msg) = u.hostname.as_deref().and_then(syntax::plain_hostname) {
        issues.add(format!("{at}.hostname"), msg);
    }
    if let Some(p) = &u.path {
        path_modifier(p, r, &format!("{at}.path"), issues);
    }
}

fn direct(d: &DirectResponse, at: &str, issues: &mut Issues) {
    if !(200..=599).contains(&d.status) {
        issues.add(
            format!("{at}.status"),
            format!("must be 200-599 (got {})", d.status),
        );
    }
    header_values(&d.headers, &format!("{at}.headers"), issues);
}

/// The field matching the type is required, the other not allowed; the value is a
/// path; `ReplacePrefixMatch` needs the route's matches to be path prefixes.
fn path_modifier(p: &PathModifier, r: &Route, at: &str, issues: &mut Issues) {
    let (wanted, unwanted, wanted_field, unwanted_field) = match p.kind {
        PathModifierType::ReplaceFullPath => (
            &p.replace_full_path,
            &p.replace_prefix_match,
            "replaceFullPath",
            "replacePrefixMatch",
        ),
        PathModifierType::ReplacePrefixMatch => (
            &p.replace_prefix_match,
            &p.replace_full_path,
            "replacePrefixMatch",
            "replaceFullPath",
        ),
    };
    match wanted {
        None => issues.add(
            format!("{at}.{wanted_field}"),
            format!("required when type is {:?}", p.kind),
        ),
        Some(v) => {
            if let Some(msg) = syntax::path(v) {
                issues.add(format!("{at}.{wanted_field}"), msg);
            }
        }
    }
    if unwanted.is_some() {
        issues.add(
            format!("{at}.{unwanted_field}"),
            format!(
                "not allowed when type is {:?} (only {wanted_field} applies)",
                p.kind
            ),
        );
    }
    if p.kind == PathModifierType::ReplacePrefixMatch {
        let offending: Vec<String> = (r.matches.iter().enumerate())
            .filter_map(|(j, m)| {
                m.path
                    .as_ref()
                    .filter(|pm| pm.kind != PathMatchType::PathPrefix)
                    .map(|pm| (j, pm))
            })
            .map(|(j, pm)| format!("matches[{j}] uses {:?}", pm.kind))
            .collect();
        if !offending.is_empty() {
            issues.add(
                format!("{at}.type"),
                format!(
                    "ReplacePrefixMatch needs every match of the route to use a PathPrefix path (or none), but {}",
                    offending.join(", ")
                ),
            );
        }
    }
}
