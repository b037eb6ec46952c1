//! gunicorn's log levels mapped onto tracing's.

use tracing::level_filters::LevelFilter;

/// What a `loglevel` setting lets through. tracing has no level above
/// ERROR, so `critical` is ERROR plus "only events marked critical".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Threshold {
    pub filter: LevelFilter,
    pub critical_only: bool,
}

impl Threshold {
    /// debug, info, warning, error or critical (any case, as gunicorn).
    pub fn parse(name: &str) -> Result<Threshold, String> {
        let (filter, critical_only) = match name.to_ascii_lowercase().as_str() {
            "debug" => (LevelFilter::DEBUG, false),
            "info" => (LevelFilter::INFO, false),
            "warning" => (LevelFilter::WARN, false),
            "error" => (LevelFilter::ERROR, false),
            "critical" => (LevelFilter::ERROR, true),
            _ => {
                return Err(format!(
                    "invalid log level '{name}': expected debug, info, warning, error or critical"
                ))
            }
        };
        Ok(Threshold {
            filter,
            critical_only,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gunicorn_levels() {
        assert_eq!(
            Threshold::parse("debug").unwrap().filter,
            LevelFilter::DEBUG
        );
        assert_eq!(Threshold::parse("INFO").unwrap().filter, LevelFilter::INFO);
        assert_eq!(
            Threshold::parse("warning").unwrap().filter,
            LevelFilter::WARN
        );
        assert_eq!(
            Threshold::parse("error").unwrap(),
            Threshold {
                filter: LevelFilter::ERROR,
                critical_only: false
            }
        );
        assert_eq!(
            Threshold::parse("critical").unwrap(),
            Threshold {
                filter: LevelFilter::ERROR,
                critical_only: true
            }
        );
        assert_eq!(
            Threshold::parse("verbose").unwrap_err(),
            "invalid log level 'verbose': expected debug, info, warning, error or critical"
        );
    }
}
