//! API key material: generation (256 random bits from the OS, via aws-lc-rs, the
//! project's one crypto backend) and the SHA-256 hash that config stores instead
//! of the key.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;

/// Prefix of generated keys, so leaked keys are recognisable (secret scanners).
pub const KEY_PREFIX: &str = "mgk_";

/// A new API key: `mgk_` + 256 random bits, base64url without padding.
pub fn generate_api_key() -> Result<String, aws_lc_rs::error::Unspecified> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes)?;
    Ok(format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The raw SHA-256 of a presented key.
pub fn key_digest(key: &[u8]) -> [u8; 32] {
    let d = digest(&SHA256, key);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The form stored in config: `sha256:<64 lower-case hex>`.
pub fn hash_api_key(key: &str) -> String {
    let hex: String = key_digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// Parses a stored `sha256:<hex>` back to its 32 bytes.
pub fn parse_hash(stored: &str) -> Option<[u8; 32]> {
    let hex = stored.strip_prefix("sha256:")?;
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_distinct_and_hash_round_trips() {
        let (a, b) = (generate_api_key().unwrap(), generate_api_key().unwrap());
        assert_ne!(a, b);
        assert!(
            a.starts_with(KEY_PREFIX) && a.len() == KEY_PREFIX.len() + 43,
            "{a}"
        );
        let stored = hash_api_key(&a);
        assert_eq!(parse_hash(&stored), Some(key_digest(a.as_bytes())));
        // Known vector: SHA-256("abc").
        assert_eq!(
            hash_api_key("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(parse_hash("sha256:zz"), None);
    }
}
