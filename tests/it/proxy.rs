//! payhook behind a real nginx, configured with the `location /hooks/` block of
//! docs/nginx-payhook.conf: bodies arrive byte for byte, signatures still verify, and the client
//! IP payhook logs is the one nginx saw, not nginx's own nor one the client made up.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::harness::*;

/// The address nginx connects to payhook from (`proxy_bind`): the only trusted proxy, so the
/// real client (127.0.0.1) and the proxy can be told apart on loopback.
const PROXY_ADDR: &str = "127.0.0.2";

/// The `location /hooks/ { ... }` block of the shipped sample site, verbatim.
fn sample_location_block() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/nginx-payhook.conf");
    let conf =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let start = conf
        .find("    location /hooks/ {")
        .expect("docs/nginx-payhook.conf has a `location /hooks/ {` block");
    let len = conf[start..]
        .find("\n    }\n")
        .expect("the location /hooks/ block ends with a `    }` line");
    conf[start..start + len + "\n    }\n".len()].to_string()
}

/// A private nginx in front of `upstream_port` with the sample `location /hooks/` block; it
/// connects to payhook from [`PROXY_ADDR`].
fn start_nginx(upstream_port: u16) -> Nginx {
    Nginx::start(|dir, port| {
        format!(
            r#"
    access_log {access};

    upstream payhook {{
        server 127.0.0.1:{upstream_port};
        keepalive 4;
        keepalive_timeout 5s;
    }}

    server {{
        listen 127.0.0.1:{port};
        server_name _;
        server_tokens off;
        client_max_body_size 1m;
        client_body_timeout 10s;
        # Connect to payhook from the trusted proxy address, so the real client differs.
        proxy_bind {PROXY_ADDR};

{location}
        location / {{
            return 404;
        }}
    }}
"#,
            access = dir.join("logs/access.log").display(),
            location = sample_location_block(),
        )
    })
}

/// A Ping++ event with a fixed id, written out by hand so its exact bytes matter: key order,
/// spacing and string escapes are whatever `fields` says.
fn pingpp_body(id: &str, fields: &str) -> String {
    format!(
        "{{\"id\": \"{id}\",\"object\":\"event\",\"type\":\"charge.succeeded\",\"livemode\":false,\
         \"created\":1700000000,\"data\":{{\"object\":{{\"id\":\"ch_{id}\",\"order_no\":\"A100\",\
         \"amount\":1250,\"currency\":\"cny\",{fields}}}}}}}\n"
    )
}

fn signed_headers(body: &str) -> (String, [(&'static str, &'static str); 1]) {
    let sig = payhook::testkit::pingpp_sign(&keys().signing, body.as_bytes());
    (sig, [("content-type", "application/json; charset=utf-8")])
}

async fn post_signed(http: &HttpClient, url: &str, body: &str, extra: &[(&str, &str)]) -> Reply {
    let (sig, ct) = signed_headers(body);
    let mut headers: Vec<(&str, &str)> = ct.to_vec();
    headers.push(("x-pingplusplus-signature", &sig));
    headers.extend_from_slice(extra);
    send(http, "POST", url, &headers, body.to_string()).await
}

