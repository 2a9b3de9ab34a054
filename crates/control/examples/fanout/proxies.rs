//! The simulated proxies (part of the `fanout` example): raw `ConfigDiscovery`
//! streams that say Hello, note when each snapshot arrives and ACK it, without
//! applying anything, so what is measured is the control plane's push.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use meshgate_control::proto::v1::config_discovery_client::ConfigDiscoveryClient;
use meshgate_control::proto::v1::proxy_message::Kind;
use meshgate_control::proto::v1::{Ack, Hello, ProxyIdentity, ProxyMessage};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use crate::control::endpoint_count;
use crate::{PATIENCE, Res, TOKEN};

/// A snapshot as one simulated proxy received it.
pub struct Arrival {
    pub stream: usize,
    pub config_version: u64,
    pub endpoints: usize,
    /// Encoded size (measured on stream 0 only, to keep clients cheap).
    pub bytes: usize,
    pub at: Instant,
}

/// Opens `n` discovery streams, `per_conn` per HTTP/2 connection; each reports
/// every snapshot to `arrivals` and ACKs it.
pub async fn open_streams(
    addr: SocketAddr,
    ca_pem: &str,
    n: usize,
    per_conn: usize,
    arrivals: mpsc::UnboundedSender<Arrival>,
) -> Res<()> {
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
    // As `client::ProxyClient` sets up its endpoint.
    let endpoint = Endpoint::from_shared(format!("https://127.0.0.1:{}", addr.port()))?
        .tls_config(tls)?
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    let authorization: tonic::metadata::MetadataValue<_> = format!("Bearer {TOKEN}").parse()?;
    for first in (0..n).step_by(per_conn) {
        let channel = endpoint.connect().await?;
        for i in first..(first + per_conn).min(n) {
            let client = ConfigDiscoveryClient::new(channel.clone());
            let (authorization, arrivals) = (authorization.clone(), arrivals.clone());
            tokio::spawn(async move {
                if let Err(e) = proxy(i, client, authorization, arrivals).await {
                    eprintln!("fanout: proxy {i}: {e}");
                }
            });
        }
    }
    Ok(())
}

async fn proxy(
    i: usize,
    mut client: ConfigDiscoveryClient<tonic::transport::Channel>,
    authorization: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    arrivals: mpsc::UnboundedSender<Arrival>,
) -> Res<()> {
    let (tx, rx) = mpsc::channel(4);
    let hello = Hello {
        identity: Some(ProxyIdentity {
            role: "gateway".into(),
            node_id: format!("bench-{i:05}"),
            ..Default::default()
        }),
        running: String::new(),
        build: "fanout".into(),
    };
    tx.send(ProxyMessage {
        kind: Some(Kind::Hello(hello)),
    })
    .await?;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert("authorization", authorization);
    let mut inbound = client.stream(request).await?.into_inner();
    while let Some(snapshot) = inbound.message().await? {
        let at = Instant::now();
        let _ = arrivals.send(Arrival {
            stream: i,
            config_version: snapshot.config_version,
            endpoints: endpoint_count(&snapshot),
            bytes: if i == 0 { snapshot.encoded_len() } else { 0 },
            at,
        });
        let ack = Ack {
            version: snapshot.version,
        };
        tx.send(ProxyMessage {
            kind: Some(Kind::Ack(ack)),
        })
        .await?;
    }
    Ok(())
}

/// What the streams received during one change.
pub struct Arrived {
    /// Each stream's first wanted arrival after the start, sorted.
    pub times: Vec<Duration>,
    /// Encoded size of the wanted snapshot.
    pub bytes: usize,
    /// Snapshots received in all (intermediate versions included).
    pub received: usize,
}

/// Waits until every stream has received a snapshot matching `wanted`.
pub async fn arrivals_until(
    rx: &mut mpsc::UnboundedReceiver<Arrival>,
    n: usize,
    t0: Instant,
    wanted: impl Fn(&Arrival) -> bool,
) -> Res<Arrived> {
    let mut seen = vec![None; n];
    let (mut count, mut bytes, mut received) = (0, 0, 0);
    while count < n {
        let arrival = tokio::time::timeout_at((t0 + PATIENCE).into(), rx.recv())
            .await
            .map_err(|_| format!("only {count}/{n} streams got the snapshot in time"))?
            .ok_or("every stream ended")?;
        received += 1;
        if wanted(&arrival) && seen[arrival.stream].is_none() {
            seen[arrival.stream] = Some(arrival.at.saturating_duration_since(t0));
            bytes = bytes.max(arrival.bytes);
            count += 1;
        }
    }
    let mut times: Vec<Duration> = seen.into_iter().flatten().collect();
    times.sort();
    Ok(Arrived {
        times,
        bytes,
        received,
    })
}
