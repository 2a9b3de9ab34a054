//! The gRPC health check: one unary `grpc.health.v1.Health/Check` per check on a
//! fresh HTTP/2 connection (so connecting and the HTTP/2 handshake are tested
//! too): h2c (prior knowledge), or TLS with ALPN `h2` on a service with `tls`.
//!
//! The two messages are tiny, so they are encoded by hand rather than generated:
//! `HealthCheckRequest { string service = 1; }` and
//! `HealthCheckResponse { enum ServingStatus status = 1; }` (SERVING = 1), each in
//! the 5-byte gRPC frame (compressed flag, big-endian length). The check passes
//! only when `grpc-status` is 0 and the status is SERVING; NOT_SERVING, UNKNOWN,
//! SERVICE_UNKNOWN, a non-zero `grpc-status` (e.g. NOT_FOUND for an unknown
//! service) or a malformed answer fail it.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_TYPE, HeaderName, TE, USER_AGENT};
use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshgate_config as config;

use super::{AbortOnDrop, Io};

const PATH: &str = "/grpc.health.v1.Health/Check";
/// Largest answer read: a HealthCheckResponse is a handful of bytes.
const MAX_ANSWER: usize = 4096;
const SERVING: u64 = 1;

/// A compiled gRPC check: the framed request and the `:authority` override.
#[derive(Debug, Clone)]
pub(super) struct GrpcProbe {
    request: Bytes,
    authority: Option<Authority>,
}

impl GrpcProbe {
    pub(super) fn new(cfg: &config::GrpcCheck) -> Result<Self, String> {
        let authority = cfg
            .authority
            .as_deref()
            .map(str::parse::<Authority>)
            .transpose()
            .map_err(|e| format!("healthCheck.grpc.authority: {e}"))?;
        Ok(GrpcProbe {
            request: encode_request(&cfg.service),
            authority,
        })
    }

    /// One check over `io`, already connected to the endpoint (`scheme` is
    /// `https` over TLS).
    pub(super) async fn check(
        &self,
        io: impl Io,
        endpoint: &Authority,
        scheme: Scheme,
    ) -> Result<(), String> {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                .await
                .map_err(|e| format!("h2 handshake: {e}"))?;
        let _driver = AbortOnDrop::drive(conn);
        let authority = self.authority.as_ref().unwrap_or(endpoint);
        let uri = Uri::builder()
            .scheme(scheme)
            .authority(authority.clone())
            .path_and_query(PATH)
            .build()
            .map_err(|e| e.to_string())?;
        let req = Request::post(uri)
            .header(CONTENT_TYPE, "application/grpc")
            .header(TE, "trailers")
            .header(USER_AGENT, "meshgate-health")
            .body(Full::new(self.request.clone()))
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        if resp.status() != http::StatusCode::OK {
            return Err(format!("HTTP status {}", resp.status()));
        }
        // Trailers-only: the status is in the headers and there is no body.
        if let Some(code) = grpc_status(resp.headers())
            && code != "0"
        {
            return Err(format!("grpc-status {code}"));
        }
        let collected = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("answer: {e}"))?;
        if let Some(trailers) = collected.trailers()
            && let Some(code) = grpc_status(trailers)
            && code != "0"
        {
            return Err(format!("grpc-status {code}"));
        }
        match decode_status(&collected.to_bytes())? {
            SERVING => Ok(()),
            other => Err(format!("serving status {}", status_name(other))),
        }
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<&str> {
    static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
    headers
        .get(&GRPC_STATUS)
        .map(|v: &HeaderValue| v.to_str().unwrap_or("?"))
}

fn status_name(status: u64) -> String {
    match status {
        0 => "UNKNOWN".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        n => n.to_string(),
    }
}

/// `HealthCheckRequest { service }` in a gRPC frame (an empty service is an empty
/// message, as proto3 omits default fields).
fn encode_request(service: &str) -> Bytes {
    let mut msg = BytesMut::new();
    if !service.is_empty() {
        msg.put_u8(0x0a); // field 1, length-delimited
        put_varint(&mut msg, service.len() as u64);
        msg.put_slice(service.as_bytes());
    }
    let mut framed = BytesMut::with_capacity(5 + msg.len());
    framed.put_u8(0); // not compressed
    framed.put_u32(msg.len() as u32);
    framed.put_slice(&msg);
    framed.freeze()
}

fn put_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Reads a varint at `*at`, advancing it.
fn varint(b: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at).ok_or("truncated varint")?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

/// The `status` of the one framed `HealthCheckResponse` in `body` (0 when absent).
fn decode_status(body: &[u8]) -> Result<u64, String> {
    let (head, rest) = body.split_at_checked(5).ok_or("no gRPC message")?;
    if head[0] != 0 {
        return Err("compressed answer".into());
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let msg = rest.get(..len).ok_or("truncated gRPC message")?;
    let (mut at, mut status) = (0, 0);
    while at < msg.len() {
        let key = varint(msg, &mut at)?;
        let skip = match key & 7 {
            0 => {
                let v = varint(msg, &mut at)?;
                if key >> 3 == 1 {
                    status = v;
                }
                0
            }
            1 => 8,
            2 => usize::try_from(varint(msg, &mut at)?).map_err(|e| e.to_string())?,
            5 => 4,
            w => return Err(format!("bad wire type {w}")),
        };
        at = at
            .checked_add(skip)
            .filter(|&e| e <= msg.len())
            .ok_or("truncated field")?;
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_encoding() {
        assert_eq!(&encode_request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &encode_request("ab")[..],
            &[0, 0, 0, 0, 4, 0x0a, 2, b'a', b'b']
        );
    }

    #[test]
    fn response_decoding() {
        assert_eq!(decode_status(&[0, 0, 0, 0, 2, 0x08, 1]), Ok(SERVING));
        assert_eq!(decode_status(&[0, 0, 0, 0, 2, 0x08, 2]), Ok(2));
        assert_eq!(decode_status(&[0, 0, 0, 0, 0]), Ok(0), "default UNKNOWN");
        // An unknown length-delimited field before the status is skipped.
        assert_eq!(
            decode_status(&[0, 0, 0, 0, 5, 0x12, 1, b'x', 0x08, 1]),
            Ok(SERVING)
        );
        assert!(decode_status(&[0, 0, 0, 0, 9, 0x08]).is_err());
        assert!(decode_status(&[1, 0, 0, 0, 0]).is_err());
        assert!(decode_status(&[0, 0, 0, 0, 2, 0x12, 9]).is_err());
        assert!(decode_status(&[]).is_err());
    }
}
