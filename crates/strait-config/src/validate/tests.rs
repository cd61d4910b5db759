use super::*;

#[test]
fn edit_distance_counts_single_edits() {
    assert_eq!(edit_distance("adress", "address"), 1);
    assert_eq!(edit_distance("servce", "service"), 1);
    assert_eq!(edit_distance("sevrice", "service"), 2);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("abc", "abc"), 0);
}

#[test]
fn addresses() {
    assert_eq!(
        parse_address("127.0.0.1:8080").unwrap().to_string(),
        "127.0.0.1:8080"
    );
    assert_eq!(parse_address("[::1]:0").unwrap().to_string(), "[::1]:0");
    assert_eq!(
        parse_address("localhost:9").unwrap().to_string(),
        "127.0.0.1:9"
    );
    for (bad, want) in [
        ("127.0.0.1", "no port"),
        ("127.0.0.1:99999", "not a port"),
        (":8080", "no host"),
        ("::1:80", "need brackets"),
        ("example.com:80", "not an IP address"),
    ] {
        let (message, _) = parse_address(bad).unwrap_err();
        assert!(message.contains(want), "{bad}: {message}");
    }
}

#[test]
fn urls() {
    let url = parse_url("h2c://127.0.0.1:50051").unwrap();
    assert_eq!(url.scheme, UpstreamScheme::H2c);
    assert_eq!((url.host.as_str(), url.port), ("127.0.0.1", 50051));
    let url = parse_url("HTTP://Backend.local/").unwrap();
    assert_eq!(url.scheme, UpstreamScheme::Http);
    assert_eq!((url.host.as_str(), url.port), ("backend.local", 80));
    let url = parse_url("h2c://[::1]:7").unwrap();
    assert_eq!((url.host.as_str(), url.port), ("::1", 7));
    assert_eq!(url_text(&url), "h2c://[::1]:7");
    let url = parse_url("HTTPS://Api.Internal").unwrap();
    assert_eq!(url.scheme, UpstreamScheme::Https);
    assert_eq!((url.host.as_str(), url.port), ("api.internal", 443));
    assert_eq!(url_text(&url), "https://api.internal:443");
    let url = parse_url("https://[::1]:8443/").unwrap();
    assert_eq!((url.host.as_str(), url.port), ("::1", 8443));
    for (bad, want) in [
        ("127.0.0.1:80", "not a server URL"),
        ("grpc://a:1", "unsupported scheme `grpc://`"),
        ("https://a:0", "invalid port `0`"),
        ("h2c://a:1/x", "has a path (`/x`)"),
        ("h2c://a:1?x", "has a path"),
        ("h2c://a:0", "invalid port `0`"),
        ("h2c://a:x", "invalid port `x`"),
        ("h2c://:80", "no host"),
        ("h2c://", "no host"),
        ("h2c://u@a", "credentials"),
        ("h2c://::1:80", "too many `:`"),
        ("h2c://[::1", "unclosed"),
        ("h2c://[zz]:1", "not an IPv6 address"),
        ("h2c://a b", "invalid host"),
    ] {
        let (message, _) = parse_url(bad).unwrap_err();
        assert!(message.contains(want), "{bad}: {message}");
    }
    let (_, hint) = parse_url("https://a:x").unwrap_err();
    assert_eq!(
        hint.as_deref(),
        Some("ports are 1-65535; leave the port out for 443")
    );
}

#[test]
fn hosts() {
    assert_eq!(
        parse_host("API.Example.com").unwrap(),
        HostMatch::Exact("api.example.com".into())
    );
    assert_eq!(
        parse_host("*.Example.com").unwrap(),
        HostMatch::Wildcard(".example.com".into())
    );
    for (bad, want) in [
        ("", "empty"),
        ("a.com:80", "port"),
        ("*", "not a whole first label"),
        ("a.*.com", "not a whole first label"),
        ("*a.com", "not a whole first label"),
        ("a..com", "not a valid host name"),
        ("a b", "not a valid host name"),
    ] {
        let (message, _) = parse_host(bad).unwrap_err();
        assert!(message.contains(want), "{bad}: {message}");
    }
}

#[test]
fn listeners_overlap_on_the_same_family_wildcard() {
    let any4 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let local4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let local6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    assert!(overlaps(any4, local4));
    assert!(overlaps(local4, local4));
    assert!(!overlaps(any4, local6));
    assert!(!overlaps(local4, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
}
