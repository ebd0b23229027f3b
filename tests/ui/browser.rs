//! A headless Chromium driven through chromedriver (WebDriver), for the
//! dashboard's tests: started on a free port with a fresh profile, and
//! every process of it killed when the [`Browser`] is dropped, whichever
//! way the test ends.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

/// Longest a bounded wait on the page lasts.
pub const PAGE_WAIT: Duration = Duration::from_secs(10);

/// Where Debian's `chromium` and `chromium-driver` put their programs;
/// `BLOBQ_CHROMIUM` and `BLOBQ_CHROMEDRIVER` name others.
fn program(variable: &str, default: &str) -> PathBuf {
    std::env::var_os(variable).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// The browser and its driver if both are installed. Without them the
/// test is skipped with a message, unless `BLOBQ_REQUIRE_BROWSER=1` (as in
/// CI), which makes their absence a failure.
pub fn programs() -> Option<(PathBuf, PathBuf)> {
    let chromium = program("BLOBQ_CHROMIUM", "/usr/bin/chromium");
    let driver = program("BLOBQ_CHROMEDRIVER", "/usr/bin/chromedriver");
    let missing: Vec<&Path> = [chromium.as_path(), driver.as_path()]
        .into_iter()
        .filter(|p| !p.is_file())
        .collect();
    if missing.is_empty() {
        return Some((chromium, driver));
    }
    let message = format!(
        "{missing:?} not found (apt-get install chromium chromium-driver, or .ci/install-chromium)"
    );
    if std::env::var("BLOBQ_REQUIRE_BROWSER").as_deref() == Ok("1") {
        panic!("BLOBQ_REQUIRE_BROWSER=1 and {message}");
    }
    eprintln!("skipping the browser test: {message}");
    None
}

/// A WebDriver session with a headless Chromium.
pub struct Browser {
    pub client: Client,
    /// Dropped after the client: the processes behind it.
    _processes: Processes,
}

/// chromedriver and the Chromium it starts, killed on drop.
struct Processes {
    driver: Child,
    /// Chromium's profile (also how its processes are found) and its
    /// temporary files, removed on drop.
    dir: tempfile::TempDir,
}

impl Processes {
    fn profile(&self) -> PathBuf {
        self.dir.path().join("profile")
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile.
    pub async fn start(chromium: &Path, driver: &Path) -> Browser {
        let dir = tempfile::Builder::new()
            .prefix("blobq-ui-chromium-")
            .tempdir()
            .expect("browser dir");
        // Everything else Chromium writes (temporary folders, crash
        // reports, settings caches) goes here too, so that nothing is left
        // in /tmp or the home directory, even when it is killed.
        let home = dir.path().join("home");
        let tmp = dir.path().join("tmp");
        for d in [&home, &tmp] {
            std::fs::create_dir(d).expect("browser dir");
        }
        let port = free_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .env("TMPDIR", &tmp)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        // From here on, Drop cleans up even if a step below panics.
        let processes = Processes { driver: child, dir };
        let url = format!("http://127.0.0.1:{port}");
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            // Without these, Chromium calls out to Google's services.
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--window-size=1440,1180".to_owned(),
            format!("--user-data-dir={}", processes.profile().display()),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({"binary": chromium, "args": args}),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connected = ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await;
            match connected {
                Ok(client) => break client,
                // chromedriver is still starting.
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no WebDriver session with chromedriver at {url}: {e}"),
            }
        };
        Browser {
            client,
            _processes: processes,
        }
    }

    /// The text of the first element `css` selects, if there is one.
    pub async fn text(&self, css: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.text().await.ok()
    }

    /// Whether an element `css` selects is shown.
    pub async fn shown(&self, css: &str) -> bool {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element.is_displayed().await.unwrap_or(false),
            Err(_) => false,
        }
    }

    /// Waits up to [`PAGE_WAIT`] until every selector's text is the one
    /// given, failing with what the page showed last.
    pub async fn wait_for_texts(&self, what: &str, want: &[(&str, &str)]) {
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let mut seen = Vec::new();
            for (css, _) in want {
                seen.push(self.text(css).await);
            }
            if want
                .iter()
                .zip(&seen)
                .all(|((_, w), s)| s.as_deref() == Some(*w))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: the page showed {seen:?}, not {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits up to [`PAGE_WAIT`] until an element `css` selects is shown.
    pub async fn wait_shown(&self, what: &str, css: &str) {
        let deadline = Instant::now() + PAGE_WAIT;
        while !self.shown(css).await {
            assert!(Instant::now() < deadline, "{what}: {css} never showed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ends the session (chromedriver then closes Chromium), bounded.
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.clone().close()).await;
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        // Chromium and its helpers are chromedriver's children, but they
        // outlive it if it is killed: find them by the profile they use,
        // which no other process names.
        let marker = format!("--user-data-dir={}", self.profile().display());
        for pid in processes_naming(&marker) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The ids of processes whose command line has an argument `arg`.
fn processes_naming(arg: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
        })
        .collect()
}
