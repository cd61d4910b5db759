//! strait's config: the validated model, YAML and TOML parsing, and validation that reports
//! every problem with its file, line and column.

use std::fmt;
use std::path::Path;

mod duration;
mod emit;
pub mod model;
mod resilience;
mod size;
mod toml;
mod tree;
mod validate;
mod yaml;

pub use duration::{format_duration, parse_duration};
pub use model::*;
pub use resilience::*;

use tree::Loc;

/// The syntax a config file is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Toml,
}

/// One problem, with where it is. Lines and columns are 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
    /// What to do about it, when there is something useful to say.
    pub hint: Option<String>,
}

/// A problem before it knows its file name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    pub(crate) loc: Loc,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

/// Reads and validates a file; the format comes from the extension.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let file = path.display().to_string();
    let at_start = |message: String, hint: Option<String>| {
        vec![ConfigError {
            file: file.clone(),
            line: 1,
            col: 1,
            message,
            hint,
        }]
    };
    let Some(format) = Format::from_path(path) else {
        return Err(at_start(
            "cannot tell the config format from the file name".to_owned(),
            Some("name the file *.yaml, *.yml or *.toml".to_owned()),
        ));
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => return Err(at_start(format!("cannot read the file: {err}"), None)),
    };
    parse_str(&text, format, &file)
}

/// Validates text. `file` names the file in error messages, and its directory is where
/// relative certificate and CA paths start; those files must be readable now.
pub fn parse_str(text: &str, format: Format, file: &str) -> Result<Config, Vec<ConfigError>> {
    let (tree, mut problems) = match format {
        Format::Yaml => yaml::parse(text),
        Format::Toml => toml::parse(text),
    };
    let base = Path::new(file).parent().unwrap_or(Path::new(""));
    let config = tree.and_then(|tree| {
        let (config, more) = validate::config(&tree, base);
        problems.extend(more);
        config
    });
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => {
            // Stable, so problems found at one place keep the order they were found in.
            problems.sort_by_key(|problem| problem.loc);
            Err(problems
                .into_iter()
                .map(|problem| problem.into_error(file))
                .collect())
        }
    }
}

// === impl Format ===

impl Format {
    /// `.yaml` and `.yml` are YAML, `.toml` is TOML (case-insensitive).
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "yaml" | "yml" => Some(Format::Yaml),
            "toml" => Some(Format::Toml),
            _ => None,
        }
    }
}

// === impl ConfigError ===

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

// === impl Problem ===

impl Problem {
    pub(crate) fn new(loc: Loc, message: impl Into<String>) -> Problem {
        Problem {
            loc,
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Problem {
        self.hint = Some(hint.into());
        self
    }

    fn into_error(self, file: &str) -> ConfigError {
        ConfigError {
            file: file.to_owned(),
            line: self.loc.line,
            col: self.loc.col,
            message: self.message,
            hint: self.hint,
        }
    }
}

// === impl Config ===

impl Config {
    /// The effective config (defaults filled in, router entrypoints expanded, weights shown)
    /// as YAML text that [`parse_str`] accepts again and yields an equal config.
    pub fn to_yaml(&self) -> String {
        emit::config(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_comes_from_the_extension() {
        assert_eq!(Format::from_path(Path::new("a.yaml")), Some(Format::Yaml));
        assert_eq!(
            Format::from_path(Path::new("dir/a.YML")),
            Some(Format::Yaml)
        );
        assert_eq!(Format::from_path(Path::new("a.toml")), Some(Format::Toml));
        assert_eq!(Format::from_path(Path::new("a.json")), None);
        assert_eq!(Format::from_path(Path::new("yaml")), None);
    }

    #[test]
    fn errors_display_with_location_and_hint() {
        let mut err = ConfigError {
            file: "strait.yaml".into(),
            line: 3,
            col: 5,
            message: "unknown key `adress` in entrypoint `web`".into(),
            hint: Some("did you mean `address`?".into()),
        };
        assert_eq!(
            err.to_string(),
            "strait.yaml:3:5: unknown key `adress` in entrypoint `web` (did you mean `address`?)"
        );
        err.hint = None;
        assert_eq!(
            err.to_string(),
            "strait.yaml:3:5: unknown key `adress` in entrypoint `web`"
        );
    }
}
