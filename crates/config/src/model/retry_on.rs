//! `RetryOn`: the failure kinds a retry policy may name.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A retryable condition: `connect-failure`, `reset`, `timeout`, `5xx`,
/// `gateway-error` (502, 503, 504) or a status code such as `503`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryOn {
    ConnectFailure,
    Reset,
    Timeout,
    FiveXx,
    GatewayError,
    Status(u16),
}

impl RetryOn {
    /// Does this condition cover a response with `status`?
    pub fn covers_status(self, status: u16) -> bool {
        match self {
            RetryOn::FiveXx => (500..600).contains(&status),
            RetryOn::GatewayError => matches!(status, 502..=504),
            RetryOn::Status(s) => s == status,
            _ => false,
        }
    }
}

const NAMES: &str = "connect-failure, reset, timeout, 5xx, gateway-error or a status code 100-599";

impl std::str::FromStr for RetryOn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "connect-failure" => RetryOn::ConnectFailure,
            "reset" => RetryOn::Reset,
            "timeout" => RetryOn::Timeout,
            "5xx" => RetryOn::FiveXx,
            "gateway-error" => RetryOn::GatewayError,
            other => match other.parse::<u16>() {
                Ok(code) if (100..600).contains(&code) => RetryOn::Status(code),
                _ => return Err(format!("unknown retryOn {other:?}: expected {NAMES}")),
            },
        })
    }
}

impl fmt::Display for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryOn::ConnectFailure => f.write_str("connect-failure"),
            RetryOn::Reset => f.write_str("reset"),
            RetryOn::Timeout => f.write_str("timeout"),
            RetryOn::FiveXx => f.write_str("5xx"),
            RetryOn::GatewayError => f.write_str("gateway-error"),
            RetryOn::Status(s) => write!(f, "{s}"),
        }
    }
}

impl<'de> Deserialize<'de> for RetryOn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = RetryOn;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(NAMES)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RetryOn, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RetryOn, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RetryOn, E> {
                self.visit_str(&v.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for RetryOn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RetryOn::Status(code) => s.serialize_u16(*code),
            other => s.collect_str(other),
        }
    }
}

impl JsonSchema for RetryOn {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RetryOn".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "connect-failure, reset, timeout, 5xx, gateway-error, or a status code",
            "anyOf": [
                {"type": "string", "enum": ["connect-failure", "reset", "timeout", "5xx", "gateway-error"]},
                {"type": "integer", "minimum": 100, "maximum": 599}
            ]
        })
    }
}
