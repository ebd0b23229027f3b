//! The store's settings, and how the fsync mode is spelled. The store knows
//! nothing of the command line: `crate::config` builds a [`StoreConfig`]
//! and parses `--fsync` with [`FsyncMode`]'s `FromStr`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::journal::{DurabilityConfig, FsyncMode};
use super::namespace::Quota;
use super::overflow::OverflowConfig;

/// Settings the store needs.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Directory in which the store makes its own spill folder.
    pub spill_dir: PathBuf,
    pub spill_threshold: u64,
    pub max_element_size: u64,
    /// An empty queue nobody waits on is dropped after this long.
    pub queue_idle_timeout: Duration,
    /// Deliveries under lease after which an element is dead-lettered.
    pub max_deliveries: u32,
    /// What a namespace may hold, unless `namespace_quotas` names it.
    pub namespace_quota: Quota,
    /// Quotas of particular namespaces.
    pub namespace_quotas: HashMap<String, Quota>,
    /// Seconds an over-quota client is told to wait before retrying.
    pub quota_retry_after: u64,
    /// Bytes of bodies held in memory beyond which new bodies spill to disk
    /// whatever their size; 0 for no limit.
    pub memory_limit: u64,
    /// Memory mode: the segments small bodies past `memory_limit` go to.
    pub overflow: OverflowConfig,
    /// Durable mode: where and how the store keeps its log.
    pub durability: Option<DurabilityConfig>,
    /// How many names clients may make.
    pub names: NameLimits,
}

/// How many namespaces, and queues in each, clients may make: each costs
/// memory outside the namespaces' quotas, so a flood of names must stop
/// somewhere. A dead-letter queue is made past the limit (it is one per
/// leased queue at most), and so is what a restart reads back from the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameLimits {
    pub max_namespaces: usize,
    pub max_queues_per_namespace: usize,
}

impl Default for NameLimits {
    fn default() -> NameLimits {
        NameLimits {
            max_namespaces: 100_000,
            max_queues_per_namespace: 1_000,
        }
    }
}

impl FsyncMode {
    /// Every mode, in the order the help lists them.
    pub const ALL: [FsyncMode; 3] = [FsyncMode::Always, FsyncMode::Batch, FsyncMode::Never];

    /// The mode as `--fsync`, `BLOBQ_FSYNC` and the TOML file spell it.
    pub fn name(self) -> &'static str {
        match self {
            FsyncMode::Always => "always",
            FsyncMode::Batch => "batch",
            FsyncMode::Never => "never",
        }
    }

    /// One line on what the mode promises, for `--help`.
    pub fn description(self) -> &'static str {
        match self {
            FsyncMode::Always => {
                "Before every answer (group commit shares one fsync among concurrent requests)"
            }
            FsyncMode::Batch => "At least every `--fsync-interval-ms`",
            FsyncMode::Never => "Left to the operating system",
        }
    }
}

/// A spelling of the fsync mode that is none of [`FsyncMode::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value '{0}' for the fsync mode [possible values: always, batch, never]")]
pub struct UnknownFsyncMode(pub String);

impl FromStr for FsyncMode {
    type Err = UnknownFsyncMode;

    /// Exact, lower-case names, as the command line always accepted them.
    fn from_str(s: &str) -> Result<FsyncMode, UnknownFsyncMode> {
        FsyncMode::ALL
            .into_iter()
            .find(|mode| mode.name() == s)
            .ok_or_else(|| UnknownFsyncMode(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_parses_from_its_name_and_nothing_else_does() {
        for mode in FsyncMode::ALL {
            assert_eq!(mode.name().parse::<FsyncMode>(), Ok(mode));
        }
        for wrong in ["", "Always", "BATCH", "sometimes", " never"] {
            let err = wrong.parse::<FsyncMode>().unwrap_err();
            assert_eq!(err, UnknownFsyncMode(wrong.to_owned()));
            assert_eq!(
                err.to_string(),
                format!(
                    "invalid value '{wrong}' for the fsync mode [possible values: always, batch, never]"
                )
            );
        }
    }
}
