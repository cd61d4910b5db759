//! Any text, as YAML and as TOML: parsing never panics, and a config that parses prints as
//! YAML that parses back to the same effective config.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strait_config::{parse_str, Format};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for (format, file) in [(Format::Yaml, "fuzz.yaml"), (Format::Toml, "fuzz.toml")] {
        let Ok(config) = parse_str(text, format, file) else {
            continue;
        };
        let yaml = config.to_yaml();
        let again = parse_str(&yaml, Format::Yaml, "fuzz.yaml")
            .unwrap_or_else(|errors| panic!("effective config refused: {errors:?}\n{yaml}"));
        assert_eq!(again.to_yaml(), yaml);
    }
});
