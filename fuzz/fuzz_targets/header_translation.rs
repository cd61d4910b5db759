//! The request a client sends, as strait turns it into the one it forwards (HTTP/1.1 and
//! HTTP/2 alike): never a panic, no connection-specific header left to inject into the other
//! protocol, no CR/LF/NUL in any value, and path normalisation that is idempotent and leaves
//! no dot segment or double slash behind.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use strait_config::PathNormalization;
use strait_http::normalize::{normalize_path, to_upstream};
use strait_http::{ConnInfo, ListenerConfig};

fuzz_target!(|data: &[u8]| {
    let mut fields = data.split(|b| *b == 0);
    let uri = fields.next().unwrap_or_default();
    let mut request = http::Request::builder().version(if data.len() % 2 == 0 {
        http::Version::HTTP_11
    } else {
        http::Version::HTTP_2
    });
    if let Ok(uri) = http::Uri::try_from(uri) {
        request = request.uri(uri);
    }
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name),
            http::HeaderValue::from_bytes(value),
        ) {
            request = request.header(name, value);
        }
    }
    let Ok(mut request) = request.body(()) else {
        return;
    };

    let path = request.uri().path().to_owned();
    let settings = PathNormalization::default();
    if let Some(normalized) = normalize_path(&path, settings) {
        assert!(normalized.starts_with('/'));
        assert!(!normalized.contains("//"), "{path} -> {normalized}");
        assert!(
            !normalized.split('/').any(|s| s == "." || s == ".."),
            "{path} -> {normalized}"
        );
        assert_eq!(normalize_path(&normalized, settings), None, "{path}");
    }

    let conn = ConnInfo::new(
        Arc::from("web"),
        "192.0.2.1:1234".parse().expect("literal address"),
        "127.0.0.1:8080".parse().expect("literal address"),
        None,
        Arc::new(ListenerConfig::default()),
    );
    to_upstream(&mut request, &conn);
    let headers = request.headers();
    for gone in [
        "connection",
        "transfer-encoding",
        "upgrade",
        "keep-alive",
        "proxy-connection",
        "http2-settings",
        "host",
    ] {
        assert!(!headers.contains_key(gone), "{gone} forwarded");
    }
    if let Some(te) = headers.get("te") {
        assert_eq!(te, "trailers");
    }
    for (name, value) in headers {
        assert!(
            !value.as_bytes().iter().any(|b| matches!(b, b'\r' | b'\n' | 0)),
            "{name}: {value:?}"
        );
    }
});
