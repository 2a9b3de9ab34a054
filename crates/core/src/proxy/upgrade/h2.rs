//! WebSocket over HTTP/2 (RFC 8441 extended CONNECT) from clients, forwarded to
//! the upstream as the HTTP/1.1 handshake.
//!
//! The h2 request (`:method CONNECT`, `:protocol websocket`, `:path`,
//! `:authority`) becomes `GET :path` with `Upgrade: websocket`,
//! `Connection: upgrade` (restored after hop-by-hop stripping like any upgrade),
//! `Sec-WebSocket-Version` (the client's, else 13) and a fresh
//! `Sec-WebSocket-Key`: the h2 request carries none (RFC 8441 §5). The rewrite
//! happens before routing, so routes and policies see the `GET` they would see
//! from an HTTP/1.1 client. The upstream's `101` (with the matching
//! `Sec-WebSocket-Accept`) becomes `200` for the h2 client, and the h2 stream is
//! the tunnel; any other answer passes through, except that a `2xx` (which an h2
//! client would take for an open tunnel) becomes `502`.

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use hyper::upgrade::OnUpgrade;

use super::Requested;
use crate::body::Body;

static SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
static SEC_WEBSOCKET_VERSION: HeaderName = HeaderName::from_static("sec-websocket-version");
static SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");

/// RFC 6455 §1.3: appended to the key before hashing it into the accept value.
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// An HTTP/2 CONNECT with `:protocol: websocket`, rewritten in place into the
/// HTTP/1.1 handshake. Other CONNECTs (plain, or another protocol) are not
/// upgrades here.
pub(super) fn requested(parts: &mut http::request::Parts) -> Option<Requested> {
    let protocol = parts.extensions.get::<hyper::ext::Protocol>()?;
    if !protocol.as_str().eq_ignore_ascii_case("websocket") {
        return None;
    }
    let client = parts.extensions.remove::<OnUpgrade>()?;
    parts.extensions.remove::<hyper::ext::Protocol>();
    parts.method = Method::GET;
    let key = fresh_key();
    parts.headers.insert(SEC_WEBSOCKET_KEY.clone(), key.clone());
    parts
        .headers
        .entry(SEC_WEBSOCKET_VERSION.clone())
        .or_insert(HeaderValue::from_static("13"));
    Some(Requested {
        protocol: HeaderValue::from_static("websocket"),
        client,
        h2_key: Some(key),
    })
}

/// Turns the upstream's answer into the h2 client's: its `101` (`upstream` is
/// then its connection) into `200`, returning the connection to join. Returns
/// `None` when there is no tunnel; the response is then the upstream's, or `502`
/// for a `2xx` that is not a switch or a `101` with a wrong accept value.
pub(super) fn answer(
    response: &mut http::Response<Body>,
    key: &HeaderValue,
    upstream: Option<OnUpgrade>,
) -> Option<OnUpgrade> {
    let accepted = upstream.filter(|_| {
        let ok = response.headers().get(&SEC_WEBSOCKET_ACCEPT) == Some(&accept_for(key));
        if !ok {
            tracing::debug!("upstream switched protocols with a wrong Sec-WebSocket-Accept");
        }
        ok
    });
    match accepted {
        Some(upstream) => {
            *response.status_mut() = StatusCode::OK;
            let headers = response.headers_mut();
            // Meaningless in HTTP/2 (RFC 8441 §5); the subprotocol and extension
            // answers stay.
            headers.remove(&SEC_WEBSOCKET_ACCEPT);
            headers.remove(header::CONNECTION);
            headers.remove(header::UPGRADE);
            headers.remove(header::CONTENT_LENGTH);
            Some(upstream)
        }
        None => {
            let status = response.status();
            if status.is_success() || status == StatusCode::SWITCHING_PROTOCOLS {
                tracing::debug!(%status, "upstream did not accept the WebSocket handshake");
                *response.status_mut() = StatusCode::BAD_GATEWAY;
                response.headers_mut().clear();
                *response.body_mut() = Body::Empty;
            }
            None
        }
    }
}

/// A `Sec-WebSocket-Key`: 16 random bytes, base64 (RFC 6455 §4.1). It is a
/// nonce proving the upstream speaks WebSocket, not a secret.
fn fresh_key() -> HeaderValue {
    use base64::Engine as _;
    let bytes = fastrand::u128(..).to_le_bytes();
    let text = base64::engine::general_purpose::STANDARD.encode(bytes);
    // Base64 is always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Sec-WebSocket-Accept` an upstream must answer `key` with.
fn accept_for(key: &HeaderValue) -> HeaderValue {
    use base64::Engine as _;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(WEBSOCKET_GUID);
    let text = base64::engine::general_purpose::STANDARD.encode(ctx.finish());
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_value_matches_rfc_6455_example() {
        // RFC 6455 §1.3.
        let key = HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(accept_for(&key), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn keys_are_fresh_16_byte_nonces() {
        use base64::Engine as _;
        let (a, b) = (fresh_key(), fresh_key());
        assert_ne!(a, b);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.as_bytes())
            .unwrap();
        assert_eq!(raw.len(), 16);
    }

    #[test]
    fn only_a_websocket_connect_hyper_kept_the_stream_for_is_an_upgrade() {
        let mut req = http::Request::new(());
        *req.method_mut() = Method::CONNECT;
        *req.version_mut() = http::Version::HTTP_2;
        *req.uri_mut() = "https://example.com/chat?room=1".parse().unwrap();
        req.extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        let (mut parts, ()) = req.into_parts();
        // Without the connection hyper hands over, there is nothing to upgrade.
        assert!(requested(&mut parts).is_none());
        assert_eq!(parts.method, Method::CONNECT, "left alone");

        let mut parts = parts;
        parts
            .extensions
            .insert(hyper::ext::Protocol::from_static("connect-udp"));
        assert!(requested(&mut parts).is_none(), "only websocket");
    }
}
