//! The console's test helpers: a `certwright-ca` process with its admin listener,
//! operators, signing in over HTTP (reqwest), and a headless Chromium driven through
//! chromedriver (fantoccini) with screenshots into docs/console/ when
//! `CERTWRIGHT_CONSOLE_SCREENSHOTS` is set.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::StatusCode;

use super::{ca_bin, free_port, require_binary, run_ok, CaProcess, ProcessGuard};

/// A CA with its admin listener (and so the console) on a free loopback port.
pub(crate) fn start_ca(guard: &mut ProcessGuard, dir: &Path) -> (CaProcess, String) {
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let ca = CaProcess::start_with_args(
        ca_bin(),
        guard,
        &dir.join("ca"),
        listen,
        free_port(),
        &["--admin-listen", &admin.to_string()],
    );
    (ca, format!("http://{admin}"))
}

/// Runs `certwright-ca ARGS --data-dir <the CA's>`; returns stdout.
pub(crate) fn ca_command(ca: &CaProcess, args: &[&str]) -> String {
    let mut cmd = Command::new(ca_bin());
    cmd.args(args).arg("--data-dir").arg(&ca.data_dir);
    let out = run_ok(
        &format!("certwright-ca {}", args.join(" ")),
        &mut cmd,
        Duration::from_secs(60),
        &ca.logs(),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Adds operator `name` with `role` and its password read from standard input.
pub(crate) fn add_operator(ca: &CaProcess, name: &str, role: &str, password: &str) {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "printf '%s\\n' \"$PW\" | \"$BIN\" operator add \"$NAME\" --role \"$ROLE\" --data-dir \"$DIR\"",
    ])
    .env("PW", password)
    .env("BIN", ca_bin())
    .env("NAME", name)
    .env("ROLE", role)
    .env("DIR", &ca.data_dir);
    run_ok(
        "certwright-ca operator add",
        &mut cmd,
        Duration::from_secs(60),
        &ca.logs(),
    );
}

/// A URL-encoded form body (reqwest's `form` feature is off in this workspace).
pub(crate) trait FormPairs {
    fn form_pairs(self, pairs: &[(&str, &str)]) -> Self;
}

impl FormPairs for reqwest::RequestBuilder {
    fn form_pairs(self, pairs: &[(&str, &str)]) -> Self {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    }
}

pub(crate) fn client() -> reqwest::Client {
    client_builder().build().unwrap()
}

pub(crate) fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .no_proxy()
}

/// The `name=value` of the cookie `name` a response sets, with its attributes.
pub(crate) fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// The value of the hidden `csrf` field of a page.
pub(crate) fn csrf_field(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

/// Signs in: (the session cookie as a `Cookie` header, the session's CSRF token), or
/// the refusal's status.
pub(crate) async fn sign_in(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    password: &str,
) -> Result<(String, String), StatusCode> {
    let page = http
        .get(format!("{base}/console/sign-in"))
        .send()
        .await
        .unwrap();
    let login = set_cookie(&page, "certwright_console_login").unwrap();
    let login = login.split(';').next().unwrap().to_owned();
    let csrf = csrf_field(&page.text().await.unwrap());
    let r = http
        .post(format!("{base}/console/sign-in"))
        .header(COOKIE, &login)
        .form_pairs(&[
            ("csrf", csrf.as_str()),
            ("name", name),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    if r.status() != StatusCode::SEE_OTHER {
        return Err(r.status());
    }
    let cookie = set_cookie(&r, "certwright_console").unwrap();
    for attribute in ["; HttpOnly", "; SameSite=Strict", "; Path=/console"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    // `Secure` exactly when the admin listener speaks TLS.
    assert_eq!(
        cookie.contains("; Secure"),
        base.starts_with("https://"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let dashboard = http
        .get(format!("{base}/console/dashboard"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(dashboard.status(), StatusCode::OK);
    let csrf = csrf_field(&dashboard.text().await.unwrap());
    Ok((cookie, csrf))
}

/// A runtime for a test's HTTP steps (the CA process is started outside it).
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Waits (bounded) until something accepts connections on `addr`.
pub(crate) fn wait_listening(addr: SocketAddr, what: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} is not listening on {addr}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Where screenshots go when `CERTWRIGHT_CONSOLE_SCREENSHOTS` is set.
pub(crate) fn screenshot_dir() -> Option<PathBuf> {
    std::env::var_os("CERTWRIGHT_CONSOLE_SCREENSHOTS")
        .filter(|v| !v.is_empty() && v != "0")
        .map(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/console"))
}

pub(crate) async fn screenshot(browser: &fantoccini::Client, name: &str) {
    if let Some(dir) = screenshot_dir() {
        std::fs::create_dir_all(&dir).unwrap();
        let png = browser.screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

/// Bounded wait for an element.
pub(crate) async fn find(browser: &fantoccini::Client, css: &str) -> fantoccini::elements::Element {
    browser
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(fantoccini::Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css:?} on the page: {e}"))
}

/// chromedriver on a free loopback port, stopped with `guard`; returns the port.
pub(crate) fn start_chromedriver(guard: &mut ProcessGuard) -> u16 {
    require_binary("chromedriver");
    require_binary("chromium");
    let port = free_port();
    let driver = certwright_testkit::process::spawn(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    guard.push(driver);
    wait_listening(
        format!("127.0.0.1:{port}").parse().unwrap(),
        "chromedriver",
        Duration::from_secs(60),
    );
    port
}

/// A headless Chromium (1200x900) through the chromedriver on `port`, its profile in
/// `profile`.
pub(crate) async fn open_browser(port: u16, profile: &Path) -> fantoccini::Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-proxy-server", "--window-size=1200,900",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    tokio::time::timeout(
        Duration::from_secs(120),
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}")),
    )
    .await
    .expect("chromedriver started a browser in time")
    .expect("a WebDriver session")
}
