//! The dashboard's settings: the `[ui]` table of the TOML file, each key
//! also a flag and a `BLOBQ_*` variable, layered like every other setting.

use std::time::Duration;

use clap::Args;
use serde::Deserialize;

/// The `[ui]` settings as given, each optional so sources can be layered.
#[derive(Args, Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct UiSettings {
    /// How often the server-wide totals are sampled for the dashboard's charts, in milliseconds [default: 2000]
    #[arg(long, env = "BLOBQ_UI_HISTORY_INTERVAL_MS", value_name = "MS")]
    pub ui_history_interval_ms: Option<u64>,
    /// Most samples of the totals kept for GET /ui/history (0: none are taken) [default: 300]
    #[arg(long, env = "BLOBQ_UI_HISTORY_SAMPLES", value_name = "N")]
    pub ui_history_samples: Option<usize>,
}

/// The dashboard's settings in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UiConfig {
    /// Time between two samples of the totals.
    pub history_interval: Duration,
    /// Samples kept; the oldest goes when one more is taken.
    pub history_samples: usize,
}

/// The most samples the history may keep: a bound on its memory whatever
/// the file says.
const MAX_HISTORY_SAMPLES: usize = 100_000;

impl UiSettings {
    /// `self` where set, else `lower`.
    pub fn or(self, lower: UiSettings) -> UiSettings {
        UiSettings {
            ui_history_interval_ms: self.ui_history_interval_ms.or(lower.ui_history_interval_ms),
            ui_history_samples: self.ui_history_samples.or(lower.ui_history_samples),
        }
    }

    /// The defaults applied and checked; the error says what is wrong.
    pub fn resolve(&self) -> Result<UiConfig, String> {
        let interval = self.ui_history_interval_ms.unwrap_or(2000);
        let samples = self.ui_history_samples.unwrap_or(300);
        if interval < 10 {
            return Err("ui-history-interval-ms must be at least 10".into());
        }
        if samples > MAX_HISTORY_SAMPLES {
            return Err(format!(
                "ui-history-samples must be at most {MAX_HISTORY_SAMPLES}"
            ));
        }
        Ok(UiConfig {
            history_interval: Duration::from_millis(interval),
            history_samples: samples,
        })
    }
}

impl Default for UiConfig {
    fn default() -> UiConfig {
        UiSettings::default()
            .resolve()
            .expect("the defaults are consistent")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_layering_and_checks() {
        let d = UiConfig::default();
        assert_eq!(d.history_interval, Duration::from_secs(2));
        assert_eq!(d.history_samples, 300);
        let set = UiSettings {
            ui_history_samples: Some(5),
            ..UiSettings::default()
        };
        let layered = set.or(UiSettings {
            ui_history_interval_ms: Some(50),
            ui_history_samples: Some(9),
        });
        let config = layered.resolve().unwrap();
        assert_eq!(config.history_samples, 5);
        assert_eq!(config.history_interval, Duration::from_millis(50));
        for bad in [
            UiSettings {
                ui_history_interval_ms: Some(0),
                ..UiSettings::default()
            },
            UiSettings {
                ui_history_samples: Some(MAX_HISTORY_SAMPLES + 1),
                ..UiSettings::default()
            },
        ] {
            assert!(bad.resolve().is_err(), "{bad:?}");
        }
    }
}
