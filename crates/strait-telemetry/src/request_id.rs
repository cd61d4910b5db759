use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

/// The header that carries a request's id, kept from the client or set by strait.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-sent id that is kept; a longer one is replaced, so a client cannot make
/// every log line huge.
const MAX_LEN: usize = 128;

/// The request's id, set on `headers` for the request going upstream: the client's
/// `x-request-id` when it is usable (1 to 128 visible ASCII characters), otherwise a new
/// random UUID v4 in its place. Either way it goes out "never indexed" for HPACK: a value
/// that differs on every request only churns the compression table of the connection it
/// crosses, each insertion evicting an entry the next request's other headers could have
/// reused.
pub fn request_id(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get_mut(X_REQUEST_ID) {
        let bytes = id.as_bytes();
        if !bytes.is_empty() && bytes.len() <= MAX_LEN && bytes.iter().all(u8::is_ascii_graphic) {
            id.set_sensitive(true);
            return id.clone();
        }
    }
    let id = new_uuid();
    headers.insert(X_REQUEST_ID, id.clone());
    id
}

/// A UUID v4 (RFC 9562), lower-case hex. The ids must be unique, not secret: a process-wide
/// counter is hashed with SipHash under the keys of one `RandomState`, which the standard
/// library seeds from the OS, so ids differ across processes and never repeat within one.
fn new_uuid() -> HeaderValue {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let keys = KEYS.get_or_init(RandomState::new);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let high = keys.hash_one((n, 0u8));
    let low = keys.hash_one((n, 1u8));
    let mut bits = u128::from(high) << 64 | u128::from(low);
    bits = (bits & !(0xf << 76)) | (0x4 << 76); // version 4
    bits = (bits & !(0x3 << 62)) | (0x2 << 62); // variant 10
    let mut text = [0u8; 36];
    let mut nibble = 0;
    for (i, slot) in text.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            *slot = b'-';
            continue;
        }
        let value = (bits >> (124 - 4 * nibble)) & 0xf;
        *slot = b"0123456789abcdef"[value as usize];
        nibble += 1;
    }
    // Hex digits and dashes are always a valid header value; the fallback is never taken.
    let mut id = HeaderValue::from_bytes(&text)
        .unwrap_or_else(|_| HeaderValue::from_static("00000000-0000-4000-8000-000000000000"));
    id.set_sensitive(true);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_usable_incoming_id_never_indexed() {
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        let id = request_id(&mut headers);
        assert_eq!(id, "abc-123");
        assert_eq!(headers[X_REQUEST_ID], "abc-123");
        assert!(
            headers[X_REQUEST_ID].is_sensitive(),
            "a per-request value would churn the HPACK table"
        );
    }

    #[test]
    fn sets_a_new_id_never_indexed() {
        let mut headers = HeaderMap::new();
        let id = request_id(&mut headers);
        assert_eq!(headers[X_REQUEST_ID], id);
        assert!(headers[X_REQUEST_ID].is_sensitive());
    }

    #[test]
    fn replaces_empty_long_or_odd_ids() {
        for bad in [
            HeaderValue::from_static(""),
            HeaderValue::from_str(&"a".repeat(MAX_LEN + 1)).unwrap(),
            HeaderValue::from_static("has space"),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(X_REQUEST_ID, bad.clone());
            let id = request_id(&mut headers);
            assert_ne!(id, bad, "{bad:?} kept");
            assert_eq!(headers.get_all(X_REQUEST_ID).iter().count(), 1);
            assert_eq!(headers[X_REQUEST_ID], id);
        }
    }

    #[test]
    fn generates_distinct_uuid_v4() {
        let a = request_id(&mut HeaderMap::new());
        let b = request_id(&mut HeaderMap::new());
        assert_ne!(a, b);
        let text = a.to_str().unwrap();
        assert_eq!(text.len(), 36);
        let parts: Vec<&str> = text.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "version nibble in {text}");
        assert!(
            matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
            "variant in {text}"
        );
        assert!(text
            .bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }
}
