use oi_core::{Severity, StoreError};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a value came from: a line of the configuration file, or a command-line override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `path:line` (lines count from 1, as editors and Python do).
    File {
        /// The configuration file as the user named it.
        path: Arc<Path>,
        /// 1-based line number of the option (the first line of a multi-line value).
        line: usize,
    },
    /// A `-k` (or `-a`) flag; the text is what the user typed, flag included.
    CommandLine(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::CommandLine(text) => write!(f, "{text} (command line)"),
        }
    }
}

/// One problem with the configuration. Every variant names where it was found.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// No configuration file exists where OfflineIMAP looks for one.
    #[error("no configuration file found (looked for {})", list_paths(tried))]
    NotFound {
        /// Every path that was tried, in order.
        tried: Vec<PathBuf>,
    },
    /// A line the INI reader cannot make sense of (Python's ParsingError and friends).
    #[error("{at}: {message}")]
    Syntax {
        /// The offending line.
        at: Origin,
        /// What is wrong with it.
        message: String,
    },
    /// An option has a bad value, is missing, or is not supported.
    #[error("{at}: [{section}] {option}: {message}")]
    Option {
        /// Where the option (or, for a missing option, its section header) is.
        at: Origin,
        /// Section name, exactly as written.
        section: String,
        /// Option name (lowercased, as configparser stores it).
        option: String,
        /// What is wrong.
        message: String,
    },
    /// A whole section is missing or unusable.
    #[error("{}[{section}]: {message}", at.as_ref().map(|o| format!("{o}: ")).unwrap_or_default())]
    Section {
        /// The section header, when the section exists.
        at: Option<Origin>,
        /// Section name.
        section: String,
        /// What is wrong.
        message: String,
    },
    /// A `-k` argument that is not `[section:]option=value`.
    #[error("-k {text}: {message}")]
    Override {
        /// The argument as given.
        text: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// The file line the error points at, for sorting errors into file order.
    pub fn line(&self) -> Option<usize> {
        let at = match self {
            ConfigError::Syntax { at, .. } | ConfigError::Option { at, .. } => Some(at),
            ConfigError::Section { at, .. } => at.as_ref(),
            _ => None,
        };
        match at {
            Some(Origin::File { line, .. }) => Some(*line),
            _ => None,
        }
    }
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<ConfigError> for StoreError {
    fn from(e: ConfigError) -> Self {
        // Nothing can be synced safely from a configuration we did not understand.
        StoreError::with_source(Severity::Fatal, "configuration", e)
    }
}

/// Every error found while loading a configuration, in file order where possible.
///
/// Display prints one error per line so that a user fixes them all in one go.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The individual errors.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl From<ConfigErrors> for StoreError {
    fn from(e: ConfigErrors) -> Self {
        StoreError::with_source(Severity::Fatal, "configuration", e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_error_names_file_line_section_and_option() {
        let e = ConfigError::Option {
            at: Origin::File {
                path: Arc::from(Path::new("~/.offlineimaprc")),
                line: 12,
            },
            section: "Repository Remote".into(),
            option: "ssl".into(),
            message: "not a boolean: \"maybe\"".into(),
        };
        assert_eq!(
            e.to_string(),
            "~/.offlineimaprc:12: [Repository Remote] ssl: not a boolean: \"maybe\""
        );
        let s: StoreError = e.into();
        assert_eq!(s.severity(), Severity::Fatal);
    }

    #[test]
    fn errors_display_one_per_line() {
        let errs = ConfigErrors(vec![
            ConfigError::Section {
                at: None,
                section: "general".into(),
                message: "section is missing".into(),
            },
            ConfigError::Override {
                text: "foo".into(),
                message: "expected [section:]option=value".into(),
            },
        ]);
        assert_eq!(
            errs.to_string(),
            "[general]: section is missing\n-k foo: expected [section:]option=value"
        );
    }
}
