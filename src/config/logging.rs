//! How the server logs (the `[logging]` table): the format of its lines,
//! the optional access log, and the check that refuses a `--log` filter
//! that would quietly log nothing.

use clap::{Args, ValueEnum};
use serde::Deserialize;
use tracing_subscriber::EnvFilter;

/// The target of the access log's lines; the filter turns it on or off
/// whatever `--log` says.
pub const ACCESS_TARGET: &str = "blobq::access";

/// The format of log lines.
#[derive(ValueEnum, Deserialize, Debug, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `key=value` lines for people
    #[default]
    Text,
    /// One JSON object a line, for log collectors
    Json,
}

/// The `[logging]` settings, each optional so that sources can be layered.
#[derive(Args, Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// Format of log lines: text, or json (one object a line) [default: text]
    #[arg(long, env = "BLOBQ_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Log one line per request at info: method, route template, status,
    /// duration [default: false]
    #[arg(long, env = "BLOBQ_ACCESS_LOG", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub access_log: Option<bool>,
}

/// The logging settings in force.
#[derive(Debug, Clone, Default)]
pub struct LogConfig {
    pub format: LogFormat,
    pub access_log: bool,
}

impl LogSettings {
    /// `self` where set, else `lower`.
    pub fn or(self, lower: LogSettings) -> LogSettings {
        LogSettings {
            log_format: self.log_format.or(lower.log_format),
            access_log: self.access_log.or(lower.access_log),
        }
    }

    pub fn resolve(self) -> LogConfig {
        LogConfig {
            format: self.log_format.unwrap_or_default(),
            access_log: self.access_log.unwrap_or(false),
        }
    }
}

impl LogConfig {
    /// The filter for `--log` (tracing's EnvFilter syntax), with the access
    /// log turned on or off. A word alone that is not a level (`inof`)
    /// parses as a target and would log nothing: it is refused, with how
    /// to name a target on purpose.
    pub fn filter(&self, log: &str) -> Result<EnvFilter, String> {
        const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
        for directive in log.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let bare = !directive.contains(['=', '[', ':']);
            if bare && !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(directive)) {
                return Err(format!(
                    "invalid --log filter {log:?}: {directive:?} is not a level \
                     (off, error, warn, info, debug, trace); name a target as TARGET=LEVEL"
                ));
            }
        }
        let filter =
            EnvFilter::try_new(log).map_err(|e| format!("invalid --log filter {log:?}: {e}"))?;
        let access = if self.access_log { "info" } else { "off" };
        let directive = format!("{ACCESS_TARGET}={access}")
            .parse()
            .map_err(|e| format!("the access log's filter: {e}"))?;
        Ok(filter.add_directive(directive))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_of_a_misspelt_level_is_refused() {
        let config = LogConfig::default();
        for good in [
            "info",
            "WARN",
            "blobq=debug,info",
            "hyper=off",
            "blobq::http=trace",
            "",
        ] {
            assert!(config.filter(good).is_ok(), "{good}");
        }
        for bad in ["inof", "info,debgu", "blobq=loud"] {
            assert!(config.filter(bad).is_err(), "{bad}");
        }
    }
}
