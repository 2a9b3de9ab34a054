//! Reading the server name (SNI) out of a TLS ClientHello without terminating TLS.
//!
//! The hello may arrive in pieces: split across TCP reads, and its handshake message
//! fragmented across several TLS records (RFC 8446 §5.1 allows it; some clients and
//! censorship-evasion tools do it). [`parse`] looks at everything read so far and
//! says whether more is needed; [`read_client_hello`] reads until it is not, keeping
//! every byte read so they can be sent upstream unchanged. Input is bounded
//! ([`MAX_HELLO`], [`MAX_BUFFERED`]) and any malformed input is an error, never a
//! panic: the parser only uses checked slicing through [`Reader`].

use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest TLS record payload (RFC 8446 §5.1).
const MAX_RECORD: usize = 1 << 14;

/// Largest ClientHello handshake message accepted. Real ones are 0.5-2 KiB (with
/// post-quantum key shares); 16 KiB is one full TLS record.
pub const MAX_HELLO: usize = 16 * 1024;
/// Most bytes read from the client before the hello must be complete: the hello
/// plus record headers of a heavily fragmented one.
pub const MAX_BUFFERED: usize = 2 * MAX_HELLO;

const RECORD_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST: u8 = 0;

/// Why no server name could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// The bytes are not a TLS ClientHello, or one that breaks its own lengths.
    #[error("not a TLS ClientHello: {0}")]
    Malformed(&'static str),
    /// The hello is larger than [`MAX_HELLO`], or not complete within [`MAX_BUFFERED`].
    #[error("ClientHello larger than {MAX_HELLO} bytes")]
    TooLarge,
    /// The client closed the connection before its hello was complete.
    #[error("connection closed before the ClientHello was complete")]
    Truncated,
    /// Reading from the client failed.
    #[error("reading the ClientHello: {0}")]
    Io(std::io::ErrorKind),
}

impl HelloError {
    /// The access log's `reason` for a connection refused because of this.
    pub fn reason(self) -> &'static str {
        match self {
            HelloError::Malformed(_) => "bad_client_hello",
            HelloError::TooLarge => "client_hello_too_large",
            HelloError::Truncated | HelloError::Io(_) => "client_closed",
        }
    }
}

/// What the bytes read so far amount to.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A complete ClientHello, with its server name if it sent one (lower-cased,
    /// without a trailing dot).
    Done(Option<String>),
    /// A valid prefix: read more.
    NeedMore,
}

