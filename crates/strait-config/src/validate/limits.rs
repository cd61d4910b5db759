//! An entrypoint's protection against abusive clients: `limits:` (timeouts, connection
//! counts, body and header sizes, HTTP/2 frame rates) and `path_normalization:`.

use std::time::Duration;

use super::lifecycle::SizeLimit;
use super::{get, Entries, Validator};
use crate::model::{FrameRates, Http2Settings, Limits, PathNormalization};
use crate::size::parse_size;
use crate::tree::{Node, NodeKind};

const HEADER_SIZE: SizeLimit = SizeLimit {
    min: 1,
    max: u32::MAX as u64,
    hint: "e.g. 8KiB",
};
const LIMITS_KEYS: &[&str] = &[
    "header_read_timeout",
    "max_connections",
    "max_connections_per_ip",
    "max_request_body",
    "max_grpc_request_body",
    "max_header_size",
    "max_continuation_frames",
    "http2_frames_per_second",
];
const FRAME_KEYS: &[&str] = &[
    "rst_stream",
    "settings",
    "ping",
    "window_update",
    "priority",
    "empty_data",
];
const PATH_KEYS: &[&str] = &["dot_segments", "merge_slashes"];

/// Written instead of a number to switch a limit off.
const UNLIMITED: &str = "unlimited";
const SIZE_HINT: &str = "sizes are a number of bytes, or a whole number of KiB or MiB \
                         (e.g. 16MiB), or `unlimited`";

// === impl Validator ===

impl Validator {
    /// `limits` and `path_normalization` among an entrypoint's `entries`; `http2` is the
    /// entrypoint's HTTP/2 settings when they are valid (they bound CONTINUATION frames).
    pub(super) fn hardening(
        &mut self,
        entries: &Entries,
        http2: Option<&Http2Settings>,
        context: &str,
    ) -> (Option<Limits>, Option<PathNormalization>) {
        let limits = match get(entries, "limits") {
            None => Some(Limits::default()),
            Some((_, node)) => self.limits(node, http2, context),
        };
        let paths = match get(entries, "path_normalization") {
            None => Some(PathNormalization::default()),
            Some((_, node)) => self.path_normalization(node, context),
        };
        (limits, paths)
    }

    fn limits(
        &mut self,
        node: &Node,
        http2: Option<&Http2Settings>,
        context: &str,
    ) -> Option<Limits> {
        let entries: &Entries = match &node.kind {
            NodeKind::Null => &[],
            _ => self.mapping(node, &format!("`limits` {context}"))?,
        };
        let context = format!("in `limits` {context}");
        let context = context.as_str();
        self.known_keys(entries, LIMITS_KEYS, context);
        let defaults = Limits::default();
        let mut ok = true;

        let header_read_timeout = match get(entries, "header_read_timeout") {
            None => Some(defaults.header_read_timeout),
            Some((_, value)) => self.read_timeout(value, context),
        };
        let max_connections = self.limit(entries, "max_connections", |v, node| {
            v.limit_count(node, "max_connections", context)
        });
        let max_connections_per_ip = self.limit(entries, "max_connections_per_ip", |v, node| {
            v.limit_count(node, "max_connections_per_ip", context)
        });
        if let (Some(Some(total)), Some(Some(per_ip)), Some((key, _))) = (
            max_connections
                .as_ref()
                .map(|l| l.or(defaults.max_connections)),
            max_connections_per_ip
                .as_ref()
                .map(|l| l.or(defaults.max_connections_per_ip)),
            get(entries, "max_connections_per_ip"),
        ) {
            if per_ip > total {
                self.report_hint(
                    key.loc,
                    format!(
                        "`max_connections_per_ip` {context} ({per_ip}) has no effect: it is \
                         above `max_connections` ({total})"
                    ),
                    "lower `max_connections_per_ip`, or raise `max_connections`",
                );
                ok = false;
            }
        }
        let max_request_body = self.limit(entries, "max_request_body", |v, node| {
            v.body_size(node, "max_request_body", context)
        });
        let max_grpc_request_body = self.limit(entries, "max_grpc_request_body", |v, node| {
            v.body_size(node, "max_grpc_request_body", context)
        });
        let max_header_size = match get(entries, "max_header_size") {
            None => Some(defaults.max_header_size),
            Some((_, value)) => self.size(value, "max_header_size", context, &HEADER_SIZE),
        };
        let max_continuation_frames = match get(entries, "max_continuation_frames") {
            None => Some(None),
            Some((_, value)) => self.continuation_frames(value, http2, context).map(Some),
        };
        let http2_frames_per_second = match get(entries, "http2_frames_per_second") {
            None => Some(defaults.http2_frames_per_second.clone()),
            Some((_, value)) => self.frame_rates(value, context),
        };
        let limits = Limits {
            header_read_timeout: header_read_timeout?,
            max_connections: max_connections?.or(defaults.max_connections),
            max_connections_per_ip: max_connections_per_ip?.or(defaults.max_connections_per_ip),
            max_request_body: max_request_body?.or(defaults.max_request_body),
            max_grpc_request_body: max_grpc_request_body?.or(defaults.max_grpc_request_body),
            max_header_size: max_header_size?,
            max_continuation_frames: max_continuation_frames?,
            http2_frames_per_second: http2_frames_per_second?,
        };
        ok.then_some(limits)
    }

