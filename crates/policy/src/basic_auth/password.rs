//! Password hashes of Basic credentials: parsing the stored form (argon2 in PHC
//! form, or bcrypt), verifying a presented password against it, and making new
//! argon2id hashes for `meshgate keys password`. Verifying is deliberately slow
//! (tens of milliseconds): callers run it off the async workers.

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password is empty")]
    Empty,
    #[error("the system random generator failed")]
    Random,
    #[error("argon2: {0}")]
    Argon2(String),
}

/// A stored password hash, checked for form when the policy compiles.
#[derive(Debug, Clone)]
pub enum StoredHash {
    /// `$argon2id$…` (or `$argon2i$`, `$argon2d$`) in PHC form; its own parameters
    /// are used to verify.
    Argon2(Box<str>),
    /// `$2b$`, `$2a$` or `$2y$` with its cost.
    Bcrypt(Box<str>),
}

impl StoredHash {
    /// Parses the hash of a consumer's `basicAuth.passwordHash`.
    pub fn parse(stored: &str) -> Result<Self, String> {
        if stored.starts_with("$argon2") {
            PasswordHash::new(stored).map_err(|e| format!("argon2 hash: {e}"))?;
            Ok(StoredHash::Argon2(stored.into()))
        } else if ["$2b$", "$2a$", "$2y$"]
            .iter()
            .any(|p| stored.starts_with(p))
        {
            // bcrypt checks the rest when verifying; check the shape now so a broken
            // hash is a compile error, not a refusal of every request.
            let ok = stored.len() == 60
                && stored.as_bytes()[4..6].iter().all(u8::is_ascii_digit)
                && stored.as_bytes()[6] == b'$';
            if !ok {
                return Err("bcrypt hash: expected $2b$<cost>$ and 53 characters".into());
            }
            Ok(StoredHash::Bcrypt(stored.into()))
        } else {
            Err("expected an argon2 ($argon2id$…) or bcrypt ($2b$…) hash".into())
        }
    }

    /// Whether `password` matches. Slow by design; never call on an async worker.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            StoredHash::Argon2(phc) => PasswordHash::new(phc)
                .is_ok_and(|h| Argon2::default().verify_password(password, &h).is_ok()),
            // bcrypt looks at the first 72 bytes only (as every bcrypt does).
            StoredHash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
        }
    }
}

/// A new argon2id hash of `password` in PHC form, with argon2's default (OWASP
/// recommended) parameters: 19 MiB of memory, 2 passes, 1 lane, 16 random salt bytes.
pub fn hash_password(password: &[u8]) -> Result<String, PasswordError> {
    if password.is_empty() {
        return Err(PasswordError::Empty);
    }
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| PasswordError::Random)?;
    Argon2::default()
        .hash_password_with_salt(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Argon2(e.to_string()))
}

/// `meshgate keys password`: hashes what was read from stdin, without the line
/// ending that `echo` or a terminal adds.
pub fn hash_password_input(input: &str) -> Result<String, PasswordError> {
    let password = input
        .strip_suffix("\r\n")
        .or_else(|| input.strip_suffix('\n'))
        .unwrap_or(input);
    hash_password(password.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_round_trip_and_salted() {
        let a = hash_password(b"s3cret").unwrap();
        let b = hash_password(b"s3cret").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "a fresh salt each time");
        let stored = StoredHash::parse(&a).unwrap();
        assert!(stored.verify(b"s3cret"));
        assert!(!stored.verify(b"s3cret "));
        assert!(!stored.verify(b""));
    }

    #[test]
    fn bcrypt_hashes_verify() {
        for prefix in ["$2b$", "$2a$", "$2y$"] {
            let h = bcrypt::hash("hunter2", 4)
                .unwrap()
                .replacen("$2b$", prefix, 1);
            let stored = StoredHash::parse(&h).unwrap();
            assert!(stored.verify(b"hunter2"), "{h}");
            assert!(!stored.verify(b"hunter3"), "{h}");
        }
    }

    #[test]
    fn bad_hashes_are_refused() {
        for bad in [
            "hunter2",
            "$argon2id$nope",
            "$2b$12$short",
            "$1$md5crypt$x",
            "sha256:abc",
        ] {
            assert!(StoredHash::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn input_loses_one_line_ending_only() {
        for (input, password) in [
            ("pw\n", "pw"),
            ("pw\r\n", "pw"),
            ("pw", "pw"),
            (" pw \n\n", " pw \n"),
        ] {
            let h = hash_password_input(input).unwrap();
            assert!(
                StoredHash::parse(&h).unwrap().verify(password.as_bytes()),
                "{input:?}"
            );
        }
        assert!(matches!(
            hash_password_input("\n"),
            Err(PasswordError::Empty)
        ));
    }
}