/// Reads from `r` into `buf` until the ClientHello is complete; returns its server
/// name. `buf` then holds every byte read (the hello, and anything the client sent
/// right after it), to be written upstream first. The caller bounds the time.
pub async fn read_client_hello<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> Result<Option<String>, HelloError> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Parsed::Done(name) = parse(buf)? {
            return Ok(name);
        }
        let room = MAX_BUFFERED.saturating_sub(buf.len()).min(chunk.len());
        if room == 0 {
            return Err(HelloError::TooLarge);
        }
        let n = r
            .read(&mut chunk[..room])
            .await
            .map_err(|e| HelloError::Io(e.kind()))?;
        if n == 0 {
            return Err(HelloError::Truncated);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Parses the records in `data` as far as they go.
pub fn parse(data: &[u8]) -> Result<Parsed, HelloError> {
    let mut records = Reader(data);
    let mut message = Vec::new();
    loop {
        // The record header: content type, legacy version, length.
        let Some(header) = records.take(5) else {
            return first_byte_check(data).map(|()| Parsed::NeedMore);
        };
        if header[0] != RECORD_HANDSHAKE {
            return Err(HelloError::Malformed("not a TLS handshake record"));
        }
        if header[1] != 3 {
            return Err(HelloError::Malformed("unknown TLS record version"));
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > MAX_RECORD {
            return Err(HelloError::Malformed("bad TLS record length"));
        }
        let Some(fragment) = records.take(len) else {
            // The handshake header may be in the part read so far: refuse early.
            return check_declared(&message, records.0).map(|()| Parsed::NeedMore);
        };
        message.extend_from_slice(fragment);
        check_declared(&message, &[])?;
        if message.len() >= 4 {
            let body_len = u24(&message[1..4]);
            if message.len() >= 4 + body_len {
                // Bytes after the hello in the same message stream are not ours to judge.
                return client_hello(&message[4..4 + body_len]).map(Parsed::Done);
            }
        }
    }
}

/// Refuses at once a first byte that cannot start a TLS handshake record.
fn first_byte_check(data: &[u8]) -> Result<(), HelloError> {
    match data.first() {
        Some(&b) if b != RECORD_HANDSHAKE => {
            Err(HelloError::Malformed("not a TLS handshake record"))
        }
        _ => Ok(()),
    }
}

/// Checks the handshake header as soon as it is known: a ClientHello, within bounds.
fn check_declared(message: &[u8], partial: &[u8]) -> Result<(), HelloError> {
    let mut head = [0u8; 4];
    let mut known = 0;
    for (slot, b) in head.iter_mut().zip(message.iter().chain(partial)) {
        *slot = *b;
        known += 1;
    }
    if known > 0 && head[0] != HANDSHAKE_CLIENT_HELLO {
        return Err(HelloError::Malformed(
            "first handshake message is not a ClientHello",
        ));
    }
    if known == 4 && u24(&head[1..4]) > MAX_HELLO {
        return Err(HelloError::TooLarge);
    }
    Ok(())
}

fn u24(b: &[u8]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

/// The server name of a complete ClientHello body (after the handshake header).
fn client_hello(body: &[u8]) -> Result<Option<String>, HelloError> {
    const BAD: HelloError = HelloError::Malformed("ClientHello fields overrun its length");
    let mut r = Reader(body);
    let version = r.take(2).ok_or(BAD)?;
    if version[0] != 3 {
        return Err(HelloError::Malformed("unknown ClientHello version"));
    }
    r.take(32).ok_or(BAD)?; // random
    let session_id = r.vec8().ok_or(BAD)?;
    if session_id.len() > 32 {
        return Err(HelloError::Malformed("session id longer than 32 bytes"));
    }
    let suites = r.vec16().ok_or(BAD)?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(HelloError::Malformed("bad cipher suite list"));
    }
    if r.vec8().ok_or(BAD)?.is_empty() {
        return Err(HelloError::Malformed("no compression methods"));
    }
    if r.0.is_empty() {
        return Ok(None); // No extensions at all (old clients): no server name.
    }
    let mut exts = Reader(r.vec16().ok_or(BAD)?);
    while !exts.0.is_empty() {
        let kind = exts.u16().ok_or(BAD)?;
        let data = exts.vec16().ok_or(BAD)?;
        if kind == EXT_SERVER_NAME {
            return server_name(data);
        }
    }
    Ok(None)
}

/// The first `host_name` entry of a server_name extension (RFC 6066 §3).
fn server_name(data: &[u8]) -> Result<Option<String>, HelloError> {
    const BAD: HelloError = HelloError::Malformed("bad server_name extension");
    let mut ext = Reader(data);
    let mut list = Reader(ext.vec16().ok_or(BAD)?);
    while !list.0.is_empty() {
        let kind = list.take(1).ok_or(BAD)?[0];
        let name = list.vec16().ok_or(BAD)?;
        if kind != NAME_TYPE_HOST {
            continue;
        }
        let name = name.strip_suffix(b".").unwrap_or(name);
        let valid = !name.is_empty()
            && name.len() <= 253
            && name
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !valid {
            return Err(HelloError::Malformed("server name is not a DNS name"));
        }
        // Only ASCII bytes passed the check above, so this is valid UTF-8.
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        return Ok(Some(name));
    }
    Ok(None)
}

/// A cursor over bytes whose every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a one-byte length prefix.
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.take(1)?[0];
        self.take(usize::from(n))
    }

    /// A vector with a two-byte length prefix.
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

#[cfg(test)]
#[path = "sni_tests.rs"]
mod tests;
