//! Verification keys: the ones written in the config (HMAC secrets, PEM public
//! keys, an inline JWKS) and the ones parsed from a fetched JWKS, each with its
//! `kid`, the algorithm its JWK pins (if any) and its family, so a token is only
//! ever checked against keys of its algorithm's family (no key confusion).

use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use meshgate_config as config;
use serde_json::Value;

/// RFC 7518 §3.2: an HMAC key at least as long as the hash (HS256's 32 bytes).
const MIN_SECRET_BYTES: usize = 32;

/// One key a token may be verified with.
#[derive(Clone)]
pub(super) struct VerifyKey {
    pub kid: Option<String>,
    /// The `alg` the JWK names; the key verifies only that algorithm then.
    pub alg: Option<Algorithm>,
    pub family: AlgorithmFamily,
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material (HMAC secrets).
        write!(f, "VerifyKey({:?}, kid {:?})", self.family, self.kid)
    }
}

impl VerifyKey {
    /// Whether this key may verify a token signed with `alg`.
    pub fn fits(&self, alg: Algorithm) -> bool {
        self.family == alg.family() && self.alg.is_none_or(|a| a == alg)
    }
}

/// The jsonwebtoken algorithm for a config algorithm.
pub(super) fn algorithm(a: config::JwtAlgorithm) -> Algorithm {
    use config::JwtAlgorithm as A;
    match a {
        A::HS256 => Algorithm::HS256,
        A::HS384 => Algorithm::HS384,
        A::HS512 => Algorithm::HS512,
        A::RS256 => Algorithm::RS256,
        A::RS384 => Algorithm::RS384,
        A::RS512 => Algorithm::RS512,
        A::PS256 => Algorithm::PS256,
        A::PS384 => Algorithm::PS384,
        A::PS512 => Algorithm::PS512,
        A::ES256 => Algorithm::ES256,
        A::ES384 => Algorithm::ES384,
        A::EdDSA => Algorithm::EdDSA,
    }
}

/// The keys written in the config: `keys` then `jwks`.
pub(super) fn inline(c: &config::JwtPolicy) -> Result<Vec<VerifyKey>, String> {
    let mut out = Vec::new();
    for (i, k) in c.keys.iter().enumerate() {
        out.push(config_key(k).map_err(|e| format!("keys[{i}]: {e}"))?);
    }
    if let Some(doc) = &c.jwks {
        let (keys, skipped) = parse_jwks(doc);
        if let Some(why) = skipped.first() {
            return Err(format!("jwks: {why}"));
        }
        out.extend(keys);
    }
    Ok(out)
}

fn config_key(k: &config::JwtKey) -> Result<VerifyKey, String> {
    let (family, key) = if let Some(name) = &k.secret_env {
        let secret = std::env::var_os(name)
            .ok_or_else(|| format!("environment variable {name} is not set"))?;
        (
            AlgorithmFamily::Hmac,
            secret_key(secret.as_encoded_bytes())?,
        )
    } else if let Some(secret) = &k.secret {
        (AlgorithmFamily::Hmac, secret_key(secret.as_bytes())?)
    } else if let Some(pem) = &k.public_key_pem {
        pem_key(pem)?
    } else {
        return Err("set exactly one of secretEnv, secret, publicKeyPem".into());
    };
    Ok(VerifyKey {
        kid: k.kid.clone(),
        alg: None,
        family,
        key,
    })
}

fn secret_key(secret: &[u8]) -> Result<DecodingKey, String> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "the HMAC secret is {} bytes; at least {MIN_SECRET_BYTES} are needed",
            secret.len()
        ));
    }
    Ok(DecodingKey::from_secret(secret))
}

/// A PEM public key of any supported kind, with its family.
fn pem_key(pem: &str) -> Result<(AlgorithmFamily, DecodingKey), String> {
    let pem = pem.trim().as_bytes();
    if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
        return Ok((AlgorithmFamily::Rsa, k));
    }
    if let Ok(k) = DecodingKey::from_ec_pem(pem) {
        return Ok((AlgorithmFamily::Ec, k));
    }
    if let Ok(k) = DecodingKey::from_ed_pem(pem) {
        return Ok((AlgorithmFamily::Ed, k));
    }
    Err("publicKeyPem is not an RSA, EC (P-256, P-384) or Ed25519 public key".into())
}

