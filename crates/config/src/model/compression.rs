//! Response compression of a route (`routes[].compression`): which encodings the
//! gateway offers, and which responses are worth compressing.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Compress responses with gzip, brotli or zstd when the client's
/// `accept-encoding` allows one of them.
///
/// Responses are compressed as they stream (each upstream frame is compressed and
/// flushed on its own), never buffered whole. Responses that already carry a
/// `content-encoding`, answers to HEAD, 1xx/204/304 statuses, `cache-control:
/// no-transform`, gRPC, upgrades, and responses below `minBytes` or of another
/// type are passed through untouched.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Compression {
    /// Encodings the gateway may use, in the server's order of preference; among
    /// the encodings the client accepts with the same (highest) q-value, the first
    /// of this list wins. Default `[zstd, br, gzip]`.
    #[serde(default = "Compression::default_algorithms")]
    pub algorithms: Vec<CompressionAlgorithm>,
    /// Responses whose `content-length` is below this are sent as they are.
    /// Responses without a `content-length` (streamed) are compressed when their
    /// type matches. Default 1024.
    #[serde(default = "Compression::default_min_bytes")]
    pub min_bytes: u64,
    /// Media types that are compressed, matched against the response's
    /// `content-type` without parameters, case-insensitively: `type/subtype`, or
    /// `type/*` for every subtype. Responses without a `content-type` are not
    /// compressed. Default: `text/*`, `application/json`, `application/javascript`,
    /// `application/xml`, `application/wasm`, `image/svg+xml`. Already compressed
    /// formats (images, video, archives) gain nothing and are best left out.
    #[serde(default = "Compression::default_content_types")]
    pub content_types: Vec<String>,
    /// Speed against ratio: `fast`, `default` or `best`. Default `default`
    /// (gzip 6, brotli 4, zstd 3); `fast` is gzip 1, brotli 1, zstd 1; `best`
    /// is gzip 9, brotli 9, zstd 12 (brotli 11 is too slow to stream).
    #[serde(default)]
    pub level: CompressionLevel,
}

impl Compression {
    pub fn default_algorithms() -> Vec<CompressionAlgorithm> {
        vec![
            CompressionAlgorithm::Zstd,
            CompressionAlgorithm::Br,
            CompressionAlgorithm::Gzip,
        ]
    }
    pub fn default_min_bytes() -> u64 {
        1024
    }
    pub fn default_content_types() -> Vec<String> {
        [
            "text/*",
            "application/json",
            "application/javascript",
            "application/xml",
            "application/wasm",
            "image/svg+xml",
        ]
        .into_iter()
        .map(String::from)
        .collect()
    }
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            algorithms: Self::default_algorithms(),
            min_bytes: Self::default_min_bytes(),
            content_types: Self::default_content_types(),
            level: CompressionLevel::default(),
        }
    }
}

/// A content coding the gateway can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
pub enum CompressionAlgorithm {
    /// Zstandard (`content-encoding: zstd`, RFC 8878).
    #[serde(rename = "zstd")]
    Zstd,
    /// Brotli (`content-encoding: br`, RFC 7932).
    #[serde(rename = "br")]
    Br,
    /// gzip (`content-encoding: gzip`, RFC 1952).
    #[serde(rename = "gzip")]
    Gzip,
}

impl CompressionAlgorithm {
    /// The `content-encoding` / `accept-encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            CompressionAlgorithm::Zstd => "zstd",
            CompressionAlgorithm::Br => "br",
            CompressionAlgorithm::Gzip => "gzip",
        }
    }
}

/// Compression effort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CompressionLevel {
    /// Least CPU per byte.
    Fast,
    /// A balance suited to streaming responses.
    #[default]
    Default,
    /// Smallest output at a still streamable cost.
    Best,
}
