//! Bad `Authorize` policies and the exact errors they produce: no rules, empty
//! rules, method and path syntax, claim conditions without a place or a test or
//! with several.

mod common;

use common::check_table;

const TABLE: &[(&str, &str)] = &[
    (
        "
        policies:
          - {name: a, type: Authorize, authorize: {rules: []}}
          - {name: b, type: Authorize, authorize: {}}
        ",
        "t.yaml:2:51: policies[0].authorize.rules: set at least one rule (without rules every request is refused)\n\
         t.yaml:3:43: policies[1].authorize.rules: set at least one rule (without rules every request is refused)",
    ),
    (
        "
        policies:
          - {name: a, type: Authorize, authorize: {rule: []}}
        ",
        "t.yaml:2:44: policies[0].authorize.rule: unknown field `rule`, expected one of rules",
    ),
    (
        "
        policies:
          - name: a
            type: Authorize
            authorize:
              rules:
                - {}
                - {consumers: [\"\"], groups: [\"\"], methods: [get, \"PO ST\"]}
                - paths: [{value: orders}, {type: RegularExpression, value: \"/(\"}, {type: Exact, value: \"/a?b\"}]
        ",
        "t.yaml:6:11: policies[0].authorize.rules[0]: set at least one of consumers, groups, methods, paths, claims (an empty rule would allow every request)\n\
         t.yaml:7:24: policies[0].authorize.rules[1].consumers[0]: must not be empty\n\
         t.yaml:7:38: policies[0].authorize.rules[1].groups[0]: must not be empty\n\
         t.yaml:7:53: policies[0].authorize.rules[1].methods[0]: invalid method \"get\": expected an uppercase token such as GET, POST or PURGE\n\
         t.yaml:7:58: policies[0].authorize.rules[1].methods[1]: invalid method \"PO ST\": expected an uppercase token such as GET, POST or PURGE\n\
         t.yaml:8:27: policies[0].authorize.rules[2].paths[0].value: invalid path \"orders\": must start with \"/\"\n\
         t.yaml:8:69: policies[0].authorize.rules[2].paths[1].value: invalid regular expression \"/(\": unclosed group\n\
         t.yaml:8:97: policies[0].authorize.rules[2].paths[2].value: invalid path \"/a?b\": must not contain \"?\", \"#\" or whitespace (match query strings with queryParams)",
    ),
    (
        "
        policies:
          - name: a
            type: Authorize
            authorize:
              rules:
                - claims:
                    - {equals: x}
                    - {claim: a..b, claimPath: [x], present: true}
                    - {claim: .a, contains: x, equals: y}
                    - {claimPath: [], anyOf: []}
                    - {claimPath: [a, \"\"], present: true, contains: x, anyOf: [y]}
                    - {claim: scope}
        ",
        "t.yaml:7:15: policies[0].authorize.rules[0].claims[0]: set claim (a dot path such as realm_access.roles) or claimPath (a list of keys)\n\
         t.yaml:8:40: policies[0].authorize.rules[0].claims[1].claimPath: set claim or claimPath, not both\n\
         t.yaml:9:23: policies[0].authorize.rules[0].claims[2].claim: \".a\" has an empty segment; for keys that contain dots use claimPath\n\
         t.yaml:9:15: policies[0].authorize.rules[0].claims[2]: set only one of equals, contains, anyOf, present (got equals, contains)\n\
         t.yaml:10:27: policies[0].authorize.rules[0].claims[3].claimPath: must not be empty\n\
         t.yaml:10:38: policies[0].authorize.rules[0].claims[3].anyOf: must not be empty\n\
         t.yaml:11:31: policies[0].authorize.rules[0].claims[4].claimPath[1]: must not be empty\n\
         t.yaml:11:15: policies[0].authorize.rules[0].claims[4]: set only one of equals, contains, anyOf, present (got contains, anyOf, present)\n\
         t.yaml:12:15: policies[0].authorize.rules[0].claims[5]: set one of equals, contains, anyOf, present",
    ),
    (
        "
        policies:
          - {name: a, type: Authorize, authorize: {rules: [{claims: [{claim: roles, equals: [a, b]}]}]}}
        ",
        "t.yaml:2:77: policies[0].authorize.rules[0].claims[0].equals: invalid type: sequence, expected a string, number or boolean",
    ),
    (
        "
        policies:
          - {name: a, type: Authorize, authorize: {rules: [{group: [admins]}]}}
        ",
        "t.yaml:2:53: policies[0].authorize.rules[0].group: unknown field `group`, expected one of consumers, groups, methods, paths, claims",
    ),
];

#[test]
fn table_of_bad_authorize() {
    check_table(TABLE);
}

/// Accepted: every condition kind, claim values of each scalar type.
#[test]
fn valid_authorize() {
    let c = meshgate_config::parse_str(
        "policies:
  - name: a
    type: Authorize
    authorize:
      rules:
        - {consumers: [alice], groups: [admins], methods: [GET, PURGE], paths: [{value: /a}, {type: Exact, value: /b}, {type: RegularExpression, value: \"/c/[0-9]+\"}]}
        - claims:
            - {claim: scope, contains: \"orders:write\"}
            - {claimPath: [\"https://example.com/roles\"], anyOf: [admin, 7, true]}
            - {claim: tenant, equals: 42}
            - {claim: email_verified, equals: true}
            - {claim: sub, present: true}
",
        "t.yaml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    use meshgate_config::ClaimValue as V;
    let rules = &c.policies[0].authorize.as_ref().unwrap().rules;
    let claims = &rules[1].claims;
    assert_eq!(claims[0].contains, Some(V::String("orders:write".into())));
    assert_eq!(
        claims[1].any_of,
        Some(vec![
            V::String("admin".into()),
            V::Number(7.0),
            V::Bool(true)
        ])
    );
    assert_eq!(claims[1].keys(), ["https://example.com/roles"]);
    assert_eq!(claims[2].equals, Some(V::Number(42.0)));
    assert_eq!(claims[3].equals, Some(V::Bool(true)));
    assert_eq!(rules[0].paths.len(), 3);
}
