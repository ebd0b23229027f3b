//! The `[overflow]` settings: how large the segments are that small bodies
//! past `--memory-limit` are appended to, and when a mostly dead one is
//! compacted (docs/ARCHITECTURE.md, "Bodies in memory, segments and files").

use clap::Args;
use serde::Deserialize;

use crate::store::overflow::OverflowConfig;

/// The `[overflow]` table, each setting optional so sources can be layered.
#[derive(Args, Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct OverflowSettings {
    /// Size at which an overflow segment is sealed and the next begun [default: 67108864]
    #[arg(
        long = "overflow-segment-bytes",
        env = "BLOBQ_OVERFLOW_SEGMENT_BYTES",
        value_name = "BYTES"
    )]
    pub segment_bytes: Option<u64>,
    /// A sealed overflow segment whose live bytes fall below this percentage of it is compacted; 0: never [default: 25]
    #[arg(
        long = "overflow-compact-percent",
        env = "BLOBQ_OVERFLOW_COMPACT_PERCENT",
        value_name = "PERCENT"
    )]
    pub compact_percent: Option<u8>,
}

impl OverflowSettings {
    /// `self` where set, else `lower`.
    pub fn or(self, lower: OverflowSettings) -> OverflowSettings {
        OverflowSettings {
            segment_bytes: self.segment_bytes.or(lower.segment_bytes),
            compact_percent: self.compact_percent.or(lower.compact_percent),
        }
    }

    /// The defaults applied and checked.
    pub fn resolve(self) -> Result<OverflowConfig, String> {
        let default = OverflowConfig::default();
        let config = OverflowConfig {
            segment_bytes: self.segment_bytes.unwrap_or(default.segment_bytes),
            compact_percent: self.compact_percent.unwrap_or(default.compact_percent),
        };
        if config.segment_bytes < 4096 {
            return Err("overflow-segment-bytes must be at least 4096".to_owned());
        }
        if config.compact_percent > 100 {
            return Err("overflow-compact-percent must be at most 100".to_owned());
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Cli, Command, Config, Settings};
    use clap::Parser;

    #[test]
    fn defaults_apply_and_out_of_range_values_are_refused() {
        let config = OverflowSettings::default().resolve().unwrap();
        assert_eq!(config, OverflowConfig::default());
        assert_eq!(config.segment_bytes, 64 << 20);
        let small = OverflowSettings {
            segment_bytes: Some(4095),
            ..OverflowSettings::default()
        };
        assert!(small.resolve().is_err());
        let over = OverflowSettings {
            compact_percent: Some(101),
            ..OverflowSettings::default()
        };
        assert!(over.resolve().is_err());
    }

    #[test]
    fn the_overflow_table_and_the_flags_layer_like_every_setting() {
        let file: Settings =
            toml::from_str("[overflow]\nsegment_bytes = 8192\ncompact_percent = 40").unwrap();
        let cli =
            Cli::try_parse_from(["blobq", "serve", "--overflow-compact-percent", "10"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        let config = Config::from_settings(args.settings.or(file)).unwrap();
        assert_eq!(
            config.overflow,
            OverflowConfig {
                segment_bytes: 8192,
                compact_percent: 10
            }
        );
    }
}
