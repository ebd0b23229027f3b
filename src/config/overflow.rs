//! The `[overflow]` settings: how large the segments are that small bodies
//! past `--memory-limit` are appended to, when a mostly dead one is
//! compacted, how many bytes may wait to be written there, and how much is
//! read at once for pops (docs/ARCHITECTURE.md, "Bodies in memory, segments
//! and files").

use clap::Args;
use serde::Deserialize;

use crate::store::overflow::OverflowConfig;

/// The write queue holds at least a body of a few pages, and no more than
/// its permits (one a byte, counted in `u32` by an append) can say.
const MIN_WRITE_QUEUE: u64 = 64 << 10;
const MAX_WRITE_QUEUE: u64 = 1 << 30;
/// Windows are held in memory, outside the memory limit.
const MAX_READ_AHEAD: u64 = 64 << 20;
const MAX_READ_AHEAD_WINDOWS: usize = 1024;

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
    /// Bytes of bodies waiting to be written to overflow segments at most; pushes past it wait [default: 8388608]
    #[arg(
        long = "overflow-write-queue-bytes",
        env = "BLOBQ_OVERFLOW_WRITE_QUEUE_BYTES",
        value_name = "BYTES"
    )]
    pub write_queue_bytes: Option<u64>,
    /// Bytes read at once from an overflow segment for a pop, the bodies after it served from them; 0: each body alone [default: 1048576]
    #[arg(
        long = "overflow-read-ahead-bytes",
        env = "BLOBQ_OVERFLOW_READ_AHEAD_BYTES",
        value_name = "BYTES"
    )]
    pub read_ahead_bytes: Option<u64>,
    /// Read-ahead windows kept at most, the least recently used dropped first [default: 8]
    #[arg(
        long = "overflow-read-ahead-windows",
        env = "BLOBQ_OVERFLOW_READ_AHEAD_WINDOWS",
        value_name = "COUNT"
    )]
    pub read_ahead_windows: Option<usize>,
}

impl OverflowSettings {
    /// `self` where set, else `lower`.
    pub fn or(self, lower: OverflowSettings) -> OverflowSettings {
        OverflowSettings {
            segment_bytes: self.segment_bytes.or(lower.segment_bytes),
            compact_percent: self.compact_percent.or(lower.compact_percent),
            write_queue_bytes: self.write_queue_bytes.or(lower.write_queue_bytes),
            read_ahead_bytes: self.read_ahead_bytes.or(lower.read_ahead_bytes),
            read_ahead_windows: self.read_ahead_windows.or(lower.read_ahead_windows),
        }
    }

    /// The defaults applied and checked.
    pub fn resolve(self) -> Result<OverflowConfig, String> {
        let default = OverflowConfig::default();
        let config = OverflowConfig {
            segment_bytes: self.segment_bytes.unwrap_or(default.segment_bytes),
            compact_percent: self.compact_percent.unwrap_or(default.compact_percent),
            write_queue_bytes: self.write_queue_bytes.unwrap_or(default.write_queue_bytes),
            read_ahead_bytes: self.read_ahead_bytes.unwrap_or(default.read_ahead_bytes),
            read_ahead_windows: self
                .read_ahead_windows
                .unwrap_or(default.read_ahead_windows),
        };
        if config.segment_bytes < 4096 {
            return Err("overflow-segment-bytes must be at least 4096".to_owned());
        }
        if config.compact_percent > 100 {
            return Err("overflow-compact-percent must be at most 100".to_owned());
        }
        if !(MIN_WRITE_QUEUE..=MAX_WRITE_QUEUE).contains(&config.write_queue_bytes) {
            return Err(format!(
                "overflow-write-queue-bytes must be between {MIN_WRITE_QUEUE} and {MAX_WRITE_QUEUE}"
            ));
        }
        if config.read_ahead_bytes > MAX_READ_AHEAD {
            return Err(format!(
                "overflow-read-ahead-bytes must be at most {MAX_READ_AHEAD}"
            ));
        }
        if config.read_ahead_windows > MAX_READ_AHEAD_WINDOWS {
            return Err(format!(
                "overflow-read-ahead-windows must be at most {MAX_READ_AHEAD_WINDOWS}"
            ));
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
        for refused in [
            OverflowSettings {
                write_queue_bytes: Some(1000),
                ..OverflowSettings::default()
            },
            OverflowSettings {
                write_queue_bytes: Some(2 << 30),
                ..OverflowSettings::default()
            },
            OverflowSettings {
                read_ahead_bytes: Some(1 << 30),
                ..OverflowSettings::default()
            },
            OverflowSettings {
                read_ahead_windows: Some(5000),
                ..OverflowSettings::default()
            },
        ] {
            assert!(refused.clone().resolve().is_err(), "{refused:?}");
        }
        let off = OverflowSettings {
            read_ahead_bytes: Some(0),
            ..OverflowSettings::default()
        };
        assert_eq!(off.resolve().unwrap().read_ahead_bytes, 0);
    }

    #[test]
    fn the_overflow_table_and_the_flags_layer_like_every_setting() {
        let file: Settings = toml::from_str(
            "[overflow]\nsegment_bytes = 8192\ncompact_percent = 40\nread_ahead_bytes = 65536",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "blobq",
            "serve",
            "--overflow-compact-percent",
            "10",
            "--overflow-write-queue-bytes",
            "1048576",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        let config = Config::from_settings(args.settings.or(file)).unwrap();
        assert_eq!(
            config.overflow,
            OverflowConfig {
                segment_bytes: 8192,
                compact_percent: 10,
                write_queue_bytes: 1 << 20,
                read_ahead_bytes: 65536,
                ..OverflowConfig::default()
            }
        );
    }
}
