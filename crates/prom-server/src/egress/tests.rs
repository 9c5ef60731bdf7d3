//! The egress rules, address by address.

use super::*;

fn url(raw: &str) -> Url {
    Url::parse(raw).unwrap()
}

fn strict() -> EgressPolicy {
    EgressPolicy::new(&EgressConfig::default()).unwrap()
}

#[test]
fn every_spelling_of_a_private_address_is_refused() {
    let policy = strict();
    for raw in [
        "https://127.0.0.1/mcp",
        "https://127.1/mcp",
        "https://0x7f000001/mcp",
        "https://2130706433/mcp",
        "https://0177.0.0.1/mcp",
        "https://[::1]/mcp",
        "https://[::ffff:127.0.0.1]/mcp",
        "https://[::ffff:7f00:1]/mcp",
        "https://[::127.0.0.1]/mcp",
        "https://[64:ff9b::7f00:1]/mcp",
        "https://[64:ff9b::a9fe:a9fe]/mcp",
        "https://[2002:7f00:1::]/mcp",
        "https://169.254.169.254/latest/meta-data",
        "https://10.1.2.3/mcp",
        "https://172.31.255.255/mcp",
        "https://192.168.1.1/mcp",
        "https://100.64.0.1/mcp",
        "https://0.0.0.0/mcp",
        "https://224.0.0.1/mcp",
        "https://255.255.255.255/mcp",
        "https://[fe80::1]/mcp",
        "https://[fd00::1]/mcp",
        "https://[ff02::1]/mcp",
        "https://[::]/mcp",
        "https://localhost/mcp",
        "https://LOCALHOST./mcp",
        "https://api.localhost/mcp",
        "https://metadata.google.internal/computeMetadata/v1/",
    ] {
        assert!(policy.check_url(&url(raw)).is_err(), "{raw} must be refused");
    }
    for raw in [
        "https://8.8.8.8/mcp",
        "https://[2606:4700::1111]/mcp",
        "https://mcp.example.com/mcp",
        "https://[::ffff:8.8.8.8]/",
    ] {
        assert_eq!(policy.check_url(&url(raw)), Ok(()), "{raw} is public");
    }
}

#[test]
fn plain_http_needs_the_operator() {
    let refused = strict().check_url(&url("http://mcp.example.com/mcp")).unwrap_err();
    assert!(refused.to_string().contains("egress.allow_http"), "{refused}");
    let open = EgressPolicy::new(&EgressConfig { allow_http: true, ..EgressConfig::default() }).unwrap();
    assert_eq!(open.check_url(&url("http://mcp.example.com/mcp")), Ok(()));
    assert!(open.check_url(&url("http://127.0.0.1/mcp")).is_err(), "http does not open loopback");
}

#[test]
fn the_operator_allows_hosts_ports_and_networks() {
    let config = EgressConfig {
        allow_hosts: vec!["localhost".into(), "127.0.0.1:8080".into(), "[::1]:9000".into()],
        allow_cidrs: vec!["10.1.0.0/16".into()],
        allow_http: false,
    };
    let policy = EgressPolicy::new(&config).unwrap();
    assert_eq!(policy.check_url(&url("http://localhost:3000/mcp")), Ok(()));
    assert_eq!(policy.check_url(&url("http://127.0.0.1:8080/mcp")), Ok(()));
    assert!(policy.check_url(&url("http://127.0.0.1:8081/mcp")).is_err(), "another port");
    assert_eq!(policy.check_url(&url("http://[::1]:9000/mcp")), Ok(()));
    assert_eq!(policy.check_url(&url("https://10.1.200.3/mcp")), Ok(()));
    assert!(policy.check_url(&url("https://10.2.0.1/mcp")).is_err());
    assert!(EgressPolicy::new(&EgressConfig { allow_cidrs: vec!["10.0.0.0/33".into()], ..config }).is_err());
}

#[tokio::test]
async fn names_are_checked_by_what_they_resolve_to_at_connect_time() {
    let resolver = EgressResolver { policy: Arc::new(strict()), lookup: Lookup::default() };
    resolver.lookup.pin("mcp.example.com", vec!["93.184.216.34".parse().unwrap()]);
    let name = || "mcp.example.com".parse::<Name>().unwrap();
    let addresses: Vec<SocketAddr> = resolver.resolve(name()).await.unwrap().collect();
    assert_eq!(addresses, ["93.184.216.34:0".parse().unwrap()]);
    // The answer changes to loopback (DNS rebinding): refused at once.
    resolver.lookup.pin("mcp.example.com", vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()]);
    let refused = resolver.resolve(name()).await.err().unwrap();
    assert!(refused.to_string().contains("loopback"), "{refused}");
    // A mixed answer keeps only the public address.
    resolver.lookup.pin("mcp.example.com", vec!["10.0.0.1".parse().unwrap(), "93.184.216.34".parse().unwrap()]);
    let addresses: Vec<SocketAddr> = resolver.resolve(name()).await.unwrap().collect();
    assert_eq!(addresses, ["93.184.216.34:0".parse().unwrap()]);
}
