//! Any `grpc-timeout` value: parsing never panics, and what strait sends upstream for a
//! parsed deadline parses again, never shorter (a deadline must not shrink) and no more than
//! a rounding step longer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strait_grpc::{encode_timeout, parse_timeout};

fuzz_target!(|data: &[u8]| {
    let Some(timeout) = parse_timeout(data) else {
        return;
    };
    let encoded = encode_timeout(timeout);
    let again = parse_timeout(encoded.as_bytes())
        .unwrap_or_else(|| panic!("{encoded:?} (for {timeout:?}) does not parse"));
    assert!(again >= timeout, "{encoded:?}: {again:?} < {timeout:?}");
    let step = timeout / 10_000 + std::time::Duration::from_nanos(1);
    assert!(again - timeout <= step, "{encoded:?}: {again:?} for {timeout:?}");
});