    /// A limit that may be `unlimited`, as written; `None` when it is invalid. `read` gives
    /// `Some(None)` for `unlimited`.
    fn limit<T: Copy>(
        &mut self,
        entries: &Entries,
        key: &str,
        read: impl FnOnce(&mut Self, &Node) -> Option<Option<T>>,
    ) -> Option<Limit<T>> {
        match get(entries, key) {
            None => Some(Limit::Default),
            Some((_, value)) => read(self, value).map(|limit| match limit {
                Some(n) => Limit::Is(n),
                None => Limit::Unlimited,
            }),
        }
    }

    fn read_timeout(&mut self, node: &Node, context: &str) -> Option<Duration> {
        let timeout = self.duration(node, "header_read_timeout", context)?;
        if timeout.is_zero() {
            self.report_hint(
                node.loc,
                format!(
                    "`header_read_timeout` {context} is zero, which would close every \
                     connection before its first request"
                ),
                "leave it out for the default, 5s",
            );
            return None;
        }
        Some(timeout)
    }

    /// A positive count or `unlimited` (`None`).
    fn limit_count(&mut self, node: &Node, key: &str, context: &str) -> Option<Option<u32>> {
        match &node.kind {
            NodeKind::Str(text) if text == UNLIMITED => Some(None),
            NodeKind::Int(n) => match u32::try_from(*n) {
                Ok(n) if n >= 1 => Some(Some(n)),
                _ => {
                    self.report_hint(
                        node.loc,
                        format!("`{key}` {context} must be 1 to {}, not {n}", u32::MAX),
                        format!("write `{UNLIMITED}` to switch the limit off"),
                    );
                    None
                }
            },
            _ => {
                self.report_hint(
                    node.loc,
                    format!(
                        "expected a whole number for `{key}` {context}, found {}",
                        node.describe()
                    ),
                    format!("e.g. 1000, or `{UNLIMITED}`"),
                );
                None
            }
        }
    }

    /// A positive number of bytes or `unlimited` (`None`).
    fn body_size(&mut self, node: &Node, key: &str, context: &str) -> Option<Option<u64>> {
        let bytes = match &node.kind {
            NodeKind::Str(text) if text == UNLIMITED => return Some(None),
            NodeKind::Str(text) => match parse_size(text) {
                Ok(bytes) => bytes,
                Err(err) => {
                    self.report_hint(node.loc, format!("{err} for `{key}` {context}"), SIZE_HINT);
                    return None;
                }
            },
            NodeKind::Int(n) => u64::try_from(*n).unwrap_or(0),
            _ => {
                self.report_hint(
                    node.loc,
                    format!(
                        "expected a size for `{key}` {context}, found {}",
                        node.describe()
                    ),
                    SIZE_HINT,
                );
                return None;
            }
        };
        if bytes == 0 {
            self.report_hint(
                node.loc,
                format!("`{key}` {context} must be at least 1 byte"),
                format!("write `{UNLIMITED}` to switch the limit off"),
            );
            return None;
        }
        Some(Some(bytes))
    }

