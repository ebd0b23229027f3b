//! What a jobs request says, checked into values or refused with a `400`:
//! the submit's headers, the worker's receipt, each route's query, the
//! `If-None-Match` of a long poll and the JSON of a heartbeat or failure.
//! The checks are plain functions, testable without a request; the
//! element rules (`Content-Type`, `X-Custom-Data`, lifetimes, seconds,
//! leases) are the ones `/qs` uses.

use std::time::Duration;

use http::{HeaderMap, HeaderName};
use serde::Deserialize;
use serde_json::value::RawValue;
use smallvec::SmallVec;

use crate::backend::jobs::{
    codes, FailureReport, Heartbeat, JobFailure, JobState, ListOptions, Seen, SubmitOptions,
};
use crate::backend::meta::DEFAULT_CONTENT_TYPE;
use crate::http::extract::{
    is_digits, lease_length, query_pairs, seconds, unknown_parameter, PushHeaders, RequestLimits,
};
use crate::http::headers::LEASE;
use crate::http::ApiError;
use crate::jobs::callback::CallbackConfig;
use crate::jobs::JobConfig;

pub const MAX_ATTEMPTS: HeaderName = HeaderName::from_static("x-job-max-attempts");
pub const RETENTION: HeaderName = HeaderName::from_static("x-job-retention");
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub const CALLBACK: HeaderName = HeaderName::from_static("x-job-callback");
pub const PREFER: HeaderName = HeaderName::from_static("prefer");
pub const JOB_STATUS: HeaderName = HeaderName::from_static("x-job-status");
pub const JOB_ID: HeaderName = HeaderName::from_static("x-job-id");
pub const ATTEMPT: HeaderName = HeaderName::from_static("x-job-attempt");

/// Longest idempotency key.
const MAX_KEY_LEN: usize = 255;
/// Longest error code a worker may report.
const MAX_CODE_LEN: usize = 64;
/// A claim's lease when `?lease=` is not given (capped by `--max-lease`).
const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// A listing's page size when `?limit=` is not given, and the largest.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// The limits the jobs routes check requests against.
#[derive(Clone, Debug)]
pub struct JobLimits {
    pub config: JobConfig,
    /// Most attempts a job may have: the server's `--max-deliveries`.
    pub max_attempts: u32,
}

fn bad(problem: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::bad_request(problem, detail)
}

/// The single value of header `name`, if present, as visible ASCII.
fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(bad(
            "invalid-header",
            format!("header {name} is given more than once"),
        ));
    }
    first.to_str().map(Some).map_err(|_| {
        bad(
            "invalid-header",
            format!("header {name} is not visible ASCII"),
        )
    })
}

/// A whole number from `lo` to `hi`.
fn whole(problem: &'static str, what: &str, raw: &str, lo: u64, hi: u64) -> Result<u64, ApiError> {
    Some(raw)
        .filter(|r| is_digits(r))
        .and_then(|r| r.parse::<u64>().ok())
        .filter(|n| (lo..=hi).contains(n))
        .ok_or_else(|| {
            bad(
                problem,
                format!("{what} {raw:?} must be a whole number from {lo} to {hi}"),
            )
        })
}

/// A submit's headers: the element's (`Content-Type`, `X-Custom-Data`,
/// `X-QueueServer-Lifetime`) and the job's own.
#[derive(Debug)]
pub struct Submit {
    pub options: SubmitOptions,
    /// `Prefer: wait=S`.
    pub wait: Option<Duration>,
}

impl Submit {
    pub fn parse(
        headers: &HeaderMap,
        limits: &RequestLimits,
        jobs: &JobLimits,
    ) -> Result<Submit, ApiError> {
        let callback = single(headers, &CALLBACK)?
            .map(|url| callback_url(url, &jobs.config.callbacks))
            .transpose()?;
        let element = PushHeaders::parse(headers, limits)?;
        let custom = element.meta.custom;
        for (i, pair) in custom.iter().enumerate() {
            if custom[..i].iter().any(|p| p.key == pair.key) {
                return Err(bad(
                    "invalid-custom-data",
                    format!(
                        "X-Custom-Data key {:?} is given twice; a job's metadata is an object",
                        pair.key
                    ),
                ));
            }
        }
        let max_attempts = match single(headers, &MAX_ATTEMPTS)? {
            None => jobs.max_attempts,
            Some(raw) => whole(
                "invalid-max-attempts",
                "X-Job-Max-Attempts",
                raw,
                1,
                jobs.max_attempts.into(),
            )? as u32,
        };
        let retention = match single(headers, &RETENTION)? {
            None => jobs.config.retention,
            Some(raw) => whole(
                "invalid-retention",
                "X-Job-Retention",
                raw,
                1,
                jobs.config.max_retention,
            )?,
        };
        let idempotency_key = single(headers, &IDEMPOTENCY_KEY)?
            .map(|key| {
                let visible = key.bytes().all(|b| b.is_ascii_graphic());
                if key.is_empty() || key.len() > MAX_KEY_LEN || !visible {
                    return Err(bad(
                        "invalid-idempotency-key",
                        format!(
                            "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
                        ),
                    ));
                }
                Ok(Box::<str>::from(key))
            })
            .transpose()?;
        let wait = single(headers, &PREFER)?
            .map(|raw| prefer_wait(raw, limits.max_timeout))
            .transpose()?
            .flatten();
        Ok(Submit {
            options: SubmitOptions {
                meta: crate::backend::MetaInput {
                    content_type: element.meta.content_type,
                    custom,
                },
                lifetime: element.lifetime,
                max_attempts,
                retention,
                idempotency_key,
                callback,
            },
            wait,
        })
    }
}

