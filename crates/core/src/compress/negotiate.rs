//! `accept-encoding` negotiation (RFC 9110 §12.5.3): q-values, `*`, `identity`
//! and `q=0` exclusions, ties broken by the route's order of preference.

use http::HeaderMap;
use meshgate_config::model::CompressionAlgorithm as Algorithm;

/// q-values are compared in thousandths, as the grammar allows three decimals.
type Q = u16;

/// The encoding to use for a response, or `None` for identity: no header, nothing
/// acceptable, or the client explicitly prefers `identity`.
pub fn negotiate(headers: &HeaderMap, preference: &[Algorithm]) -> Option<Algorithm> {
    let mut values = headers
        .get_all(http::header::ACCEPT_ENCODING)
        .iter()
        .peekable();
    values.peek()?;
    // Explicit q per algorithm (same order as `preference`), `*`, and `identity`.
    let mut explicit: [Option<Q>; 3] = [None; 3];
    let mut star: Option<Q> = None;
    let mut identity: Option<Q> = None;
    for value in values {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut params = item.split(';');
            let coding = params.next().unwrap_or("").trim();
            if coding.is_empty() {
                continue;
            }
            let q = params.find_map(q_value).unwrap_or(1000);
            let slot = if coding == "*" {
                &mut star
            } else if coding.eq_ignore_ascii_case("identity") {
                &mut identity
            } else if let Some(a) = algorithm(coding) {
                &mut explicit[index(a)]
            } else {
                continue;
            };
            // A coding listed twice keeps its highest weight.
            *slot = Some(slot.map_or(q, |old| old.max(q)));
        }
    }
    let mut best: Option<(Algorithm, Q)> = None;
    for &a in preference {
        let q = explicit[index(a)].or(star).unwrap_or(0);
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((a, q));
        }
    }
    let (a, q) = best?;
    // Identity wins only when the client ranks it strictly higher: `curl --compressed`
    // and browsers list no identity, and an implicit one must not beat them.
    match identity {
        Some(i) if i > q => None,
        _ => Some(a),
    }
}

fn index(a: Algorithm) -> usize {
    match a {
        Algorithm::Zstd => 0,
        Algorithm::Br => 1,
        Algorithm::Gzip => 2,
    }
}

fn algorithm(coding: &str) -> Option<Algorithm> {
    if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
        Some(Algorithm::Gzip)
    } else if coding.eq_ignore_ascii_case("br") {
        Some(Algorithm::Br)
    } else if coding.eq_ignore_ascii_case("zstd") {
        Some(Algorithm::Zstd)
    } else {
        None
    }
}

/// `q=0.5` → 500. A malformed weight counts as 0: never send a coding the client
/// may not have meant to accept.
fn q_value(param: &str) -> Option<Q> {
    let (name, value) = param.split_once('=')?;
    if !name.trim().eq_ignore_ascii_case("q") {
        return None;
    }
    let value = value.trim();
    let (int, frac) = value.split_once('.').unwrap_or((value, ""));
    let q = match int {
        "0" => 0,
        "1" if frac.bytes().all(|b| b == b'0') => return Some(1000),
        _ => return Some(0),
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Some(0);
    }
    let mut thousandths = 0;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += Q::from(b - b'0') * [100, 10, 1][i];
    }
    Some(q + thousandths)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[Algorithm] = &[Algorithm::Zstd, Algorithm::Br, Algorithm::Gzip];

    fn pick(values: &[&str], pref: &[Algorithm]) -> Option<&'static str> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(http::header::ACCEPT_ENCODING, v.parse().unwrap());
        }
        negotiate(&h, pref).map(|a| a.token())
    }

    #[test]
    fn table() {
        let rows: &[(&[&str], &[Algorithm], Option<&str>)] = &[
            (&[], ALL, None),
            (&[""], ALL, None),
            (&["deflate, gzip, br, zstd"], ALL, Some("zstd")),
            (&["gzip, br"], ALL, Some("br")),
            (&["gzip;q=0, br"], ALL, Some("br")),
            (&["gzip;q=0"], ALL, None),
            (&["gzip;q=0.5, br;q=0.8"], ALL, Some("br")),
            (&["gzip;q=1.0, br;q=0.999"], ALL, Some("gzip")),
            (&["GZIP"], ALL, Some("gzip")),
            (&["x-gzip"], ALL, Some("gzip")),
            (&["*"], ALL, Some("zstd")),
            (&["*;q=0.5, zstd;q=0"], ALL, Some("br")),
            (&["*;q=0"], ALL, None),
            (&["identity"], ALL, None),
            (&["gzip;q=0.5, identity"], ALL, None),
            (&["gzip, identity;q=0.5"], ALL, Some("gzip")),
            (
                &["gzip", "br"],
                &[Algorithm::Gzip, Algorithm::Br],
                Some("gzip"),
            ),
            (&["br"], &[Algorithm::Gzip], None),
            (&["gzip;q=abc"], ALL, None),
            (&["gzip;q=2"], ALL, None),
            (&["deflate"], ALL, None),
        ];
        for (values, pref, want) in rows {
            assert_eq!(pick(values, pref), *want, "{values:?}");
        }
    }
}
