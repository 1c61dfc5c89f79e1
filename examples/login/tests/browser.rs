//! The login example in a real browser: headless Chromium driven through
//! chromedriver's WebDriver API (plain JSON over HTTP/1.1 on a local socket;
//! no WebDriver client crate needed).
//!
//! Needs the Debian packages `chromium` and `chromium-driver` (`cargo xtask
//! test` installs them). `CHROMEDRIVER` and `CHROMIUM` override where the
//! binaries are looked for (default: `chromedriver` and `chromium` on `PATH`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use login::{HashParams, Users, app, create_demo_user, session_config};
use serde_json::{Value, json};
use session_axum::SessionLayer;
use session_axum::memory::MemoryStore;

/// The key of a WebDriver element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

const MISSING: &str = "install the Debian packages `chromium` and `chromium-driver` \
    (`cargo xtask test` installs them), or point CHROMEDRIVER / CHROMIUM at the binaries";

/// `$env`, or the first of `names` found on `PATH`.
fn find_binary(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Serves the example with the memory store on 127.0.0.1:<free port>, on its
/// own runtime thread; returns the address and the demo password.
fn start_site() -> (SocketAddr, String) {
    let users = Users::with_params(cheap_hashing()).unwrap();
    let demo = create_demo_user(&users).unwrap();
    let site = app(
        users,
        SessionLayer::new(MemoryStore::new())
            .with_config(session_config())
            .expect("a valid session config"),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, site).await.unwrap();
        });
    });
    (address, demo.password)
}

/// chromedriver with one Chromium session. Dropping it ends the session
/// (closing Chromium) and kills chromedriver.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
    /// Chromium's fresh profile and chromedriver's log.
    scratch: tempfile::TempDir,
}

