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
          - {name: p, type: RateLimit}
        ",
        "t.yaml:2:21: policies[0].type: unknown variant `RateLimit`, expected one of IpAccess, RequestLimits",
    ),
];

#[test]
fn table_of_bad_policies() {
    check_table(TABLE);
}
