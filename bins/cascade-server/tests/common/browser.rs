//! A headless Chromium driven over WebDriver, for the operator console's tests: chromedriver on
//! a free port (in its own process group, so the browser goes with it, and with its own
//! temporary directory, so the browser's profile goes too), one
//! [fantoccini](https://docs.rs/fantoccini) session, and the few steps a console test takes: go
//! to a page, wait for an element or a text, fill, click, upload a file, resize, take a
//! screenshot.
//!
//! Chromedriver is `CASCADE_CHROMEDRIVER`, else `/usr/bin/chromedriver`, else the first on
//! `PATH` (`scripts/ensure-chromium` installs Debian's `chromium` and `chromium-driver`).
//! Without one, [`Browser::start`] says loudly that the test is skipped, and fails in CI
//! (`CI=true`). Screenshots land in `<target dir>/console-screenshots/`.

use std::fs::OpenOptions;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use super::{WAIT, free_port};

/// How often the bounded waits look again.
const POLL: Duration = Duration::from_millis(50);

/// Chromium's switches: headless (no display needed), no sandbox (root in containers), shared
/// memory in `TMPDIR` rather than `/dev/shm` (small in containers), a desktop-sized window.
const CHROMIUM_ARGS: [&str; 5] =
    ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"];

/// A headless Chromium session through a chromedriver this harness started. Dropping it kills
/// chromedriver's process group (chromedriver and the browser); [`Browser::close`] ends the
/// session cleanly first.
#[derive(Debug)]
pub struct Browser {
    client: Client,
    driver: Driver,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session. `None` (after saying so loudly)
    /// when there is no chromedriver outside CI; in CI (`CI=true`) that fails the test. A
    /// chromedriver or browser that does not start fails the test with the tail of
    /// chromedriver's log (which has Chromium's own messages).
    pub async fn start() -> Option<Self> {
        let Some(chromedriver) = chromedriver() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI needs chromedriver and chromium for the browser tests (scripts/ensure-chromium, \
                 or set CASCADE_CHROMEDRIVER)"
            );
            eprintln!(
                "\n*** SKIPPED: the browser tests need chromedriver and chromium \
                 (run scripts/ensure-chromium, or set CASCADE_CHROMEDRIVER) ***\n"
            );
            return None;
        };
        let driver = Driver::start(&chromedriver).await;

        let mut options = json!({ "args": CHROMIUM_ARGS });
        if let Some(binary) = chromium() {
            options["binary"] = json!(binary);
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), options);
        let client =
            match ClientBuilder::new(HttpConnector::new()).capabilities(capabilities).connect(&driver.url).await {
                Ok(client) => client,
                Err(e) => panic!(
                    "chromium did not start through {}: {e}\nchromedriver's log ({}):\n{}",
                    chromedriver.display(),
                    driver.log.display(),
                    driver.log_tail()
                ),
            };
        Some(Self { client, driver })
    }

    /// The WebDriver session, for what the helpers here do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        if let Err(e) = self.client.goto(url).await {
            panic!("the browser could not open {url}: {e}");
        }
    }

    /// The first element matching the CSS selector `css`, waiting for one to appear (at most
    /// [`WAIT`]).
    pub async fn wait_for(&self, css: &str) -> Element {
        match self.client.wait().at_most(WAIT).every(POLL).for_element(Locator::Css(css)).await {
            Ok(element) => element,
            Err(CmdError::WaitTimeout) => panic!("no element matches {css:?} within {WAIT:?} on {}", self.url().await),
            Err(e) => panic!("looking for {css:?} on {}: {e}", self.url().await),
        }
    }

    /// Waits (at most [`WAIT`]) until the first element matching `css` has a text containing
    /// `needle`, and returns that element.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> Element {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut last = format!("no element matches {css:?}");
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                match element.text().await {
                    Ok(text) if text.contains(needle) => return element,
                    Ok(text) => last = format!("{css:?} reads {text:?}"),
                    // Replaced by a re-render between the two calls: look again.
                    Err(e) => last = format!("{css:?} could not be read: {e}"),
                }
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("{css:?} did not come to contain {needle:?} within {WAIT:?} on {}: {last}", self.url().await);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for the field matching `css`, clears it and types `value` into it.
    pub async fn fill(&self, css: &str, value: &str) {
        let field = self.wait_for(css).await;
        if let Err(e) = field.clear().await {
            panic!("clearing {css:?}: {e}");
        }
        if let Err(e) = field.send_keys(value).await {
            panic!("typing into {css:?}: {e}");
        }
    }

    /// Waits for the element matching `css` and clicks it.
    pub async fn click(&self, css: &str) {
        if let Err(e) = self.wait_for(css).await.click().await {
            panic!("clicking {css:?}: {e}");
        }
    }

    /// Chooses the file at `path` in the `<input type=file>` matching `css`.
    pub async fn upload(&self, css: &str, path: &Path) {
        let path =
            std::fs::canonicalize(path).unwrap_or_else(|e| panic!("no file to upload at {}: {e}", path.display()));
        let input = self.wait_for(css).await;
        if let Err(e) = input.send_keys(&path.to_string_lossy()).await {
            panic!("choosing {} in {css:?}: {e}", path.display());
        }
    }

    /// Resizes the window (the browser starts at 1280×900), e.g. to a phone's 390×844.
    pub async fn set_window_size(&self, width: u32, height: u32) {
        if let Err(e) = self.client.set_window_size(width, height).await {
            panic!("resizing the window to {width}×{height}: {e}");
        }
    }

    /// Saves a PNG of the visible page as `<target dir>/console-screenshots/<name>.png` and
    /// returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap_or_else(|e| panic!("screenshot {name:?}: {e}"));
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// Ends the session (the browser quits), then stops chromedriver.
    pub async fn close(self) {
        let Self { client, driver } = self;
        if let Err(e) = client.close().await {
            panic!("closing the browser session: {e}\nchromedriver's log:\n{}", driver.log_tail());
        }
    }

    /// The page's URL, for messages.
    async fn url(&self) -> String {
        self.client.current_url().await.map_or_else(|e| format!("(no URL: {e})"), |u| u.to_string())
    }
}

