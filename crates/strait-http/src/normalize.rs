//! Header rules at the proxy boundary: hop-by-hop headers stop here, `te: trailers` survives
//! for gRPC, and the backend learns who the client was (`x-forwarded-*`, `forwarded`).

use std::net::IpAddr;

use http::header::{HeaderName, CONNECTION, HOST, TE, TRANSFER_ENCODING, UPGRADE};
use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderValue, Request, Response, Uri};

use strait_config::PathNormalization;
use strait_core::RequestHead;

use crate::ConnInfo;

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// True for headers that describe one connection, not the message: the fixed list plus
/// every name the `connection` header lists.
pub fn is_hop_by_hop(name: &HeaderName, headers: &HeaderMap) -> bool {
    if is_fixed_hop_by_hop(name) {
        return true;
    }
    headers.get_all(CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(name.as_str()))
        })
    })
}

/// The names [`strip_hop_by_hop`] always removes.
fn is_fixed_hop_by_hop(name: &HeaderName) -> bool {
    name == CONNECTION
        || name == TRANSFER_ENCODING
        || name == UPGRADE
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
        || name == HTTP2_SETTINGS
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass first: HTTP/2 peers cannot send any of these (h2 refuses them), so most
    // messages have nothing to strip and `te` at most as `trailers`, and need no lookups.
    let mut tes = 0;
    let clean = headers.iter().all(|(name, value)| {
        if name == TE {
            tes += 1;
            return value.as_bytes() == b"trailers";
        }
        !is_fixed_hop_by_hop(name)
    });
    if clean && tes <= 1 {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in [
        &CONNECTION,
        &TRANSFER_ENCODING,
        &UPGRADE,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &HTTP2_SETTINGS,
    ] {
        headers.remove(name);
    }
    // `te` may only say `trailers` across HTTP/2, and gRPC needs exactly that.
    let wants_trailers = headers.get_all(TE).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
    });
    headers.remove(TE);
    if wants_trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
}

/// The client's authority: `:authority` on HTTP/2, `Host` on HTTP/1.1.
pub fn authority<B>(request: &Request<B>) -> Option<Authority> {
    authority_of(request.uri(), request.headers())
}

fn authority_of(uri: &Uri, headers: &HeaderMap) -> Option<Authority> {
    if let Some(authority) = uri.authority() {
        return Some(authority.clone());
    }
    let host = headers.get(HOST)?;
    Authority::try_from(host.as_bytes()).ok()
}

/// Turns a client's request head into the one sent upstream: hop-by-hop headers removed, the
/// authority moved into an absolute URI (each upstream protocol takes it from there), and the
/// forwarding headers set.
pub fn to_upstream(head: &mut RequestHead, conn: &ConnInfo) {
    let (uri, headers) = head.uri_and_headers_mut();
    upstream_parts(uri, headers, conn);
}

fn upstream_parts(uri: &mut Uri, headers: &mut HeaderMap, conn: &ConnInfo) {
    let authority = authority_of(uri, headers);
    strip_hop_by_hop(headers);
    headers.remove(HOST);
    add_forwarded(headers, conn, authority.as_ref());

    let mut parts = http::uri::Parts::default();
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    if let Some(authority) = authority {
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(authority);
    }
    parts.path_and_query = Some(path);
    if let Ok(absolute) = Uri::from_parts(parts) {
        *uri = absolute;
    }
}

/// The path with dot segments removed (RFC 3986 §5.2.4; `%2e` counts as `.`) and runs of
/// `/` merged, as `settings` ask; `None` when that changes nothing (or the target is not a
/// path, like `*`). Applied before routing, so `/public/../admin` is routed, and forwarded,
/// as `/admin`.
pub fn normalize_path(path: &str, settings: PathNormalization) -> Option<String> {
    let rest = path.strip_prefix('/')?;
    let dots = settings.dot_segments && (path.contains("/.") || path.contains("%2"));
    let slashes = settings.merge_slashes && path.contains("//");
    if !dots && !slashes {
        return None;
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        let is_last = i == last;
        match dot_segment(segment) {
            Some(dots) if settings.dot_segments => {
                if dots == 2 {
                    out.pop();
                }
                // `/a/..` is `/`-terminated, like `/a/../`.
                if is_last {
                    out.push("");
                }
            }
            _ if settings.merge_slashes && segment.is_empty() && !is_last => {}
            _ => out.push(segment),
        }
    }
    let normalized = format!("/{}", out.join("/"));
    (normalized != path).then_some(normalized)
}

