//! Bad `Cors` policies and the exact errors they produce: origins with paths or
//! misplaced wildcards, `*` with credentials (forbidden by the Fetch standard),
//! regexes, methods and header names.

mod common;

use common::check_table;

const TABLE: &[(&str, &str)] = &[
    (
        "
        policies:
          - {name: c, type: Cors, cors: {}}
        ",
        "t.yaml:2:33: policies[0].cors.allowOrigins: set allowOrigins, allowOriginRegex or both (no origin would be allowed)",
    ),
    (
        "
        policies:
          - name: c
            type: Cors
            cors:
              allowOrigins: [\"https://app.example.com/\", app.example.com, \"https://app.*.com\", \"http://localhost:99999\", \"*\"]
              allowOriginRegex: [\"https://(\"]
              allowMethods: [get, \"*\", PUT]
              allowHeaders: [\"x token\", \"*\"]
              exposeHeaders: [\"*\", \"x:y\"]
              allowCredentials: true
        ",
        "t.yaml:5:22: policies[0].cors.allowOrigins[0]: \"https://app.example.com/\" is not an origin: an origin has no path (write \"https://app.example.com\")\n\
         t.yaml:5:50: policies[0].cors.allowOrigins[1]: \"app.example.com\" is not an origin: expected scheme://host[:port] such as https://app.example.com, a wildcard such as https://*.example.com, or *\n\
         t.yaml:5:67: policies[0].cors.allowOrigins[2]: \"https://app.*.com\": a wildcard is only allowed as the first label (https://*.example.com)\n\
         t.yaml:5:88: policies[0].cors.allowOrigins[3]: \"http://localhost:99999\" is not an origin: bad port \"99999\"\n\
         t.yaml:5:114: policies[0].cors.allowOrigins[4]: \"*\" cannot be used with allowCredentials (the Fetch standard forbids it); list the origins\n\
         t.yaml:6:26: policies[0].cors.allowOriginRegex[0]: invalid regular expression \"https://(\": unclosed group\n\
         t.yaml:7:22: policies[0].cors.allowMethods[0]: invalid method \"get\": expected an uppercase token such as GET, POST or PURGE\n\
         t.yaml:8:22: policies[0].cors.allowHeaders[0]: invalid header name \"x token\": expected a token of letters, digits and !#$%&'*+-.^_`|~ (RFC 9110)\n\
         t.yaml:9:23: policies[0].cors.exposeHeaders[0]: \"*\" means every header only without allowCredentials; list the headers\n\
         t.yaml:9:28: policies[0].cors.exposeHeaders[1]: invalid header name \"x:y\": expected a token of letters, digits and !#$%&'*+-.^_`|~ (RFC 9110)",
    ),
    (
        "
        policies:
          - {name: c, type: Cors, cors: {allowOrigins: [\"*\"], maxAge: 600}}
        ",
        "t.yaml:2:63: policies[0].cors.maxAge: invalid duration 600: a unit is required (ms, s, m, h), e.g. 600ms or 600s",
    ),
    (
        "
        policies:
          - {name: c, type: Cors, cors: {allowOrigin: [\"*\"]}}
        ",
        "t.yaml:2:34: policies[0].cors.allowOrigin: unknown field `allowOrigin`, expected one of allowOrigins, allowOriginRegex, allowMethods, allowHeaders, exposeHeaders, allowCredentials, maxAge",
    ),
];

#[test]
fn table_of_bad_cors() {
    check_table(TABLE);
}

/// Accepted: every origin form, regexes, defaults.
#[test]
fn valid_cors() {
    let c = meshgate_config::parse_str(
        "policies:
  - name: c
    type: Cors
    cors:
      allowOrigins: [\"https://app.example.com\", \"https://*.example.com\", \"http://localhost:3000\", \"http://[::1]:8080\"]
      allowOriginRegex: [\"https://pr-[0-9]+\\\\.preview\\\\.example\\\\.com\"]
      allowHeaders: [authorization, content-type]
      exposeHeaders: [x-request-id]
      allowCredentials: true
      maxAge: 10m
  - {name: open, type: Cors, cors: {allowOrigins: [\"*\"], allowMethods: [\"*\"], allowHeaders: [\"*\"], exposeHeaders: [\"*\"]}}
",
        "t.yaml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cors = c.policies[0].cors.as_ref().unwrap();
    assert_eq!(cors.allow_methods, ["GET", "HEAD", "POST"], "the default");
    assert_eq!(cors.max_age.unwrap().get().as_secs(), 600);
    assert_eq!(
        cors.allow_origin_regex,
        ["https://pr-[0-9]+\\.preview\\.example\\.com"]
    );
}
