//! Tests of the ClientHello parser: real rustls hellos, hellos split across reads
//! and fragmented across records, and truncated, oversized, mutated and random
//! input (which must give an error or "need more", never a panic).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::*;

/// The bytes a real rustls client sends first, for `name` (a DNS name or an IP).
fn rustls_hello(name: &str) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

/// A minimal ClientHello body carrying a server_name extension with `name`.
fn hello_body(name: &[u8]) -> Vec<u8> {
    let mut sni = Vec::new();
    sni.push(NAME_TYPE_HOST);
    sni.extend((name.len() as u16).to_be_bytes());
    sni.extend(name);
    let mut ext_data = (sni.len() as u16).to_be_bytes().to_vec();
    ext_data.extend(sni);
    let mut exts = EXT_SERVER_NAME.to_be_bytes().to_vec();
    exts.extend((ext_data.len() as u16).to_be_bytes());
    exts.extend(ext_data);
    let mut body = vec![3, 3];
    body.extend([7u8; 32]); // random
    body.push(0); // session id
    body.extend([0, 2, 0x13, 0x01]); // one cipher suite
    body.extend([1, 0]); // null compression
    body.extend((exts.len() as u16).to_be_bytes());
    body.extend(exts);
    body
}

/// The handshake message around `body`, framed in records of at most `per_record`.
fn framed(body: &[u8], per_record: usize) -> Vec<u8> {
    let mut message = vec![HANDSHAKE_CLIENT_HELLO];
    message.extend(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend(body);
    let mut out = Vec::new();
    for chunk in message.chunks(per_record) {
        out.extend([RECORD_HANDSHAKE, 3, 1]);
        out.extend((chunk.len() as u16).to_be_bytes());
        out.extend(chunk);
    }
    out
}

/// An `AsyncRead` that hands out `step` bytes per read.
struct Trickle {
    data: Vec<u8>,
    at: usize,
    step: usize,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self
            .step
            .min(buf.remaining())
            .min(self.data.len() - self.at);
        let at = self.at;
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

async fn read_all(data: Vec<u8>, step: usize) -> (Result<Option<String>, HelloError>, Vec<u8>) {
    let mut r = Trickle { data, at: 0, step };
    let mut buf = Vec::new();
    let got = read_client_hello(&mut r, &mut buf).await;
    (got, buf)
}

#[test]
fn real_rustls_hello_gives_its_server_name() {
    let hello = rustls_hello("a.test");
    assert_eq!(parse(&hello), Ok(Parsed::Done(Some("a.test".into()))));
    let hello = rustls_hello("Deep.Sub.Example.COM");
    assert_eq!(
        parse(&hello),
        Ok(Parsed::Done(Some("deep.sub.example.com".into())))
    );
}

#[test]
fn hello_without_sni_has_no_name() {
    // rustls sends no SNI when connecting to an IP address.
    let hello = rustls_hello("127.0.0.1");
    assert_eq!(parse(&hello), Ok(Parsed::Done(None)));
}

#[test]
fn every_prefix_needs_more() {
    let hello = rustls_hello("a.test");
    for n in 0..hello.len() {
        assert_eq!(parse(&hello[..n]), Ok(Parsed::NeedMore), "prefix {n}");
    }
}

#[tokio::test]
async fn hello_split_across_reads_is_reassembled() {
    let mut hello = rustls_hello("b.test");
    let len = hello.len();
    hello.extend(b"early bytes after the hello");
    for step in [1, 2, 3, 5, 64, 4096] {
        let (got, buf) = read_all(hello.clone(), step).await;
        assert_eq!(got, Ok(Some("b.test".into())), "step {step}");
        // Everything read is kept for the upstream; reading stopped once complete.
        assert!(buf.len() >= len && hello.starts_with(&buf), "step {step}");
    }
}

#[test]
fn hello_fragmented_across_records_is_reassembled() {
    let body = hello_body(b"frag.test");
    for per_record in [1, 4, 7, 100] {
        let data = framed(&body, per_record);
        assert_eq!(
            parse(&data),
            Ok(Parsed::Done(Some("frag.test".into()))),
            "{per_record} bytes per record"
        );
    }
}

#[test]
fn names_are_normalised_and_checked() {
    let name = |n: &[u8]| parse(&framed(&hello_body(n), 1 << 14));
    assert_eq!(name(b"A.Test."), Ok(Parsed::Done(Some("a.test".into()))));
    for bad in [
        &b""[..],
        b".",
        b"a b.test",
        b"a\0.test",
        b"caf\xc3\xa9.test",
    ] {
        assert!(
            matches!(name(bad), Err(HelloError::Malformed(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn other_protocols_are_refused_at_once() {
    for data in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"\x80\x2e\x01\x03\x01",
        b"SSH-2.0-x",
    ] {
        assert!(matches!(parse(data), Err(HelloError::Malformed(_))));
        assert!(matches!(parse(&data[..1]), Err(HelloError::Malformed(_))));
    }
    // A handshake record whose message is not a ClientHello (a ServerHello).
    assert!(matches!(
        parse(&[22, 3, 3, 0, 4, 2, 0, 0, 0]),
        Err(HelloError::Malformed(_))
    ));
    // Application data before any handshake.
    assert!(matches!(
        parse(&[23, 3, 3, 0, 1, 0]),
        Err(HelloError::Malformed(_))
    ));
}

#[test]
fn oversized_hellos_are_refused_early() {
    // The handshake header alone declares 1 MiB: refused without waiting for it.
    assert_eq!(
        parse(&[22, 3, 1, 0x40, 0, 1, 0x10, 0, 0]),
        Err(HelloError::TooLarge)
    );
    // A record longer than TLS allows.
    assert!(matches!(
        parse(&[22, 3, 1, 0xff, 0xff]),
        Err(HelloError::Malformed(_))
    ));
}

#[tokio::test]
async fn endless_fragments_stop_at_the_buffer_cap() {
    // A header declaring a large (allowed) hello, then one-byte records forever.
    let mut data = framed(&[], 4);
    data.clear();
    data.extend([22, 3, 1, 0, 4, 1, 0, 0x3f, 0xff]);
    while data.len() < 4 * MAX_BUFFERED {
        data.extend([22, 3, 1, 0, 1, 0]);
    }
    let (got, buf) = read_all(data, 4096).await;
    assert_eq!(got, Err(HelloError::TooLarge));
    assert!(buf.len() <= MAX_BUFFERED);
}

#[tokio::test]
async fn truncated_hello_is_reported() {
    let hello = rustls_hello("a.test");
    let (got, _) = read_all(hello[..hello.len() / 2].to_vec(), 7).await;
    assert_eq!(got, Err(HelloError::Truncated));
    let (got, _) = read_all(Vec::new(), 7).await;
    assert_eq!(got, Err(HelloError::Truncated));
}

#[test]
fn inner_lengths_that_overrun_are_malformed() {
    let body = hello_body(b"a.test");
    // Every strict prefix of the body, framed as if it were the whole hello.
    for n in 0..body.len() {
        let got = parse(&framed(&body[..n], 1 << 14));
        assert!(
            matches!(got, Err(HelloError::Malformed(_)) | Ok(Parsed::Done(None))),
            "body prefix {n}: {got:?}"
        );
    }
}

#[test]
fn mutated_hellos_never_panic() {
    let hello = rustls_hello("mutate.example.com");
    let mut rng = fastrand::Rng::with_seed(5);
    for _ in 0..20_000 {
        let mut data = hello.clone();
        for _ in 0..rng.usize(1..4) {
            let i = rng.usize(..data.len());
            data[i] = rng.u8(..);
        }
        let cut = rng.usize(..=data.len());
        let _ = parse(&data[..cut]);
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..20_000 {
        let len = rng.usize(..300);
        let mut data: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        // Half the time, a plausible record header so the inner parser is reached.
        if rng.bool() && len >= 9 {
            data[..6].copy_from_slice(&[22, 3, 1, 0, (len - 5) as u8, 1]);
        }
        let _ = parse(&data);
    }
}
