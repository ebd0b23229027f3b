//! A command's stderr: `progress N message` lines become progress reports,
//! every other line passes through to the worker's stderr, and the last
//! few are kept for the failure report.

use std::collections::VecDeque;

use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::sync::watch;

/// Longest message or kept line sent to the server, in bytes (the server's
/// `max_job_message` is larger by default).
pub const MAX_TEXT: usize = 1024;

/// A progress report read from the command.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub percent: u8,
    pub message: Option<String>,
}

/// `progress N message`, N a whole percentage from 0 to 100; the message
/// is optional. Anything else is not a report.
pub fn parse(line: &str) -> Option<Progress> {
    let rest = line.strip_prefix("progress ")?;
    let (number, message) = match rest.split_once(' ') {
        Some((n, m)) => (n, m.trim()),
        None => (rest, ""),
    };
    let percent: u8 = number.trim_end_matches('%').parse().ok()?;
    (percent <= 100).then(|| Progress {
        percent,
        message: (!message.is_empty()).then(|| clip(message).to_owned()),
    })
}

/// `text` cut to at most [`MAX_TEXT`] bytes, on a character boundary.
pub fn clip(text: &str) -> &str {
    if text.len() <= MAX_TEXT {
        return text;
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Reads `stream` to its end: reports go to `progress`, other lines to
/// the worker's stderr; returns the last `keep` of them.
pub async fn follow(
    stream: impl AsyncRead + Unpin,
    progress: &watch::Sender<Option<Progress>>,
    keep: usize,
) -> Vec<String> {
    let mut kept = VecDeque::with_capacity(keep);
    let mut lines = BufReader::new(stream);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        match lines.read_until(b'\n', &mut raw).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&raw);
        let line = text.trim_end_matches(['\n', '\r']);
        if let Some(report) = parse(line) {
            progress.send_replace(Some(report));
            continue;
        }
        eprintln!("{line}");
        if keep > 0 {
            if kept.len() == keep {
                kept.pop_front();
            }
            kept.push_back(clip(line).to_owned());
        }
    }
    kept.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_are_a_percentage_and_an_optional_message() {
        assert_eq!(
            parse("progress 40 zipping 4 of 10"),
            Some(Progress {
                percent: 40,
                message: Some("zipping 4 of 10".into())
            })
        );
        assert_eq!(
            parse("progress 100%"),
            Some(Progress {
                percent: 100,
                message: None
            })
        );
        for other in [
            "progress",
            "progress 101 x",
            "progress -1",
            "Progress 5",
            "progress x y",
        ] {
            assert_eq!(parse(other), None, "{other}");
        }
    }

    #[test]
    fn long_text_is_clipped_on_a_character_boundary() {
        let long = "é".repeat(MAX_TEXT);
        let clipped = clip(&long);
        assert!(clipped.len() <= MAX_TEXT && clipped.chars().all(|c| c == 'é'));
    }

    #[tokio::test]
    async fn follow_keeps_the_last_lines_and_sends_reports() {
        let input: &[u8] = b"one\nprogress 10 start\ntwo\nthree\n";
        let (tx, rx) = watch::channel(None);
        let kept = follow(input, &tx, 2).await;
        assert_eq!(kept, ["two", "three"]);
        assert_eq!(rx.borrow().as_ref().map(|p| p.percent), Some(10));
    }
}
