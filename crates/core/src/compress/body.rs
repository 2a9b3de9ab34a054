//! The compressed response body: the upstream's frames pass through an encoder as
//! they arrive. Output is flushed whenever the upstream has nothing more ready (so
//! server-sent events and other streams keep streaming) or when enough output
//! has piled up; the whole body is never held.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body as _, Frame, SizeHint};
use meshgate_config::model::{CompressionAlgorithm as Algorithm, CompressionLevel};

use crate::body::Body;

/// Output at which a frame is emitted even while the upstream keeps data ready.
const EMIT_AT: usize = 32 * 1024;

/// A response body compressed on the fly.
#[derive(Debug)]
pub struct Encoded {
    inner: Body,
    /// `None` once the encoder has been finished (or failed).
    encoder: Option<Encoder>,
    /// Trailers seen after the last data frame, sent after the encoder's tail.
    trailers: Option<HeaderMap>,
    /// Data written since the last flush.
    unflushed: bool,
    done: bool,
}

impl Encoded {
    pub(super) fn new(inner: Body, algorithm: Algorithm, level: CompressionLevel) -> Self {
        Encoded {
            inner,
            encoder: Some(Encoder::new(algorithm, level)),
            trailers: None,
            unflushed: false,
            done: false,
        }
    }

    pub fn is_end_stream(&self) -> bool {
        self.done
    }

    pub fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }

    /// Finishes the encoder: its tail, or nothing if it was already finished.
    fn finish(&mut self) -> Option<Bytes> {
        let out = self.encoder.take()?.finish();
        self.emit(out)
    }

    fn emit(&mut self, out: std::io::Result<Bytes>) -> Option<Bytes> {
        match out {
            Ok(b) if b.is_empty() => None,
            Ok(b) => Some(b),
            Err(e) => {
                // Writing into memory does not fail short of a bug; ending the
                // stream early leaves the client a truncated (detectably corrupt)
                // body rather than a wrong one.
                tracing::warn!(error = %e, "response compression failed; body truncated");
                self.encoder = None;
                self.trailers = None;
                self.done = true;
                None
            }
        }
    }

    pub fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            let Some(encoder) = self.encoder.as_mut() else {
                // Encoder finished: only trailers (if any) remain.
                self.done = true;
                return Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))));
            };
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        if data.is_empty() {
                            continue;
                        }
                        let out = encoder.write(&data, false);
                        self.unflushed = true;
                        if let Some(b) = self.emit(out) {
                            return Poll::Ready(Some(Ok(Frame::data(b))));
                        }
                    }
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            self.trailers = Some(t);
                        }
                        if let Some(b) = self.finish() {
                            return Poll::Ready(Some(Ok(Frame::data(b))));
                        }
                    }
                },
                Poll::Ready(Some(Err(e))) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    if let Some(b) = self.finish() {
                        return Poll::Ready(Some(Ok(Frame::data(b))));
                    }
                }
                Poll::Pending => {
                    if !self.unflushed {
                        return Poll::Pending;
                    }
                    // The upstream has nothing more right now: send what we have
                    // so the client sees it without waiting for more.
                    self.unflushed = false;
                    let out = encoder.write(&[], true);
                    if let Some(b) = self.emit(out) {
                        return Poll::Ready(Some(Ok(Frame::data(b))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// One of the three encoders, each writing into its own buffer that is drained
/// after every call.
enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    /// zstd could not allocate its context; treated as a failed encoder.
    Broken,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encoder::Gzip(_) => "Encoder::Gzip",
            Encoder::Br(_) => "Encoder::Br",
            Encoder::Zstd(_) => "Encoder::Zstd",
            Encoder::Broken => "Encoder::Broken",
        })
    }
}

impl Encoder {
    fn new(algorithm: Algorithm, level: CompressionLevel) -> Self {
        let (gzip, br, zstd) = match level {
            CompressionLevel::Fast => (1, 1, 1),
            CompressionLevel::Default => (6, 4, 3),
            CompressionLevel::Best => (9, 9, 12),
        };
        match algorithm {
            Algorithm::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(gzip),
            )),
            // 22 = 4 MiB window, the brotli default.
            Algorithm::Br => Encoder::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                br,
                22,
            ))),
            Algorithm::Zstd => match zstd::stream::write::Encoder::new(Vec::new(), zstd) {
                Ok(e) => Encoder::Zstd(e),
                Err(_) => Encoder::Broken,
            },
        }
    }

    fn buffer(&mut self) -> Option<&mut Vec<u8>> {
        match self {
            Encoder::Gzip(e) => Some(e.get_mut()),
            Encoder::Br(e) => Some(e.get_mut()),
            Encoder::Zstd(e) => Some(e.get_mut()),
            Encoder::Broken => None,
        }
    }

    /// Compresses `data` (and flushes when asked). Returns the output so far after
    /// a flush or once it reaches `EMIT_AT`, else nothing (it stays buffered).
    fn write(&mut self, data: &[u8], flush: bool) -> std::io::Result<Bytes> {
        let w: &mut dyn Write = match self {
            Encoder::Gzip(e) => e,
            Encoder::Br(e) => &mut **e,
            Encoder::Zstd(e) => e,
            Encoder::Broken => return Err(std::io::Error::other("no zstd context")),
        };
        w.write_all(data)?;
        if flush {
            w.flush()?;
        }
        match self.buffer() {
            Some(buf) if flush || buf.len() >= EMIT_AT => Ok(std::mem::take(buf).into()),
            _ => Ok(Bytes::new()),
        }
    }

    /// Ends the stream: everything still buffered plus the format's trailer.
    fn finish(self) -> std::io::Result<Bytes> {
        let out = match self {
            Encoder::Gzip(e) => e.finish()?,
            Encoder::Br(e) => e.into_inner(),
            Encoder::Zstd(e) => e.finish()?,
            Encoder::Broken => return Err(std::io::Error::other("no zstd context")),
        };
        Ok(out.into())
    }
}