/// Where [`Browser::screenshot`] saves: `console-screenshots` in `CARGO_TARGET_DIR`, else in
/// the workspace's `target`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("console-screenshots")
}

/// `CASCADE_CHROMEDRIVER`, else `/usr/bin/chromedriver`, else `chromedriver` on `PATH`.
fn chromedriver() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CASCADE_CHROMEDRIVER").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(executable(&path), "CASCADE_CHROMEDRIVER={} is not an executable file", path.display());
        return Some(path);
    }
    Some(PathBuf::from("/usr/bin/chromedriver")).filter(|p| executable(p)).or_else(|| on_path("chromedriver"))
}

/// Debian's `/usr/bin/chromium`, else a Chromium or Chrome on `PATH`; `None` leaves the choice
/// to chromedriver.
fn chromium() -> Option<PathBuf> {
    Some(PathBuf::from("/usr/bin/chromium")).filter(|p| executable(p)).or_else(|| {
        ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"].into_iter().find_map(on_path)
    })
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| executable(p))
}

fn executable(path: &Path) -> bool {
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A chromedriver process, leader of its own process group so that the browsers it starts can
/// be killed with it. Its stdout and stderr go to `chromedriver.log` in a directory of its own,
/// which is kept when the test fails; its `TMPDIR` (the browser's profile, Chromium's shared
/// memory files) is a `tmp` beside the log, always removed.
#[derive(Debug)]
struct Driver {
    child: Child,
    url: String,
    dir: PathBuf,
    log: PathBuf,
}

impl Driver {
    /// Starts chromedriver on a free port and waits (at most [`WAIT`]) until its `/status`
    /// says it is ready.
    async fn start(chromedriver: &Path) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("cascade-browser-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("browser dir");
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).expect("browser temporary dir");
        let log = dir.join("chromedriver.log");
        let stdout = OpenOptions::new().create(true).append(true).open(&log).expect("log file");
        let stderr = stdout.try_clone().expect("log file");
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            // Chromium's own stderr into the log: why it would not start.
            .arg("--enable-chrome-logs")
            .env("TMPDIR", &tmp)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("could not run {}: {e}", chromedriver.display()));
        let mut driver = Self { child, url: format!("http://127.0.0.1:{port}"), dir, log };

        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("HTTP client");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(response) = http.get(format!("{}/status", driver.url)).send().await
                && let Ok(status) = response.json::<Value>().await
                && status["value"]["ready"] == true
            {
                return driver;
            }
            if let Ok(Some(status)) = driver.child.try_wait() {
                panic!("{} exited with {status}:\n{}", chromedriver.display(), driver.log_tail());
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("{} was not ready within {WAIT:?}:\n{}", chromedriver.display(), driver.log_tail());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The last lines of chromedriver's log.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and every browser process it started.
        let _ =
            Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).stderr(Stdio::null()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(self.dir.join("tmp"));
        if std::thread::panicking() {
            eprintln!("chromedriver's log is kept: {}", self.log.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
