//! The checks made on a token's claims once its signature is good (`exp`, `nbf`
//! with the clock skew, `iss`, `aud`, required claims), each failure worded for
//! `explain`; and what a verified token tells: the consumer, groups and the
//! header values sent upstream, computed once and cached with the token.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use meshgate_config as config;
use meshgate_core::filter::Consumer;
use serde_json::Value;

use crate::identity::header_name;

/// What a verified token grants; shared by every request presenting it.
#[derive(Debug)]
pub(super) struct Verified {
    pub consumer: Arc<Consumer>,
    pub name_value: Option<HeaderValue>,
    pub groups_value: Option<HeaderValue>,
    pub claim_headers: Vec<(HeaderName, HeaderValue)>,
    /// Expiry and not-before, seconds since the epoch.
    pub exp: u64,
    pub nbf: Option<u64>,
}

/// The claim rules of a policy, compiled.
#[derive(Debug)]
pub(super) struct ClaimRules {
    issuer: Option<String>,
    audiences: Vec<String>,
    required: Vec<String>,
    /// Clock skew in seconds.
    pub skew: u64,
    consumer_claim: String,
    groups_claim: String,
    pub claim_headers: Vec<(String, HeaderName)>,
}

impl ClaimRules {
    pub fn compile(c: &config::JwtPolicy) -> Result<Self, String> {
        Ok(ClaimRules {
            issuer: c.issuer.clone(),
            audiences: c.audiences.clone(),
            required: c.required_claims.clone(),
            skew: c.clock_skew.get().as_secs(),
            consumer_claim: c.consumer_claim.clone(),
            groups_claim: c.groups_claim.clone(),
            claim_headers: c
                .claim_headers
                .iter()
                .map(|h| Ok((h.claim.clone(), header_name(&h.header)?)))
                .collect::<Result<_, String>>()?,
        })
    }

    /// Checks the claims of a token whose signature is good; the grant, or why not.
    pub fn check(&self, claims: Value, now: u64) -> Result<Verified, String> {
        if !claims.is_object() {
            return Err("the claims are not a JSON object".into());
        }
        let exp = match claims.get("exp") {
            None | Some(Value::Null) => return Err("exp missing (required)".into()),
            Some(v) => numeric_date(v).ok_or("exp is not a number")?,
        };
        let nbf = match claims.get("nbf") {
            None | Some(Value::Null) => None,
            Some(v) => Some(numeric_date(v).ok_or("nbf is not a number")?),
        };
        self.check_times(exp, nbf, now)?;
        if let Some(want) = &self.issuer {
            match claims.get("iss") {
                Some(Value::String(iss)) if iss == want => {}
                None | Some(Value::Null) => return Err(format!("iss missing (expected {want:?})")),
                Some(iss) => return Err(format!("iss {iss} not accepted (expected {want:?})")),
            }
        }
        if !self.audiences.is_empty() {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => self.audiences.contains(a),
                Some(Value::Array(list)) => list.iter().any(|a| {
                    a.as_str()
                        .is_some_and(|a| self.audiences.iter().any(|w| w == a))
                }),
                None | Some(Value::Null) => {
                    return Err(format!(
                        "aud missing (accepted: {})",
                        self.audiences.join(", ")
                    ));
                }
                Some(_) => false,
            };
            if !ok {
                return Err(format!("aud {} not accepted", claims["aud"]));
            }
        }
        if let Some(missing) = self
            .required
            .iter()
            .find(|c| lookup(&claims, c).is_none_or(Value::is_null))
        {
            return Err(format!("required claim {missing} missing"));
        }
        self.grant(claims, exp, nbf)
    }

    /// `exp` and `nbf` against `now`, with the clock skew.
    pub fn check_times(&self, exp: u64, nbf: Option<u64>, now: u64) -> Result<(), String> {
        if now > exp.saturating_add(self.skew) {
            return Err(format!("exp {} is in the past", rfc3339(exp)));
        }
        if let Some(nbf) = nbf
            && now.saturating_add(self.skew) < nbf
        {
            return Err(format!("nbf {} is in the future", rfc3339(nbf)));
        }
        Ok(())
    }

    fn grant(&self, claims: Value, exp: u64, nbf: Option<u64>) -> Result<Verified, String> {
        let name = match lookup(&claims, &self.consumer_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(format!(
                    "no {} claim (a non-empty string) to name the consumer",
                    self.consumer_claim
                ));
            }
        };
        let groups: Vec<String> = match lookup(&claims, &self.groups_claim) {
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        let claim_headers = self
            .claim_headers
            .iter()
            .filter_map(|(claim, header)| {
                let v = header_text(lookup(&claims, claim)?)?;
                Some((header.clone(), HeaderValue::from_str(&v).ok()?))
            })
            .collect();
        // Names or groups that are not valid header values are left out rather than
        // sent mangled (the consumer is still set for authorization and the log).
        let name_value = HeaderValue::from_str(&name).ok();
        let groups_value = HeaderValue::from_str(&groups.join(",")).ok();
        Ok(Verified {
            consumer: Arc::new(Consumer {
                name: name.into(),
                groups,
                claims: Some(claims),
            }),
            name_value,
            groups_value,
            claim_headers,
            exp,
            nbf,
        })
    }
}

/// A claim by name, or by dotted path into objects when no claim has the name
/// itself (`realm_access.roles`; claim names such as URLs may hold dots).
fn lookup<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(claims, |v, part| v.get(part))
}

/// How a claim is written in a header: strings as they are, lists comma-joined,
/// anything else as JSON; `null` not at all.
fn header_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => Some(
            list.iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(","),
        ),
        other => Some(other.to_string()),
    }
}

/// A NumericDate (RFC 7519 §2): seconds, possibly fractional; negative is 0.
fn numeric_date(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_i64().map(|i| i.max(0) as u64))
        .or_else(|| {
            v.as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.max(0.0) as u64)
        })
}

/// `2026-11-20T10:00:00Z` for seconds since the epoch.
pub(super) fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_168_800), "2026-11-20T10:00:00Z");
    }

    #[test]
    fn dotted_paths_and_header_text() {
        let c = serde_json::json!({"a.b": 1, "realm": {"roles": ["x", "y"]}, "n": null});
        assert_eq!(lookup(&c, "a.b"), Some(&Value::from(1)));
        assert_eq!(
            header_text(lookup(&c, "realm.roles").unwrap()).unwrap(),
            "x,y"
        );
        assert_eq!(header_text(lookup(&c, "n").unwrap()), None);
        assert_eq!(lookup(&c, "realm.missing"), None);
    }
}
