//! Harness for the browser tests (`tests/e2e/browser.rs`): Debian's `chromium`, headless,
//! driven through `chromedriver` over WebDriver (fantoccini).
//!
//! - [`Browser::start`] starts `chromedriver` on a free loopback port in a process group of
//!   its own, then one headless Chromium session with a fresh profile. `None` (after
//!   [`crate::skip_unless_required`]) when either program is missing.
//! - Every WebDriver call is bounded ([`STEP`]); on drop the session is closed and the whole
//!   process group (chromedriver and the Chromium it started) is killed, even after a panic.
//! - [`Browser::axe`] injects axe-core (`tests/browser/node_modules/axe-core/axe.min.js`,
//!   installed by `npm ci` there) into the page and returns its violations.
//! - [`Browser::screenshot`] saves a PNG under `target/browser-screenshots/`.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::daemon::wait_until;

/// Set by `.ci/run`: the browser tests fail instead of skipping without chromium.
pub const REQUIRE_VAR: &str = "DRIFTWATCH_REQUIRE_BROWSER";

/// The longest one WebDriver step (navigation, click, script) may take.
pub const STEP: Duration = Duration::from_secs(30);

/// Chromium's switches: headless, no sandbox (CI runs as root), and nothing that talks to
/// the network on its own.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
];

/// A program on `PATH` (or in Debian's place for it).
fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/usr/lib/chromium".into()])
        .collect();
    names
        .iter()
        .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// The workspace's `target/` (above this test executable).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    exe.ancestors()
        .find(|dir| dir.file_name().is_some_and(|n| n == "target"))
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir)
}

/// Where screenshots go: `target/browser-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    target_dir().join("browser-screenshots")
}

/// axe-core's script, installed by `npm ci` in `tests/browser/`.
pub fn axe_script() -> Option<String> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(path).ok()
}

/// A headless Chromium session and the chromedriver behind it.
pub struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    _profile: TempDir,
}

impl Browser {
    /// Starts chromedriver and a Chromium session `width` × `height`; `None` (skipped)
    /// when chromium, chromedriver or axe-core is missing and `.ci/run` did not require them.
    #[track_caller]
    pub fn start(width: u32, height: u32) -> Option<Browser> {
        let chromium = find_program(&["chromium", "chromium-browser"]);
        let driver = find_program(&["chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            crate::skip_unless_required(
                REQUIRE_VAR,
                "the browser tests need Debian's chromium and chromium-driver \
                 (apt-get install chromium chromium-driver)",
            );
            return None;
        };
        if axe_script().is_none() {
            crate::skip_unless_required(
                REQUIRE_VAR,
                "the browser tests need axe-core: run `npm ci` in tests/browser",
            );
            return None;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let port = free_port();
        let mut command = Command::new(&driver);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let driver_child = command
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
        let profile = tempfile::Builder::new()
            .prefix("driftwatch-chromium-")
            .tempdir()
            .expect("a profile dir");
        let mut browser = Browser {
            runtime,
            client: None,
            driver: driver_child,
            _profile: profile,
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        assert!(
            wait_until(Duration::from_secs(30), || std::net::TcpStream::connect(
                addr
            )
            .is_ok()),
            "chromedriver did not listen on {addr}"
        );
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(ToString::to_string).collect();
        args.push(format!(
            "--user-data-dir={}",
            browser._profile.path().display()
        ));
        args.push(format!("--window-size={width},{height}"));
        let mut options = json!({ "binary": chromium, "args": args });
        if width < 600 {
            // Chromium's windows are at least 500 px wide: a phone's width is emulated.
            options["mobileEmulation"] = json!({
                "deviceMetrics": { "width": width, "height": height, "pixelRatio": 1.0 }
            });
        }
        let capabilities = json!({ "browserName": "chrome", "goog:chromeOptions": options });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("an object")
        };
        let url = format!("http://{addr}");
        let client = browser.bounded("start a Chromium session", async {
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities)
                .connect(&url)
                .await
        });
        browser.client = Some(client);
        Some(browser)
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("a session")
    }

    /// Runs one WebDriver step, failing the test after [`STEP`].
    #[track_caller]
    fn bounded<T, E: std::fmt::Debug>(
        &self,
        what: &str,
        step: impl Future<Output = Result<T, E>>,
    ) -> T {
        match self
            .runtime
            .block_on(async { tokio::time::timeout(STEP, step).await })
        {
            Ok(Ok(value)) => value,
            Ok(Err(err)) => panic!("{what}: {err:?}"),
            Err(_) => panic!("{what}: no answer within {STEP:?}"),
        }
    }

    /// Opens `url` and waits for the page to load.
    #[track_caller]
    pub fn goto(&self, url: &str) {
        self.bounded(&format!("open {url}"), self.client().goto(url));
    }

