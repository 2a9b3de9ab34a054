//! A request body that can be sent more than once, for retries of bodies the gateway
//! does not hold up front (no `content-length`, or one above `bodyBufferBytes`): the
//! first try streams the client's body upstream frame by frame while keeping a copy
//! of what it read, up to a cap; a retry replays the copy (data and trailers), then
//! continues with whatever the client has not sent yet. This is Envoy's and
//! linkerd2-proxy's approach, written afresh for this gateway's retry loop.
//!
//! Rules:
//! - Another try is possible while everything read from the client is in the copy:
//!   the client's body finished within the cap, or it is still arriving and has not
//!   passed the cap yet (a try that failed before reading anything included).
//! - Past the cap the copy is dropped for good; the try that passed it keeps
//!   streaming untouched, without the copy's lock from then on.
//! - Tries are sequential. `Replay::claim` starts the next one and cuts the previous
//!   try's body off: it yields nothing more. It is not ended either (an early end
//!   would let a truncated body look complete upstream), nor failed (the body's
//!   error type is hyper's, which only hyper can make); the upstream connection
//!   that carried it closes or resets it, as upstreams do once they have answered.
//! - Dropping the `Replay` handle (no more tries will come) stops the copying: if
//!   the client is still sending, the last try frees the copy once it has replayed
//!   it and reads the client without the lock (a finished body's copy, at most the
//!   cap, goes with the request).
//! - Cost while copying: one uncontended lock and one `Bytes` clone per frame.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

/// Kept by the retry loop: makes each try's body and says whether another try is
/// possible.
pub struct Replay<B> {
    shared: Arc<Shared<B>>,
}

/// One try's body.
pub struct ReplayBody<B> {
    shared: Arc<Shared<B>>,
    /// This try's number; only the latest try reads.
    id: u64,
    /// Frames of the copy this try has yielded.
    next: usize,
    /// Data bytes of the copy this try has yielded.
    yielded: u64,
    trailers_sent: bool,
    /// The client's body, taken out of the shared state once no other try can come
    /// (then read without the lock).
    owned: Option<B>,
}

struct Shared<B> {
    cap: u64,
    /// Data bytes read from the client, each counted once (for the access log).
    read: Arc<AtomicU64>,
    state: Mutex<State<B>>,
}

struct State<B> {
    /// Data frames read from the client so far.
    frames: Vec<Bytes>,
    /// Their total size.
    copied: u64,
    trailers: Option<HeaderMap>,
    /// The client's body, while it has more to give.
    rest: Option<B>,
    /// The client's body is finished: `frames` and `trailers` are all of it.
    ended: bool,
    /// Still copying: another try is possible. False past the cap, after a client
    /// body error, and once the retry loop has given its handle up.
    keep: bool,
    /// The try allowed to read.
    current: u64,
}

impl<B> Shared<B> {
    fn lock(&self) -> MutexGuard<'_, State<B>> {
        // Nothing panics while the lock is held; a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<B> Replay<B> {
    /// Wraps the client's body; at most `cap` data bytes are copied. `read` counts
    /// the data bytes read from the client.
    pub fn new(body: B, cap: u64, read: Arc<AtomicU64>) -> Self {
        Replay {
            shared: Arc::new(Shared {
                cap,
                read,
                state: Mutex::new(State {
                    frames: Vec::new(),
                    copied: 0,
                    trailers: None,
                    rest: Some(body),
                    ended: false,
                    keep: true,
                    current: 0,
                }),
            }),
        }
    }

    /// The body for the current try (the first, or the one the last `claim` started).
    pub fn body(&self) -> ReplayBody<B> {
        let id = self.shared.lock().current;
        ReplayBody {
            shared: self.shared.clone(),
            id,
            next: 0,
            yielded: 0,
            trailers_sent: false,
            owned: None,
        }
    }

    /// Whether another try could be sent the whole body now (a peek: the try in
    /// flight may still pass the cap before `claim`).
    pub fn replayable(&self) -> bool {
        self.shared.lock().keep
    }