/// 1 for `.`, 2 for `..`, with any dot written `%2e` or `%2E`.
fn dot_segment(segment: &str) -> Option<u8> {
    let mut rest = segment.as_bytes();
    let mut dots = 0u8;
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(b"%2e") {
            rest = &rest[3..];
        } else {
            return None;
        }
        dots += 1;
        if dots > 2 {
            return None;
        }
    }
    (dots > 0).then_some(dots)
}

/// Removes what only described the backend's connection.
pub fn from_upstream<B>(response: &mut Response<B>) {
    strip_hop_by_hop(response.headers_mut());
}

/// The client's part of the forwarding headers, made once per connection.
#[derive(Debug)]
pub(crate) struct ForwardedFor {
    /// The client's IP, as `x-forwarded-for` lists it.
    ip: HeaderValue,
    /// `for=<node>;proto=<proto>`, the start of this hop's `forwarded` element.
    element: String,
    proto: &'static str,
}

impl ForwardedFor {
    pub(crate) fn new(ip: IpAddr, tls: bool) -> ForwardedFor {
        let proto = if tls { "https" } else { "http" };
        let node = match ip {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("\"[{ip}]\""),
        };
        ForwardedFor {
            // An IP address's text is always a valid header value.
            ip: HeaderValue::from_str(&ip.to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            element: format!("for={node};proto={proto}"),
            proto,
        }
    }
}

fn add_forwarded(headers: &mut HeaderMap, conn: &ConnInfo, authority: Option<&Authority>) {
    let ours = &conn.forwarded;
    let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(existing) => HeaderValue::from_str(&format!(
            "{existing}, {}",
            ours.ip.to_str().unwrap_or_default()
        ))
        .ok(),
        None => Some(ours.ip.clone()),
    };
    if let Some(value) = xff {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(ours.proto),
    );
    if let Some(authority) = authority {
        if let Ok(value) = HeaderValue::from_str(authority.as_str()) {
            headers.insert(X_FORWARDED_HOST.clone(), value);
        }
    }
    let existing = headers.get(&FORWARDED).and_then(|v| v.to_str().ok());
    let mut forwarded = String::with_capacity(
        existing.map_or(0, |e| e.len() + 2)
            + ours.element.len()
            + authority.map_or(0, |a| a.as_str().len() + 8),
    );
    if let Some(existing) = existing {
        forwarded.push_str(existing);
        forwarded.push_str(", ");
    }
    forwarded.push_str(&ours.element);
    if let Some(authority) = authority {
        forwarded.push_str(";host=\"");
        forwarded.push_str(authority.as_str());
        forwarded.push('"');
    }
    if let Ok(value) = HeaderValue::from_str(&forwarded) {
        headers.insert(FORWARDED.clone(), value);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn upstream<B>(request: &mut Request<B>, conn: &ConnInfo) {
        let mut uri = std::mem::take(request.uri_mut());
        upstream_parts(&mut uri, request.headers_mut(), conn);
        *request.uri_mut() = uri;
    }

    fn conn(remote: &str) -> ConnInfo {
        ConnInfo::new(
            Arc::from("web"),
            remote.parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
            None,
            Arc::new(crate::ListenerConfig::default()),
        )
    }

    #[test]
    fn http1_request_becomes_absolute_without_hop_by_hop_headers() {
        let mut request = Request::post("/shop.Orders/Place?x=1")
            .header("host", "api.example.com:8080")
            .header("connection", "keep-alive, x-secret-hop")
            .header("x-secret-hop", "1")
            .header("keep-alive", "timeout=5")
            .header("transfer-encoding", "chunked")
            .header("te", "trailers, deflate")
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        upstream(&mut request, &conn("10.1.2.3:5555"));
        assert_eq!(
            request.uri().to_string(),
            "http://api.example.com:8080/shop.Orders/Place?x=1"
        );
        let h = request.headers();
        for gone in [
            "host",
            "connection",
            "x-secret-hop",
            "keep-alive",
            "transfer-encoding",
        ] {
            assert!(!h.contains_key(gone), "{gone} must be removed");
        }
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["content-type"], "application/grpc");
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example.com:8080");
        assert_eq!(
            h["forwarded"],
            "for=10.1.2.3;proto=http;host=\"api.example.com:8080\""
        );
    }

