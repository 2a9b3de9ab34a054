//! The `ApiKey` policy through a real gateway: keys generated here, only their
//! hashes in the config; missing and wrong keys refused; the consumer told to the
//! upstream and the access log; forged consumer headers never reach the upstream.

mod common;

use bytes::Bytes;
use http::{Method, StatusCode};
use meshgate_policy::credentials::{generate_api_key, hash_api_key};
use meshgate_testkit::Backend;

fn config(svc: &str, acme_key: &str, other_key: &str) -> String {
    format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
consumers:
  - {{name: acme, groups: [partners, beta], apiKeys: [\"{}\"]}}
  - {{name: other, apiKeys: [\"{}\"]}}
policies:
  - {{name: keys, type: ApiKey, apiKey: {{queryParam: api_key}}}}
routes:
  - {{name: api, policies: [keys], backendRefs: [{{name: svc}}]}}
services:
{svc}",
        hash_api_key(acme_key),
        hash_api_key(other_key)
    )
}

#[tokio::test]
async fn api_keys_authenticate_consumers() {
    let b = Backend::start("svc").await;
    let (acme, other) = (generate_api_key().unwrap(), generate_api_key().unwrap());
    let yaml = config(&common::service("svc", &[b.addr]), &acme, &other);
    assert!(!yaml.contains(&acme), "the key itself is never in config");
    let h = common::start(&yaml).await;

    let r = h.get("h", "/orders").await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::UNAUTHORIZED, "missing_credentials".into())
    );
    let r = h
        .send(
            Method::GET,
            "h",
            "/orders",
            &[("x-api-key", "mgk_wrong")],
            Bytes::new(),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::UNAUTHORIZED, "invalid_credentials".into())
    );
    assert_eq!(b.hits(), 0);

    // A valid key, and forged identity headers that must not survive.
    let r = h
        .send(
            Method::GET,
            "h",
            "/orders",
            &[
                ("x-api-key", &acme),
                ("x-consumer", "admin"),
                ("x-consumer-groups", "root"),
            ],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = &r.json()["headers"];
    assert_eq!(seen["x-consumer"], "acme");
    assert_eq!(seen["x-consumer-groups"], "partners,beta");
    assert!(
        seen.get("x-api-key").is_none(),
        "the key is stripped before forwarding"
    );

    // Key in the query string: accepted, then removed from the URI sent upstream.
    let r = h
        .get("h", &format!("/orders?page=2&api_key={other}&sort=asc"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["headers"]["x-consumer"], "other");
    assert_eq!(r.json()["query"], "page=2&sort=asc");

    // Forged headers without any key: refused, and nothing reached the upstream.
    let r = h
        .send(
            Method::GET,
            "h",
            "/orders",
            &[("x-consumer", "acme")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(b.hits(), 2);

    let log = h.log_lines(5).await;
    let consumers: Vec<_> = log
        .iter()
        .map(|l| (l["status"].as_u64().unwrap(), l["consumer"].clone()))
        .collect();
    assert_eq!(
        consumers,
        [
            (401, serde_json::Value::Null),
            (401, serde_json::Value::Null),
            (200, "acme".into()),
            (200, "other".into()),
            (401, serde_json::Value::Null)
        ]
    );
    assert_eq!(log[0]["reason"], "missing_credentials");
}
