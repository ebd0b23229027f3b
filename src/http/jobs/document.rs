//! The JSON the jobs API answers with besides the job document (which
//! lives at the seam, `backend::jobs::document`, shared with callbacks):
//! the progress log, a listing page and a namespace's counts, and the
//! `ETag` of a document.

use http::HeaderValue;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

pub use crate::backend::jobs::document::{path, time, ErrorDoc, JobDoc};
use crate::backend::jobs::{JobPage, JobState, JobView, LogEntry, QueueJobCounts};
use crate::http::header_value;

/// The job's `ETag`: its version, quoted.
pub fn etag(view: &JobView) -> HeaderValue {
    header_value(&format!("\"{}\"", view.version))
}

#[derive(Serialize)]
pub struct LogEntryDoc<'a> {
    time: String,
    progress: Option<u8>,
    message: Option<&'a str>,
}

impl<'a> LogEntryDoc<'a> {
    pub fn of(e: &'a LogEntry) -> LogEntryDoc<'a> {
        LogEntryDoc {
            time: time(e.time),
            progress: e.progress,
            message: e.message.as_deref(),
        }
    }
}

#[derive(Serialize)]
pub struct PageDoc<'a> {
    jobs: Vec<JobDoc<'a>>,
    next_page_token: Option<&'a str>,
}

impl<'a> PageDoc<'a> {
    pub fn of(page: &'a JobPage) -> PageDoc<'a> {
        PageDoc {
            jobs: page.jobs.iter().map(JobDoc::of).collect(),
            next_page_token: page.next_page_token.as_deref(),
        }
    }
}

/// `GET /jobs/{ns}`: per queue, jobs by state.
pub struct CountsDoc<'a>(pub &'a [QueueJobCounts]);

impl Serialize for CountsDoc<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut outer = s.serialize_map(Some(2))?;
        let namespace = self.0.first().map_or("", |c| c.namespace.as_str());
        outer.serialize_entry("namespace", namespace)?;
        outer.serialize_entry("queues", &QueuesDoc(self.0))?;
        outer.end()
    }
}

struct QueuesDoc<'a>(&'a [QueueJobCounts]);

impl Serialize for QueuesDoc<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for c in self.0 {
            map.serialize_entry(c.queue.as_str(), &QueueCountsDoc(c))?;
        }
        map.end()
    }
}

struct QueueCountsDoc<'a>(&'a QueueJobCounts);

impl Serialize for QueueCountsDoc<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(JobState::ALL.len() + 2))?;
        for state in JobState::ALL {
            map.serialize_entry(state.as_str(), &self.0.counts[state.index()])?;
        }
        map.serialize_entry("total", &self.0.counts.iter().sum::<u64>())?;
        map.serialize_entry("waiting_workers", &self.0.waiting_workers)?;
        map.end()
    }
}
