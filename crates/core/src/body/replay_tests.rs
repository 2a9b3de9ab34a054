//! Unit tests of `Replay`/`ReplayBody` against a client body the test feeds frame by
//! frame (so a try can be polled while the client is still sending).

use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Waker;

use super::*;
use tokio::sync::mpsc;

#[derive(Debug, PartialEq)]
struct Broken;

type Item = Result<Frame<Bytes>, Broken>;

/// A client body: frames arrive as the test sends them, the end when it drops the
/// sender. `left` is its exact remaining length, when it announced one.
struct Client {
    rx: mpsc::UnboundedReceiver<Item>,
    left: Option<u64>,
    done: bool,
}

impl Body for Client {
    type Data = Bytes;
    type Error = Broken;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let polled = self.rx.poll_recv(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                self.left = self.left.map(|l| l - n);
            }
            Poll::Ready(None) => self.done = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        self.left
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

fn client(len: Option<u64>) -> (mpsc::UnboundedSender<Item>, Client) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        tx,
        Client {
            rx,
            left: len,
            done: false,
        },
    )
}

fn data(s: &'static str) -> Item {
    Ok(Frame::data(Bytes::from_static(s.as_bytes())))
}

fn trailers() -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("x-checksum", "42".parse().unwrap());
    t
}

#[derive(Debug, PartialEq)]
enum Got {
    Data(Bytes),
    Trailers(HeaderMap),
    Error,
    End,
    Pending,
}

fn d(s: &'static str) -> Got {
    Got::Data(Bytes::from_static(s.as_bytes()))
}

/// Polls a try once, without waiting.
fn got(body: &mut ReplayBody<Client>) -> Got {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(body).poll_frame(&mut cx) {
        Poll::Pending => Got::Pending,
        Poll::Ready(None) => Got::End,
        Poll::Ready(Some(Err(Broken))) => Got::Error,
        Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
            Ok(bytes) => Got::Data(bytes),
            Err(frame) => Got::Trailers(frame.into_trailers().unwrap()),
        },
    }
}

fn replay(body: Client, cap: u64) -> (Replay<Client>, Arc<AtomicU64>) {
    let read = Arc::new(AtomicU64::new(0));
    (Replay::new(body, cap, read.clone()), read)
}

fn exact(body: &ReplayBody<Client>) -> Option<u64> {
    body.size_hint().exact()
}

#[test]
fn a_finished_body_is_copied_and_replayed_whole() {
    let (tx, c) = client(None);
    tx.send(data("hello ")).unwrap();
    tx.send(data("world")).unwrap();
    drop(tx);
    let (r, read) = replay(c, 64);
    let mut first = r.body();
    assert_eq!(got(&mut first), d("hello "));
    assert_eq!(got(&mut first), d("world"));
    assert_eq!(got(&mut first), Got::End);
    assert!(r.replayable());
    for _ in 0..2 {
        assert!(r.claim());
        let mut again = r.body();
        assert!(!again.is_end_stream());
        assert_eq!(exact(&again), Some(11));
        assert_eq!(got(&mut again), d("hello "));
        assert_eq!(got(&mut again), d("world"));
        assert!(again.is_end_stream());
        assert_eq!(exact(&again), Some(0));
        assert_eq!(got(&mut again), Got::End);
    }
    assert_eq!(
        read.load(Ordering::Relaxed),
        11,
        "client bytes counted once"
    );
}

#[test]
fn past_the_cap_the_copy_is_dropped_and_the_try_streams_on() {
    let (tx, c) = client(None);
    for s in ["12345", "67890", "abc"] {
        tx.send(data(s)).unwrap();
    }
    drop(tx);
    let (r, read) = replay(c, 8);
    let mut first = r.body();
    assert_eq!(got(&mut first), d("12345"));
    assert!(r.replayable(), "5 bytes are within the cap");
    assert_eq!(got(&mut first), d("67890"));
    assert!(!r.replayable(), "10 bytes are not");
    assert!(r.shared.lock().frames.is_empty(), "the copy is freed");
    assert!(!r.claim());
    assert_eq!(got(&mut first), d("abc"), "the first try is untouched");
    assert_eq!(got(&mut first), Got::End);
    assert_eq!(read.load(Ordering::Relaxed), 13);
}

#[test]
fn a_retry_replays_the_copy_then_reads_a_client_still_sending() {
    let (tx, c) = client(None);
    tx.send(data("a")).unwrap();
    let (r, read) = replay(c, 64);
    let mut first = r.body();
    assert_eq!(got(&mut first), d("a"));
    assert_eq!(got(&mut first), Got::Pending);
    assert!(r.claim(), "the first try failed mid-stream");
    let mut second = r.body();
    assert_eq!(got(&mut second), d("a"));
    assert_eq!(got(&mut second), Got::Pending);
    tx.send(data("b")).unwrap();
    assert_eq!(got(&mut first), Got::Pending, "a cut-off try reads nothing");
    assert!(!first.is_end_stream());
    assert_eq!(first.size_hint().exact(), None);
    assert_eq!(got(&mut second), d("b"));
    drop(tx);
    assert_eq!(got(&mut second), Got::End);
    assert!(r.claim());
    let mut third = r.body();
    assert_eq!(got(&mut third), d("a"));
    assert_eq!(got(&mut third), d("b"), "copied by the second try");
    assert_eq!(got(&mut third), Got::End);
    assert_eq!(read.load(Ordering::Relaxed), 2);
}

