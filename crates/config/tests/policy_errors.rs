//! Bad `policies:` and policy references, and the exact errors they produce.

#[macro_use]
mod common;

use common::check_table;

const TABLE: &[(&str, &str)] = &[
    (
        "
        policies:
          - {name: p, type: IpAccess}
        ",
        "t.yaml:2:5: policies[0].ipAccess: required when type is IpAccess",
    ),
    (
        "
        policies:
          - {name: p, type: IpAccess, ipAccess: {allow: [10.0.0.0/33, nope]}, requestLimits: {maxUriBytes: 10}}
        ",
        "t.yaml:2:86: policies[0].requestLimits: not allowed when type is IpAccess\n\
         t.yaml:2:50: policies[0].ipAccess.allow[0]: \"10.0.0.0/33\" is not a CIDR (10.0.0.0/8, 2001:db8::/32) or an IP address\n\
         t.yaml:2:63: policies[0].ipAccess.allow[1]: \"nope\" is not a CIDR (10.0.0.0/8, 2001:db8::/32) or an IP address",
    ),
    (
        "
        policies:
          - {name: p, type: RequestLimits, requestLimits: {}}
          - {name: p, type: RequestLimits, requestLimits: {maxBodyBytes: 0}}
        ",
        "t.yaml:2:51: policies[0].requestLimits: set at least one of maxUriBytes, maxHeaderBytes, maxBodyBytes\n\
         t.yaml:3:12: policies[1].name: duplicate policy name \"p\" (first at policies[0])\n\
         t.yaml:3:66: policies[1].requestLimits.maxBodyBytes: must be at least 1",
    ),
    (
        "
        listeners: [{name: l, address: \"127.0.0.1:0\", policies: [nobody]}]
        routes: [{name: r, policies: [ghost], filters: [{type: DirectResponse, directResponse: {status: 200}}]}]
        ",
        "t.yaml:1:58: listeners[0].policies[0]: unknown policy \"nobody\"\n\
         t.yaml:2:31: routes[0].policies[0]: unknown policy \"ghost\"",
    ),
    (
        "
        policies:
          - {name: p, type: RateLimits}
        ",
        "t.yaml:2:21: policies[0].type: unknown variant `RateLimits`, expected one of ApiKey, IpAccess, RequestLimits, BasicAuth, Jwt, Oidc, ExtAuthz, Authorize, RateLimit, Cors, ClientCert",
    ),
    (
        "
        consumers:
          - {name: a, apiKeys: [mgk_plaintextkey]}
          - {name: a, apiKeys: [\"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\", \"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"]}
        policies:
          - {name: k, type: ApiKey, apiKey: {header: \"bad header\", queryParam: \"\"}}
        ",
        "t.yaml:5:46: policies[0].apiKey.header: \"bad header\" is not a valid header name\n\
         t.yaml:5:72: policies[0].apiKey.queryParam: must not be empty\n\
         t.yaml:2:25: consumers[0].apiKeys[0]: expected sha256:<64 hex digits>, the hash printed by `meshgate keys generate` (never the key itself)\n\
         t.yaml:3:12: consumers[1].name: duplicate consumer name \"a\" (first at consumers[0])\n\
         t.yaml:3:100: consumers[1].apiKeys[1]: the same key hash is already used at consumers[1].apiKeys[0]",
    ),
];

#[test]
fn table_of_bad_policies() {
    check_table(TABLE);
}
