//! The Redis-backed `RateLimit` policy against a real `redis-server` started here
//! on a free port: two gateways hammered at once share one limit (within one lease
//! batch); Redis killed mid-test makes `failureMode: open` admit (and count it)
//! and `failureMode: closed` answer 503; Redis restarted on the same port brings
//! the limits back. A gateway also starts, and follows its failure mode, while its
//! Redis is not there at all.
//!
//! Without `redis-server` on PATH these tests fail when `CI=true` and are skipped
//! with a notice otherwise (`scripts/test` installs it).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use meshgate_testkit::Backend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A `redis-server` child process on a fixed free port, killed on drop.
struct RedisServer {
    bin: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one, or `None` (after a notice) when the binary is missing outside CI.
    async fn start() -> Option<Self> {
        let out = Command::new("which").arg("redis-server").output();
        let bin = match out {
            Ok(o) if o.status.success() => {
                PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_owned())
            }
            _ => {
                let msg = "redis-server is not installed (apt-get install redis-server; \
                           scripts/test installs it)";
                assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
                eprintln!("SKIPPED: {msg}");
                return None;
            }
        };
        let port = common::dead_addr().port();
        let mut server = RedisServer {
            bin,
            port,
            child: None,
        };
        server.spawn().await;
        Some(server)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on its port and waits until it answers PING.
    async fn spawn(&mut self) {
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.pong().await {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("redis-server on port {} exited: {status}", self.port);
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn pong(&self) -> bool {
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").await.is_ok()
            && s.read_exact(&mut buf).await.is_ok()
            && &buf == b"+PONG\r\n"
    }

    /// How many times the rate-limit script ran (`EVALSHA`, plus `EVAL` when the
    /// script had to be loaded), from `INFO commandstats`.
    async fn script_calls(&self) -> u64 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("redis-server answers");
        s.write_all(b"INFO commandstats\r\n").await.unwrap();
        // A bulk string: `$<len>\r\n<len bytes>\r\n`.
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "redis closed the connection");
            reply.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&reply);
            let Some((len, body)) = text.strip_prefix('$').and_then(|t| t.split_once("\r\n"))
            else {
                continue;
            };
            if body.len() >= len.parse::<usize>().unwrap() {
                return ["cmdstat_evalsha:calls=", "cmdstat_eval:calls="]
                    .iter()
                    .filter_map(|stat| {
                        let rest = &body[body.find(stat)? + stat.len()..];
                        rest.split(',').next()?.parse::<u64>().ok()
                    })
                    .sum();
            }
        }
    }

    /// SIGKILL: no goodbye to the clients.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn get(h: &common::Harness, path: &str, headers: &[(&str, &str)]) -> common::Reply {
    h.send(Method::GET, "h", path, headers, Bytes::new()).await
}

async fn statuses(h: &common::Harness, n: usize, path: &str, user: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(get(h, path, &[("x-user", user)]).await.status.as_u16());
    }
    out
}

