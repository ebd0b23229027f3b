//! The jobs settings: the `[jobs]` table of the TOML file, each key also a
//! flag and a `BLOBQ_*` variable, layered like every other setting.

use clap::Args;
use serde::Deserialize;

/// The `[jobs]` settings as given, each optional so sources can be layered.
#[derive(Args, Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    /// Seconds a finished job is kept without X-Job-Retention [default: 86400]
    #[arg(long, env = "BLOBQ_JOB_RETENTION", value_name = "S")]
    pub job_retention: Option<u64>,
    /// Longest X-Job-Retention a client may ask for [default: 604800]
    #[arg(long, env = "BLOBQ_MAX_JOB_RETENTION", value_name = "S")]
    pub max_job_retention: Option<u64>,
    /// Most entries a job's progress log keeps; older ones go first [default: 1000]
    #[arg(long, env = "BLOBQ_MAX_JOB_LOG_ENTRIES", value_name = "N")]
    pub max_job_log_entries: Option<usize>,
    /// Longest progress or error message, in bytes [default: 4096]
    #[arg(long, env = "BLOBQ_MAX_JOB_MESSAGE", value_name = "BYTES")]
    pub max_job_message: Option<usize>,
    /// Largest heartbeat or failure body, in bytes [default: 65536]
    #[arg(long, env = "BLOBQ_MAX_JOB_REPORT_BYTES", value_name = "BYTES")]
    pub max_job_report_bytes: Option<usize>,
}

/// The jobs settings in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobConfig {
    pub retention: u64,
    pub max_retention: u64,
    pub max_log_entries: usize,
    pub max_message: usize,
    pub max_report_bytes: usize,
}

impl JobSettings {
    /// `self` where set, else `lower`.
    pub fn or(self, lower: JobSettings) -> JobSettings {
        JobSettings {
            job_retention: self.job_retention.or(lower.job_retention),
            max_job_retention: self.max_job_retention.or(lower.max_job_retention),
            max_job_log_entries: self.max_job_log_entries.or(lower.max_job_log_entries),
            max_job_message: self.max_job_message.or(lower.max_job_message),
            max_job_report_bytes: self.max_job_report_bytes.or(lower.max_job_report_bytes),
        }
    }

    /// The defaults applied and checked; the error says what is wrong.
    pub fn resolve(&self) -> Result<JobConfig, String> {
        let max_retention = self.max_job_retention.unwrap_or(604_800);
        let config = JobConfig {
            // Unset, the default follows a lowered maximum.
            retention: self.job_retention.unwrap_or(86_400.min(max_retention)),
            max_retention,
            max_log_entries: self.max_job_log_entries.unwrap_or(1000),
            max_message: self.max_job_message.unwrap_or(4096),
            max_report_bytes: self.max_job_report_bytes.unwrap_or(65_536),
        };
        if config.retention == 0 || config.max_retention == 0 {
            return Err("job-retention and max-job-retention must be at least 1 second".into());
        }
        if config.retention > config.max_retention {
            return Err("job-retention must not exceed max-job-retention".into());
        }
        if config.max_report_bytes < 1024 {
            return Err("max-job-report-bytes must be at least 1024".into());
        }
        Ok(config)
    }
}

impl Default for JobConfig {
    fn default() -> JobConfig {
        JobSettings::default()
            .resolve()
            .expect("the defaults are consistent")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_contract_and_contradictions_are_refused() {
        let c = JobConfig::default();
        assert_eq!((c.retention, c.max_retention), (86_400, 604_800));
        let lowered = JobSettings {
            max_job_retention: Some(60),
            ..JobSettings::default()
        };
        assert_eq!(lowered.resolve().unwrap().retention, 60);
        let contradiction = JobSettings {
            job_retention: Some(100),
            max_job_retention: Some(10),
            ..JobSettings::default()
        };
        assert!(contradiction.resolve().is_err());
        let zero = JobSettings {
            job_retention: Some(0),
            ..JobSettings::default()
        };
        assert!(zero.resolve().is_err());
    }
}