    #[test]
    fn forwarding_headers_append_to_existing_ones() {
        let mut request = Request::get("http://a.example/")
            .header("x-forwarded-for", "192.0.2.1")
            .header("forwarded", "for=192.0.2.1")
            .body(())
            .unwrap();
        upstream(&mut request, &conn("[::1]:4000"));
        assert_eq!(request.headers()["x-forwarded-for"], "192.0.2.1, ::1");
        assert_eq!(
            request.headers()["forwarded"],
            "for=192.0.2.1, for=\"[::1]\";proto=http;host=\"a.example\""
        );
    }

    #[test]
    fn clean_grpc_headers_keep_their_values_and_order() {
        let mut request = Request::post("/pkg.Svc/Method")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("grpc-timeout", "1S")
            .header("x-custom", "a")
            .header("x-custom", "b")
            .body(())
            .unwrap();
        upstream(&mut request, &conn("127.0.0.1:1"));
        let h = request.headers();
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["grpc-timeout"], "1S");
        let custom: Vec<_> = h.get_all("x-custom").iter().collect();
        assert_eq!(custom, ["a", "b"]);
    }

    #[test]
    fn te_trailers_is_normalised_whatever_its_case_or_count() {
        for values in [&["Trailers"][..], &["trailers", "trailers"][..]] {
            let mut builder = Request::post("/");
            for v in values {
                builder = builder.header("te", *v);
            }
            let mut request = builder.body(()).unwrap();
            upstream(&mut request, &conn("127.0.0.1:1"));
            let te: Vec<_> = request.headers().get_all("te").iter().collect();
            assert_eq!(te, ["trailers"], "te {values:?}");
        }
    }

    #[test]
    fn te_other_than_trailers_is_dropped() {
        let mut request = Request::get("/").header("te", "gzip").body(()).unwrap();
        upstream(&mut request, &conn("127.0.0.1:1"));
        assert!(!request.headers().contains_key("te"));
        assert_eq!(request.uri(), "/");
    }

    #[test]
    fn paths_are_normalized_before_routing() {
        let both = PathNormalization::default();
        let cases = [
            ("/admin/../x", Some("/x")),
            ("/public/../admin/secret", Some("/admin/secret")),
            ("/a/./b", Some("/a/b")),
            ("/a/b/..", Some("/a/")),
            ("/a/.", Some("/a/")),
            ("/..", Some("/")),
            ("/../../etc/passwd", Some("/etc/passwd")),
            ("//admin", Some("/admin")),
            ("/a//b///c/", Some("/a/b/c/")),
            ("/a/%2e%2E/b", Some("/b")),
            ("/a/.%2e/b", Some("/b")),
            ("/a/..b/c", None),
            ("/a/.../c", None),
            ("/shop.Orders/Place", None),
            ("/", None),
            ("*", None),
            ("/a%2fb", None),
        ];
        for (path, want) in cases {
            assert_eq!(normalize_path(path, both).as_deref(), want, "{path}");
        }
        let dots_only = PathNormalization {
            dot_segments: true,
            merge_slashes: false,
        };
        assert_eq!(normalize_path("//a//b", dots_only), None);
        assert_eq!(
            normalize_path("/a//../b", dots_only).as_deref(),
            Some("/a/b")
        );
        let slashes_only = PathNormalization {
            dot_segments: false,
            merge_slashes: true,
        };
        assert_eq!(normalize_path("/a/../b", slashes_only), None);
        assert_eq!(
            normalize_path("//a/../b", slashes_only).as_deref(),
            Some("/a/../b")
        );
    }

    #[test]
    fn responses_lose_connection_headers() {
        let mut response = Response::builder()
            .header("connection", "close")
            .header("keep-alive", "timeout=5")
            .header("grpc-status", "0")
            .body(())
            .unwrap();
        from_upstream(&mut response);
        assert!(!response.headers().contains_key("connection"));
        assert!(!response.headers().contains_key("keep-alive"));
        assert_eq!(response.headers()["grpc-status"], "0");
    }
}