/// An `X-Job-Callback` URL: an absolute URL that, normalised (`..`
/// segments resolved, the host in lower case), starts with one of the
/// allowed prefixes. The normalised URL is the one kept and called, so
/// that `/hooks/../admin` cannot leave an allowed `/hooks/`.
fn callback_url(url: &str, allowed: &CallbackConfig) -> Result<Box<str>, ApiError> {
    if allowed.allow.is_empty() {
        return Err(bad(
            "callback-not-allowed",
            "X-Job-Callback: this server allows no callback URLs (see --job-callback-allow); poll the job or long-poll it with ?wait=S",
        ));
    }
    let normal = reqwest::Url::parse(url).ok();
    let normal = normal.as_ref().map(reqwest::Url::as_str);
    if !normal.is_some_and(|normal| allowed.allows(normal)) {
        return Err(bad(
            "callback-not-allowed",
            format!(
                "X-Job-Callback {url:?} is not an absolute URL starting with one of the allowed prefixes: {}",
                allowed.allow.join(", ")
            ),
        ));
    }
    Ok(normal.unwrap_or(url).into())
}

/// The `wait=S` preference of a `Prefer` header (RFC 7240); other
/// preferences are ignored, as the RFC asks.
fn prefer_wait(raw: &str, max: Duration) -> Result<Option<Duration>, ApiError> {
    for preference in raw.split([',', ';']) {
        let (key, value) = preference.split_once('=').unwrap_or((preference, ""));
        if key.trim().eq_ignore_ascii_case("wait") {
            let value = value.trim().trim_matches('"');
            return seconds("invalid-prefer", "Prefer: wait", value, max).map(Some);
        }
    }
    Ok(None)
}

/// The worker's `X-QueueServer-Lease`: required.
pub fn receipt(headers: &HeaderMap) -> Result<&str, ApiError> {
    single(headers, &LEASE)?.ok_or_else(|| {
        bad(
            "missing-lease",
            "a worker call needs X-QueueServer-Lease, the receipt its claim answered",
        )
    })
}

/// `X-Job-Status` of a result upload: 100 to 599, 200 if absent.
pub fn job_status(headers: &HeaderMap) -> Result<u16, ApiError> {
    match single(headers, &JOB_STATUS)? {
        None => Ok(200),
        Some(raw) => whole("invalid-job-status", "X-Job-Status", raw, 100, 599).map(|n| n as u16),
    }
}

/// The result's `Content-Type`, the default if absent.
pub fn result_type(headers: &HeaderMap) -> Result<smol_str::SmolStr, ApiError> {
    match single(headers, &http::header::CONTENT_TYPE)? {
        None => Ok(DEFAULT_CONTENT_TYPE.into()),
        Some(raw) => crate::backend::meta::parse_content_type(raw)
            .map_err(|e| bad("invalid-content-type", e.to_string())),
    }
}

/// `If-None-Match`: the versions a client has, from `"N"` tags (weak ones
/// too) or `*`; a tag this server never made matches nothing.
pub fn seen(headers: &HeaderMap) -> Result<Seen, ApiError> {
    let mut versions = SmallVec::new();
    let mut any = false;
    for value in headers.get_all(http::header::IF_NONE_MATCH) {
        let text = value
            .to_str()
            .map_err(|_| bad("invalid-header", "If-None-Match is not visible ASCII"))?;
        for tag in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if tag == "*" {
                any = true;
                continue;
            }
            let quoted = tag.strip_prefix("W/").unwrap_or(tag);
            let inner = quoted
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .ok_or_else(|| {
                    bad(
                        "invalid-header",
                        format!("If-None-Match: {tag:?} is not an entity tag"),
                    )
                })?;
            if let Ok(v) = inner.parse::<u64>() {
                versions.push(v);
            }
        }
    }
    Ok(if any {
        Seen::Any
    } else if versions.is_empty() && headers.contains_key(http::header::IF_NONE_MATCH) {
        // Tags of another server: nothing the job has now matches them.
        Seen::Versions(SmallVec::from_slice(&[0]))
    } else if versions.is_empty() {
        Seen::Nothing
    } else {
        Seen::Versions(versions)
    })
}

/// `?wait=S` of a get.
pub fn wait_query(query: Option<&str>, limits: &RequestLimits) -> Result<Duration, ApiError> {
    let mut wait = Duration::ZERO;
    for (key, raw) in query_pairs(query)? {
        match key {
            "wait" => wait = seconds("invalid-wait", key, raw, limits.max_timeout)?,
            _ => return Err(unknown_parameter(key, "wait")),
        }
    }
    Ok(wait)
}

