//! Connection settings: `http2` on an entrypoint or a service (HTTP/2 settings and
//! keepalive), connection age and request counts, and the process's shutdown: the top-level
//! `drain_timeout` and `lifecycle`.

use std::num::NonZeroU32;
use std::time::Duration;

use super::{get, Entries, Validator};
use crate::model::{Http2Settings, Lifecycle, ProcessLifecycle, Server, UpstreamScheme};
use crate::size::parse_size;
use crate::tree::{Key, Node, NodeKind};

const HTTP2_KEYS: &[&str] = &[
    "max_concurrent_streams",
    "initial_stream_window",
    "initial_connection_window",
    "adaptive_window",
    "max_frame_size",
    "max_header_list_size",
    "keepalive_interval",
    "keepalive_timeout",
];

/// `lifecycle` at top level.
const PROCESS_LIFECYCLE_KEYS: &[&str] = &["accept_grace"];

pub(super) const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// SETTINGS_MAX_CONCURRENT_STREAMS has no protocol limit, but h2 and most peers treat it as
/// an i32; beyond 2^31 - 1 is no different from unlimited.
const MAX_STREAMS: u32 = 2_147_483_647;

/// Flow-control windows (RFC 9113 §6.9): 65535 is the protocol's initial value and
/// 2^31 - 1 its largest.
const WINDOW: SizeLimit = SizeLimit {
    min: 65_535,
    max: 2_147_483_647,
    hint: "HTTP/2 windows are 65535 bytes (64KiB - 1) to 2GiB - 1 byte, e.g. 1MiB",
};
/// SETTINGS_MAX_FRAME_SIZE (RFC 9113 §6.5.2): 2^14 to 2^24 - 1.
const FRAME_SIZE: SizeLimit = SizeLimit {
    min: 16_384,
    max: 16_777_215,
    hint: "HTTP/2 frames are 16KiB to 16MiB - 1 byte; 16KiB is the protocol's default",
};
const HEADER_LIST_SIZE: SizeLimit = SizeLimit {
    min: 1,
    max: 4_294_967_295,
    hint: "e.g. 64KiB",
};

const SIZE_HINT: &str = "sizes are a number of bytes, or a whole number of KiB or MiB: \
                         65535, 64KiB, 1MiB";

/// The bytes a size setting may hold, and what to say when it is outside them.
pub(super) struct SizeLimit {
    pub(super) min: u64,
    pub(super) max: u64,
    pub(super) hint: &'static str,
}

/// What a zero duration would do, and what to write instead.
pub(super) struct Zero {
    pub(super) effect: &'static str,
    pub(super) hint: &'static str,
}

// === impl Validator ===

impl Validator {
    /// `drain_timeout` at top level: how long open requests get at shutdown.
    pub(super) fn drain_timeout(&mut self, node: &Node) -> Option<Duration> {
        self.positive_duration(
            node,
            "drain_timeout",
            "at top level",
            &Zero {
                effect: "reset every open request at shutdown",
                hint: "leave `drain_timeout` out for the default, 30s",
            },
        )
    }

    /// `lifecycle` at top level: how the process stops.
    pub(super) fn process_lifecycle(&mut self, node: &Node) -> Option<ProcessLifecycle> {
        let entries: &Entries = match &node.kind {
            NodeKind::Null => &[],
            _ => self.mapping(node, "`lifecycle` at top level")?,
        };
        let context = "in `lifecycle`";
        self.known_keys(entries, PROCESS_LIFECYCLE_KEYS, context);
        // Zero is allowed: it is the default, the drain starts at once.
        let accept_grace = self.optional(entries, "accept_grace", |v, node| {
            v.duration(node, "accept_grace", context)
        })?;
        Some(ProcessLifecycle {
            accept_grace: accept_grace.unwrap_or_default(),
        })
    }

