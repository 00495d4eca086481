//! A private nginx balancing `/hooks/` over payhook instances, configured with the blocks of
//! docs/SCALING.md.

use std::path::PathBuf;

use crate::harness::Nginx;

/// The upstream and location blocks of docs/SCALING.md (the fenced nginx block that holds
/// `upstream payhook`), with its placeholder instance addresses 127.0.0.1:8081 and :8082.
pub fn scaling_nginx_block() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/SCALING.md");
    let doc =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    doc.split("```nginx\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("upstream payhook {"))
        .expect("docs/SCALING.md has a ```nginx block with `upstream payhook {`")
        .to_string()
}

/// A private nginx balancing `/hooks/` over the payhook instances on `instance_ports` with the
/// blocks of docs/SCALING.md (its two placeholder addresses replaced by theirs).
pub fn balancer(instance_ports: &[u16]) -> Nginx {
    let placeholders = ["127.0.0.1:8081", "127.0.0.1:8082"];
    assert_eq!(
        instance_ports.len(),
        placeholders.len(),
        "the SCALING.md block lists two instances"
    );
    let mut block = scaling_nginx_block();
    for (ph, port) in placeholders.iter().zip(instance_ports) {
        assert!(block.contains(ph), "SCALING.md block lost {ph}");
        block = block.replace(ph, &format!("127.0.0.1:{port}"));
    }
    let (upstream, location) = block
        .split_once("\nlocation /hooks/")
        .expect("the SCALING.md block has `location /hooks/` after the upstream");
    Nginx::start(|_, port| {
        format!(
            r#"
{upstream}
    server {{
        listen 127.0.0.1:{port};
        server_name _;
        client_max_body_size 1m;

location /hooks/{location}
        location / {{
            return 404;
        }}
    }}
"#
        )
    })
}
