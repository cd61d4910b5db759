//! Helpers shared by the config test files.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use strait_config::{parse_str, ConfigError, Format};

/// Every error in `text`, which must be refused; the file is `strait.yaml` or `strait.toml`.
pub fn errors(text: &str, format: Format) -> Vec<ConfigError> {
    let file = match format {
        Format::Yaml => "strait.yaml",
        Format::Toml => "strait.toml",
    };
    match parse_str(text, format, file) {
        Ok(config) => panic!("accepted:\n{text}\nas:\n{}", config.to_yaml()),
        Err(errors) => errors,
    }
}

/// The only error in a YAML text.
pub fn one(text: &str) -> ConfigError {
    let mut errors = errors(text, Format::Yaml);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    errors.remove(0)
}

#[track_caller]
pub fn assert_at(err: &ConfigError, line: usize, col: usize, message: &str) {
    assert_eq!((err.line, err.col), (line, col), "wrong place for {}", err);
    assert!(err.message.contains(message), "{err} lacks {message:?}");
}

#[track_caller]
pub fn assert_hint(err: &ConfigError, hint: &str) {
    let actual = err.hint.as_deref().unwrap_or_default();
    assert!(actual.contains(hint), "{err}: hint lacks {hint:?}");
}
