//! `Duration`: a config duration written as `250ms`, `5s`, `1m30s`, `2h`.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A duration in config files: a number and a unit (`ms`, `s`, `m`, `h`), parts may be
/// combined (`1m30s`). A bare number is rejected so `5` can never silently mean 5 ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }
    pub const fn from_secs(s: u64) -> Self {
        Self(std::time::Duration::from_secs(s))
    }
    pub const fn get(self) -> std::time::Duration {
        self.0
    }
}

impl std::str::FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let bad = || {
            format!(
                "invalid duration {s:?}: expected a number and a unit (ms, s, m, h), e.g. 250ms or 5s"
            )
        };
        if t.is_empty() || !t.ends_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(bad());
        }
        humantime::parse_duration(t)
            .map(Duration)
            .map_err(|_| bad())
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 250ms, 5s, 1m")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Err(E::custom(format!(
                    "invalid duration {v}: a unit is required (ms, s, m, h), e.g. {v}ms or {v}s"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                self.visit_u64(v.unsigned_abs())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
                Err(E::custom(format!(
                    "invalid duration {v}: a unit is required (ms, s, m, h)"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(\\.[0-9]+)?\\s*(ns|us|ms|s|m|h|d)\\s*)+$",
            "description": "A duration: number + unit (ms, s, m, h), e.g. `250ms`, `5s`, `1m30s`."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(
            "250ms".parse::<Duration>().unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!("5s".parse::<Duration>().unwrap(), Duration::from_secs(5));
        assert_eq!(
            "1m30s".parse::<Duration>().unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!("2h".parse::<Duration>().unwrap(), Duration::from_secs(7200));
    }

    #[test]
    fn rejects_bare_numbers_and_junk() {
        for bad in ["5", "", "ms", "5 parsecs", "-1s"] {
            let err = bad.parse::<Duration>().unwrap_err();
            assert!(err.contains("invalid duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn display_round_trips() {
        let d: Duration = "1m30s".parse().unwrap();
        assert_eq!(d.to_string().parse::<Duration>().unwrap(), d);
    }
}
