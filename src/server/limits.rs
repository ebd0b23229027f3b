//! The `[limits]` settings: how many names clients may make, how many a
//! listing answers at once, the listen backlog (by default the system's
//! largest), and the ceilings of hyper's own request-head parser. Each is
//! bounded by default, generously, so that no flood of names, connections
//! or header bytes grows the server without end.

use clap::Args;
use serde::Deserialize;

use crate::config::ConfigError;
use crate::store::NameLimits;

/// The `[limits]` table, each setting optional so the sources can be layered.
#[derive(Args, Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Most namespaces the server holds; a push or wait that would make one more gets 429 [default: 100000]
    #[arg(long, env = "BLOBQ_MAX_NAMESPACES", value_name = "N")]
    pub max_namespaces: Option<usize>,
    /// Most queues one namespace holds; a push or wait that would make one more gets 429 [default: 1000]
    #[arg(long, env = "BLOBQ_MAX_QUEUES_PER_NAMESPACE", value_name = "N")]
    pub max_queues_per_namespace: Option<usize>,
    /// Most names one page of GET /qs or GET /qs/{ns} may ask for with ?limit= [default: 1000]
    #[arg(long, env = "BLOBQ_MAX_PAGE_SIZE", value_name = "N")]
    pub max_page_size: Option<usize>,
    /// Clients the kernel queues for the server while it is at --max-connections [default: the system's maximum, net.core.somaxconn]
    #[arg(long, env = "BLOBQ_LISTEN_BACKLOG", value_name = "N")]
    pub listen_backlog: Option<u32>,
    /// Largest request head hyper's parser reads before it answers a bare 431 and closes; heads between --max-header-size and this get blobq's 431 problem document [default: 65536, never below --max-header-size]
    #[arg(long, env = "BLOBQ_PARSER_MAX_HEADER_SIZE", value_name = "BYTES")]
    pub parser_max_header_size: Option<usize>,
    /// Most header lines hyper's parser reads before it answers a bare 431; counts between --max-headers and this get blobq's 431 problem document. Past 100, hyper's parser takes two heap allocations per request [default: 100, never below --max-headers]
    #[arg(long, env = "BLOBQ_PARSER_MAX_HEADERS", value_name = "N")]
    pub parser_max_headers: Option<usize>,
}

/// The `[limits]` settings in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub names: NameLimits,
    pub max_page_size: usize,
    pub listen_backlog: u32,
    pub parser: ParserCeiling,
}

/// How much of a request head hyper's parser reads at most. blobq checks
/// its own, lower limits itself (`server::head_limit`) so that it can
/// answer a problem document; hyper answers what passes these ceilings
/// with a bare status, as it offers no hook for a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParserCeiling {
    pub max_header_size: usize,
    pub max_headers: usize,
}

impl ParserCeiling {
    /// The ceilings hyper is given: never below blobq's own limits
    /// (`max_header_size` bytes, `max_headers` lines), which it must let
    /// through for blobq to check.
    pub fn above(self, max_header_size: usize, max_headers: usize) -> ParserCeiling {
        ParserCeiling {
            max_header_size: self.max_header_size.max(max_header_size),
            max_headers: self.max_headers.max(max_headers),
        }
    }
}

impl LimitSettings {
    /// `self` where set, else `lower`.
    pub fn or(self, lower: LimitSettings) -> LimitSettings {
        LimitSettings {
            max_namespaces: self.max_namespaces.or(lower.max_namespaces),
            max_queues_per_namespace: self
                .max_queues_per_namespace
                .or(lower.max_queues_per_namespace),
            max_page_size: self.max_page_size.or(lower.max_page_size),
            listen_backlog: self.listen_backlog.or(lower.listen_backlog),
            parser_max_header_size: self.parser_max_header_size.or(lower.parser_max_header_size),
            parser_max_headers: self.parser_max_headers.or(lower.parser_max_headers),
        }
    }

    /// The defaults applied and checked.
    pub fn resolve(self) -> Result<Limits, ConfigError> {
        let default = NameLimits::default();
        let limits = Limits {
            names: NameLimits {
                max_namespaces: self.max_namespaces.unwrap_or(default.max_namespaces),
                max_queues_per_namespace: self
                    .max_queues_per_namespace
                    .unwrap_or(default.max_queues_per_namespace),
            },
            max_page_size: self.max_page_size.unwrap_or(1000),
            listen_backlog: self
                .listen_backlog
                .unwrap_or_else(super::descriptors::system_backlog),
            parser: ParserCeiling {
                max_header_size: self.parser_max_header_size.unwrap_or(64 * 1024),
                max_headers: self.parser_max_headers.unwrap_or(100),
            },
        };
        let names = limits.names;
        if names.max_namespaces == 0
            || names.max_queues_per_namespace == 0
            || limits.max_page_size == 0
            || limits.listen_backlog == 0
            || limits.parser.max_headers == 0
        {
            return Err(ConfigError::Invalid(
                "max-namespaces, max-queues-per-namespace, max-page-size, listen-backlog and parser-max-headers must be at least 1"
                    .to_owned(),
            ));
        }
        if limits.parser.max_header_size < 1024 {
            return Err(ConfigError::Invalid(
                "parser-max-header-size must be at least 1024 bytes".to_owned(),
            ));
        }
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_finite_and_zero_is_refused() {
        let limits = LimitSettings::default().resolve().unwrap();
        assert_eq!(limits.names, NameLimits::default());
        assert_eq!(limits.max_page_size, 1000);
        assert_eq!(
            limits.listen_backlog,
            super::super::descriptors::system_backlog()
        );
        assert_eq!(
            limits.parser,
            ParserCeiling {
                max_header_size: 64 * 1024,
                max_headers: 100
            }
        );
        for zero in [
            LimitSettings {
                max_namespaces: Some(0),
                ..LimitSettings::default()
            },
            LimitSettings {
                max_queues_per_namespace: Some(0),
                ..LimitSettings::default()
            },
            LimitSettings {
                max_page_size: Some(0),
                ..LimitSettings::default()
            },
            LimitSettings {
                listen_backlog: Some(0),
                ..LimitSettings::default()
            },
            LimitSettings {
                parser_max_headers: Some(0),
                ..LimitSettings::default()
            },
            LimitSettings {
                parser_max_header_size: Some(1023),
                ..LimitSettings::default()
            },
        ] {
            assert!(zero.resolve().is_err());
        }
    }

    #[test]
    fn the_limits_table_of_the_file_and_the_flags_layer_like_every_setting() {
        use crate::config::{Cli, Command, Config, Settings};
        use clap::Parser;
        let file: Settings =
            toml::from_str("[limits]\nmax_namespaces = 5\nmax_page_size = 7\n").unwrap();
        let cli = Cli::try_parse_from(["blobq", "serve", "--max-namespaces", "9"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        let config = Config::from_settings(args.settings.or(file)).unwrap();
        assert_eq!(config.limits.names.max_namespaces, 9);
        assert_eq!(config.limits.max_page_size, 7);
        assert_eq!(config.store().names, config.limits.names);
        assert_eq!(config.request_limits().max_page_size, 7);
        assert!(toml::from_str::<Settings>("[limits]\nmax_names = 1\n").is_err());
    }
}
