//! Header rules at the proxy boundary: hop-by-hop headers stop here, `te: trailers` survives
//! for gRPC, and the backend learns who the client was (`x-forwarded-*`, `forwarded`).

use std::net::IpAddr;

use http::header::{HeaderName, CONNECTION, HOST, TE, TRANSFER_ENCODING, UPGRADE};
use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderValue, Request, Response, Uri};

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
    if name == CONNECTION
        || name == TRANSFER_ENCODING
        || name == UPGRADE
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
        || name == HTTP2_SETTINGS
    {
        return true;
    }
    headers.get_all(CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(name.as_str()))
        })
    })
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
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
    if let Some(authority) = request.uri().authority() {
        return Some(authority.clone());
    }
    let host = request.headers().get(HOST)?;
    Authority::try_from(host.as_bytes()).ok()
}

/// Turns a client's request into the one sent upstream: hop-by-hop headers removed, the
/// authority moved into an absolute URI (each upstream protocol takes it from there), and the
/// forwarding headers set.
pub fn to_upstream<B>(request: &mut Request<B>, conn: &ConnInfo) {
    let authority = authority(request);
    let headers = request.headers_mut();
    strip_hop_by_hop(headers);
    headers.remove(HOST);
    add_forwarded(headers, conn, authority.as_ref());

    let mut uri = http::uri::Parts::default();
    let path = request
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    if let Some(authority) = authority {
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(authority);
    }
    uri.path_and_query = Some(path);
    if let Ok(uri) = Uri::from_parts(uri) {
        *request.uri_mut() = uri;
    }
}

/// Removes what only described the backend's connection.
pub fn from_upstream<B>(response: &mut Response<B>) {
    strip_hop_by_hop(response.headers_mut());
}

fn add_forwarded(headers: &mut HeaderMap, conn: &ConnInfo, authority: Option<&Authority>) {
    let ip = conn.remote.ip();
    let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(existing) => format!("{existing}, {ip}"),
        None => ip.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&xff) {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    let proto = if conn.tls.is_some() { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if let Some(authority) = authority {
        if let Ok(value) = HeaderValue::from_str(authority.as_str()) {
            headers.insert(X_FORWARDED_HOST.clone(), value);
        }
    }
    let node = match ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("\"[{ip}]\""),
    };
    let mut element = format!("for={node};proto={proto}");
    if let Some(authority) = authority {
        element.push_str(&format!(";host=\"{}\"", authority.as_str()));
    }
    let forwarded = match headers.get(&FORWARDED).and_then(|v| v.to_str().ok()) {
        Some(existing) => format!("{existing}, {element}"),
        None => element,
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded) {
        headers.insert(FORWARDED.clone(), value);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn conn(remote: &str) -> ConnInfo {
        ConnInfo {
            entrypoint: Arc::from("web"),
            remote: remote.parse().unwrap(),
            local: "127.0.0.1:8080".parse().unwrap(),
            tls: None,
            listener: Arc::new(crate::ListenerConfig::default()),
        }
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
        to_upstream(&mut request, &conn("10.1.2.3:5555"));
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
        to_upstream(&mut request, &conn("[::1]:4000"));
        assert_eq!(request.headers()["x-forwarded-for"], "192.0.2.1, ::1");
        assert_eq!(
            request.headers()["forwarded"],
            "for=192.0.2.1, for=\"[::1]\";proto=http;host=\"a.example\""
        );
    }

    #[test]
    fn te_other_than_trailers_is_dropped() {
        let mut request = Request::get("/").header("te", "gzip").body(()).unwrap();
        to_upstream(&mut request, &conn("127.0.0.1:1"));
        assert!(!request.headers().contains_key("te"));
        assert_eq!(request.uri(), "/");
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
