//! W3C Trace Context (`traceparent` / `tracestate`): continue the caller's trace or
//! start one, and name the gateway's two spans (server, and client for the upstream).

use http::{HeaderMap, HeaderName, HeaderValue};

pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

/// The trace a request belongs to and the ids of the gateway's spans in it.
#[derive(Debug, Clone)]
pub struct TraceContext {
    pub trace_id: TraceId,
    /// The caller's span, when the request carried a valid `traceparent`.
    pub parent_span_id: Option<SpanId>,
    /// The gateway's server span (the whole request).
    pub span_id: SpanId,
    /// The gateway's client span (the upstream call); the upstream's parent.
    pub upstream_span_id: SpanId,
    pub sampled: bool,
    /// Passed through unchanged.
    pub tracestate: Option<HeaderValue>,
}

impl TraceContext {
    /// Continues a valid incoming `traceparent` (keeping its sampled flag) or starts
    /// a new trace, sampled with probability `sample_ratio`.
    pub fn from_headers(headers: &HeaderMap, sample_ratio: f64) -> Self {
        let parsed = headers.get(&TRACEPARENT).and_then(|v| parse(v.as_bytes()));
        let (trace_id, parent_span_id, sampled) = match parsed {
            Some((trace, parent, flags)) => (trace, Some(parent), flags & 1 == 1),
            None => (
                fastrand::u128(1..).to_be_bytes(),
                None,
                fastrand::f64() < sample_ratio,
            ),
        };
        TraceContext {
            trace_id,
            parent_span_id,
            span_id: fastrand::u64(1..).to_be_bytes(),
            upstream_span_id: fastrand::u64(1..).to_be_bytes(),
            sampled,
            tracestate: parsed.and_then(|_| headers.get(&TRACESTATE).cloned()),
        }
    }

    /// `traceparent` for the upstream request: same trace, the client span as parent.
    pub fn upstream_traceparent(&self) -> HeaderValue {
        let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-00";
        write_hex(&mut buf[3..35], &self.trace_id);
        write_hex(&mut buf[36..52], &self.upstream_span_id);
        if self.sampled {
            buf[54] = b'1';
        }
        HeaderValue::from_bytes(&buf).expect("hex is a valid header value")
    }

    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// Sets `traceparent` (and passes `tracestate`) on an upstream request.
    pub fn inject(&self, headers: &mut HeaderMap) {
        headers.insert(TRACEPARENT.clone(), self.upstream_traceparent());
        match &self.tracestate {
            Some(state) => {
                headers.insert(TRACESTATE.clone(), state.clone());
            }
            None => {
                headers.remove(&TRACESTATE);
            }
        }
    }
}

/// `version-traceid-parentid-flags`; all-zero ids and version `ff` are invalid.
fn parse(v: &[u8]) -> Option<(TraceId, SpanId, u8)> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let mut parts = s.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    let trace: TraceId = unhex(trace)?;
    let parent: SpanId = unhex(parent)?;
    let flags: [u8; 1] = unhex(flags)?;
    if trace == [0; 16] || parent == [0; 8] {
        return None;
    }
    Some((trace, parent, flags[0]))
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex of `bytes` into `out` (twice as long).
pub fn write_hex(out: &mut [u8], bytes: &[u8]) {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
}

pub fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    write_hex(&mut out, bytes);
    String::from_utf8(out).expect("hex digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn continues_a_valid_trace_and_keeps_tracestate() {
        let mut h = HeaderMap::new();
        h.insert("traceparent", INCOMING.parse().unwrap());
        h.insert("tracestate", "vendor=x".parse().unwrap());
        let cx = TraceContext::from_headers(&h, 0.0);
        assert_eq!(cx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            cx.parent_span_id.map(|p| hex(&p)).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert!(cx.sampled, "the caller's flag wins over the ratio");
        let mut up = HeaderMap::new();
        cx.inject(&mut up);
        let tp = up["traceparent"].to_str().unwrap();
        assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(tp.ends_with("-01"));
        assert_eq!(&tp[36..52], hex(&cx.upstream_span_id));
        assert_eq!(up["tracestate"], "vendor=x");
    }

    #[test]
    fn invalid_traceparents_start_a_new_trace() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "garbage",
        ] {
            let mut h = HeaderMap::new();
            h.insert("traceparent", bad.parse().unwrap());
            h.insert("tracestate", "vendor=x".parse().unwrap());
            let cx = TraceContext::from_headers(&h, 1.0);
            assert!(cx.parent_span_id.is_none(), "{bad}");
            assert_ne!(cx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
            assert!(
                cx.tracestate.is_none(),
                "tracestate is dropped with an invalid traceparent"
            );
        }
    }

    #[test]
    fn sample_ratio_decides_new_traces() {
        let h = HeaderMap::new();
        assert!(TraceContext::from_headers(&h, 1.0).sampled);
        assert!(!TraceContext::from_headers(&h, 0.0).sampled);
    }
}