#[test]
fn trailers_are_replayed_after_the_data() {
    let (tx, c) = client(None);
    tx.send(data("x")).unwrap();
    tx.send(Ok(Frame::trailers(trailers()))).unwrap();
    let (r, _) = replay(c, 64);
    let mut first = r.body();
    assert_eq!(got(&mut first), d("x"));
    assert_eq!(got(&mut first), Got::Trailers(trailers()));
    assert!(first.is_end_stream(), "trailers end a body");
    assert_eq!(got(&mut first), Got::End);
    assert!(r.claim());
    let mut second = r.body();
    assert_eq!(exact(&second), Some(1));
    assert_eq!(got(&mut second), d("x"));
    assert!(!second.is_end_stream(), "the trailers are still to come");
    assert_eq!(got(&mut second), Got::Trailers(trailers()));
    assert!(second.is_end_stream());
    assert_eq!(got(&mut second), Got::End);
    drop(tx);
}

#[test]
fn an_empty_body_replays_as_empty() {
    let (tx, c) = client(Some(0));
    drop(tx);
    let (r, read) = replay(c, 64);
    let mut first = r.body();
    assert_eq!(exact(&first), Some(0));
    assert_eq!(got(&mut first), Got::End);
    assert!(r.claim());
    let mut second = r.body();
    assert!(second.is_end_stream());
    assert_eq!(exact(&second), Some(0));
    assert_eq!(got(&mut second), Got::End);
    assert_eq!(read.load(Ordering::Relaxed), 0);
}

#[test]
fn a_try_that_read_nothing_leaves_everything_to_the_next() {
    // A connect failure: the body was never polled, so even a body larger than the
    // cap can go out again.
    let (tx, c) = client(Some(10));
    tx.send(data("0123456789")).unwrap();
    drop(tx);
    let (r, _) = replay(c, 4);
    drop(r.body());
    assert!(r.replayable());
    assert!(r.claim());
    let mut second = r.body();
    assert_eq!(exact(&second), Some(10));
    assert_eq!(got(&mut second), d("0123456789"));
    assert!(!r.replayable(), "now past the cap");
    assert_eq!(got(&mut second), Got::End);
}

#[test]
fn size_hints_add_the_copy_left_and_the_client_rest() {
    let (tx, c) = client(Some(6));
    tx.send(data("abc")).unwrap();
    let (r, _) = replay(c, 64);
    let mut first = r.body();
    assert_eq!(exact(&first), Some(6));
    assert_eq!(got(&mut first), d("abc"));
    assert_eq!(exact(&first), Some(3));
    assert!(r.claim());
    let mut second = r.body();
    assert_eq!(exact(&second), Some(6), "3 copied + 3 still to come");
    assert_eq!(got(&mut second), d("abc"));
    assert_eq!(exact(&second), Some(3));
    tx.send(data("def")).unwrap();
    drop(tx);
    assert_eq!(got(&mut second), d("def"));
    assert_eq!(exact(&second), Some(0));

    // Without a length: the copy is a lower bound, no upper bound.
    let (tx, c) = client(None);
    tx.send(data("abc")).unwrap();
    let (r, _) = replay(c, 64);
    let mut first = r.body();
    assert_eq!(got(&mut first), d("abc"));
    assert!(r.claim());
    let second = r.body();
    let hint = second.size_hint();
    assert_eq!((hint.lower(), hint.upper()), (3, None));
    drop(tx);
}

#[test]
fn a_client_body_error_is_passed_on_and_never_replayed() {
    let (tx, c) = client(None);
    tx.send(data("a")).unwrap();
    tx.send(Err(Broken)).unwrap();
    let (r, _) = replay(c, 64);
    let mut first = r.body();
    assert_eq!(got(&mut first), d("a"));
    assert_eq!(got(&mut first), Got::Error);
    assert!(!r.replayable());
    assert!(!r.claim());
}

#[test]
fn giving_the_handle_up_stops_the_copying() {
    let (tx, c) = client(None);
    tx.send(data("a")).unwrap();
    let (r, read) = replay(c, 64);
    let mut first = r.body();
    assert_eq!(got(&mut first), d("a"));
    drop(r);
    tx.send(data("b")).unwrap();
    assert_eq!(got(&mut first), d("b"));
    assert!(first.owned.is_some(), "reads the client without the lock");
    assert!(first.shared.lock().frames.is_empty(), "the copy is freed");
    drop(tx);
    assert_eq!(got(&mut first), Got::End);
    assert!(first.is_end_stream());
    assert_eq!(read.load(Ordering::Relaxed), 2);
}