fn metric(h: &common::Harness, series: &str) -> u64 {
    let text = h.gateway.metrics().encode();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// Hammers both gateways with 4 concurrent clients each, every client until it is
/// refused 3 times in a row (`deadline` None) or until the deadline; the number of
/// requests admitted through each gateway, and of requests sent.
async fn hammer(
    gateways: &[Arc<common::Harness>; 2],
    deadline: Option<Instant>,
) -> ([u32; 2], u64) {
    let mut tasks = tokio::task::JoinSet::new();
    for (g, h) in gateways.iter().enumerate() {
        for _ in 0..4 {
            let h = h.clone();
            tasks.spawn(async move {
                let (mut admitted, mut refused_in_a_row, mut sent) = (0, 0, 0);
                loop {
                    let r = get(&h, "/", &[]).await;
                    sent += 1;
                    match r.status {
                        StatusCode::OK => {
                            admitted += 1;
                            refused_in_a_row = 0;
                        }
                        StatusCode::TOO_MANY_REQUESTS => refused_in_a_row += 1,
                        other => panic!("Redis answers in time, yet {other}: {}", r.body),
                    }
                    let done = match deadline {
                        Some(t) => Instant::now() >= t,
                        None => refused_in_a_row == 3,
                    };
                    if done {
                        return (g, admitted, sent);
                    }
                }
            });
        }
    }
    let (mut per_gateway, mut requests) = ([0u32; 2], 0);
    while let Some(done) = tasks.join_next().await {
        let (g, admitted, sent) = done.unwrap();
        per_gateway[g] += admitted;
        requests += sent;
    }
    (per_gateway, requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_one_limit() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let app = Backend::start("app").await;
    // 50 per 2 s: a bucket of 50, one token back every 40 ms. failureMode closed:
    // a slow Redis would show as 503s (and fail the test), never as extra admissions.
    let yaml = format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
policies:
  - name: shared
    type: RateLimit
    rateLimit: {{key: route, requests: 50, per: 2s, redis: {{url: \"{}\", failureMode: closed, timeout: 2s}}}}
routes:
  - {{name: api, policies: [shared], backendRefs: [{{name: app}}]}}
services:
{}",
        redis.url(),
        common::service("app", &[app.addr])
    );
    let gateways = [
        Arc::new(common::start(&yaml).await),
        Arc::new(common::start(&yaml).await),
    ];
    let batch = 5; // the default: burst / 10
    let tokens_in = |d: Duration| (d.as_millis() / 40) as u32;

    // The burst: 50 between both gateways, plus what refilled meanwhile.
    let started = Instant::now();
    let (burst, burst_requests) = hammer(&gateways, None).await;
    let elapsed = started.elapsed();
    let total = burst[0] + burst[1];
    eprintln!("burst: admitted {burst:?} in {elapsed:?}");
    assert!(
        (50 - batch..=50 + batch + tokens_in(elapsed) + 1).contains(&total),
        "admitted {burst:?} = {total} in {elapsed:?}; the shared bucket holds 50 (± {batch})"
    );
    assert!(
        burst.iter().all(|&n| n > 0),
        "both gateways admitted some: {burst:?}"
    );

    // One window of steady overload: the refill (25/s) is shared, each gateway
    // holding at most one unspent lease at the end.
    let started = Instant::now();
    let (window, window_requests) = hammer(&gateways, Some(started + Duration::from_secs(2))).await;
    let elapsed = started.elapsed();
    let total = window[0] + window[1];
    let calls = redis.script_calls().await;
    let requests = burst_requests + window_requests;
    eprintln!(
        "window: admitted {window:?} in {elapsed:?}; {calls} Redis calls for {requests} requests"
    );
    // The local fast path: leased tokens and known refusals need no Redis call.
    assert!(
        calls * 2 < requests,
        "{calls} Redis calls for {requests} requests"
    );
    let refilled = tokens_in(elapsed);
    assert!(
        (refilled.saturating_sub(2 * batch + 2)..=refilled + 2).contains(&total),
        "admitted {window:?} = {total} in {elapsed:?}; {refilled} tokens came back"
    );

    // Under overload both refuse, with the headers telling when to come back (a
    // token may come back between two requests: look for the first refusal).
    let mut extra = 0;
    for h in &gateways {
        let refused = loop {
            let r = get(h, "/", &[]).await;
            if r.status == StatusCode::TOO_MANY_REQUESTS {
                break r;
            }
            extra += 1;
            assert!(extra < 20, "no refusal from a gateway under overload");
        };
        assert_eq!(refused.headers["ratelimit-limit"], "50");
        assert_eq!(refused.headers["ratelimit-remaining"], "0");
        assert_eq!(refused.headers["retry-after"], "1", "one token per 40 ms");
    }

    let allowed: u64 = gateways
        .iter()
        .map(|h| {
            metric(
                h,
                "meshgate_ratelimit_decisions_total{policy=\"shared\",decision=\"allowed\"}",
            )
        })
        .sum();
    assert_eq!(
        allowed,
        u64::from(burst[0] + burst[1] + total + extra),
        "every admission is counted"
    );
}

fn outage_config(redis_url: &str, app: &Backend) -> String {
    let policy = |name: &str, mode: &str| {
        format!(
            "  - name: {name}
    type: RateLimit
    rateLimit:
      key: header
      header: x-user
      requests: 3
      per: 1m
      redis: {{url: \"{redis_url}\", failureMode: {mode}, timeout: 1s, batch: 1}}\n"
        )
    };
    format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
admin: {{enabled: false, token: t0ken, liveExplain: true}}
policies:
{}{}routes:
  - {{name: open, matches: [{{path: {{value: /open}}}}], policies: [lenient], backendRefs: [{{name: app}}]}}
  - {{name: closed, matches: [{{path: {{value: /closed}}}}], policies: [strict], backendRefs: [{{name: app}}]}}
services:
{}",
        policy("lenient", "open"),
        policy("strict", "closed"),
        common::service("app", &[app.addr])
    )
}

#[tokio::test]
async fn redis_outage_follows_failure_mode_and_recovery_restores_limits() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let app = Backend::start("app").await;
    let h = common::start(&outage_config(&redis.url(), &app)).await;

    // Redis up: both limits are enforced.
    assert_eq!(statuses(&h, 4, "/open", "ann").await, [200, 200, 200, 429]);
    assert_eq!(
        statuses(&h, 4, "/closed", "ann").await,
        [200, 200, 200, 429]
    );

    redis.kill();
    // A refusal already known is repeated without Redis.
    assert_eq!(statuses(&h, 1, "/open", "ann").await, [429]);
    // failureMode open: a new key is admitted beyond its limit, and counted.
    let r = get(
        &h,
        "/open",
        &[("x-user", "bob"), ("x-meshgate-explain", "t0ken")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let trace = r.headers["x-meshgate-explain"].to_str().unwrap();
    assert!(
        trace.contains("lenient [RateLimit]: continue")
            && trace.contains("key bob: redis unavailable"),
        "{trace}"
    );
    assert_eq!(statuses(&h, 5, "/open", "bob").await, [200; 5]);
    assert_eq!(
        metric(
            &h,
            "meshgate_ratelimit_store_errors_total{policy=\"lenient\",mode=\"open\"}"
        ),
        6
    );
    // failureMode closed: 503 rate_limit_unavailable.
    let r = get(&h, "/closed", &[("x-user", "bob")]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["error"], "rate_limit_unavailable");
    assert!(
        metric(
            &h,
            "meshgate_ratelimit_store_errors_total{policy=\"strict\",mode=\"closed\"}"
        ) >= 1
    );

    // Redis back on the same port: each policy reconnects by itself (until then
    // `strict` refuses and `lenient` admits without counting).
    redis.spawn().await;
    let back = Instant::now();
    for (path, user, outage) in [
        ("/closed", "cat", StatusCode::SERVICE_UNAVAILABLE),
        ("/open", "dan", StatusCode::OK),
    ] {
        let want = if outage == StatusCode::OK {
            StatusCode::TOO_MANY_REQUESTS
        } else {
            StatusCode::OK
        };
        loop {
            let r = get(&h, path, &[("x-user", user)]).await;
            if r.status == want {
                break;
            }
            assert_eq!(r.status, outage, "{path}");
            assert!(
                back.elapsed() < Duration::from_secs(10),
                "{path}: no reconnection to the restarted Redis"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Limits are enforced exactly again (the restarted Redis started empty).
    assert_eq!(statuses(&h, 3, "/closed", "cat").await, [200, 200, 429]);
    assert_eq!(
        statuses(&h, 4, "/closed", "eve").await,
        [200, 200, 200, 429]
    );
    assert_eq!(statuses(&h, 4, "/open", "eve").await, [200, 200, 200, 429]);
    // The access log names the outage (lines are written in the background).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !h
        .log_lines(1)
        .await
        .iter()
        .any(|l| l["status"] == 503 && l["reason"] == "rate_limit_unavailable")
    {
        assert!(
            Instant::now() < deadline,
            "no rate_limit_unavailable in the access log"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn starts_while_redis_is_down_and_follows_failure_mode() {
    let app = Backend::start("app").await;
    let nowhere = format!("redis://{}", common::dead_addr());
    let started = Instant::now();
    let h = common::start(&outage_config(&nowhere, &app)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "compiling the policy does not wait for Redis"
    );
    assert_eq!(statuses(&h, 5, "/open", "ann").await, [200; 5]);
    let r = get(&h, "/closed", &[("x-user", "ann")]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["error"], "rate_limit_unavailable");
    assert!(r.headers.get("ratelimit-remaining").is_none());
}