    /// At least 1, and no more than the HTTP/2 engine allows for the entrypoint's header
    /// list size: above that the setting could never take effect.
    fn continuation_frames(
        &mut self,
        node: &Node,
        http2: Option<&Http2Settings>,
        context: &str,
    ) -> Option<u32> {
        let NodeKind::Int(n) = node.kind else {
            self.report(
                node.loc,
                format!(
                    "expected a whole number for `max_continuation_frames` {context}, found {}",
                    node.describe()
                ),
            );
            return None;
        };
        let Some(n) = u32::try_from(n).ok().filter(|n| *n >= 1) else {
            self.report(
                node.loc,
                format!("`max_continuation_frames` {context} must be at least 1, not {n}"),
            );
            return None;
        };
        // With broken HTTP/2 settings, their own errors are enough.
        let http2 = http2?;
        let engine =
            Limits::default().continuation_frames(http2.max_header_list_size, http2.max_frame_size);
        if n > engine {
            self.report_hint(
                node.loc,
                format!(
                    "`max_continuation_frames` {context} ({n}) has no effect: with the \
                     entrypoint's `http2.max_header_list_size` the HTTP/2 engine already \
                     stops a header block after {engine}"
                ),
                format!(
                    "write at most {engine}, or raise `max_header_list_size` in the \
                     entrypoint's `http2` settings"
                ),
            );
            return None;
        }
        Some(n)
    }

    fn frame_rates(&mut self, node: &Node, context: &str) -> Option<FrameRates> {
        let context = format!("in `http2_frames_per_second` {context}");
        let entries: &Entries = match &node.kind {
            NodeKind::Null => &[],
            _ => self.mapping(node, &format!("`http2_frames_per_second` {context}"))?,
        };
        self.known_keys(entries, FRAME_KEYS, &context);
        let defaults = FrameRates::default();
        let rate = |v: &mut Self, key: &str, default: Option<u32>| match get(entries, key) {
            None => Some(default),
            Some((_, value)) => v.limit_count(value, key, &context),
        };
        let rates = (
            rate(self, "rst_stream", defaults.rst_stream),
            rate(self, "settings", defaults.settings),
            rate(self, "ping", defaults.ping),
            rate(self, "window_update", defaults.window_update),
            rate(self, "priority", defaults.priority),
            rate(self, "empty_data", defaults.empty_data),
        );
        Some(FrameRates {
            rst_stream: rates.0?,
            settings: rates.1?,
            ping: rates.2?,
            window_update: rates.3?,
            priority: rates.4?,
            empty_data: rates.5?,
        })
    }

    fn path_normalization(&mut self, node: &Node, context: &str) -> Option<PathNormalization> {
        let entries = self.mapping(node, &format!("`path_normalization` {context}"))?;
        let context = format!("in `path_normalization` {context}");
        self.known_keys(entries, PATH_KEYS, &context);
        let defaults = PathNormalization::default();
        let dot_segments = match get(entries, "dot_segments") {
            None => Some(defaults.dot_segments),
            Some((_, value)) => self.boolean(value, "dot_segments", &context),
        };
        let merge_slashes = match get(entries, "merge_slashes") {
            None => Some(defaults.merge_slashes),
            Some((_, value)) => self.boolean(value, "merge_slashes", &context),
        };
        Some(PathNormalization {
            dot_segments: dot_segments?,
            merge_slashes: merge_slashes?,
        })
    }
}

/// A limit as written: left out, a value, or `unlimited`.
#[derive(Clone, Copy)]
enum Limit<T> {
    Default,
    Is(T),
    Unlimited,
}

impl<T: Copy> Limit<T> {
    /// The limit in force, given the default.
    fn or(self, default: Option<T>) -> Option<T> {
        match self {
            Limit::Default => default,
            Limit::Is(value) => Some(value),
            Limit::Unlimited => None,
        }
    }
}
