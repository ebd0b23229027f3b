//! The jobs settings: the `[jobs]` table of the TOML file, each key also a
//! flag and a `BLOBQ_*` variable, layered like every other setting.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::Deserialize;

use super::callback::{CallbackConfig, SigningKey};

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
    /// A URL prefix X-Job-Callback may start with; repeatable, or comma-separated [default: none, callbacks refused]
    #[arg(
        long,
        env = "BLOBQ_JOB_CALLBACK_ALLOW",
        value_name = "PREFIX",
        value_delimiter = ','
    )]
    pub job_callback_allow: Option<Vec<String>>,
    /// A PEM file of certificate authorities trusted for https:// callbacks besides the system's [default: the system's only]
    #[arg(long, env = "BLOBQ_JOB_CALLBACK_CA_FILE", value_name = "FILE")]
    pub job_callback_ca_file: Option<PathBuf>,
    /// Signs each callback (Standard Webhooks): whsec_<base64 key>, or any other text used as the key's bytes [default: unsigned]
    #[arg(long, env = "BLOBQ_JOB_CALLBACK_SECRET", value_name = "SECRET")]
    pub job_callback_secret: Option<String>,
    /// Seconds one callback attempt may take before it counts as failed [default: 10]
    #[arg(long, env = "BLOBQ_JOB_CALLBACK_TIMEOUT", value_name = "S")]
    pub job_callback_timeout: Option<u64>,
    /// Seconds a callback is retried after its first attempt before it is given up [default: 3600]
    #[arg(long, env = "BLOBQ_JOB_CALLBACK_RETRY_FOR", value_name = "S")]
    pub job_callback_retry_for: Option<u64>,
    /// Most callbacks waiting for an attempt; past it the oldest is dropped [default: 10000]
    #[arg(long, env = "BLOBQ_MAX_JOB_CALLBACKS_PENDING", value_name = "N")]
    pub max_job_callbacks_pending: Option<usize>,
    /// Most callback attempts in flight at once [default: 64]
    #[arg(long, env = "BLOBQ_JOB_CALLBACK_CONCURRENCY", value_name = "N")]
    pub job_callback_concurrency: Option<usize>,
}

/// The jobs settings in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobConfig {
    pub retention: u64,
    pub max_retention: u64,
    pub max_log_entries: usize,
    pub max_message: usize,
    pub max_report_bytes: usize,
    pub callbacks: CallbackConfig,
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
            job_callback_allow: self.job_callback_allow.or(lower.job_callback_allow),
            job_callback_ca_file: self.job_callback_ca_file.or(lower.job_callback_ca_file),
            job_callback_secret: self.job_callback_secret.or(lower.job_callback_secret),
            job_callback_timeout: self.job_callback_timeout.or(lower.job_callback_timeout),
            job_callback_retry_for: self.job_callback_retry_for.or(lower.job_callback_retry_for),
            max_job_callbacks_pending: self
                .max_job_callbacks_pending
                .or(lower.max_job_callbacks_pending),
            job_callback_concurrency: self
                .job_callback_concurrency
                .or(lower.job_callback_concurrency),
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
            callbacks: self.callbacks()?,
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

    /// The callback settings with their defaults, checked.
    fn callbacks(&self) -> Result<CallbackConfig, String> {
        let allow = self
            .job_callback_allow
            .iter()
            .flatten()
            .map(|prefix| check_prefix(prefix))
            .collect::<Result<Vec<_>, _>>()?;
        let key = self
            .job_callback_secret
            .as_deref()
            .map(SigningKey::parse)
            .transpose()?;
        let extra_roots = match &self.job_callback_ca_file {
            None => Vec::new(),
            Some(path) => read_certificates(path)?,
        };
        let config = CallbackConfig {
            allow,
            key,
            extra_roots,
            timeout: Duration::from_secs(self.job_callback_timeout.unwrap_or(10)),
            retry_for: Duration::from_secs(self.job_callback_retry_for.unwrap_or(3600)),
            max_pending: self.max_job_callbacks_pending.unwrap_or(10_000),
            concurrency: self.job_callback_concurrency.unwrap_or(64),
        };
        if config.timeout.is_zero() {
            return Err("job-callback-timeout must be at least 1 second".into());
        }
        if config.max_pending == 0 || config.concurrency == 0 {
            return Err(
                "max-job-callbacks-pending and job-callback-concurrency must be at least 1".into(),
            );
        }
        Ok(config)
    }
}

/// The certificates of a PEM file; an error names the file.
fn read_certificates(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bad = |e: &dyn std::fmt::Display| format!("job-callback-ca-file {}: {e}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    if certs.is_empty() {
        return Err(bad(&"no certificate in it"));
    }
    Ok(certs)
}

/// A callback prefix must name a scheme (`http` or `https`), a host and
/// the start of a path (`https://hooks.example.com/`), so that it cannot be
/// met by another host whose name merely begins the same
/// (`https://hooks.example.com.evil.org`). The prefix is kept normalised,
/// as callback URLs are compared.
fn check_prefix(prefix: &str) -> Result<String, String> {
    let rest = prefix
        .strip_prefix("http://")
        .or_else(|| prefix.strip_prefix("https://"))
        .ok_or_else(|| {
            format!("job-callback-allow {prefix:?} must start with http:// or https://")
        })?;
    let host_ends = rest.find('/').filter(|&at| at > 0);
    match reqwest::Url::parse(prefix) {
        Ok(url) if host_ends.is_some() => Ok(url.as_str().to_owned()),
        _ => Err(format!(
            "job-callback-allow {prefix:?} must be a URL with a host and a path, such as https://hooks.example.com/"
        )),
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

    #[test]
    fn callback_prefixes_need_a_host_and_a_path() {
        for good in [
            "http://hooks.example.com/",
            "http://127.0.0.1:9000/jobs/",
            "https://hooks.example.com/",
        ] {
            assert_eq!(check_prefix(good).as_deref(), Ok(good), "{good}");
        }
        assert_eq!(
            check_prefix("http://Hooks.Example.com/a/../b/").as_deref(),
            Ok("http://hooks.example.com/b/")
        );
        for bad in [
            "http://hooks.example.com",
            "https://hooks.example.com",
            "ftp://hooks.example.com/",
            "hooks.example.com/",
            "http:///x",
            "",
        ] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
        let settings = JobSettings {
            job_callback_allow: Some(vec!["http://h/".into()]),
            job_callback_secret: Some("whsec_!!".into()),
            ..JobSettings::default()
        };
        assert!(
            settings.resolve().is_err(),
            "a whsec_ secret that is not base64"
        );
    }
}
