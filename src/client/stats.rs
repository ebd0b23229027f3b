//! `blobq stats`: the server's, a namespace's or a queue's statistics as
//! a table, refreshed in place with `--watch` like `top`.

use std::io::{IsTerminal, Write as _};
use std::time::Duration;

use clap::Args;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::conn::{json_of, ClientError, Conn};
use super::{output, queue_path, Done};

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// NS for a namespace, NS/QUEUE for a queue; none for the server
    #[arg(value_name = "NS[/QUEUE]")]
    pub target: Option<String>,
    /// Refresh every S seconds until interrupted
    #[arg(long, value_name = "S", num_args = 0..=1, default_missing_value = "1")]
    pub watch: Option<f64>,
}

/// The counters every level shows, in the order of the API's table.
const COUNTERS: [&str; 7] = [
    "elements", "bytes", "waiting", "leased", "pushed", "popped", "expired",
];

pub async fn stats(conn: &Conn, a: StatsArgs) -> Result<Done, ClientError> {
    let path = match a.target.as_deref() {
        None => "/qs".to_owned(),
        Some(t) if t.contains('/') => format!("{}/stats", queue_path(t)?),
        Some(ns) => format!("/qs/{ns}"),
    };
    let Some(every) = a.watch else {
        show(conn, &path, false).await?;
        return Ok(Done::Ok);
    };
    if !(every.is_finite() && every > 0.0) {
        return Err(ClientError::Usage(format!(
            "--watch {every} is not a number of seconds"
        )));
    }
    loop {
        show(conn, &path, true).await?;
        tokio::time::sleep(Duration::from_secs_f64(every)).await;
    }
}

async fn show(conn: &Conn, path: &str, redraw: bool) -> Result<(), ClientError> {
    let request = conn.request(Method::GET, path, Duration::ZERO);
    let answer = conn.send(request, &[StatusCode::OK]).await?;
    let doc: Value = json_of(answer, "the statistics").await?;
    if conn.json {
        output::print_json(&doc);
        return Ok(());
    }
    let text = render(&doc);
    if redraw && std::io::stdout().is_terminal() {
        // Home, then clear below: the table is redrawn in place.
        print!("\x1b[H\x1b[2J");
    }
    print!("{text}");
    let _ = std::io::stdout().flush();
    Ok(())
}

/// The statistics document as text for people.
pub fn render(doc: &Value) -> String {
    let field = |row: &Value, key: &str| match &row[key] {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if let Some(namespaces) = doc["namespaces"].as_array() {
        let mut out = format!(
            "blobq {}  up {} s  elements {}  memory {} B  disk {} B  waiting {}\n\n",
            field(doc, "version"),
            field(doc, "uptime_seconds"),
            field(doc, "elements"),
            field(doc, "memory_bytes"),
            field(doc, "disk_bytes"),
            field(doc, "waiting"),
        );
        let mut columns = vec!["namespace", "queue_count"];
        columns.extend(COUNTERS);
        columns.extend(["blobs", "blob_bytes"]);
        out.push_str(&table(&columns, namespaces, field));
        return out;
    }
    if let Some(queues) = doc["queues"].as_array() {
        let mut out = format!(
            "namespace {}  blobs {} ({} B)\n\n",
            field(doc, "namespace"),
            field(doc, "blobs"),
            field(doc, "blob_bytes"),
        );
        let mut columns = vec!["queue"];
        columns.extend(COUNTERS);
        out.push_str(&table(&columns, queues, field));
        return out;
    }
    let mut out = format!("{}/{}\n", field(doc, "namespace"), field(doc, "queue"));
    for key in COUNTERS {
        out.push_str(&format!("  {key:<9} {}\n", field(doc, key)));
    }
    out
}

/// Rows under a header, each column as wide as its widest cell; numbers
/// right-aligned.
fn table(columns: &[&str], rows: &[Value], field: impl Fn(&Value, &str) -> String) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| columns.iter().map(|c| field(row, c)).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
                .max(c.len())
        })
        .collect();
    let line = |values: Vec<String>| {
        let padded: Vec<String> = values
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (v, w))| {
                if i == 0 {
                    format!("{v:<w$}")
                } else {
                    format!("{v:>w$}")
                }
            })
            .collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(columns.iter().map(|c| c.to_uppercase()).collect());
    for row in cells {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_renders_as_a_table_of_its_queues() {
        let doc = serde_json::json!({
            "namespace": "demo", "blobs": 1, "blob_bytes": 3,
            "queues": [
                {"queue": "a", "elements": 0, "bytes": 0, "waiting": 0, "leased": 0, "pushed": 1, "popped": 1, "expired": 0},
                {"queue": "longer", "elements": 12, "bytes": 3, "waiting": 0, "leased": 2, "pushed": 14, "popped": 0, "expired": 0}
            ]
        });
        let text = render(&doc);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "namespace demo  blobs 1 (3 B)");
        assert_eq!(
            lines[2],
            "QUEUE   ELEMENTS  BYTES  WAITING  LEASED  PUSHED  POPPED  EXPIRED"
        );
        assert_eq!(
            lines[4],
            "longer        12      3        0       2      14       0        0"
        );
    }
}
