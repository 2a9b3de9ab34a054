//! Bad `Oidc` settings and the exact errors they produce.

#[macro_use]
mod common;

use common::check_table;

const TABLE: &[(&str, &str)] = &[
    (
        "
        policies:
          - {name: o, type: Oidc, oidc: {issuer: \"http://idp\"}}
        ",
        "t.yaml:2:34: policies[0].oidc: missing field `clientId`",
    ),
    (
        "
        policies:
          - {name: o, type: Oidc, oidc: {issuer: \"https://idp.example.com\", clientId: app}}
        ",
        "t.yaml:2:42: policies[0].oidc.issuer: \"https://idp.example.com\": https:// is not supported yet (the gateway's TLS client comes with issue 5); use http://\n\
         t.yaml:2:33: policies[0].oidc: set cookieSecretEnv (or cookieSecret): the key material of the session cookie",
    ),
    (
        "
        policies:
          - name: o
            type: Oidc
            oidc:
              issuer: idp.example.com
              clientId: \" \"
              clientSecretEnv: \"\"
              clientSecret: inline
              redirectPath: oauth2/callback
              logoutPath: oauth2/callback
              logoutRedirect: \"//evil.example\"
              scopes: [profile, \"e mail\"]
              cookieName: \"my session\"
              sessionTtl: 0s
              cookieSecret: too-short
              consumerClaim: \"\"
              consumerHeader: \"x consumer\"
              timeout: 0ms
        ",
        "t.yaml:5:15: policies[0].oidc.issuer: \"idp.example.com\" is not an http://host[:port][/path] URL\n\
         t.yaml:6:17: policies[0].oidc.clientId: must not be empty\n\
         t.yaml:7:24: policies[0].oidc.clientSecretEnv: must not be empty\n\
         t.yaml:8:21: policies[0].oidc.clientSecret: set clientSecretEnv or clientSecret, not both\n\
         t.yaml:9:21: policies[0].oidc.redirectPath: \"oauth2/callback\" is not a path (starting with /, without query)\n\
         t.yaml:10:19: policies[0].oidc.logoutPath: \"oauth2/callback\" is not a path (starting with /, without query)\n\
         t.yaml:10:19: policies[0].oidc.logoutPath: must differ from redirectPath\n\
         t.yaml:11:23: policies[0].oidc.logoutRedirect: \"//evil.example\" is neither a path (/…) nor an http(s):// URL\n\
         t.yaml:12:15: policies[0].oidc.scopes: must include openid\n\
         t.yaml:12:25: policies[0].oidc.scopes[1]: \"e mail\" is not a scope (visible characters, no spaces)\n\
         t.yaml:13:19: policies[0].oidc.cookieName: \"my session\" is not a valid cookie name\n\
         t.yaml:14:19: policies[0].oidc.sessionTtl: must be more than 0s\n\
         t.yaml:15:21: policies[0].oidc.cookieSecret: must be at least 32 bytes (got 9); e.g. `openssl rand -base64 32`\n\
         t.yaml:16:22: policies[0].oidc.consumerClaim: must not be empty\n\
         t.yaml:17:23: policies[0].oidc.consumerHeader: \"x consumer\" is not a valid header name\n\
         t.yaml:18:16: policies[0].oidc.timeout: must be more than 0s",
    ),
    (
        "
        policies:
          - {name: o, type: Oidc, oidc: {issuer: \"http://idp\", clientId: app, cookieSecretEnv: K, cookieSecret: \"0123456789abcdef0123456789abcdef\"}}
        ",
        "t.yaml:2:105: policies[0].oidc.cookieSecret: set cookieSecretEnv or cookieSecret, not both",
    ),
    (
        "
        policies:
          - {name: o, type: Oidc, oidc: {issuer: \"http://idp\", clientId: app, cookieSecretEnv: K, clientAuth: jwt}}
        ",
        "t.yaml:2:103: policies[0].oidc.clientAuth: unknown variant `jwt`, expected one of basic, post",
    ),
    (
        "
        policies:
          - {name: o, type: Oidc, oidc: {issuer: \"http://idp\", clientId: app, cookieSecretEnv: K, sessionTtl: 8}}
        ",
        "t.yaml:2:103: policies[0].oidc.sessionTtl: invalid duration 8: a unit is required (ms, s, m, h), e.g. 8ms or 8s",
    ),
];

#[test]
fn oidc_errors() {
    check_table(TABLE);
}
