//! Bad `RateLimit` policies and the exact errors they produce: the quota, the key's
//! companion settings, trusted proxies, and the Redis address, timeout and batch.

#[macro_use]
mod common;

use common::check_table;

const TABLE: &[(&str, &str)] = &[
    (
        "
        policies:
          - {name: p, type: RateLimit, rateLimit: {requests: 10}}
        ",
        "t.yaml:2:44: policies[0].rateLimit: missing field `per`",
    ),
    (
        "
        policies:
          - {name: p, type: RateLimit, rateLimit: {requests: 10, per: 60}}
        ",
        "t.yaml:2:63: policies[0].rateLimit.per: invalid duration 60: a unit is required (ms, s, m, h), e.g. 60ms or 60s",
    ),
    (
        "
        policies:
          - {name: p, type: RateLimit, rateLimit: {requests: 10, per: 1m, key: ip}}
        ",
        "t.yaml:2:72: policies[0].rateLimit.key: unknown variant `ip`, expected one of consumer, clientIp, header, route",
    ),
    (
        "
        policies:
          - {name: p, type: RateLimit, rateLimit: {requests: 0, per: 0s, burst: 0}}
        ",
        "t.yaml:2:54: policies[0].rateLimit.requests: must be at least 1\n\
         t.yaml:2:62: policies[0].rateLimit.per: must be longer than 0s\n\
         t.yaml:2:73: policies[0].rateLimit.burst: must be at least 1",
    ),
    (
        "
        policies:
          - {name: p, type: RateLimit, rateLimit: {requests: 2000000, per: 1s}}
        ",
        "t.yaml:2:68: policies[0].rateLimit.per: 2000000 requests per 1s is more than one per microsecond; use a longer window",
    ),
    (
        "
        policies:
          - {name: p, type: RateLimit, rateLimit: {requests: 5, per: 1s, key: header}}
          - {name: q, type: RateLimit, rateLimit: {requests: 5, per: 1s, key: header, header: \"x tenant\"}}
          - {name: r, type: RateLimit, rateLimit: {requests: 5, per: 1s, key: route, header: x-tenant}}
        ",
        "t.yaml:2:43: policies[0].rateLimit.header: required when key is header\n\
         t.yaml:3:87: policies[1].rateLimit.header: \"x tenant\" is not a valid header name\n\
         t.yaml:4:86: policies[2].rateLimit.header: only used when key is header",
    ),
    (
        "
        policies:
          - name: p
            type: RateLimit
            rateLimit:
              requests: 5
              per: 1s
              trustedProxies: [10.0.0.0/8, 10.0.0.0/33, proxy.local]
          - name: q
            type: RateLimit
            rateLimit: {requests: 5, per: 1s, key: consumer, trustedProxies: [127.0.0.1]}
        ",
        "t.yaml:7:36: policies[0].rateLimit.trustedProxies[1]: \"10.0.0.0/33\" is not a CIDR (10.0.0.0/8, 2001:db8::/32) or an IP address\n\
         t.yaml:7:49: policies[0].rateLimit.trustedProxies[2]: \"proxy.local\" is not a CIDR (10.0.0.0/8, 2001:db8::/32) or an IP address\n\
         t.yaml:10:70: policies[1].rateLimit.trustedProxies: only used when key is clientIp",
    ),
    (
        "
        policies:
          - {name: a, type: RateLimit, rateLimit: {requests: 5, per: 1s, redis: {url: \"localhost:6379\"}}}
          - {name: b, type: RateLimit, rateLimit: {requests: 5, per: 1s, redis: {url: \"rediss://cache:6380\"}}}
          - {name: c, type: RateLimit, rateLimit: {requests: 5, per: 1s, redis: {url: \"redis://:6379\"}}}
          - {name: d, type: RateLimit, rateLimit: {requests: 5, per: 1s, redis: {url: \"redis://cache:99999\"}}}
          - {name: e, type: RateLimit, rateLimit: {requests: 5, per: 1s, redis: {url: \"redis://cache/x\"}}}
        ",
        "t.yaml:2:79: policies[0].rateLimit.redis.url: \"localhost:6379\" is not a Redis URL (redis://host:port[/db])\n\
         t.yaml:3:79: policies[1].rateLimit.redis.url: TLS to Redis (rediss://) is not supported yet; use redis://\n\
         t.yaml:4:79: policies[2].rateLimit.redis.url: \"redis://:6379\" is not a Redis URL (redis://host:port[/db])\n\
         t.yaml:5:79: policies[3].rateLimit.redis.url: \"redis://cache:99999\" is not a Redis URL (redis://host:port[/db])\n\
         t.yaml:6:79: policies[4].rateLimit.redis.url: \"x\" is not a Redis database number (redis://host:port/0)",
    ),
    (
        "
        policies:
          - name: p
            type: RateLimit
            rateLimit:
              requests: 50
              per: 2s
              burst: 20
              redis: {url: \"redis://[::1]:6379/2\", timeout: 0ms, batch: 21, failureMode: shut}
        ",
        "t.yaml:8:82: policies[0].rateLimit.redis.failureMode: unknown variant `shut`, expected one of open, closed",
    ),
    (
        "
        policies:
          - name: p
            type: RateLimit
            rateLimit:
              requests: 50
              per: 2s
              burst: 20
              redis: {url: \"redis://[::1]:6379/2\", timeout: 0ms, batch: 21}
          - name: q
            type: RateLimit
            rateLimit: {requests: 50, per: 2s, redis: {url: \"redis://cache\", batch: 0}, limit: 3}
        ",
        "t.yaml:11:81: policies[1].rateLimit.limit: unknown field `limit`, expected one of key, header, requests, per, burst, trustedProxies, headers, redis",
    ),
    (
        "
        policies:
          - name: p
            type: RateLimit
            rateLimit:
              requests: 50
              per: 2s
              burst: 20
              redis: {url: \"redis://[::1]:6379/2\", timeout: 0ms, batch: 21}
          - name: q
            type: RateLimit
            rateLimit: {requests: 50, per: 2s, redis: {url: \"redis://cache\", batch: 0}}
        ",
        "t.yaml:8:53: policies[0].rateLimit.redis.timeout: must be longer than 0s\n\
         t.yaml:8:65: policies[0].rateLimit.redis.batch: 21 is larger than the bucket (20 requests)\n\
         t.yaml:11:77: policies[1].rateLimit.redis.batch: must be at least 1",
    ),
];

#[test]
fn table_of_bad_rate_limits() {
    check_table(TABLE);
}
