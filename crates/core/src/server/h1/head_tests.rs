//! What `head::parse` serves itself, what it leaves to hyper, and what it leaves
//! in the buffer.

use bytes::BytesMut;
use http_body::Body as _;

use super::{Keep, Parsed, parse};

fn parsed(text: &str) -> (Parsed, BytesMut) {
    let mut buf = BytesMut::from(text.as_bytes());
    (parse(&mut buf), buf)
}

fn handed_off(text: &str) -> bool {
    matches!(parsed(text).0, Parsed::Handoff)
}

#[test]
fn a_plain_request_is_served_and_taken_out_of_the_buffer() {
    let (p, rest) =
        parsed("GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Custom: v\r\n\r\nGET /next HTTP/1.1\r\n");
    let Parsed::Request(req, keep) = p else {
        panic!("not served")
    };
    assert_eq!(keep, Keep::Alive);
    assert_eq!(req.method(), http::Method::GET);
    assert_eq!(req.uri(), "/a?b=1");
    assert_eq!(req.version(), http::Version::HTTP_11);
    assert_eq!(req.headers()["host"], "x");
    assert_eq!(req.headers()["x-custom"], "v");
    assert_eq!(req.body().size_hint().exact(), Some(0));
    // The next (pipelined) request stays for the next parse.
    assert_eq!(&rest[..], b"GET /next HTTP/1.1\r\n");
}

#[test]
fn a_body_that_came_with_its_head_is_held() {
    let (p, rest) = parsed("POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\nhelloGET");
    let Parsed::Request(req, _) = p else {
        panic!("not served")
    };
    assert_eq!(req.body().size_hint().exact(), Some(5));
    assert_eq!(&rest[..], b"GET");
}

#[test]
fn connection_close_is_kept_for_the_response() {
    let (p, _) = parsed("GET / HTTP/1.1\r\nconnection: keep-alive, Close\r\n\r\n");
    assert!(matches!(p, Parsed::Request(_, Keep::Close)));
}

#[test]
fn a_partial_head_waits_for_more() {
    assert!(matches!(
        parsed("GET / HTTP/1.1\r\nhost: x\r\n").0,
        Parsed::Partial
    ));
}

#[test]
fn the_unusual_is_left_to_hyper() {
    for text in [
        "GET / HTTP/1.0\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "CONNECT a:443 HTTP/1.1\r\nhost: a:443\r\n\r\n",
        "GET / HTTP/1.1\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n",
        "GET / HTTP/1.1\r\nupgrade: h2c\r\n\r\n",
        "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 1\r\n\r\n",
        // A body still on its way.
        "POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\nhel",
        // Lengths hyper must judge: two of them (even equal), a sign, not a number.
        "POST / HTTP/1.1\r\ncontent-length: 0\r\ncontent-length: 2\r\n\r\nhi",
        "POST / HTTP/1.1\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nhi",
        "POST / HTTP/1.1\r\ncontent-length: +2\r\n\r\nhi",
        "POST / HTTP/1.1\r\ncontent-length: 2x\r\n\r\nhi",
        // Malformed: httparse refuses it, hyper answers 400.
        "GET / HTTP/1.1\r\nbad header\r\n\r\n",
    ] {
        assert!(handed_off(text), "{text:?}");
    }
}

#[test]
fn more_headers_than_it_takes_are_left_to_hyper() {
    let mut text = String::from("GET / HTTP/1.1\r\n");
    for i in 0..super::MAX_HEADERS + 1 {
        text.push_str(&format!("x-{i}: v\r\n"));
    }
    text.push_str("\r\n");
    assert!(handed_off(&text));
}