    /// Starts the next try if the body is still replayable: from now on the previous
    /// try's body yields nothing more. False when the copy is gone.
    pub fn claim(&self) -> bool {
        let mut state = self.shared.lock();
        if state.keep {
            state.current += 1;
        }
        state.keep
    }
}

impl<B> Drop for Replay<B> {
    fn drop(&mut self) {
        // No more tries: the last one stops copying once it has replayed the copy.
        self.shared.lock().keep = false;
    }
}

impl<B> std::fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayBody")
            .field("try", &self.id)
            .field("replayed_frames", &self.next)
            .field("owned", &self.owned.is_some())
            .finish_non_exhaustive()
    }
}

impl<B> ReplayBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    fn poll_owned(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let Some(rest) = self.owned.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(rest).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.shared
                .read
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        if this.owned.is_some() {
            return this.poll_owned(cx);
        }
        let mut state = this.shared.lock();
        if state.current != this.id {
            // Cut off by a later try (see the module doc).
            return Poll::Pending;
        }
        if let Some(frame) = state.frames.get(this.next) {
            this.next += 1;
            this.yielded += frame.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(frame.clone()))));
        }
        if state.ended {
            if !this.trailers_sent
                && let Some(trailers) = &state.trailers
            {
                this.trailers_sent = true;
                return Poll::Ready(Some(Ok(Frame::trailers(trailers.clone()))));
            }
            return Poll::Ready(None);
        }
        if !state.keep {
            // No other try can come: free the copy and read the client directly.
            state.frames = Vec::new();
            this.owned = state.rest.take();
            drop(state);
            if this.owned.is_none() {
                // Only after a client body error, which ended this try already.
                return Poll::Pending;
            }
            return this.poll_owned(cx);
        }
        let Some(rest) = state.rest.as_mut() else {
            return Poll::Pending;
        };
        let polled = ready!(Pin::new(rest).poll_frame(cx));
        let frame = match polled {
            None => {
                state.ended = true;
                state.rest = None;
                return Poll::Ready(None);
            }
            Some(Err(e)) => {
                // A broken client body is never replayed.
                state.keep = false;
                state.rest = None;
                state.frames = Vec::new();
                return Poll::Ready(Some(Err(e)));
            }
            Some(Ok(frame)) => frame,
        };
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            this.shared.read.fetch_add(len, Ordering::Relaxed);
            if state.copied.saturating_add(len) > this.shared.cap {
                // Past the cap: no retry any more; this try goes on without the copy.
                state.keep = false;
                state.frames = Vec::new();
                this.owned = state.rest.take();
            } else if len > 0 {
                state.frames.push(data.clone());
                state.copied += len;
                this.next = state.frames.len();
                this.yielded += len;
            }
        } else if let Some(trailers) = frame.trailers_ref() {
            // Trailers end a body.
            state.trailers = Some(trailers.clone());
            state.ended = true;
            state.rest = None;
            this.trailers_sent = true;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        if let Some(rest) = &self.owned {
            return rest.is_end_stream();
        }
        let state = self.shared.lock();
        state.current == self.id
            && self.next >= state.frames.len()
            && (self.trailers_sent || state.trailers.is_none())
            && (state.ended || state.rest.as_ref().is_some_and(B::is_end_stream))
    }

    fn size_hint(&self) -> SizeHint {
        if let Some(rest) = &self.owned {
            return rest.size_hint();
        }
        let state = self.shared.lock();
        if state.current != self.id {
            return SizeHint::default();
        }
        let copy_left = state.copied.saturating_sub(self.yielded);
        if state.ended {
            return SizeHint::with_exact(copy_left);
        }
        let Some(rest) = &state.rest else {
            return SizeHint::default();
        };
        let rest = rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(copy_left.saturating_add(rest.lower()));
        if let Some(upper) = rest.upper() {
            hint.set_upper(copy_left.saturating_add(upper));
        }
        hint
    }
}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
