//! Bad `ClientCert` policies and the exact errors they produce (allow entries that
//! say nothing or contradict themselves, subjects that are not RFC 4514, URIs
//! without a scheme, DNS suffixes not starting at a label, header names), and the
//! warnings for a `ClientCert` policy on a listener that asks for no certificate.

mod common;

use common::{check_table, dedent};

const TABLE: &[(&str, &str)] = &[
    (
        "
        policies:
          - name: m
            type: ClientCert
            clientCert:
              allow:
                - {}
                - {uri: \"spiffe://a/b\", uriPrefix: \"spiffe://a/\"}
                - {dns: a.example, dnsSuffix: .example}
                - {subject: \"CN=alice,emailAddress=a@example.org\"}
                - {subject: alice}
                - {subject: \"CN=a\\\\\"}
                - {uri: \"example.org/alice\"}
                - {uriPrefix: \"spiffe://a b/\"}
                - {dns: \"a..example\"}
                - {dnsSuffix: partners.example}
                - {dnsSuffix: \".bad_label.example\"}
        ",
        "t.yaml:6:11: policies[0].clientCert.allow[0]: set at least one of subject, uri, uriPrefix, dns, dnsSuffix\n\
         t.yaml:7:11: policies[0].clientCert.allow[1]: set uri or uriPrefix, not both\n\
         t.yaml:8:11: policies[0].clientCert.allow[2]: set dns or dnsSuffix, not both\n\
         t.yaml:9:21: policies[0].clientCert.allow[3].subject: invalid subject \"CN=alice,emailAddress=a@example.org\": unknown attribute type \"emailAddress\": use CN, C, L, ST, STREET, O, OU, DC, UID or a dotted OID (e-mail: 1.2.840.113549.1.9.1)\n\
         t.yaml:10:21: policies[0].clientCert.allow[4].subject: invalid subject \"alice\": expected TYPE=value pairs separated by \",\" (CN=alice,O=Example)\n\
         t.yaml:11:21: policies[0].clientCert.allow[5].subject: invalid subject \"CN=a\\\\\": ends with a lone \"\\\"\n\
         t.yaml:12:17: policies[0].clientCert.allow[6].uri: invalid URI \"example.org/alice\": expected an absolute URI without spaces, such as spiffe://example.org/\n\
         t.yaml:13:23: policies[0].clientCert.allow[7].uriPrefix: invalid URI \"spiffe://a b/\": expected an absolute URI without spaces, such as spiffe://example.org/\n\
         t.yaml:14:17: policies[0].clientCert.allow[8].dns: invalid hostname \"a..example\": empty label (leading, trailing or doubled \".\"); expected a DNS name such as api.example.com or *.example.com\n\
         t.yaml:15:23: policies[0].clientCert.allow[9].dnsSuffix: \"partners.example\" must start with \".\" (.partners.example), so that a name merely ending in the same letters does not match\n\
         t.yaml:16:23: policies[0].clientCert.allow[10].dnsSuffix: invalid hostname \"bad_label.example\": label \"bad_label\" may only contain letters, digits and \"-\"; expected a DNS name such as api.example.com",
    ),
    (
        "
        policies:
          - name: m
            type: ClientCert
            clientCert: {requireConsumer: true, groups: [\"\", \"a,b\"], consumerHeader: \"x who\", groupsHeader: \"\", subjectHeader: \"x:dn\"}
        ",
        "t.yaml:4:35: policies[0].clientCert.requireConsumer: no consumers are defined, so every certificate would be refused\n\
         t.yaml:4:50: policies[0].clientCert.groups[0]: must not be empty\n\
         t.yaml:4:54: policies[0].clientCert.groups[1]: \"a,b\" must not contain \",\" (groups are sent comma-separated)\n\
         t.yaml:4:78: policies[0].clientCert.consumerHeader: invalid header name \"x who\": expected a token of letters, digits and !#$%&'*+-.^_`|~ (RFC 9110)\n\
         t.yaml:4:101: policies[0].clientCert.groupsHeader: invalid header name \"\": expected a token of letters, digits and !#$%&'*+-.^_`|~ (RFC 9110)\n\
         t.yaml:4:120: policies[0].clientCert.subjectHeader: invalid header name \"x:dn\": expected a token of letters, digits and !#$%&'*+-.^_`|~ (RFC 9110)",
    ),
    (
        "
        policies:
          - {name: m, type: ClientCert, clientCert: {consumerFrom: cn}}
        ",
        "t.yaml:2:60: policies[0].clientCert.consumerFrom: unknown variant `cn`, expected one of subjectCN, subject, uri, dns",
    ),
    (
        "
        policies:
          - {name: m, type: ClientCert, clientCert: {allow: [{subjectCN: alice}]}}
        ",
        "t.yaml:2:55: policies[0].clientCert.allow[0].subjectCN: unknown field `subjectCN`, expected one of subject, uri, uriPrefix, dns, dnsSuffix",
    ),
    (
        "
        policies:
          - {name: m, type: ClientCert}
          - {name: n, type: ApiKey, apiKey: {}, clientCert: {}}
        ",
        "t.yaml:2:5: policies[0].clientCert: required when type is ClientCert\n\
         t.yaml:3:53: policies[1].clientCert: not allowed when type is ApiKey",
    ),
];

#[test]
fn table_of_bad_client_cert_policies() {
    check_table(TABLE);
}

/// Accepted, with every default spelled out by the model; and the policy counts as
/// authentication for the order warnings (an `Authorize` after it is fine, a
/// consumer-keyed rate limit before it is not).
#[test]
fn valid_client_cert_policy_and_its_defaults() {
    let src = dedent(
        "
        listeners:
          - name: web
            address: 127.0.0.1:8443
            protocol: HTTPS
            tls:
              certificates: [{certFile: a.crt, keyFile: a.key}]
              clientAuth: {caFile: ca.pem, mode: Optional}
        consumers:
          - {name: alice, groups: [admins]}
        policies:
          - name: mtls
            type: ClientCert
            clientCert:
              allow:
                - {subject: \"CN=alice, O=Example\"}
                - {uriPrefix: \"spiffe://example.org/\", dnsSuffix: .svc.example}
          - {name: all, type: ClientCert, clientCert: {consumerFrom: uri, requireConsumer: true}}
          - {name: admins, type: Authorize, authorize: {rules: [{groups: [admins]}]}}
          - {name: per-consumer, type: RateLimit, rateLimit: {key: consumer, requests: 5, per: 1s}}
        routes:
          - {name: r, policies: [per-consumer, mtls, admins, all], backendRefs: [{name: s}]}
        services:
          - {name: s, endpoints: [\"10.0.0.1:80\"]}
        ",
    );
    let config = meshgate_config::parse_str(&src, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    let p = config.policies[0].client_cert.as_ref().unwrap();
    assert_eq!(
        p.consumer_from,
        meshgate_config::ClientCertIdentity::SubjectCn
    );
    assert!(!p.require_consumer && p.groups.is_empty());
    assert_eq!(
        (
            p.consumer_header.as_str(),
            p.groups_header.as_str(),
            p.subject_header.as_str()
        ),
        ("x-consumer", "x-consumer-groups", "x-client-cert-subject")
    );
    assert_eq!(p.allow[1].dns_suffix.as_deref(), Some(".svc.example"));
    let warnings: Vec<String> = meshgate_config::warnings(&config, &src, "t.yaml")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("routes[0].policies[0]: rate limit \"per-consumer\" is keyed by consumer but runs before any authentication"),
        "{warnings:#?}"
    );
}

/// A `ClientCert` policy where no certificate can arrive: on a plain HTTP
/// listener, or an HTTPS one without `clientAuth`, it can only refuse.
#[test]
fn client_cert_on_a_listener_without_client_auth_is_warned_about() {
    let src = dedent(
        "
        listeners:
          - {name: plain, address: 127.0.0.1:8080, policies: [mtls]}
          - name: tls
            address: 127.0.0.1:8443
            protocol: HTTPS
            tls: {certificates: [{certFile: a.crt, keyFile: a.key}]}
          - name: mtls
            address: 127.0.0.1:9443
            protocol: HTTPS
            tls: {certificates: [{certFile: a.crt, keyFile: a.key}], clientAuth: {caFile: ca.pem}}
          - {name: redirect, address: 127.0.0.1:8081, httpsRedirect: {port: 9443}}
        policies:
          - {name: mtls, type: ClientCert, clientCert: {}}
        routes:
          - {name: everywhere, listeners: [tls, mtls, redirect], policies: [mtls], backendRefs: [{name: s}]}
          - {name: only-mtls, listeners: [mtls], policies: [mtls], backendRefs: [{name: s}]}
        services:
          - {name: s, endpoints: [\"10.0.0.1:80\"]}
        ",
    );
    let config = meshgate_config::parse_str(&src, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    let warnings: Vec<String> = meshgate_config::warnings(&config, &src, "t.yaml")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        warnings,
        [
            "t.yaml:2:55: listeners[0].policies[0]: ClientCert policy \"mtls\" runs on listener \"plain\", which asks for no client certificates (no tls.clientAuth): every request there is refused with 401",
            "t.yaml:15:69: routes[0].policies[0]: ClientCert policy \"mtls\" runs on listener \"tls\", which asks for no client certificates (no tls.clientAuth): every request there is refused with 401",
        ]
    );
}
