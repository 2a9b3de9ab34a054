//! What the gRPC integration tests share: a real tonic health server and a tonic
//! client connected to the gateway over h2c. (Kept apart from `common`, which the
//! policy crate's tests also compile and which must not need tonic.)
#![allow(dead_code)]

use std::net::SocketAddr;

use tonic_health::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::server::HealthReporter;

/// A tonic server with the standard health service; each of `serving` is SERVING.
pub async fn health_server(serving: &[&str]) -> (SocketAddr, HealthReporter) {
    let (reporter, service) = tonic_health::server::health_reporter();
    for name in serving {
        reporter
            .set_service_status(*name, ServingStatus::Serving)
            .await;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming),
    );
    (addr, reporter)
}

/// A health client talking to `addr` (the gateway) over h2c.
pub async fn health_client(addr: SocketAddr) -> HealthClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid URI")
        .connect()
        .await
        .expect("h2c connection to the gateway");
    HealthClient::new(channel)
}
