//! The batch settings: the `[batch]` table of the TOML file, each key also
//! a flag and a `BLOBQ_*` variable, layered like every other setting.

use clap::Args;
use serde::Deserialize;

use super::multipart::PartLimits;

/// The `[batch]` settings as given, each optional so sources can be layered.
#[derive(Args, Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct BatchSettings {
    /// Most elements in one batch push, pop or acknowledgement [default: 1000]
    #[arg(long, env = "BLOBQ_MAX_BATCH", value_name = "N")]
    pub max_batch: Option<usize>,
    /// Longest header section of one part of a batch push, in bytes [default: 16384]
    #[arg(long, env = "BLOBQ_MAX_PART_HEADER_SIZE", value_name = "BYTES")]
    pub max_part_header_size: Option<usize>,
}

/// The batch limits in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    /// Parts of a batch push, elements of a batch pop (`count`), receipts
    /// of a batch acknowledgement.
    pub max_batch: usize,
    /// Bytes of one part's header lines.
    pub max_part_header_size: usize,
}

impl BatchSettings {
    /// `self` where set, else `lower`.
    pub fn or(self, lower: BatchSettings) -> BatchSettings {
        BatchSettings {
            max_batch: self.max_batch.or(lower.max_batch),
            max_part_header_size: self.max_part_header_size.or(lower.max_part_header_size),
        }
    }

    /// The defaults applied and checked; the error says what is wrong.
    pub fn resolve(&self) -> Result<BatchLimits, String> {
        let limits = BatchLimits {
            max_batch: self.max_batch.unwrap_or(1000),
            max_part_header_size: self.max_part_header_size.unwrap_or(16 * 1024),
        };
        if limits.max_batch == 0 {
            return Err("max-batch must be at least 1".into());
        }
        if limits.max_part_header_size < 1024 {
            return Err("max-part-header-size must be at least 1024 bytes".into());
        }
        Ok(limits)
    }
}

impl BatchLimits {
    /// How a batch push's body is read.
    pub fn parts(&self) -> PartLimits {
        PartLimits {
            max_parts: self.max_batch,
            max_header_bytes: self.max_part_header_size,
        }
    }
}

impl Default for BatchLimits {
    fn default() -> BatchLimits {
        BatchSettings::default()
            .resolve()
            .expect("the defaults are consistent")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_checks() {
        let d = BatchLimits::default();
        assert_eq!((d.max_batch, d.max_part_header_size), (1000, 16384));
        let zero = BatchSettings {
            max_batch: Some(0),
            ..BatchSettings::default()
        };
        assert!(zero.resolve().is_err());
        let set = BatchSettings {
            max_batch: Some(5),
            ..BatchSettings::default()
        };
        let layered = BatchSettings::default().or(set);
        assert_eq!(layered.resolve().unwrap().max_batch, 5);
    }
}
