//! `RetryOn`: the failure kinds a retry policy may name, HTTP and gRPC.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A retryable condition: `connect-failure`, `reset`, `timeout`, `5xx`,
/// `gateway-error` (502, 503, 504), a status code such as `503`, or a gRPC status
/// of a trailers-only answer (`grpc-unavailable`, … see [`GRPC_CODES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryOn {
    ConnectFailure,
    Reset,
    Timeout,
    FiveXx,
    GatewayError,
    Status(u16),
    /// A `grpc-status` code (1-16) in the response headers.
    Grpc(u8),
}

/// The gRPC statuses `retryOn` may name, with their codes.
pub const GRPC_CODES: [(&str, u8); 5] = [
    ("grpc-cancelled", 1),
    ("grpc-deadline-exceeded", 4),
    ("grpc-resource-exhausted", 8),
    ("grpc-internal", 13),
    ("grpc-unavailable", 14),
];

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

    /// Does this condition cover a trailers-only answer with `grpc-status: code`?
    pub fn covers_grpc(self, code: u8) -> bool {
        self == RetryOn::Grpc(code)
    }
}

const NAMES: &str = "connect-failure, reset, timeout, 5xx, gateway-error, a status code 100-599, \
     grpc-cancelled, grpc-deadline-exceeded, grpc-resource-exhausted, grpc-internal or grpc-unavailable";

impl std::str::FromStr for RetryOn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "connect-failure" => RetryOn::ConnectFailure,
            "reset" => RetryOn::Reset,
            "timeout" => RetryOn::Timeout,
            "5xx" => RetryOn::FiveXx,
            "gateway-error" => RetryOn::GatewayError,
            other if other.starts_with("grpc-") => {
                match GRPC_CODES.iter().find(|(n, _)| *n == other) {
                    Some(&(_, code)) => RetryOn::Grpc(code),
                    None => return Err(format!("unknown retryOn {other:?}: expected {NAMES}")),
                }
            }
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
            RetryOn::Grpc(code) => match GRPC_CODES.iter().find(|(_, c)| c == code) {
                Some((name, _)) => f.write_str(name),
                None => write!(f, "grpc-{code}"),
            },
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
            "description": "connect-failure, reset, timeout, 5xx, gateway-error, a status code, or a gRPC status (grpc-unavailable, …)",
            "anyOf": [
                {"type": "string", "enum": [
                    "connect-failure", "reset", "timeout", "5xx", "gateway-error",
                    "grpc-cancelled", "grpc-deadline-exceeded", "grpc-resource-exhausted",
                    "grpc-internal", "grpc-unavailable"
                ]},
                {"type": "integer", "minimum": 100, "maximum": 599}
            ]
        })
    }
}
