//! Mesh identity end to end: a control plane served over real TLS gRPC with the
//! mesh CA's `Identity` service, workloads signing CSRs with their tokens, the
//! `IdentityClient` renewing at half-life while a real mTLS connection built from
//! two `WorkloadIdentity`s stays up, and a CA rotation with overlap.

mod identity_support;

use std::time::{Duration, SystemTime};

use identity_support::mtls::{Conn, echo_server};
use identity_support::*;
use meshgate_control::proto::v1::CaRotation;
use meshgate_core::server::tls::x509;
use meshgate_mesh::ca::{self, CaOptions, IntermediateFiles, MeshCa, Phase};
use meshgate_mesh::identity_client::IdentityClient;
use meshgate_testkit::certs::TestCa;
use rcgen::{CertificateParams, DnType, KeyPair};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_decides_the_identity_not_the_csr() {
    let plane = Plane::start().await;
    let signed = plane
        .sign(ORDERS_TOKEN, "orders", 0, greedy_csr())
        .await
        .unwrap();
    assert_eq!(signed.spiffe_id, "spiffe://mesh.test/ns/default/sa/orders");
    let chain = certs(&signed.cert_chain_pem);
    let names = x509::names(&chain[0]).unwrap();
    assert_eq!(names.uris, vec![signed.spiffe_id.clone()]);
    assert!(names.dns.is_empty(), "{:?}", names.dns);
    assert!(!names.subject.contains("payments"), "{}", names.subject);
    // It chains to the bundle the answer carries.
    let bundle = certs(&signed.trust_bundle_pem);
    assert!(verify(&chain, &bundle));
    // A certificate from another CA does not.
    let foreign =
        TestCa::new("foreign").client_cert("x", "x", &["spiffe://mesh.test/ns/default/sa/orders"]);
    assert!(!verify(&[foreign.cert_der()], &bundle));

    // orders' token cannot get payments; a token for any sidecar can.
    let refused = plane
        .sign(ORDERS_TOKEN, "payments", 0, greedy_csr())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let payments = plane
        .sign(ANY_SIDECAR_TOKEN, "payments", 0, greedy_csr())
        .await
        .unwrap();
    assert_eq!(
        payments.spiffe_id,
        "spiffe://mesh.test/ns/default/sa/payments"
    );
    // Gateways get the gateway identity only; operators none.
    let gw = plane
        .sign(GATEWAY_TOKEN, "gateway", 0, greedy_csr())
        .await
        .unwrap();
    assert_eq!(gw.spiffe_id, "spiffe://mesh.test/ns/default/sa/gateway");
    let refused = plane
        .sign(GATEWAY_TOKEN, "orders", 0, greedy_csr())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = plane
        .sign(OPERATOR_TOKEN, "orders", 0, greedy_csr())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = plane
        .sign("nope", "orders", 0, greedy_csr())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    // A tampered CSR (its self-signature no longer matches) is refused.
    let tampered = tamper(&greedy_csr());
    let refused = plane
        .sign(ORDERS_TOKEN, "orders", 0, tampered)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_is_honoured_and_capped() {
    let plane = Plane::start().await;
    let now = SystemTime::now();
    let signed = plane
        .sign(ORDERS_TOKEN, "orders", 600, greedy_csr())
        .await
        .unwrap();
    let chain = certs(&signed.cert_chain_pem);
    let bundle = certs(&signed.trust_bundle_pem);
    let expected = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    assert!(
        signed.not_after_unix.abs_diff(expected as i64) <= 5,
        "{}",
        signed.not_after_unix
    );
    assert!(verify_at(&chain, &bundle, now + Duration::from_secs(590)).is_ok());
    assert!(verify_at(&chain, &bundle, now + Duration::from_secs(620)).is_err());
    // Valid from a minute ago (clock skew between hosts).
    assert!(verify_at(&chain, &bundle, now - Duration::from_secs(50)).is_ok());

    // No TTL asked: the default (24 h); too long: the maximum.
    let default = plane
        .sign(ORDERS_TOKEN, "orders", 0, greedy_csr())
        .await
        .unwrap();
    assert!(
        default
            .not_after_unix
            .abs_diff(expected as i64 - 600 + 24 * 3600)
            <= 5
    );
    let capped = plane
        .sign(ORDERS_TOKEN, "orders", 30 * 24 * 3600, greedy_csr())
        .await
        .unwrap();
    let max = MAX_TTL.as_secs() as i64;
    assert!(capped.not_after_unix.abs_diff(expected as i64 - 600 + max) <= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renews_at_half_life_without_dropping_connections() {
    let plane = Plane::start().await;
    let ttl = Some(Duration::from_secs(4));
    let orders = IdentityClient::start(plane.settings(ORDERS_TOKEN, "orders", ttl))
        .await
        .unwrap();
    let payments = IdentityClient::start(plane.settings(ANY_SIDECAR_TOKEN, "payments", ttl))
        .await
        .unwrap();
    let (client, server) = (orders.identity(), payments.identity());
    assert_eq!(*client.spiffe_id(), "spiffe://mesh.test/ns/shop/sa/orders");
    let payments_id = "spiffe://mesh.test/ns/shop/sa/payments";
    assert_eq!(*server.spiffe_id(), payments_id);

    let addr = echo_server(server.clone()).await;
    let mut before = Conn::open(&client, addr, payments_id).await;
    before.echo("before rotation").await;

    // Both rotate (generation moves) at about 2 s; wait for two rotations each,
    // so the first certificates have expired.
    let (g_client, g_server) = (client.generation(), server.generation());
    eventually("two renewals on both sides", || {
        client.generation() >= g_client + 2 && server.generation() >= g_server + 2
    })
    .await;
    assert_eq!(*client.spiffe_id(), "spiffe://mesh.test/ns/shop/sa/orders");
    assert_eq!(*server.spiffe_id(), payments_id);
    let first = before.server_cert.clone();
    let leaf = server.certified_key().cert[0].clone();
    assert_ne!(first, leaf, "a new certificate was installed");

    // The connection opened before the rotations still works...
    before.echo("after rotation").await;
    // ...and a new one gets the new certificate.
    let mut after = Conn::open(&client, addr, payments_id).await;
    after.echo("new connection").await;
    assert_ne!(after.server_cert, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_rotation_with_overlap() {
    let plane = Plane::start().await;
    let watcher = IdentityClient::start(plane.settings(ANY_SIDECAR_TOKEN, "watcher", None))
        .await
        .unwrap();
    let watched = watcher.identity();
    let old = plane
        .sign(ORDERS_TOKEN, "orders", 0, greedy_csr())
        .await
        .unwrap();
    let old_chain = certs(&old.cert_chain_pem);
    let old_bundle = certs(&old.trust_bundle_pem);
    assert_eq!(old_bundle.len(), 1);
    assert_eq!(plane.rotate("status").await.phase, "steady");

    // 1. prepare: both roots trusted, still issuing from the old one.
    let status = plane.rotate("prepare").await;
    assert_eq!(status.phase, "prepared");
    assert_eq!(status.roots.len(), 2, "{:?}", status.roots);
    let both = plane.mesh.bundle().roots.clone();
    assert_eq!(both.len(), 2);
    eventually("the workload receives the two-root bundle", || {
        watched.roots().roots.len() == 2
    })
    .await;
    let prepared = plane
        .sign(ORDERS_TOKEN, "orders", 0, greedy_csr())
        .await
        .unwrap();
    assert!(verify(&certs(&prepared.cert_chain_pem), &old_bundle));
    // Out of order is refused.
    let refused = plane
        .rpc()
        .await
        .rotate_ca(authorized(
            CaRotation {
                step: "finish".into(),
            },
            OPERATOR_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    // Only operators rotate.
    let refused = plane
        .rpc()
        .await
        .rotate_ca(authorized(
            CaRotation {
                step: "activate".into(),
            },
            ORDERS_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    // The phase survives a restart (a second CA opened on the same data dir).
    let reopened = MeshCa::open(ca_options(&plane.dir.path().join("control"))).unwrap();
    assert_eq!(reopened.rotation_status().phase, Phase::Prepared);
    assert_eq!(reopened.bundle().roots, both);
    drop(reopened);

    // 2. activate: new certificates come from the new root; clients holding the
    // old-plus-new bundle accept them, old certificates stay valid too.
    assert_eq!(plane.rotate("activate").await.phase, "activated");
    let new = plane
        .sign(ORDERS_TOKEN, "orders", 0, greedy_csr())
        .await
        .unwrap();
    let new_chain = certs(&new.cert_chain_pem);
    assert!(verify(&new_chain, &both));
    assert!(!verify(&new_chain, &old_bundle), "issued by the new root");
    assert!(verify(&old_chain, &certs(&new.trust_bundle_pem)));
    let reopened = MeshCa::open(ca_options(&plane.dir.path().join("control"))).unwrap();
    assert_eq!(reopened.rotation_status().phase, Phase::Activated);
    drop(reopened);

    // 3. finish: only the new root is trusted; old certificates no longer verify.
    let status = plane.rotate("finish").await;
    assert_eq!(status.phase, "steady");
    let last = plane.mesh.bundle().roots.clone();
    assert_eq!(last.len(), 1);
    assert_ne!(last[0], old_bundle[0]);
    assert!(verify(&new_chain, &last));
    assert!(!verify(&old_chain, &last));
    eventually("the workload drops the old root", || {
        watched.roots().roots.len() == 1
    })
    .await;
    let reopened = MeshCa::open(ca_options(&plane.dir.path().join("control"))).unwrap();
    assert_eq!(reopened.rotation_status().phase, Phase::Steady);
    assert_eq!(reopened.bundle().roots, last);
}

#[tokio::test]
async fn intermediate_from_files() {
    use rcgen::{BasicConstraints, CertifiedIssuer, IsCa, KeyUsagePurpose};
    let dir = tempfile::tempdir().unwrap();
    let ca_params = || {
        let mut p = CertificateParams::default();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p
    };
    let root = CertifiedIssuer::self_signed(ca_params(), KeyPair::generate().unwrap()).unwrap();
    let mut params = ca_params();
    params
        .distinguished_name
        .push(DnType::CommonName, "mesh intermediate");
    let key = KeyPair::generate().unwrap();
    let key_pem = key.serialize_pem();
    let intermediate = CertifiedIssuer::signed_by(params, key, &root).unwrap();
    let cert_file = dir.path().join("intermediate.pem");
    let key_file = dir.path().join("intermediate.key");
    std::fs::write(&cert_file, format!("{}{}", intermediate.pem(), root.pem())).unwrap();
    std::fs::write(&key_file, key_pem).unwrap();
    let mesh = MeshCa::open(CaOptions {
        intermediate: Some(IntermediateFiles {
            cert_file: cert_file.clone(),
            key_file,
        }),
        ..ca_options(dir.path())
    })
    .unwrap();
    assert_eq!(mesh.bundle().roots, vec![root.der().clone()]);
    let issued = mesh
        .issue(&greedy_csr(), "default", "orders", None)
        .unwrap();
    let chain = certs(&issued.chain_pem);
    assert_eq!(chain.len(), 2, "leaf and intermediate");
    assert_eq!(&chain[1], intermediate.der());
    assert!(verify(&chain, &[root.der().clone()]));
    assert!(matches!(
        mesh.prepare_rotation(),
        Err(ca::RotateError::NotGenerated)
    ));

    // A key that is not the certificate's is refused.
    let other = dir.path().join("other.key");
    std::fs::write(&other, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let err = MeshCa::open(CaOptions {
        intermediate: Some(IntermediateFiles {
            cert_file,
            key_file: other,
        }),
        ..ca_options(dir.path())
    })
    .unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");
}

#[tokio::test]
async fn an_interrupted_activation_completes_on_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("mesh-ca");
    let mesh = MeshCa::open(ca_options(dir.path())).unwrap();
    let old_root = mesh.bundle().roots[0].clone();
    mesh.prepare_rotation().unwrap();
    let new_root = mesh.bundle().roots[1].clone();
    drop(mesh);
    // A crash after activation's first write: previous.pem exists, next.* not
    // yet renamed over root.*.
    std::fs::copy(ca_dir.join("root.pem"), ca_dir.join("previous.pem")).unwrap();
    let mesh = MeshCa::open(ca_options(dir.path())).unwrap();
    assert_eq!(mesh.rotation_status().phase, Phase::Activated);
    assert_eq!(mesh.bundle().roots, vec![new_root.clone(), old_root]);
    let issued = mesh
        .issue(&greedy_csr(), "default", "orders", None)
        .unwrap();
    assert!(verify(&certs(&issued.chain_pem), &[new_root]));
    assert!(!ca_dir.join("next.pem").exists() && !ca_dir.join("next.key").exists());
}