impl Browser {
    fn start() -> Self {
        let chromedriver = find_binary("CHROMEDRIVER", &["chromedriver"])
            .unwrap_or_else(|| panic!("chromedriver not found: {MISSING}"));
        let chromium = find_binary("CHROMIUM", &["chromium", "chromium-browser"])
            .unwrap_or_else(|| panic!("chromium not found: {MISSING}"));
        let scratch = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", scratch.path().join("chromedriver.log").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}; {MISSING}", chromedriver.display()));
        let mut browser = Self { driver, port, session: String::new(), scratch };
        browser.wait_until_ready();
        browser.session = browser.new_session(&chromium);
        browser
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(status) = webdriver(self.port, "GET", "/status", None)
                && status["ready"] == json!(true)
            {
                return;
            }
            if let Ok(Some(exit)) = self.driver.try_wait() {
                panic!("chromedriver exited with {exit}; log: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready after 30 s; log: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn new_session(&self, chromium: &Path) -> String {
        let profile = self.scratch.path().join("profile");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--disable-dev-shm-usage",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": chromium, "args": args },
                }
            }
        });
        let created = webdriver(self.port, "POST", "/session", Some(&capabilities))
            .unwrap_or_else(|e| panic!("starting Chromium failed: {e}; log: {}", self.log()));
        created["sessionId"].as_str().expect("a session id").to_owned()
    }

    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.scratch.path().join("chromedriver.log"))
            .unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        webdriver(self.port, method, &path, body).unwrap_or_else(|e| panic!("{e}"))
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", Some(&json!({ "url": url })));
    }

    fn url(&self) -> String {
        self.call("GET", "/url", None).as_str().unwrap().to_owned()
    }

    /// Waits (up to 10 s) for the page at a URL ending with `suffix`.
    fn wait_for_url(&self, suffix: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.url().ends_with(suffix) {
            assert!(
                Instant::now() < deadline,
                "expected a URL ending in {suffix:?}, at {}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn find(&self, css: &str) -> String {
        let found =
            self.call("POST", "/element", Some(&json!({ "using": "css selector", "value": css })));
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {found}")).to_owned()
    }

    fn exists(&self, css: &str) -> bool {
        let found =
            self.call("POST", "/elements", Some(&json!({ "using": "css selector", "value": css })));
        found.as_array().is_some_and(|elements| !elements.is_empty())
    }

    fn text(&self, css: &str) -> String {
        let element = self.find(css);
        self.call("GET", &format!("/element/{element}/text"), None).as_str().unwrap().to_owned()
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.call("POST", &format!("/element/{element}/value"), Some(&json!({ "text": text })));
    }

    fn click(&self, css: &str) {
        let element = self.find(css);
        self.call("POST", &format!("/element/{element}/click"), Some(&json!({})));
    }

    fn script(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", Some(&json!({ "script": script, "args": [] })))
    }

    /// Every cookie the browser holds for the current page, `HttpOnly` ones
    /// included.
    fn cookies(&self) -> Vec<Value> {
        self.call("GET", "/cookie", None).as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = webdriver(self.port, "DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One WebDriver command; the `value` of a successful answer.
fn webdriver(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let fail = |e: std::io::Error| format!("{method} {path}: {e}");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(fail)?;
    stream.set_read_timeout(Some(Duration::from_secs(90))).map_err(fail)?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(fail)?;
    // chromedriver keeps connections alive whatever we ask: read exactly one
    // response (Content-Length or chunked), never until EOF.
    let (status, payload) = read_response(&mut stream).map_err(fail)?;
    let answer: Value = serde_json::from_str(&payload)
        .map_err(|e| format!("{method} {path}: {status}, not JSON ({e}): {payload:.300}"))?;
    if status != "200" {
        return Err(format!("{method} {path}: {status} {answer}"));
    }
    Ok(answer["value"].clone())
}

/// The status code and body of one HTTP/1.1 response.
fn read_response(stream: &mut TcpStream) -> std::io::Result<(String, String)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            return Err(std::io::Error::other("connection closed before the headers ended"));
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let status = head.split(' ').nth(1).unwrap_or("?").to_owned();
    let mut body = buffer.split_off(head_end);
    let header = |name: &str| {
        head.lines().find_map(|line| line.strip_prefix(name).map(|value| value.trim().to_owned()))
    };
    let mut read_more = |stream: &mut TcpStream, body: &mut Vec<u8>| -> std::io::Result<()> {
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            return Err(std::io::Error::other("connection closed mid-body"));
        }
        body.extend_from_slice(&chunk[..read]);
        Ok(())
    };
    if let Some(length) = header("content-length:") {
        let length: usize = length.parse().map_err(std::io::Error::other)?;
        while body.len() < length {
            read_more(stream, &mut body)?;
        }
        body.truncate(length);
    } else if header("transfer-encoding:").is_some_and(|value| value.contains("chunked")) {
        while !body.ends_with(b"0\r\n\r\n") {
            read_more(stream, &mut body)?;
        }
        body = dechunk(&body);
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|window| window == b"\r\n") {
        let size = String::from_utf8_lossy(&body[..line_end]);
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        let rest = &body[line_end + 2..];
        if size == 0 || rest.len() < size {
            break;
        }
        out.extend_from_slice(&rest[..size]);
        body = rest[size..].strip_prefix(b"\r\n").unwrap_or(&rest[size..]);
    }
    out
}

/// Argon2id at 1 MiB and one pass: fast in debug builds. The site's own
/// default is OWASP's 19 MiB, two passes.
fn cheap_hashing() -> HashParams {
    HashParams::new(1024, 1, 1, None).unwrap()
}

#[test]
fn log_in_see_the_protected_page_log_out_in_chromium() {
    let (site, password) = start_site();
    let base = format!("http://{site}");
    let browser = Browser::start();

    // Anonymous: the protected page sends us to the login form, keeping `next`.
    browser.go(&format!("{base}/account"));
    browser.wait_for_url("/login?next=/account");
    assert!(browser.exists("#login-form"));

    // A wrong password: back on the form, told so once, `next` kept.
    browser.type_into("input[name=username]", "demo");
    browser.type_into("input[name=password]", "not-the-password");
    browser.click("#login");
    browser.wait_for_url("/login?next=%2Faccount");
    assert_eq!(browser.text(".flash.error"), "Wrong user name or password.");

    // Log in through the form.
    browser.type_into("input[name=username]", "demo");
    browser.type_into("input[name=password]", &password);
    browser.click("#login");
    browser.wait_for_url("/account");
    assert_eq!(browser.text("#welcome"), "Welcome, demo. Only logged-in users see this page.");

    // The browser kept the session cookie (Secure, on http://127.0.0.1) and
    // scripts cannot see it (HttpOnly).
    let cookies = browser.cookies();
    let session = cookies
        .iter()
        .find(|cookie| cookie["name"] == "id")
        .unwrap_or_else(|| panic!("no session cookie in {cookies:?}"));
    assert_eq!(session["httpOnly"], json!(true), "{session}");
    assert_eq!(session["secure"], json!(true), "{session}");
    let visible = browser.script("return document.cookie;");
    assert!(!visible.as_str().unwrap().contains("id="), "document.cookie = {visible}");

    // My sessions: this one, marked.
    browser.go(&format!("{base}/sessions"));
    assert!(browser.text("#current-session").contains("this device"));

    // Log out (a POST form); the protected page sends us back to the login form.
    // A form whose CSRF token was tampered with is refused with the site's
    // 403 page, and the session is untouched.
    browser.script(
        "document.querySelector('#logout').form.querySelector('[name=csrf_token]').value = 'forged';",
    );
    browser.click("#logout");
    browser.wait_for_url("/logout");
    assert!(browser.text("body").contains("This form was refused"), "{}", browser.text("body"));
    browser.go(&format!("{base}/sessions"));
    assert!(browser.text("#current-session").contains("this device"));

    // The logged-out page says so once, from a flash message kept in a new,
    // anonymous session: the logged-in session's id is gone from the browser.
    let logged_in_id = session["value"].clone();
    browser.click("#logout");
    browser.wait_for_url("/login");
    assert_eq!(browser.text(".flash.success"), "You have been logged out.");
    let ids: Vec<Value> = browser
        .cookies()
        .into_iter()
        .filter(|cookie| cookie["name"] == "id")
        .map(|cookie| cookie["value"].clone())
        .collect();
    assert!(!ids.contains(&logged_in_id), "the logged-in id is still held: {ids:?}");
    browser.go(&format!("{base}/login"));
    assert!(!browser.exists(".flash"), "a flash message is shown once");
    browser.go(&format!("{base}/account"));
    browser.wait_for_url("/login?next=/account");
    assert!(browser.exists("#login-form"));
}
