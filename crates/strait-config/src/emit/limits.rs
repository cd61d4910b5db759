//! `limits` and `path_normalization` of an entrypoint: the settings that differ from the
//! defaults, so a config without them prints without them.

use std::fmt::Write;

use super::line;
use crate::duration::format_duration;
use crate::model::{Limits, PathNormalization};

pub(super) fn emit(out: &mut String, limits: &Limits, paths: PathNormalization) {
    let defaults = Limits::default();
    let mut body = String::new();
    if limits.header_read_timeout != defaults.header_read_timeout {
        line(
            &mut body,
            3,
            "header_read_timeout",
            &format_duration(limits.header_read_timeout),
        );
    }
    let counts = [
        (
            "max_connections",
            limits.max_connections,
            defaults.max_connections,
        ),
        (
            "max_connections_per_ip",
            limits.max_connections_per_ip,
            defaults.max_connections_per_ip,
        ),
    ];
    for (key, value, default) in counts {
        if value != default {
            line(
                &mut body,
                3,
                key,
                &limit(value.map(u64::from), |n| n.to_string()),
            );
        }
    }
    let sizes = [
        (
            "max_request_body",
            limits.max_request_body,
            defaults.max_request_body,
        ),
        (
            "max_grpc_request_body",
            limits.max_grpc_request_body,
            defaults.max_grpc_request_body,
        ),
    ];
    for (key, value, default) in sizes {
        if value != default {
            line(&mut body, 3, key, &limit(value, size));
        }
    }
    if limits.max_header_size != defaults.max_header_size {
        line(
            &mut body,
            3,
            "max_header_size",
            &size(u64::from(limits.max_header_size)),
        );
    }
    if let Some(frames) = limits.max_continuation_frames {
        line(&mut body, 3, "max_continuation_frames", &frames.to_string());
    }
    let rates = &limits.http2_frames_per_second;
    let default_rates = &defaults.http2_frames_per_second;
    let rates = [
        ("rst_stream", rates.rst_stream, default_rates.rst_stream),
        ("settings", rates.settings, default_rates.settings),
        ("ping", rates.ping, default_rates.ping),
        (
            "window_update",
            rates.window_update,
            default_rates.window_update,
        ),
        ("priority", rates.priority, default_rates.priority),
        ("empty_data", rates.empty_data, default_rates.empty_data),
    ];
    let mut changed = String::new();
    for (key, value, default) in rates {
        if value != default {
            line(
                &mut changed,
                4,
                key,
                &limit(value.map(u64::from), |n| n.to_string()),
            );
        }
    }
    if !changed.is_empty() {
        line(&mut body, 3, "http2_frames_per_second", "");
        body.push_str(&changed);
    }
    if !body.is_empty() {
        line(out, 2, "limits", "");
        out.push_str(&body);
    }
    if paths != PathNormalization::default() {
        line(out, 2, "path_normalization", "");
        line(out, 3, "dot_segments", &paths.dot_segments.to_string());
        line(out, 3, "merge_slashes", &paths.merge_slashes.to_string());
    }
}

fn limit(value: Option<u64>, show: impl Fn(u64) -> String) -> String {
    value.map_or_else(|| "unlimited".to_owned(), show)
}

/// Bytes in the shortest exact unit, as `parse_size` reads them.
fn size(bytes: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    let mut out = String::new();
    if bytes & (MIB - 1) == 0 {
        let _ = write!(out, "{}MiB", bytes / MIB);
    } else if bytes & (KIB - 1) == 0 {
        let _ = write!(out, "{}KiB", bytes / KIB);
    } else {
        let _ = write!(out, "{bytes}");
    }
    out
}