/// The signing keys of a JWKS document, and why others were left out (encryption
/// keys, unsupported key types or algorithms, malformed entries).
pub(super) fn parse_jwks(doc: &Value) -> (Vec<VerifyKey>, Vec<String>) {
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    let Some(list) = doc.get("keys").and_then(Value::as_array) else {
        skipped.push("not a JWKS document (no \"keys\" list)".to_owned());
        return (keys, skipped);
    };
    for (i, entry) in list.iter().enumerate() {
        let name = entry
            .get("kid")
            .and_then(Value::as_str)
            .map_or_else(|| format!("keys[{i}]"), |k| format!("key {k:?}"));
        match jwk_key(entry) {
            Ok(Some(k)) => keys.push(k),
            Ok(None) => {}
            Err(e) => skipped.push(format!("{name}: {e}")),
        }
    }
    (keys, skipped)
}

/// `Ok(None)` for keys that are not for signatures (`use: enc`).
fn jwk_key(entry: &Value) -> Result<Option<VerifyKey>, String> {
    let jwk: Jwk = serde_json::from_value(entry.clone()).map_err(|e| e.to_string())?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Ok(None);
    }
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(
            a.to_string()
                .parse::<Algorithm>()
                .map_err(|_| format!("alg {a} is not a signature algorithm"))?,
        ),
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
    let family = key.family();
    if alg.is_some_and(|a| a.family() != family) {
        return Err("its alg does not match its key type".into());
    }
    if family == AlgorithmFamily::Hmac
        && key.try_get_as_bytes().map_or(0, <[u8]>::len) < MIN_SECRET_BYTES
    {
        return Err(format!("oct keys need at least {MIN_SECRET_BYTES} bytes"));
    }
    Ok(Some(VerifyKey {
        kid: jwk.common.key_id,
        alg,
        family,
        key,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshgate_testkit::jwt::TestKey;

    fn policy(keys: Vec<config::JwtKey>) -> config::JwtPolicy {
        config::JwtPolicy {
            algorithms: vec![config::JwtAlgorithm::RS256],
            keys,
            ..Default::default()
        }
    }

    fn pem(pem: &str) -> config::JwtKey {
        config::JwtKey {
            public_key_pem: Some(pem.into()),
            ..Default::default()
        }
    }

    #[test]
    fn pem_keys_of_every_kind_load_with_their_family() {
        for (alg, family) in [
            (Algorithm::RS256, AlgorithmFamily::Rsa),
            (Algorithm::ES384, AlgorithmFamily::Ec),
            (Algorithm::EdDSA, AlgorithmFamily::Ed),
        ] {
            let k = TestKey::generate(alg, "k");
            let keys = inline(&policy(vec![pem(&k.public_pem().unwrap())])).unwrap();
            assert_eq!(keys[0].family, family, "{alg:?}");
            assert!(keys[0].fits(alg) && !keys[0].fits(Algorithm::HS256));
        }
    }

    #[test]
    fn unusable_keys_are_compile_errors() {
        let bad_der = pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----");
        assert_eq!(
            inline(&policy(vec![bad_der])).unwrap_err(),
            "keys[0]: publicKeyPem is not an RSA, EC (P-256, P-384) or Ed25519 public key"
        );
        let missing_env = config::JwtKey {
            secret_env: Some("MESHGATE_TEST_SURELY_UNSET_9F2C".into()),
            ..Default::default()
        };
        assert_eq!(
            inline(&policy(vec![missing_env])).unwrap_err(),
            "keys[0]: environment variable MESHGATE_TEST_SURELY_UNSET_9F2C is not set"
        );
        let short = config::JwtKey {
            secret: Some("too short".into()),
            ..Default::default()
        };
        assert_eq!(
            inline(&policy(vec![short])).unwrap_err(),
            "keys[0]: the HMAC secret is 9 bytes; at least 32 are needed"
        );
    }

    #[test]
    fn jwks_entries_that_cannot_verify_are_left_out_with_a_reason() {
        let rsa = TestKey::generate(Algorithm::RS256, "sig");
        let mut enc = TestKey::generate(Algorithm::RS256, "enc").jwk();
        enc["use"] = "enc".into();
        let mut mislabelled = TestKey::generate(Algorithm::ES256, "ec").jwk();
        mislabelled["alg"] = "RS256".into();
        let doc = serde_json::json!({"keys": [rsa.jwk(), enc, mislabelled, {"kty": "RSA", "kid": "broken"}]});
        let (keys, skipped) = parse_jwks(&doc);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("sig"));
        assert_eq!(keys[0].alg, Some(Algorithm::RS256));
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(
            skipped[0].starts_with("key \"ec\": its alg does not match"),
            "{skipped:?}"
        );
        assert!(skipped[1].starts_with("key \"broken\": "), "{skipped:?}");
    }
}
