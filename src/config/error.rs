//! Configuration errors, and where a value came from (for their messages).

use std::fmt;
use std::path::PathBuf;

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// Exit status for an invalid configuration.
pub const EXIT_INVALID: i32 = 1;
/// Exit status for a missing application, as gunicorn's argparse uses.
pub const EXIT_USAGE: i32 = 2;

/// Why the configuration could not be loaded. `main` prints the usage line
/// (if any), then `Error: <message>`, and exits with `exit_code`; the master
/// logs the message on a failed reload and keeps its old settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// What is wrong and where, without the `Error: ` prefix.
    pub message: String,
    pub exit_code: i32,
    /// A usage line to print before the message (only for a missing app).
    pub usage: Option<String>,
}

impl ConfigError {
    /// An invalid configuration (exit status 1).
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
            exit_code: EXIT_INVALID,
            usage: None,
        }
    }

    /// `invalid value 'VALUE' for NAME (ORIGIN): REASON`.
    pub(crate) fn invalid(value: &str, name: &str, origin: &Origin, reason: &str) -> Self {
        Self::new(format!(
            "invalid value '{value}' for {name}{origin}: {reason}"
        ))
    }

    /// No application given anywhere: gunicorn's argparse usage error.
    pub(crate) fn no_application() -> Self {
        ConfigError {
            message: "No application specified.".to_owned(),
            exit_code: EXIT_USAGE,
            usage: Some(super::command().render_usage().to_string()),
        }
    }

    /// `-k command` without a program to run.
    pub(crate) fn no_command() -> Self {
        ConfigError {
            message: "No program specified: -k command runs the program given after --, \
                      as in gunicornd -k command [OPTIONS] -- PROGRAM [ARGS...] \
                      (or command = [\"PROGRAM\", ...] in the config file)."
                .to_owned(),
            exit_code: EXIT_USAGE,
            usage: Some(super::command().render_usage().to_string()),
        }
    }

    /// Turn one of clap's errors into ours: a single line naming the option,
    /// the value and the reason, plus where the arguments came from.
    pub(crate) fn from_clap(err: &clap::Error, origin: &Origin) -> Self {
        let context = |kind| match err.get(kind) {
            Some(ContextValue::String(s)) => Some(s.clone()),
            Some(ContextValue::StyledStr(s)) => Some(s.to_string()),
            _ => None,
        };
        // clap names an option with its value placeholder ("--workers <INT>",
        // "--halt-on-boot-error[=<BOOL>]").
        let arg = context(ContextKind::InvalidArg)
            .map(|a| a.split([' ', '[']).next().unwrap_or_default().to_owned());
        let value = context(ContextKind::InvalidValue);
        let reason = std::error::Error::source(err)
            .map(|e| e.to_string())
            .or_else(|| match err.get(ContextKind::ValidValue) {
                Some(ContextValue::Strings(valid)) if !valid.is_empty() => {
                    Some(format!("expected one of {}", valid.join(", ")))
                }
                _ => None,
            });
        let message = match (err.kind(), arg, value, reason) {
            (
                ErrorKind::ValueValidation | ErrorKind::InvalidValue,
                Some(arg),
                Some(value),
                Some(reason),
            ) => format!("invalid value '{value}' for {arg}{origin}: {reason}"),
            // Other usage errors (unknown option, missing value, ...): clap's
            // own headline, with where it happened and its suggestion.
            _ => {
                let mut line = first_line_of(err);
                line.push_str(&origin.to_string());
                if let Some(ContextValue::String(s)) = err.get(ContextKind::SuggestedArg) {
                    line.push_str(&format!(" (did you mean '{s}'?)"));
                }
                line
            }
        };
        Self::new(message)
    }
}

/// The headline of a rendered clap error, without its `error: ` prefix.
fn first_line_of(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let line = rendered.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Where a setting's value came from. Its `Display` is the suffix used in
/// error messages (empty for the command line, which needs no pointing at).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// An environment variable that sets a default (`PORT`, ...).
    EnvVar(&'static str),
    File {
        path: PathBuf,
        line: Option<usize>,
    },
    CmdArgsEnv,
    CommandLine,
}

impl Origin {
    /// How this origin names a setting: the option for command-line syntax,
    /// the key for the config file.
    pub(crate) fn name_of(&self, flag: &str, key: &str) -> String {
        match self {
            Origin::File { .. } => key.to_owned(),
            Origin::EnvVar(var) => (*var).to_owned(),
            _ => flag.to_owned(),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::CommandLine => Ok(()),
            Origin::EnvVar(_) => f.write_str(" (from the environment)"),
            Origin::File {
                path,
                line: Some(line),
            } => write!(f, " (in {}, line {line})", path.display()),
            Origin::File { path, line: None } => write!(f, " (in {})", path.display()),
            Origin::CmdArgsEnv => f.write_str(" (from GUNICORN_CMD_ARGS)"),
        }
    }
}