/// `?lease=S&timeout=S` of a claim.
pub fn claim_query(
    query: Option<&str>,
    limits: &RequestLimits,
) -> Result<(Duration, Duration), ApiError> {
    let (mut lease, mut timeout) = (DEFAULT_LEASE.min(limits.max_lease), Duration::ZERO);
    for (key, raw) in query_pairs(query)? {
        match key {
            "lease" => lease = lease_length(raw, limits.max_lease)?,
            "timeout" => timeout = seconds("invalid-timeout", key, raw, limits.max_timeout)?,
            _ => return Err(unknown_parameter(key, "lease, timeout")),
        }
    }
    Ok((lease, timeout))
}

/// `?after=N` of a log read.
pub fn after_query(query: Option<&str>) -> Result<u64, ApiError> {
    let mut after = 0;
    for (key, raw) in query_pairs(query)? {
        match key {
            "after" => after = whole("invalid-query", "after", raw, 0, u64::MAX)?,
            _ => return Err(unknown_parameter(key, "after")),
        }
    }
    Ok(after)
}

/// `?state=&limit=&page_token=` of a listing.
pub fn list_query(query: Option<&str>) -> Result<ListOptions, ApiError> {
    let mut opts = ListOptions {
        state: None,
        limit: DEFAULT_LIMIT,
        page_token: None,
    };
    for (key, raw) in query_pairs(query)? {
        match key {
            "state" => {
                opts.state = Some(JobState::parse(raw).ok_or_else(|| {
                    bad(
                        "invalid-query",
                        format!(
                        "state={raw:?} must be pending, running, succeeded, failed or cancelled"
                    ),
                    )
                })?)
            }
            "limit" => {
                opts.limit = whole("invalid-query", "limit", raw, 1, MAX_LIMIT as u64)? as usize
            }
            "page_token" => opts.page_token = Some(raw.to_owned()),
            _ => return Err(unknown_parameter(key, "state, limit, page_token")),
        }
    }
    Ok(opts)
}

/// A heartbeat's JSON body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeartbeatBody {
    progress: Option<u8>,
    message: Option<String>,
    lease: Option<f64>,
}

/// A failure's JSON body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailBody {
    code: Option<String>,
    message: Option<String>,
    details: Option<Box<RawValue>>,
    retry: Option<bool>,
}

fn message(raw: Option<String>, config: &JobConfig) -> Result<Option<Box<str>>, ApiError> {
    match raw {
        Some(m) if m.len() > config.max_message => Err(bad(
            "invalid-report",
            format!("message is longer than {} bytes", config.max_message),
        )),
        other => Ok(other.map(String::into_boxed_str)),
    }
}

fn json<'a, T: Deserialize<'a>>(body: &'a [u8], what: &str) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        bad(
            "invalid-report",
            format!("the {what} body is not valid: {e}"),
        )
    })
}

/// A heartbeat body: empty, or `{"progress", "message", "lease"}`.
pub fn heartbeat(
    body: &[u8],
    limits: &RequestLimits,
    config: &JobConfig,
) -> Result<Heartbeat, ApiError> {
    let parsed: HeartbeatBody = json(body, "heartbeat")?;
    if parsed.progress.is_some_and(|p| p > 100) {
        return Err(bad(
            "invalid-report",
            "progress must be a whole number from 0 to 100",
        ));
    }
    let lease = parsed
        .lease
        .map(|secs| {
            Duration::try_from_secs_f64(secs)
                .ok()
                .filter(|d| !d.is_zero() && *d <= limits.max_lease)
                .ok_or_else(|| {
                    bad(
                        "invalid-lease",
                        format!(
                            "lease must be more than 0 and at most {} seconds",
                            limits.max_lease.as_secs()
                        ),
                    )
                })
        })
        .transpose()?;
    Ok(Heartbeat {
        progress: parsed.progress,
        message: message(parsed.message, config)?,
        lease,
    })
}

/// A failure body: `{"code", "message", "details", "retry"}`, each optional.
pub fn failure(body: &[u8], config: &JobConfig) -> Result<FailureReport, ApiError> {
    let parsed: FailBody = json(body, "failure")?;
    let code = parsed.code.unwrap_or_else(|| codes::FAILED.to_owned());
    let code_ok = !code.is_empty()
        && code.len() <= MAX_CODE_LEN
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !code_ok {
        return Err(bad(
            "invalid-report",
            format!("code must be 1 to {MAX_CODE_LEN} characters of A-Z, a-z, 0-9, '_', '.', '-'"),
        ));
    }
    let message =
        message(parsed.message, config)?.unwrap_or_else(|| "the worker reported a failure".into());
    Ok(FailureReport {
        failure: JobFailure {
            code: code.into(),
            message,
            details: parsed.details,
        },
        retry: parsed.retry.unwrap_or(false),
    })
}

#[cfg(test)]
#[path = "extract_tests.rs"]
mod tests;
