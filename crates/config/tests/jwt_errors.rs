//! Bad `Jwt` policies and the exact errors they produce: token locations, algorithm
//! lists that could allow key confusion, keys that do not fit, JWKS settings, headers.

#[macro_use]
mod common;

use common::check_table;

const TABLE: &[(&str, &str)] = &[
    (
        "
        policies:
          - {name: j, type: Jwt, jwt: {}}
        ",
        "t.yaml:2:31: policies[0].jwt.algorithms: list the accepted algorithms, e.g. [RS256]\n\
         t.yaml:2:31: policies[0].jwt: set keys, jwks or jwksUrl: there is nothing to verify tokens with",
    ),
    (
        "
        policies:
          - {name: j, type: Jwt, jwt: {algorithms: [none], jwksUrl: \"http://idp/jwks\"}}
        ",
        "t.yaml:2:45: policies[0].jwt.algorithms[0]: unknown variant `none`, expected one of HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA",
    ),
    (
        "
        policies:
          - name: j
            type: Jwt
            jwt:
              algorithms: [HS256, RS256, ES256]
              keys:
                - {kid: a, secret: short}
                - {kid: a, secretEnv: JWT_SECRET, publicKeyPem: x}
                - {}
        ",
        "t.yaml:5:19: policies[0].jwt.algorithms: HMAC (HS256) cannot be mixed with public-key algorithms (RS256, ES256): a public key could then be used as an HMAC secret; use two policies\n\
         t.yaml:7:28: policies[0].jwt.keys[0].secret: 5 bytes is too short: HMAC secrets need at least 32\n\
         t.yaml:8:11: policies[0].jwt.keys[1]: set exactly one of secretEnv, secret, publicKeyPem\n\
         t.yaml:8:57: policies[0].jwt.keys[1].publicKeyPem: not a PEM block (expected -----BEGIN PUBLIC KEY-----)\n\
         t.yaml:8:17: policies[0].jwt.keys[1].kid: duplicate kid \"a\" (first at keys[0])\n\
         t.yaml:9:11: policies[0].jwt.keys[2]: set exactly one of secretEnv, secret, publicKeyPem",
    ),
    (
        "
        policies:
          - name: j
            type: Jwt
            jwt:
              algorithms: [RS256]
              keys:
                - {secretEnv: JWT_SECRET}
                - {publicKeyPem: \"-----BEGIN PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE KEY-----\"}
                - {publicKeyPem: \"-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\"}
                - {publicKeyPem: \"-----BEGIN PUBLIC KEY-----\\nnot base64!\\n-----END PUBLIC KEY-----\"}
                - {publicKeyPem: \"-----BEGIN PUBLIC KEY-----\\nAAAA\\n\"}
                - {publicKeyPem: \"just text\"}
        ",
        "t.yaml:7:23: policies[0].jwt.keys[0].secretEnv: an HMAC secret needs HS256, HS384 or HS512 in algorithms\n\
         t.yaml:8:26: policies[0].jwt.keys[1].publicKeyPem: is a PRIVATE KEY: give the public key (private keys never belong in the config)\n\
         t.yaml:9:26: policies[0].jwt.keys[2].publicKeyPem: unsupported PEM block \"CERTIFICATE\": expected PUBLIC KEY or RSA PUBLIC KEY\n\
         t.yaml:10:26: policies[0].jwt.keys[3].publicKeyPem: the text between BEGIN and END is not base64\n\
         t.yaml:11:26: policies[0].jwt.keys[4].publicKeyPem: missing -----END PUBLIC KEY-----\n\
         t.yaml:12:26: policies[0].jwt.keys[5].publicKeyPem: not a PEM block (expected -----BEGIN PUBLIC KEY-----)",
    ),
    (
        "
        policies:
          - name: j
            type: Jwt
            jwt:
              algorithms: [HS512]
              keys: [{secretEnv: \"A=B\"}, {publicKeyPem: \"-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----\"}]
              jwks: {keys: [{kid: x}, {kty: EC, d: secret}]}
        ",
        "t.yaml:6:26: policies[0].jwt.keys[0].secretEnv: \"A=B\" is not an environment variable name\n\
         t.yaml:6:49: policies[0].jwt.keys[1].publicKeyPem: a public key needs a public-key algorithm (RS*, PS*, ES*, EdDSA) in algorithms\n\
         t.yaml:7:21: policies[0].jwt.jwks.keys[0]: a JWK needs a kty (RSA, EC, OKP or oct)\n\
         t.yaml:7:31: policies[0].jwt.jwks.keys[1]: holds a private key (d): give the public key only",
    ),
    (
        "
        policies:
          - name: j
            type: Jwt
            jwt:
              algorithms: [ES384]
              jwks: [1, 2]
              jwksUrl: https://idp.example/jwks
              jwksRefresh: 5s
              jwksTimeout: 0s
        ",
        "t.yaml:6:13: policies[0].jwt.jwks: expected a JWKS document: {keys: [{kty, kid, …}, …]}\n\
         t.yaml:7:16: policies[0].jwt.jwksUrl: \"https://idp.example/jwks\": https:// is not supported yet (the gateway has no TLS client); use http://\n\
         t.yaml:9:20: policies[0].jwt.jwksTimeout: must be longer than 0s\n\
         t.yaml:8:20: policies[0].jwt.jwksRefresh: 5s is shorter than jwksMinRefreshInterval (10s)",
    ),
    (
        "
        policies:
          - name: j
            type: Jwt
            jwt:
              algorithms: [EdDSA]
              jwksUrl: \"idp/jwks\"
              jwksMinRefreshInterval: 0s
              issuer: \"\"
              audiences: [\"\"]
              consumerClaim: \"\"
        ",
        "t.yaml:6:16: policies[0].jwt.jwksUrl: \"idp/jwks\" is not an http:// URL with a host\n\
         t.yaml:7:31: policies[0].jwt.jwksMinRefreshInterval: must be longer than 0s\n\
         t.yaml:8:15: policies[0].jwt.issuer: must not be empty\n\
         t.yaml:9:19: policies[0].jwt.audiences[0]: must not be empty\n\
         t.yaml:10:22: policies[0].jwt.consumerClaim: must not be empty",
    ),
    (
        "
        policies:
          - name: j
            type: Jwt
            jwt:
              algorithms: [PS256]
              jwksUrl: \"http://idp/jwks\"
              tokenFrom:
                - {header: authorization, cookie: session}
                - {cookie: \"a b\", prefix: \"Bearer \"}
                - {queryParam: \"\"}
                - {}
              consumerHeader: x-user
              groupsHeader: \"bad header\"
              claimHeaders:
                - {claim: email, header: X-User}
                - {claim: \"\", header: x-email}
        ",
        "t.yaml:8:11: policies[0].jwt.tokenFrom[0]: set exactly one of header, cookie, queryParam\n\
         t.yaml:9:35: policies[0].jwt.tokenFrom[1].prefix: only used with header\n\
         t.yaml:9:20: policies[0].jwt.tokenFrom[1].cookie: \"a b\" is not a valid cookie name\n\
         t.yaml:10:24: policies[0].jwt.tokenFrom[2].queryParam: must not be empty\n\
         t.yaml:11:11: policies[0].jwt.tokenFrom[3]: set exactly one of header, cookie, queryParam\n\
         t.yaml:13:21: policies[0].jwt.groupsHeader: \"bad header\" is not a valid header name\n\
         t.yaml:15:34: policies[0].jwt.claimHeaders[0].header: header \"X-User\" is already set by consumerHeader\n\
         t.yaml:16:19: policies[0].jwt.claimHeaders[1].claim: must not be empty",
    ),
    (
        "
        policies:
          - name: j
            type: Jwt
            jwt: {algorithms: [RS256], jwksUrl: \"http://idp/jwks\", tokenFrom: []}
        ",
        "t.yaml:4:71: policies[0].jwt.tokenFrom: list at least one place to read the token from",
    ),
    (
        "
        policies:
          - name: j
            type: Jwt
            jwt: {algorithms: [RS256], jwksUrl: \"http://idp/jwks\", jwksRefresh: 5}
        ",
        "t.yaml:4:73: policies[0].jwt.jwksRefresh: invalid duration 5: a unit is required (ms, s, m, h), e.g. 5ms or 5s",
    ),
];

#[test]
fn jwt_errors() {
    check_table(TABLE);
}
