//! Per-entrypoint protection against abusive clients: `limits:` and `path_normalization:`.
//! Defaults are safe for an internet-facing listener; docs/security.md says why each is what
//! it is.

use std::time::Duration;

/// `limits:` on an entrypoint. Every field has a value: the defaults are filled in here, so
/// the runtime never decides a default on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A connection must finish its TLS handshake, and then its HTTP/2 preface and first
    /// request's headers (HTTP/1.1: each request's headers, idle time between requests
    /// included) within this; otherwise it is closed. Default 5s.
    pub header_read_timeout: Duration,
    /// Open client connections on the entrypoint; more are closed as they are accepted.
    /// `None`: unlimited. Default 50000.
    pub max_connections: Option<u32>,
    /// Open client connections from one IP address. `None`: unlimited. Default 1000.
    pub max_connections_per_ip: Option<u32>,
    /// Request body bytes of a non-gRPC request: 413 beyond. `None`: unlimited. Default 16MiB.
    pub max_request_body: Option<u64>,
    /// Request body bytes of a gRPC call (all its messages): `RESOURCE_EXHAUSTED` beyond.
    /// `None` (the default): unlimited, since gRPC streams may run for days.
    pub max_grpc_request_body: Option<u64>,
    /// Bytes of one request header, name and value: 431 (gRPC: `RESOURCE_EXHAUSTED`) beyond.
    /// Default 8KiB.
    pub max_header_size: u32,
    /// CONTINUATION frames after one HEADERS frame. `None` (the default): as many as a
    /// header list of the engine's bound ([`engine_header_list_size`]) needs in
    /// maximum-size frames, plus 25%, at least 5 (the bound the HTTP/2 engine applies
    /// anyway).
    pub max_continuation_frames: Option<u32>,
    /// HTTP/2 frames a client may send per second on one connection, by kind.
    pub http2_frames_per_second: FrameRates,
}

/// Frames per second per connection, each kind on its own budget; `None`: unlimited.
/// The budget holds one second's worth, so a burst of that many passes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameRates {
    /// RST_STREAM from the client: the rapid-reset attack (CVE-2023-44487). Default 1000.
    pub rst_stream: Option<u32>,
    /// SETTINGS, acknowledgements included. Default 100.
    pub settings: Option<u32>,
    /// PING, acknowledgements included. Default 5000.
    pub ping: Option<u32>,
    /// WINDOW_UPDATE. Default 20000.
    pub window_update: Option<u32>,
    /// PRIORITY. Default 1000.
    pub priority: Option<u32>,
    /// DATA frames with no payload that do not end their stream. Default 100.
    pub empty_data: Option<u32>,
}

/// `path_normalization:` on an entrypoint: how request paths are rewritten before routing
/// (and forwarded so), so that `/public/../admin` cannot dodge a router for `/admin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathNormalization {
    /// Remove `.` and `..` segments (RFC 3986 §5.2.4), `%2e` spellings included.
    /// Default true.
    pub dot_segments: bool,
    /// Collapse runs of `/` into one. Default true.
    pub merge_slashes: bool,
}

// === impl Limits ===

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(5),
            max_connections: Some(50_000),
            max_connections_per_ip: Some(1_000),
            max_request_body: Some(16 << 20),
            max_grpc_request_body: None,
            max_header_size: 8 << 10,
            max_continuation_frames: None,
            http2_frames_per_second: FrameRates::default(),
        }
    }
}

impl Limits {
    /// The CONTINUATION frames allowed after a HEADERS frame, given the entrypoint's HTTP/2
    /// header list and frame sizes (`None`: the protocol defaults).
    pub fn continuation_frames(
        &self,
        max_header_list_size: Option<u32>,
        max_frame_size: Option<u32>,
    ) -> u32 {
        if let Some(max) = self.max_continuation_frames {
            return max;
        }
        let list = engine_header_list_size(max_header_list_size);
        let frame = max_frame_size.unwrap_or(DEFAULT_MAX_FRAME_SIZE).max(1);
        let frames = (list / frame).max(1);
        frames.saturating_add(frames / 4).max(5)
    }
}

/// `http2.max_header_list_size` when not written: hyper's default. A request over it is
/// answered on its own stream (431, or `RESOURCE_EXHAUSTED` for gRPC).
pub const DEFAULT_MAX_HEADER_LIST_SIZE: u32 = 16 << 10;
/// The least header list the HTTP/2 engine decodes, whatever `max_header_list_size` says.
const MIN_ENGINE_HEADER_LIST_SIZE: u32 = 128 << 10;

/// The header list size the HTTP/2 engine is given for an entrypoint whose
/// `http2.max_header_list_size` is `configured` (`None`: the default): twice the limit and at
/// least 128 KiB. Requests between the limit and this bound are decoded, then answered on
/// their own stream with a status that names the limit; the engine answers larger ones with
/// a bare 431 on their stream up to four times this bound, and closes the connection with
/// GOAWAY beyond, since only an attack sends those.
pub fn engine_header_list_size(configured: Option<u32>) -> u32 {
    configured
        .unwrap_or(DEFAULT_MAX_HEADER_LIST_SIZE)
        .saturating_mul(2)
        .max(MIN_ENGINE_HEADER_LIST_SIZE)
}
/// The protocol's default SETTINGS_MAX_FRAME_SIZE.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16 << 10;

// === impl FrameRates ===

impl Default for FrameRates {
    fn default() -> FrameRates {
        FrameRates {
            rst_stream: Some(1_000),
            settings: Some(100),
            ping: Some(5_000),
            window_update: Some(20_000),
            priority: Some(1_000),
            empty_data: Some(100),
        }
    }
}

// === impl PathNormalization ===

impl Default for PathNormalization {
    fn default() -> PathNormalization {
        PathNormalization {
            dot_segments: true,
            merge_slashes: true,
        }
    }
}