    /// An `http2` mapping; `owner` names where it is in messages, e.g. entrypoint `web`.
    pub(super) fn http2(&mut self, owner: &str, node: &Node) -> Option<Http2Settings> {
        let context = format!("in the HTTP/2 settings of {owner}");
        let entries: &Entries = match &node.kind {
            NodeKind::Null => &[],
            _ => self.mapping(node, &format!("`http2` in {owner}"))?,
        };
        self.known_keys(entries, HTTP2_KEYS, &context);
        let context = context.as_str();

        let max_concurrent_streams = self.optional(entries, "max_concurrent_streams", |v, node| {
            v.stream_count(node, context)
        });
        let initial_stream_window = self.optional(entries, "initial_stream_window", |v, node| {
            v.size(node, "initial_stream_window", context, &WINDOW)
        });
        let initial_connection_window =
            self.optional(entries, "initial_connection_window", |v, node| {
                v.size(node, "initial_connection_window", context, &WINDOW)
            });
        let adaptive_window = match get(entries, "adaptive_window") {
            None => Some(false),
            Some((_, value)) => self.boolean(value, "adaptive_window", context),
        };
        let max_frame_size = self.optional(entries, "max_frame_size", |v, node| {
            v.size(node, "max_frame_size", context, &FRAME_SIZE)
        });
        let max_header_list_size = self.optional(entries, "max_header_list_size", |v, node| {
            v.size(node, "max_header_list_size", context, &HEADER_LIST_SIZE)
        });
        let keepalive_interval = self.optional(entries, "keepalive_interval", |v, node| {
            v.positive_duration(
                node,
                "keepalive_interval",
                context,
                &Zero {
                    effect: "send PINGs without pause",
                    hint: "leave `keepalive_interval` out for no keepalive",
                },
            )
        });
        let keepalive_timeout = self.optional(entries, "keepalive_timeout", |v, node| {
            v.positive_duration(
                node,
                "keepalive_timeout",
                context,
                &Zero {
                    effect: "close every connection at its first PING",
                    hint: "leave `keepalive_timeout` out for the default, 20s",
                },
            )
        });

        let mut ok = true;
        if let (Some((key, _)), None) = (
            get(entries, "keepalive_timeout"),
            get(entries, "keepalive_interval"),
        ) {
            self.report_hint(
                key.loc,
                format!("`keepalive_timeout` {context} has no effect without `keepalive_interval`"),
                "the timeout waits for answers to keepalive PINGs; set `keepalive_interval` \
                 (e.g. 30s) to send them, or remove `keepalive_timeout`",
            );
            ok = false;
        }
        if adaptive_window == Some(true) {
            for name in ["initial_stream_window", "initial_connection_window"] {
                if let Some((key, _)) = get(entries, name) {
                    self.report_hint(
                        key.loc,
                        format!(
                            "`{name}` {context} has no effect with `adaptive_window: true`: \
                             adaptive_window sizes the windows itself"
                        ),
                        format!("remove `{name}`, or set `adaptive_window: false`"),
                    );
                    ok = false;
                }
            }
        }
        let settings = Http2Settings {
            max_concurrent_streams: max_concurrent_streams?,
            initial_stream_window: initial_stream_window?,
            initial_connection_window: initial_connection_window?,
            adaptive_window: adaptive_window?,
            max_frame_size: max_frame_size?,
            max_header_list_size: max_header_list_size?,
            keepalive_interval: keepalive_interval?,
            keepalive_timeout: keepalive_timeout?,
        };
        ok.then_some(settings)
    }

    /// A service's `http2`, which only means something when the service has a server that
    /// can speak HTTP/2. `servers_ok` says whether every server URL was valid: with a broken
    /// one the service's intent is unknown, and that URL's error is enough.
    pub(super) fn service_http2(
        &mut self,
        service: &str,
        http2_key: &Key,
        node: &Node,
        servers: &[Server],
        servers_ok: bool,
    ) -> Option<Http2Settings> {
        let settings = self.http2(&format!("service `{service}`"), node);
        let http1_only = servers
            .iter()
            .all(|server| server.url.scheme == UpstreamScheme::Http);
        if servers_ok && http1_only {
            self.report_hint(
                http2_key.loc,
                format!(
                    "http2 settings have no effect: service `{service}` has only http:// servers"
                ),
                "http:// servers speak HTTP/1.1; write them as h2c://host:port (or https:// \
                 for TLS) to reach them over HTTP/2, or remove `http2`",
            );
            return None;
        }
        // Bandwidth-delay-product windows exist in strait's downstream HTTP/2 engine only.
        if settings.as_ref().is_some_and(|s| s.adaptive_window) {
            let loc = match &node.kind {
                NodeKind::Map(entries) => {
                    get(entries, "adaptive_window").map_or(node.loc, |(k, _)| k.loc)
                }
                _ => node.loc,
            };
            self.report_hint(
                loc,
                format!("`adaptive_window` is not available for the connections of service `{service}`"),
                "it sizes windows on entrypoints only; set initial_stream_window and initial_connection_window instead",
            );
            return None;
        }
        settings
    }