/// The `client_ip=` of payhook's log line for the webhook with this dedup key (bounded wait).
fn logged_client_ip(daemon: &Daemon, dedup_key: &str) -> IpAddr {
    // tracing writes the value quoted or bare, depending on how it was recorded.
    let needles = [
        format!("dedup_key={dedup_key} "),
        format!("dedup_key=\"{dedup_key}\""),
    ];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = daemon.log();
        if let Some(line) = log
            .lines()
            .find(|l| l.contains(" webhook") && needles.iter().any(|n| l.contains(n)))
        {
            let ip = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("client_ip="))
                .unwrap_or_else(|| panic!("no client_ip= in the log line: {line}"));
            return ip
                .parse()
                .unwrap_or_else(|_| panic!("client_ip={ip} is not an address: {line}"));
        }
        if Instant::now() > deadline {
            panic!("no log line with {needles:?}; the log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The message for `provider_event_id`, among those taken so far or still to come.
async fn message_for(consumer: &Consumer, seen: &mut Vec<Message>, id: &str) -> Message {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(i) = seen
            .iter()
            .position(|m| m.body["data"]["provider_event_id"] == id)
        {
            return seen.swap_remove(i);
        }
        assert!(
            Instant::now() < deadline,
            "no message for {id} on the queue within 20 s"
        );
        seen.extend(consumer.take(1, Duration::from_secs(1)).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_nginx_bodies_are_byte_exact_signatures_verify_and_the_client_ip_is_real() {
    let broker = Broker::shared();
    let mut opts = DaemonOptions::new(&broker.url());
    // Only nginx's connecting address is a trusted proxy; the test client (127.0.0.1) is not.
    opts.server = format!("trusted_proxies = [\"{PROXY_ADDR}/32\"]");
    let daemon = Daemon::start(opts);
    let nginx = start_nginx(daemon.port);
    let consumer = Consumer::connect(&broker.url(), &daemon.queue).await;
    let http = client();
    let via_nginx = nginx.url("/hooks/pingpp");
    let run = unique("proxy").replace('-', "_");

    // (a) Byte-exact bodies: raw UTF-8 Chinese text, and \u escapes that must stay escapes.
    let utf8_id = format!("evt_{run}_utf8");
    let utf8 = pingpp_body(
        &utf8_id,
        "\"subject\":\"测试商品：咖啡 ☕\",  \"body\" : \"中文描述，含全角标点。\"",
    );
    let escaped_id = format!("evt_{run}_esc");
    let escaped = pingpp_body(
        &escaped_id,
        r#""subject":"\u6d4b\u8bd5\u5546\u54c1","body":"a\/b \u00e9 \ud83d\ude00 \"q\"""#,
    );
    let mut seen = Vec::new();
    for (id, body) in [(&utf8_id, &utf8), (&escaped_id, &escaped)] {
        let r = post_signed(&http, &via_nginx, body, &[]).await;
        assert_eq!(r.status, 200, "{id} through nginx: {}", r.body);
        assert_eq!(r.body, "success");

        let m = message_for(&consumer, &mut seen, id).await;
        let sent: Value = serde_json::from_str(body).expect("the test body is JSON");
        assert_eq!(m.body["data"]["payload"], sent, "payload of {id}");
        assert_eq!(m.routing_key, "pingpp.charge.succeeded");
        let event_id = m.body["id"].as_str().expect("CloudEvent id").to_string();
        assert_eq!(
            m.properties.message_id().as_ref().map(|s| s.to_string()),
            Some(event_id.clone())
        );

        let out = daemon.run_cli(&["events", "show", &event_id, "--raw"]);
        assert!(
            out.status.success(),
            "events show --raw: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.stdout,
            body.as_bytes(),
            "the stored body of {id} is byte for byte what the client sent through nginx"
        );
    }
    assert_eq!(utf8_payload_subject(&daemon, &utf8_id), "测试商品：咖啡 ☕");
    assert!(
        String::from_utf8(
            daemon
                .run_cli(&[
                    "events",
                    "show",
                    &event_id_of(&daemon, &escaped_id),
                    "--raw"
                ])
                .stdout
        )
        .unwrap()
        .contains(r"\u6d4b\u8bd5\u5546\u54c1"),
        "\\u escapes are stored as sent, not decoded"
    );

    // (b) A tampered body (signature of another body) and a missing signature: 401 through nginx,
    // with payhook's JSON error passed through unchanged.
    let tampered_id = format!("evt_{run}_tampered");
    let original = pingpp_body(&tampered_id, "\"subject\":\"x\"");
    let (sig, _) = signed_headers(&original);
    let tampered = original.replace("\"amount\":1250", "\"amount\":9250");
    let r = send(
        &http,
        "POST",
        &via_nginx,
        &[
            ("content-type", "application/json"),
            ("x-pingplusplus-signature", &sig),
        ],
        tampered,
    )
    .await;
    assert_eq!(r.status, 401, "tampered body through nginx: {}", r.body);
    assert_eq!(r.json()["error"], "invalid_signature");
    let r = send(
        &http,
        "POST",
        &via_nginx,
        &[("content-type", "application/json")],
        original.clone(),
    )
    .await;
    assert_eq!(r.status, 401, "unsigned body through nginx: {}", r.body);
    // The untampered original still verifies.
    let r = post_signed(&http, &via_nginx, &original, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    message_for(&consumer, &mut seen, &tampered_id).await;

    // (c) The client IP. Through nginx with a spoofed X-Forwarded-For: payhook's peer is nginx
    // (127.0.0.2, trusted), and the logged client is the address nginx saw, 127.0.0.1.
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    let proxy: IpAddr = PROXY_ADDR.parse().unwrap();
    let spoof: IpAddr = "6.6.6.6".parse().unwrap();
    let via_id = format!("evt_{run}_via_nginx");
    let r = post_signed(
        &http,
        &via_nginx,
        &pingpp_body(&via_id, "\"subject\":\"x\""),
        &[("x-forwarded-for", "6.6.6.6")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ip = logged_client_ip(&daemon, &via_id);
    assert_ne!(
        ip, spoof,
        "a client-chosen X-Forwarded-For is never believed"
    );
    assert_ne!(ip, proxy, "the logged client is not nginx's own address");
    assert_eq!(ip, loopback, "the logged client is the address nginx saw");

    // Directly from 127.0.0.1 (not a trusted proxy) the same spoof is ignored too.
    let direct_id = format!("evt_{run}_direct");
    let r = post_signed(
        &http,
        &daemon.url("pingpp"),
        &pingpp_body(&direct_id, "\"subject\":\"x\""),
        &[("x-forwarded-for", "6.6.6.6")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(logged_client_ip(&daemon, &direct_id), loopback);

    // Control: from the trusted proxy address X-Forwarded-For is believed. So the 127.0.0.1 seen
    // through nginx is the entry nginx wrote, not payhook ignoring the header.
    let trusted_id = format!("evt_{run}_from_proxy_addr");
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(proxy));
    let from_proxy: HttpClient = Client::builder(TokioExecutor::new()).build(connector);
    let r = post_signed(
        &from_proxy,
        &daemon.url("pingpp"),
        &pingpp_body(&trusted_id, "\"subject\":\"x\""),
        &[("x-forwarded-for", "6.6.6.6")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(logged_client_ip(&daemon, &trusted_id), spoof);

    // Only /hooks/ is proxied: the admin endpoints and anything else are nginx's 404, and
    // payhook's own 404/405 answers for hook paths come through unchanged.
    for path in ["/metrics", "/readyz", "/healthz", "/", "/hooksx"] {
        let r = send(&http, "GET", &nginx.url(path), &[], "").await;
        assert_eq!(r.status, 404, "{path} through nginx");
        assert!(!r.body.contains("payhook_"), "{path}: {}", r.body);
    }
    let r = send(&http, "GET", &via_nginx, &[], "").await;
    assert_eq!(r.status, 405);
    assert_eq!(
        r.headers.get("allow").map(|v| v.to_str().unwrap()),
        Some("POST")
    );
    let r = send(&http, "POST", &nginx.url("/hooks/nope"), &[], "{}").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "not_found");

    assert!(
        !nginx.error_log().contains("[error]"),
        "nginx logged errors:\n{}",
        nginx.error_log()
    );
    consumer.close().await;
}

fn event_id_of(daemon: &Daemon, provider_event_id: &str) -> String {
    let out = daemon.run_cli(&["events", "list", "--source", "pingpp", "--json"]);
    assert!(out.status.success(), "events list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["dedup_key"] == provider_event_id)
        .and_then(|v| v["id"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("{provider_event_id} is not in `events list`"))
}

fn utf8_payload_subject(daemon: &Daemon, provider_event_id: &str) -> String {
    let out = daemon.run_cli(&["events", "show", &event_id_of(daemon, provider_event_id)]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("events show prints JSON");
    v["cloudevent"]["data"]["payload"]["data"]["object"]["subject"]
        .as_str()
        .expect("subject")
        .to_string()
}
