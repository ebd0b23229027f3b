//! The `[limits]` settings: how many names clients may make, how many a
//! listing answers at once, and the listen backlog (by default the
//! system's largest). Each is bounded by
//! default, generously, so that no flood of names or connections grows the
//! server without end.

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
}

/// The `[limits]` settings in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub names: NameLimits,
    pub max_page_size: usize,
    pub listen_backlog: u32,
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
        };
        let names = limits.names;
        if names.max_namespaces == 0
            || names.max_queues_per_namespace == 0
            || limits.max_page_size == 0
            || limits.listen_backlog == 0
        {
            return Err(ConfigError::Invalid(
                "max-namespaces, max-queues-per-namespace, max-page-size and listen-backlog must be at least 1"
                    .to_owned(),
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
