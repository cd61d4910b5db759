/// A gRPC status code. `as_str` gives the name users see in metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Code {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

const ALL: [Code; 17] = [
    Code::Ok,
    Code::Cancelled,
    Code::Unknown,
    Code::InvalidArgument,
    Code::DeadlineExceeded,
    Code::NotFound,
    Code::AlreadyExists,
    Code::PermissionDenied,
    Code::ResourceExhausted,
    Code::FailedPrecondition,
    Code::Aborted,
    Code::OutOfRange,
    Code::Unimplemented,
    Code::Internal,
    Code::Unavailable,
    Code::DataLoss,
    Code::Unauthenticated,
];

// === impl Code ===

impl Code {
    pub fn from_u32(value: u32) -> Option<Code> {
        ALL.get(usize::try_from(value).ok()?).copied()
    }

    /// Parses a `grpc-status` value. Codes outside 0..=16 are UNKNOWN, as the gRPC spec says
    /// for clients.
    pub fn from_header(value: &[u8]) -> Option<Code> {
        let text = std::str::from_utf8(value).ok()?;
        let number: u32 = text.trim().parse().ok()?;
        Some(Code::from_u32(number).unwrap_or(Code::Unknown))
    }

    pub fn as_u32(self) -> u32 {
        self as u32
    }

    /// The value of a `grpc-status` header for this code.
    pub fn header_value(self) -> http::HeaderValue {
        http::HeaderValue::from(self.as_u32())
    }

    /// Parses a code by its name as users write it: `UNAVAILABLE` (any case).
    pub fn from_name(name: &str) -> Option<Code> {
        ALL.into_iter()
            .find(|code| code.as_str().eq_ignore_ascii_case(name))
    }

    /// Every code, in numeric order.
    pub fn all() -> &'static [Code] {
        &ALL
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_code() {
        for code in ALL {
            let value = code.header_value();
            assert_eq!(Code::from_header(value.as_bytes()), Some(code));
        }
    }

    #[test]
    fn names_round_trip() {
        for code in ALL {
            assert_eq!(Code::from_name(code.as_str()), Some(code));
        }
        assert_eq!(Code::from_name("unavailable"), Some(Code::Unavailable));
        assert_eq!(Code::from_name("NOPE"), None);
    }

    #[test]
    fn out_of_range_is_unknown_and_garbage_is_none() {
        assert_eq!(Code::from_header(b"17"), Some(Code::Unknown));
        assert_eq!(Code::from_header(b"x"), None);
        assert_eq!(Code::from_header(b""), None);
    }
}