    /// The address the browser shows.
    #[track_caller]
    pub fn url(&self) -> String {
        self.bounded("read the address", self.client().current_url())
            .to_string()
    }

    /// The page's text as a person reads it (`document.body.innerText`).
    #[track_caller]
    pub fn text(&self) -> String {
        self.script(
            "return document.body ? document.body.innerText : '';",
            vec![],
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// How many elements match `css`.
    #[track_caller]
    pub fn count(&self, css: &str) -> usize {
        self.bounded(
            &format!("find {css}"),
            self.client().find_all(Locator::Css(css)),
        )
        .len()
    }

    /// Types `text` into the element `css`.
    #[track_caller]
    pub fn fill(&self, css: &str, text: &str) {
        let element = self.bounded(
            &format!("find {css}"),
            self.client().find(Locator::Css(css)),
        );
        self.bounded(&format!("type into {css}"), element.send_keys(text));
    }

    /// Clicks the element `css` (a real pointer click: it must be visible and enabled).
    #[track_caller]
    pub fn click(&self, css: &str) {
        let element = self.bounded(
            &format!("find {css}"),
            self.client().find(Locator::Css(css)),
        );
        self.bounded(&format!("click {css}"), element.click());
    }

    /// Chooses the option whose value is `value` in the `<select>` `css`.
    #[track_caller]
    pub fn select(&self, css: &str, value: &str) {
        let element = self.bounded(
            &format!("find {css}"),
            self.client().find(Locator::Css(css)),
        );
        self.bounded(
            &format!("choose {value} in {css}"),
            element.select_by_value(value),
        );
    }

    /// Runs `script` (a function body) in the page.
    #[track_caller]
    pub fn script(&self, script: &str, args: Vec<Value>) -> Value {
        self.bounded("run a script", self.client().execute(script, args))
    }

    /// Runs `script`, whose last argument is the callback that ends it.
    #[track_caller]
    pub fn script_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.bounded(
            "run an async script",
            self.client().execute_async(script, args),
        )
    }

    /// The page's viewport width in CSS pixels.
    #[track_caller]
    pub fn viewport_width(&self) -> u64 {
        self.script("return window.innerWidth;", vec![])
            .as_u64()
            .unwrap_or(0)
    }

    /// Whether the page is wider than the window (a horizontal scroll bar on the page
    /// itself, not inside a scrolling table).
    #[track_caller]
    pub fn overflows(&self) -> bool {
        self.script(
            "return document.documentElement.scrollWidth > window.innerWidth + 1;",
            vec![],
        )
        .as_bool()
        .unwrap_or(true)
    }

    /// Saves the page as `target/browser-screenshots/{name}.png`.
    #[track_caller]
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.bounded("take a screenshot", self.client().screenshot());
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// axe-core's violations on the page, as "rule: help (targets)" lines.
    #[track_caller]
    pub fn axe(&self) -> Vec<String> {
        let source = axe_script().expect("checked at start");
        // Evaluated through WebDriver, which the page's Content-Security-Policy does not
        // govern: the console itself never allows inline or foreign script.
        self.script(&format!("{source}\n;return typeof axe;"), vec![]);
        let result = self.script_async(
            "var done = arguments[arguments.length - 1];\
             axe.run(document, { resultTypes: ['violations'] })\
               .then(function (r) { done(r.violations); })\
               .catch(function (e) { done([{ id: 'axe-error', help: String(e), nodes: [] }]); });",
            vec![],
        );
        result
            .as_array()
            .expect("axe's violations")
            .iter()
            .map(|v| {
                let targets: Vec<String> = v["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|n| {
                        format!(
                            "{} {}",
                            n["target"],
                            n["failureSummary"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                format!(
                    "{} ({}): {} [{}]",
                    v["id"].as_str().unwrap_or("?"),
                    v["impact"].as_str().unwrap_or("?"),
                    v["help"].as_str().unwrap_or("?"),
                    targets.join("; ")
                )
            })
            .collect()
    }

    /// Signs in with `token` through the sign-in form and waits to leave it.
    #[track_caller]
    pub fn sign_in(&self, base: &str, token: &str) {
        self.goto(&format!("{base}/ui/sign-in"));
        self.fill("#token", token);
        self.click("form.card button[type=submit]");
        assert!(
            self.wait_for(|| !self.url().contains("/ui/sign-in")),
            "sign-in did not leave the form: {}",
            self.text()
        );
    }

    /// Polls `condition` (bounded by [`STEP`]).
    pub fn wait_for(&self, mut condition: impl FnMut() -> bool) -> bool {
        wait_until(STEP, &mut condition)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), client.close()).await
            });
        }
        // chromedriver and the Chromium it started share its process group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}