    /// `max_connection_age`, `max_connection_age_grace` and `idle_timeout` among an
    /// entrypoint's or a service's `entries` (a service's `max_requests_per_connection` is
    /// read on its own).
    pub(super) fn lifecycle(&mut self, entries: &Entries, context: &str) -> Option<Lifecycle> {
        let max_connection_age = self.optional(entries, "max_connection_age", |v, node| {
            v.positive_duration(
                node,
                "max_connection_age",
                context,
                &Zero {
                    effect: "close every connection as soon as it opens",
                    hint: "leave `max_connection_age` out to keep connections as long as \
                           clients use them",
                },
            )
        });
        let idle_timeout = self.optional(entries, "idle_timeout", |v, node| {
            v.positive_duration(
                node,
                "idle_timeout",
                context,
                &Zero {
                    effect: "close every connection the moment it has no request open",
                    hint: "leave `idle_timeout` out to keep idle connections",
                },
            )
        });
        // Zero is allowed: streams are reset as soon as the connection is told to go away.
        let max_connection_age_grace =
            self.optional(entries, "max_connection_age_grace", |v, node| {
                v.duration(node, "max_connection_age_grace", context)
            });
        if let (Some((key, _)), None) = (
            get(entries, "max_connection_age_grace"),
            get(entries, "max_connection_age"),
        ) {
            self.report_hint(
                key.loc,
                format!(
                    "`max_connection_age_grace` {context} has no effect without \
                     `max_connection_age`"
                ),
                "the grace period starts when a connection reaches its age; set \
                 `max_connection_age` (e.g. 10m), or remove `max_connection_age_grace`",
            );
            return None;
        }
        Some(Lifecycle {
            max_connection_age: max_connection_age?,
            max_connection_age_grace: max_connection_age_grace?,
            idle_timeout: idle_timeout?,
            max_requests_per_connection: None,
        })
    }

    /// A service's `max_requests_per_connection`: 1 or more; absent is unlimited.
    pub(super) fn max_requests_per_connection(
        &mut self,
        entries: &Entries,
        context: &str,
    ) -> Option<Option<NonZeroU32>> {
        const KEY: &str = "max_requests_per_connection";
        self.optional(entries, KEY, |v, node| {
            let NodeKind::Int(count) = node.kind else {
                v.report_hint(
                    node.loc,
                    format!(
                        "expected an integer for `{KEY}` {context}, found {}",
                        node.describe()
                    ),
                    "write a number of requests without quotes, e.g. 1000",
                );
                return None;
            };
            let valid = u32::try_from(count).ok().and_then(NonZeroU32::new);
            if valid.is_none() {
                v.report_hint(
                    node.loc,
                    format!("`{KEY}` {context} must be 1 to {}, not {count}", u32::MAX),
                    format!(
                        "it is how many requests one backend connection carries before it is \
                         replaced; leave `{KEY}` out for no limit"
                    ),
                );
            }
            valid
        })
    }

    /// `Some(None)` when `key` is absent, `Some(Some(_))` when it is there and valid.
    pub(super) fn optional<T>(
        &mut self,
        entries: &Entries,
        key: &str,
        read: impl FnOnce(&mut Self, &Node) -> Option<T>,
    ) -> Option<Option<T>> {
        match get(entries, key) {
            None => Some(None),
            Some((_, value)) => read(self, value).map(Some),
        }
    }

    fn stream_count(&mut self, node: &Node, context: &str) -> Option<u32> {
        let NodeKind::Int(count) = node.kind else {
            self.report(
                node.loc,
                format!(
                    "expected an integer for `max_concurrent_streams` {context}, found {}",
                    node.describe()
                ),
            );
            return None;
        };
        match u32::try_from(count) {
            Ok(count) if (1..=MAX_STREAMS).contains(&count) => Some(count),
            _ => {
                self.report_hint(
                    node.loc,
                    format!(
                        "`max_concurrent_streams` {context} must be 1 to {MAX_STREAMS}, \
                         not {count}"
                    ),
                    "leave `max_concurrent_streams` out for strait's default",
                );
                None
            }
        }
    }

    /// A number of bytes, written as an integer or a size string, within `limit`.
    pub(super) fn size(
        &mut self,
        node: &Node,
        key: &str,
        context: &str,
        limit: &SizeLimit,
    ) -> Option<u32> {
        let (bytes, written) = match &node.kind {
            // Negative numbers are out of range, like any other.
            NodeKind::Int(number) => (u64::try_from(*number).ok(), number.to_string()),
            NodeKind::Str(text) => match parse_size(text) {
                Ok(bytes) => (Some(bytes), text.clone()),
                Err(err) => {
                    self.report_hint(node.loc, format!("{err} for `{key}` {context}"), SIZE_HINT);
                    return None;
                }
            },
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
        let in_range = bytes
            .filter(|bytes| (limit.min..=limit.max).contains(bytes))
            .and_then(|bytes| u32::try_from(bytes).ok());
        if in_range.is_none() {
            self.report_hint(
                node.loc,
                format!(
                    "`{key}` {context} must be {} to {} bytes, not {written}",
                    limit.min, limit.max
                ),
                limit.hint,
            );
        }
        in_range
    }

    pub(super) fn positive_duration(
        &mut self,
        node: &Node,
        key: &str,
        context: &str,
        zero: &Zero,
    ) -> Option<Duration> {
        let duration = self.duration(node, key, context)?;
        if duration.is_zero() {
            self.report_hint(
                node.loc,
                format!("`{key}` {context} is zero, which would {}", zero.effect),
                zero.hint,
            );
            return None;
        }
        Some(duration)
    }
}
