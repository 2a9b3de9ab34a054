//! Bad `BasicAuth` policies and consumer Basic credentials, and the exact errors
//! they produce: plain passwords and unknown hash forms refused, user names unique
//! and free of `:`, realm and header names checked.

mod common;

use common::check_table;

const ARGON: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$cA0bNL5Fv1HRDe8w0BXkIhHKRKpFdCqxJZ5pLLxJg4A";

const TABLE: &[(&str, &str)] = &[
    (
        "
        consumers:
          - {name: alice, basicAuth: {passwordHash: hunter2}}
          - {name: bob, basicAuth: {username: \"\", passwordHash: \"$2b$12$short\"}}
          - {name: carol, basicAuth: {username: \"c:d\", passwordHash: \"$argon2id$v=19$m=19456,t=2$c2FsdA$aGFzaA\"}}
        ",
        "t.yaml:2:45: consumers[0].basicAuth.passwordHash: expected an argon2 hash ($argon2id$v=19$m=…) or a bcrypt hash ($2b$…), as printed by `meshgate keys password` (never the password itself)\n\
         t.yaml:3:39: consumers[1].basicAuth.username: must not be empty\n\
         t.yaml:3:57: consumers[1].basicAuth.passwordHash: expected an argon2 hash ($argon2id$v=19$m=…) or a bcrypt hash ($2b$…), as printed by `meshgate keys password` (never the password itself)\n\
         t.yaml:4:41: consumers[2].basicAuth.username: \"c:d\" must not contain \":\" or control characters (RFC 7617)\n\
         t.yaml:4:62: consumers[2].basicAuth.passwordHash: expected an argon2 hash ($argon2id$v=19$m=…) or a bcrypt hash ($2b$…), as printed by `meshgate keys password` (never the password itself)",
    ),
    (
        "
        consumers:
          - {name: alice, basicAuth: {passwordHash: \"$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$cA0bNL5Fv1HRDe8w0BXkIhHKRKpFdCqxJZ5pLLxJg4A\"}}
          - {name: bob, basicAuth: {username: alice, passwordHash: \"$2y$04$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW\"}}
          - {name: \"c:d\", basicAuth: {passwordHash: \"$argon2i$m=4096,t=3,p=1$c2FsdHNhbHQ$aGFzaA\"}}
        policies:
          - {name: basic, type: BasicAuth, basicAuth: {realm: \"say \\\"hi\\\"\", consumerHeader: \"x consumer\"}}
          - {name: basic2, type: BasicAuth, basicAuth: {realm: \"\", groupsHeader: \"\"}}
        ",
        "t.yaml:6:55: policies[0].basicAuth.realm: \"say \\\"hi\\\"\" must not contain quotes, backslashes or control characters (it is sent in a quoted WWW-Authenticate parameter)\n\
         t.yaml:6:85: policies[0].basicAuth.consumerHeader: invalid header name \"x consumer\": expected a token of letters, digits and !#$%&'*+-.^_`|~ (RFC 9110)\n\
         t.yaml:3:39: consumers[1].basicAuth.username: duplicate Basic user name \"alice\" (first at consumers[0])\n\
         t.yaml:4:12: consumers[2].name: \"c:d\" contains \":\" so it cannot be a Basic user name; set basicAuth.username\n\
         t.yaml:7:56: policies[1].basicAuth.realm: must not be empty\n\
         t.yaml:7:74: policies[1].basicAuth.groupsHeader: invalid header name \"\": expected a token of letters, digits and !#$%&'*+-.^_`|~ (RFC 9110)",
    ),
    (
        "
        consumers:
          - {name: alice, basicAuth: {password: hunter2}}
        ",
        "t.yaml:2:31: consumers[0].basicAuth.password: unknown field `password`, expected one of username, passwordHash",
    ),
    (
        "
        consumers:
          - {name: alice, basicAuth: {}}
        ",
        "t.yaml:2:30: consumers[0].basicAuth: missing field `passwordHash`",
    ),
    (
        "
        policies:
          - {name: basic, type: BasicAuth, basicAuth: {cacheTtl: 5, stripCredentials: false}}
        ",
        "t.yaml:2:58: policies[0].basicAuth.cacheTtl: invalid duration 5: a unit is required (ms, s, m, h), e.g. 5ms or 5s",
    ),
];

#[test]
fn table_of_bad_basic_auth() {
    check_table(TABLE);
}

/// Accepted: argon2 and every bcrypt prefix, user names defaulting to consumer
/// names, several BasicAuth policies sharing consumers.
#[test]
fn valid_basic_auth() {
    let yaml = format!(
        "consumers:
  - {{name: alice, groups: [ops], basicAuth: {{passwordHash: \"{ARGON}\"}}}}
  - {{name: bob, basicAuth: {{username: bob@example.com, passwordHash: \"$2b$10$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW\"}}}}
  - {{name: carol, basicAuth: {{passwordHash: \"$2a$04$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW\"}}}}
policies:
  - {{name: basic, type: BasicAuth, basicAuth: {{}}}}
  - {{name: admin-basic, type: BasicAuth, basicAuth: {{realm: admin area, stripCredential: false, cacheTtl: 0s}}}}
"
    );
    let c = meshgate_config::parse_str(&yaml, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    let p = c.policies[0].basic_auth.as_ref().unwrap();
    assert_eq!(p.realm, "meshgate");
    assert_eq!(
        (p.consumer_header.as_str(), p.groups_header.as_str()),
        ("x-consumer", "x-consumer-groups")
    );
    assert!(p.strip_credential);
    assert_eq!(p.cache_ttl.get(), std::time::Duration::from_secs(300));
    assert_eq!(
        c.consumers[1]
            .basic_auth
            .as_ref()
            .unwrap()
            .username
            .as_deref(),
        Some("bob@example.com")
    );
}
