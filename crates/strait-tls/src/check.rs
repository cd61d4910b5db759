//! `strait check tls`: being written.
