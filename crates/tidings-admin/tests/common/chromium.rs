//! Headless Chromium driven over chromedriver's WebDriver HTTP API, for the dashboard tests.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const DRIVER: &str = "/usr/bin/chromedriver";

/// Kills the chromedriver we started, however the test ends.
pub struct Driver(pub Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Clone)]
pub struct WebDriver {
    pub http: reqwest::Client,
    pub base: String,
}

impl WebDriver {
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "webdriver {path}: {status} {v}");
        v
    }

    pub async fn find(&self, session: &str, css: &str) -> Option<String> {
        let resp = self
            .http
            .post(format!("{}/session/{session}/element", self.base))
            .json(&json!({ "using": "css selector", "value": css }))
            .send()
            .await
            .unwrap();
        if !resp.status().is_success() {
            return None;
        }
        let v: Value = resp.json().await.unwrap();
        // The W3C element reference: a one-entry object keyed by the web element identifier.
        v["value"]
            .as_object()?
            .iter()
            .find(|(k, _)| k.starts_with("element-"))
            .and_then(|(_, id)| id.as_str())
            .map(str::to_string)
    }

    pub async fn text(&self, session: &str, css: &str) -> Option<String> {
        let el = self.find(session, css).await?;
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/session/{session}/element/{el}/text"),
                None,
            )
            .await;
        v["value"].as_str().map(str::to_string)
    }

    pub async fn click(&self, session: &str, css: &str) {
        let el = self
            .find(session, css)
            .await
            .unwrap_or_else(|| panic!("no `{css}` on the page"));
        self.call(
            reqwest::Method::POST,
            &format!("/session/{session}/element/{el}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Clicks `css` from inside the page, in one step: the dashboard rebuilds its tables
    /// every 2 s, so an element found first and clicked after may be gone. With `confirm`
    /// answered yes.
    pub async fn click_now(&self, session: &str, css: &str) {
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("/session/{session}/execute/sync"),
                Some(json!({
                    "script": "window.confirm = () => true; const b = document.querySelector(arguments[0]); if (!b) return false; b.click(); return true;",
                    "args": [css],
                })),
            )
            .await;
        assert_eq!(v["value"], json!(true), "no `{css}` on the page");
    }

    pub async fn type_into(&self, session: &str, css: &str, text: &str) {
        let el = self
            .find(session, css)
            .await
            .unwrap_or_else(|| panic!("no `{css}` on the page"));
        self.call(
            reqwest::Method::POST,
            &format!("/session/{session}/element/{el}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Polls until `css`'s text satisfies `pred` (10 s at most).
    pub async fn wait_text(&self, session: &str, css: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut last = None;
        for _ in 0..100 {
            last = self.text(session, css).await;
            if last.as_deref().is_some_and(&pred) {
                return last.unwrap_or_default();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let source = self
            .call(
                reqwest::Method::GET,
                &format!("/session/{session}/source"),
                None,
            )
            .await;
        let page = source["value"].as_str().unwrap_or_default();
        let body = page.find("<main>").map_or(page, |i| &page[i..]);
        let body = body.find("<script>").map_or(body, |j| &body[..j]);
        panic!("`{css}` never showed the expected text; last: {last:?}\npage:\n{body}");
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether Chromium and chromedriver are installed; outside CI a missing one skips the
/// test (false, with the reason printed), with CI=true it fails.
pub fn available() -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(DRIVER).exists() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but {CHROMIUM} / {DRIVER} are missing: apt-get install -y chromium chromium-driver");
    }
    eprintln!("skipped: {CHROMIUM} or {DRIVER} not installed (apt-get install -y chromium chromium-driver)");
    false
}

/// A running chromedriver (killed on drop) and a headless Chromium session in it, with
/// its own profile directory.
pub struct Browser {
    pub wd: WebDriver,
    pub sid: String,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a session (window `width` x `height`).
    pub async fn start(width: u32, height: u32) -> Browser {
        let port = free_port();
        let driver = Driver(
            Command::new(DRIVER)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let wd = WebDriver {
            http: reqwest::Client::new(),
            base: format!("http://127.0.0.1:{port}"),
        };
        let mut up = false;
        for _ in 0..100 {
            if let Ok(r) = wd.http.get(format!("{}/status", wd.base)).send().await {
                if r.status().is_success() {
                    up = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(up, "chromedriver did not start on port {port}");
        let profile = tempfile::tempdir().unwrap();
        let session = wd
            .call(
                reqwest::Method::POST,
                "/session",
                Some(json!({ "capabilities": { "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": [
                            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                            "--disable-background-networking", "--disable-component-update",
                            "--disable-sync", "--disable-dev-shm-usage", "--disable-breakpad",
                            format!("--window-size={width},{height}"),
                            format!("--user-data-dir={}", profile.path().display()),
                        ]
                    }
                }}})),
            )
            .await;
        let sid = session["value"]["sessionId"].as_str().unwrap().to_string();
        Browser {
            wd,
            sid,
            _driver: driver,
            _profile: profile,
        }
    }

    /// Ends the session.
    pub async fn quit(&self) {
        self.wd
            .call(
                reqwest::Method::DELETE,
                &format!("/session/{}", self.sid),
                None,
            )
            .await;
    }
}
