//! Request ids: the client's `x-request-id` when it is sane, otherwise a new random one.

use http::{HeaderMap, HeaderValue};

use crate::proxy::forward::X_REQUEST_ID;

/// Longest incoming id we accept; longer ones are replaced, not truncated.
const MAX_LEN: usize = 128;

pub fn take_or_make(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID)
        && !v.is_empty()
        && v.len() <= MAX_LEN
        && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
    {
        return v.clone();
    }
    generate()
}

/// 128 random bits as 32 lower-case hex digits.
pub fn generate() -> HeaderValue {
    let mut buf = [0u8; 32];
    let n = fastrand::u128(..);
    for (i, b) in buf.iter_mut().enumerate() {
        let nibble = ((n >> (124 - 4 * i)) & 0xf) as u8;
        *b = if nibble < 10 {
            b'0' + nibble
        } else {
            b'a' + nibble - 10
        };
    }
    HeaderValue::from_bytes(&buf).expect("hex digits are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn honours_sane_ids_and_replaces_others() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert_eq!(take_or_make(&h), "abc-123");
        h.insert(
            "x-request-id",
            HeaderValue::from_str(&"x".repeat(200)).unwrap(),
        );
        assert_eq!(take_or_make(&h).len(), 32);
        h.insert("x-request-id", HeaderValue::from_static("has space"));
        assert_eq!(take_or_make(&h).len(), 32);
    }

    #[test]
    fn generated_ids_are_distinct_hex() {
        let a = generate();
        assert!(a.to_str().unwrap().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, generate());
    }
}
