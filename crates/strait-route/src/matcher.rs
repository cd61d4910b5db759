use http::header::HOST;
use http::{HeaderMap, Uri};
use strait_config::{HostMatch, Match, ValueMatch};
use strait_core::RequestHead;
use strait_tls::ClientIdentity;

/// One router's conditions, ready to evaluate without allocating.
#[derive(Debug)]
pub(crate) struct Matcher {
    conditions: Match,
}

/// How specific a match is; compared field by field, larger wins. The host comes first, as
/// virtual hosts do in Envoy and nginx, then the path, then the remaining conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Specificity {
    host_rank: u8,
    host_len: usize,
    path_rank: u8,
    path_len: usize,
    conditions: usize,
}

impl Matcher {
    pub(crate) fn new(mut conditions: Match) -> Matcher {
        // A regex must match the whole value, as in Envoy: `v1` must not match `v10`.
        let anchor = |value: &mut ValueMatch| {
            if let ValueMatch::Regex(re) = value {
                if let Ok(whole) = regex::Regex::new(&format!("^(?:{})$", re.as_str())) {
                    *re = whole;
                }
            }
        };
        conditions.headers.iter_mut().for_each(|(_, v)| anchor(v));
        conditions.query.iter_mut().for_each(|(_, v)| anchor(v));
        Matcher { conditions }
    }

    pub(crate) fn specificity(&self) -> Specificity {
        let m = &self.conditions;
        let (host_rank, host_len) = match &m.host {
            Some(HostMatch::Exact(host)) => (2, host.len()),
            Some(HostMatch::Wildcard(suffix)) => (1, suffix.len()),
            None => (0, 0),
        };
        let (path_rank, path_len) = if let Some(path) = &m.path {
            (4, path.len())
        } else {
            match (&m.grpc_service, &m.grpc_method) {
                (Some(service), Some(method)) => (3, service.len() + method.len() + 2),
                (None, Some(method)) => (2, method.len() + 1),
                (Some(service), None) => (1, service.len() + 2),
                (None, None) => m.path_prefix.as_ref().map_or((0, 0), |p| (1, p.len())),
            }
        };
        Specificity {
            host_rank,
            host_len,
            path_rank,
            path_len,
            conditions: usize::from(!m.methods.is_empty())
                + m.headers.len()
                + m.query.len()
                + usize::from(m.client_cert_san.is_some()),
        }
    }

    pub(crate) fn matches(&self, head: &RequestHead, client: Option<&ClientIdentity>) -> bool {
        let m = &self.conditions;
        if let Some(san) = &m.client_cert_san {
            if !client.is_some_and(|c| c.has_san(san)) {
                return false;
            }
        }
        let path = head.uri().path();
        if let Some(expected) = &m.path {
            if path != expected {
                return false;
            }
        }
        if let Some(prefix) = &m.path_prefix {
            if !path.starts_with(prefix.as_str()) {
                return false;
            }
        }
        if m.grpc_service.is_some() || m.grpc_method.is_some() {
            let Some((service, method)) = grpc_path(path) else {
                return false;
            };
            if m.grpc_service.as_deref().is_some_and(|s| s != service)
                || m.grpc_method.as_deref().is_some_and(|s| s != method)
            {
                return false;
            }
        }
        if !m.methods.is_empty() && !m.methods.contains(head.method()) {
            return false;
        }
        if let Some(host) = &m.host {
            if !host_matches(host, head.uri(), head.headers()) {
                return false;
            }
        }
        for (name, expected) in &m.headers {
            let mut values = head.headers().get_all(name).iter();
            let found = match expected {
                ValueMatch::Present => values.next().is_some(),
                ValueMatch::Exact(want) => values.any(|v| v.as_bytes() == want.as_bytes()),
                ValueMatch::Regex(re) => values.any(|v| v.to_str().is_ok_and(|v| re.is_match(v))),
            };
            if !found {
                return false;
            }
        }
        if !m.query.is_empty() {
            let query = head.uri().query().unwrap_or("");
            for (name, expected) in &m.query {
                if !query_matches(query, name, expected) {
                    return false;
                }
            }
        }
        true
    }
}

/// `/pkg.Service/Method` → (`pkg.Service`, `Method`).
fn grpc_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (service, method) = rest.split_once('/')?;
    if service.is_empty() || method.is_empty() || method.contains('/') {
        return None;
    }
    Some((service, method))
}

fn host_matches(expected: &HostMatch, uri: &Uri, headers: &HeaderMap) -> bool {
    let raw = match uri.host() {
        Some(host) => host,
        None => match headers.get(HOST).and_then(|h| h.to_str().ok()) {
            Some(host) => host,
            None => return false,
        },
    };
    let host = strip_port(raw);
    let host = host.strip_suffix('.').unwrap_or(host);
    match expected {
        HostMatch::Exact(name) => host.eq_ignore_ascii_case(name),
        HostMatch::Wildcard(suffix) => {
            host.len() > suffix.len()
                && host.is_char_boundary(host.len() - suffix.len())
                && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        }
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

fn query_matches(query: &str, name: &str, expected: &ValueMatch) -> bool {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .filter(|(key, _)| decode(key) == name)
        .any(|(_, value)| match expected {
            ValueMatch::Present => true,
            ValueMatch::Exact(want) => decode(value) == *want,
            ValueMatch::Regex(re) => re.is_match(&decode(value)),
        })
}

/// Percent-decoding with `+` as space, as browsers and most clients encode queries.
fn decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
