//! Bad filters and the exact errors they produce: the settings field named after
//! `type`, header modifiers, redirects, rewrites and path modifiers, direct
//! responses, and filters that cannot be combined on one route.

#[macro_use]
mod common;

use common::check_table;

/// (document, expected errors), one line per error.
const TABLE: &[(&str, &str)] = &[
    (
        with_s!(
            "
        routes:
          - name: r
            filters:
              - type: RequestHeaderModifier
                requestHeaderModifier: {set: [{name: x-a, value: \"1\"}]}
              - type: RequestRedirect
            backendRefs: [{name: s}]
        "
        ),
        "t.yaml:6:9: routes[0].filters[1].requestRedirect: required when type is RequestRedirect",
    ),
    (
        with_s!(
            "
        routes:
          - name: r
            filters:
              - type: RequestHeaderModifier
                requestHeaderModifier: {remove: [x-a]}
                responseHeaderModifier: {remove: [x-b]}
            backendRefs: [{name: s}]
        "
        ),
        "t.yaml:6:33: routes[0].filters[0].responseHeaderModifier: not allowed when type is RequestHeaderModifier (only requestHeaderModifier applies)",
    ),
    (
        "
        routes:
          - name: r
            filters:
              - type: RequestRedirect
                requestRedirect: {scheme: ftp, statusCode: 200}
        ",
        "t.yaml:5:35: routes[0].filters[0].requestRedirect.scheme: unsupported scheme \"ftp\": expected http or https\n\
         t.yaml:5:52: routes[0].filters[0].requestRedirect.statusCode: unsupported redirect status 200: expected 301, 302, 303, 307 or 308",
    ),
    (
        with_s!(
            "
        routes:
          - name: r
            filters:
              - type: URLRewrite
                urlRewrite:
                  path: {type: ReplaceFullPath, replacePrefixMatch: /v2}
            backendRefs: [{name: s}]
        "
        ),
        "t.yaml:6:17: routes[0].filters[0].urlRewrite.path.replaceFullPath: required when type is ReplaceFullPath\n\
         t.yaml:6:61: routes[0].filters[0].urlRewrite.path.replacePrefixMatch: not allowed when type is ReplaceFullPath (only replaceFullPath applies)",
    ),
    (
        with_s!(
            "
        routes:
          - name: r
            matches:
              - path: {type: PathPrefix, value: /api}
              - path: {type: Exact, value: /health}
            filters:
              - type: URLRewrite
                urlRewrite:
                  path: {type: ReplacePrefixMatch, replacePrefixMatch: /}
            backendRefs: [{name: s}]
        "
        ),
        "t.yaml:9:24: routes[0].filters[0].urlRewrite.path.type: ReplacePrefixMatch needs every match of the route to use a PathPrefix path (or none), but matches[1] uses Exact",
    ),
    (
        with_s!(
            "
        routes:
          - name: r
            filters:
              - {type: URLRewrite, urlRewrite: {hostname: internal.example}}
              - {type: RequestRedirect, requestRedirect: {scheme: https}}
            backendRefs: [{name: s}]
        "
        ),
        "t.yaml:5:16: routes[0].filters[1].type: a route may not have both URLRewrite (filters[0]) and RequestRedirect: a redirect answers the request itself",
    ),
    (
        "
        routes:
          - name: r
            filters:
              - type: DirectResponse
                directResponse:
                  status: 700
                  headers: [{name: \"content type\", value: text/plain}]
        ",
        "t.yaml:6:19: routes[0].filters[0].directResponse.status: must be 200-599 (got 700)\n\
         t.yaml:7:28: routes[0].filters[0].directResponse.headers[0].name: invalid header name \"content type\": expected a token of letters, digits and !#$%&'*+-.^_`|~ (RFC 9110)",
    ),
    (
        "
        routes:
          - name: r
            filters:
              - type: RequestRedirect
                requestRedirect: {hostname: \"*.example.com\", port: 0, path: {type: ReplaceFullPath, replaceFullPath: v2}}
              - type: DirectResponse
                directResponse: {status: 503}
              - type: RequestRedirect
                requestRedirect: {scheme: https}
        ",
        "t.yaml:5:37: routes[0].filters[0].requestRedirect.hostname: invalid hostname \"*.example.com\": a wildcard is not allowed here; expected a DNS name such as api.example.com\n\
         t.yaml:5:60: routes[0].filters[0].requestRedirect.port: must be 1-65535 (got 0)\n\
         t.yaml:5:110: routes[0].filters[0].requestRedirect.path.replaceFullPath: invalid path \"v2\": must start with \"/\"\n\
         t.yaml:6:15: routes[0].filters[1].type: a route may not have both RequestRedirect (filters[0]) and DirectResponse: a redirect answers the request itself\n\
         t.yaml:8:15: routes[0].filters[2].type: a route may have only one RequestRedirect filter (first at filters[0])",
    ),
    (
        with_s!(
            "
        routes:
          - name: r
            filters:
              - type: ResponseHeaderModifier
                responseHeaderModifier:
                  set: [{name: x-ok, value: \"a\\r\\nb\"}]
                  add: [{name: \"x(bad)\", value: v}]
                  remove: [\"\"]
            backendRefs: [{name: s}]
        "
        ),
        "t.yaml:6:37: routes[0].filters[0].responseHeaderModifier.set[0].value: invalid header value: must not contain CR, LF or NUL characters\n\
         t.yaml:7:24: routes[0].filters[0].responseHeaderModifier.add[0].name: invalid header name \"x(bad)\": expected a token of letters, digits and !#$%&'*+-.^_`|~ (RFC 9110)\n\
         t.yaml:8:20: routes[0].filters[0].responseHeaderModifier.remove[0]: invalid header name \"\": expected a token of letters, digits and !#$%&'*+-.^_`|~ (RFC 9110)",
    ),
];

#[test]
fn table_of_bad_filters() {
    check_table(TABLE);
}
