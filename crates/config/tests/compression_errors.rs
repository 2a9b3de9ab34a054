//! Bad `routes[].compression` settings and the exact errors they produce.

#[macro_use]
mod common;

use common::check_table;
use meshgate_config::model::{Compression, CompressionAlgorithm, CompressionLevel};
use meshgate_config::parse_str;

/// (document, expected errors), one line per error.
const TABLE: &[(&str, &str)] = &[
    (
        "
        routes:
          - name: r
            backendRefs: [{name: s}]
            compression: {algorithms: []}
        services:
          - {name: s, endpoints: [\"10.0.0.1:80\"]}
        ",
        "t.yaml:4:31: routes[0].compression.algorithms: must list at least one of zstd, br, gzip (remove `compression` to turn it off)",
    ),
    (
        "
        routes:
          - name: r
            backendRefs: [{name: s}]
            compression: {algorithms: [gzip, br, gzip]}
        services:
          - {name: s, endpoints: [\"10.0.0.1:80\"]}
        ",
        "t.yaml:4:42: routes[0].compression.algorithms[2]: duplicate encoding gzip (first at algorithms[0])",
    ),
    (
        "
        routes:
          - name: r
            backendRefs: [{name: s}]
            compression: {algorithms: [deflate]}
        services:
          - {name: s, endpoints: [\"10.0.0.1:80\"]}
        ",
        "t.yaml:4:32: routes[0].compression.algorithms[0]: unknown variant `deflate`, expected one of zstd, br, gzip",
    ),
    (
        "
        routes:
          - name: r
            backendRefs: [{name: s}]
            compression:
              contentTypes: [text/*, json, \"*/json\", \"text/html; charset=utf-8\", TEXT/*]
        services:
          - {name: s, endpoints: [\"10.0.0.1:80\"]}
        ",
        "t.yaml:5:30: routes[0].compression.contentTypes[1]: \"json\" is not a media type: expected type/subtype or type/* without parameters, e.g. text/* or application/json\n\
         t.yaml:5:36: routes[0].compression.contentTypes[2]: \"*/json\" is not a media type: expected type/subtype or type/* without parameters, e.g. text/* or application/json\n\
         t.yaml:5:46: routes[0].compression.contentTypes[3]: \"text/html; charset=utf-8\" is not a media type: expected type/subtype or type/* without parameters, e.g. text/* or application/json\n\
         t.yaml:5:74: routes[0].compression.contentTypes[4]: duplicate content type \"TEXT/*\" (first at contentTypes[0])",
    ),
    (
        "
        routes:
          - name: r
            backendRefs: [{name: s}]
            compression: {level: max, minimum: 10}
        services:
          - {name: s, endpoints: [\"10.0.0.1:80\"]}
        ",
        "t.yaml:4:26: routes[0].compression.level: unknown variant `max`, expected one of fast, default, best",
    ),
];

#[test]
fn compression_errors() {
    check_table(TABLE);
}

#[test]
fn defaults() {
    let c = parse_str(
        "
routes:
  - name: r
    backendRefs: [{name: s}]
    compression: {}
services:
  - {name: s, endpoints: [\"10.0.0.1:80\"]}
",
        "t.yaml",
    )
    .unwrap();
    let got = c.routes[0].compression.clone().unwrap();
    assert_eq!(got, Compression::default());
    assert_eq!(
        got.algorithms,
        [
            CompressionAlgorithm::Zstd,
            CompressionAlgorithm::Br,
            CompressionAlgorithm::Gzip
        ]
    );
    assert_eq!(got.min_bytes, 1024);
    assert_eq!(got.level, CompressionLevel::Default);
    assert!(got.content_types.iter().any(|t| t == "text/*"));
}
