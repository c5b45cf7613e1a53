//! The console's long browser scenario (docs/console.md, "The scenario test"), on one
//! `certwright-ca` process and one headless Chromium: an admin signs in; a short-lived
//! certificate that the certwright client got shows on Renewal health; the admin revokes
//! it in the browser and the CRL and `openssl ocsp` say revoked; creates an EAB key in
//! the browser and certbot registers with it; starts a renew-early campaign for a name
//! suffix in the browser, the certwright client renews (ARI), and the campaign's page
//! shows 1 of 1 replaced; the account page shows the account and deactivates it. With
//! `CERTWRIGHT_CONSOLE_SCREENSHOTS=1` it saves the campaign and account pages into
//! docs/console/.

mod harness;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::Client as Browser;
use support::console::{
    add_operator, ca_command, client, find, open_browser, runtime, screenshot, sign_in, start_ca,
    start_chromedriver,
};
use support::{
    certbot_command, client_bin, crl_entries, dns, openssl, run_bounded, run_ok, CaProcess,
    ProcessGuard, CLIENT_TIMEOUT,
};

/// The `certwright` client, with its own state directory, against `ca`.
struct Certwright {
    server: String,
    root: PathBuf,
    state: PathBuf,
    http01: String,
}

impl Certwright {
    /// Runs `certwright --json ARGS`; returns the last line of stdout, parsed.
    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut cmd = Command::new(client_bin());
        cmd.arg("--server")
            .arg(&self.server)
            .arg("--ca-cert")
            .arg(&self.root)
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--json")
            .args(args)
            .env_remove("CERTWRIGHT_TEST_TIME_OFFSET");
        let out = run_bounded(&mut cmd, CLIENT_TIMEOUT);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "certwright {args:?}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(stdout.lines().last().unwrap_or("null")).unwrap()
    }

    /// Issues a certificate for `name` (http-01 standalone), with `profile` if given;
    /// returns its serial.
    fn issue(&self, name: &str, profile: Option<&str>) -> String {
        let mut args = vec!["issue", "-d", name, "--http01-listen", &self.http01];
        if let Some(p) = profile {
            args.extend(["--profile", p]);
        }
        let v = self.json(&args);
        assert_eq!(v["action"], "issued", "{v}");
        v["serial"].as_str().unwrap().to_owned()
    }

    fn cert_dir(&self, name: &str) -> PathBuf {
        self.state.join("certs").join(name)
    }
}

#[test]
fn an_operator_renews_revokes_binds_and_runs_a_campaign_in_the_browser() {
    let started = Instant::now();
    let _dns = dns();
    let tmp = tempfile::tempdir().unwrap();
    let mut guard = ProcessGuard::default();
    let (ca, base) = start_ca(&mut guard, tmp.path());
    add_operator(&ca, "ada", "admin", "scenario password 321");
    let cw = Certwright {
        server: ca.directory_url.clone(),
        root: ca.root_path(),
        state: tmp.path().join("certwright"),
        http01: format!("127.0.0.1:{}", ca.http01_port),
    };
    // A short-lived certificate (7 days: at risk within 8 days), and one that the campaign
    // will ask to renew.
    let short = cw.issue("short.scenario.certwright.test", Some("shortlived"));
    let app = cw.issue("app.fleet.certwright.test", None);
    let port = start_chromedriver(&mut guard);
    let profile = tmp.path().join("chromium-profile");
    let s = Scenario {
        ca: &ca,
        base: &base,
        cw: &cw,
        dir: tmp.path(),
    };
    runtime().block_on(s.run(port, &profile, &short, &app));
    ca.stop(&mut guard);
    eprintln!("scenario took {:?}", started.elapsed());
}

/// The same campaign from the command line (`certwright-ca renew-early --suffix`), without
/// a browser: the certwright client renews, and the campaign's page (over HTTP) says 1
/// of 1 replaced; the trail has the campaign's two entries, not one per certificate.
#[test]
fn a_campaign_from_the_command_line_is_renewed_by_certwright() {
    let _dns = dns();
    let tmp = tempfile::tempdir().unwrap();
    let mut guard = ProcessGuard::default();
    let (ca, base) = start_ca(&mut guard, tmp.path());
    add_operator(&ca, "vera", "viewer", "viewer password 654");
    let cw = Certwright {
        server: ca.directory_url.clone(),
        root: ca.root_path(),
        state: tmp.path().join("certwright"),
        http01: format!("127.0.0.1:{}", ca.http01_port),
    };
    cw.issue("api.cli.certwright.test", None);
    cw.issue("other.certwright.test", None);

    // No filter: refused, nothing written.
    let campaign_entries = || {
        ca_command(&ca, &["audit", "export"])
            .lines()
            .filter(|l| l.contains("renew_campaign") || l.contains("certificate.renew_early"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let mut cmd = Command::new(support::ca_bin());
    cmd.args(["renew-early", "--suffix", " ", "--data-dir"])
        .arg(&ca.data_dir);
    assert!(!run_bounded(&mut cmd, Duration::from_secs(60))
        .status
        .success());
    assert!(campaign_entries().is_empty());

    let out = ca_command(&ca, &["renew-early", "--suffix", "cli.certwright.test"]);
    assert!(
        out.contains("campaign 1 (suffix .cli.certwright.test): 1 certificate(s) marked"),
        "{out}"
    );
    let entries = campaign_entries();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(
        entries[0].contains("renew_campaign.start") && entries[1].contains("renew_campaign.finish"),
        "{entries:?}"
    );
    assert!(
        entries.iter().all(|e| e.contains("\"actor\":\"operator")),
        "{entries:?}"
    );

    let progress = |expected: &'static str| {
        let base = base.clone();
        runtime().block_on(async move {
            let http = client();
            let (cookie, _) = sign_in(&http, &base, "vera", "viewer password 654")
                .await
                .unwrap();
            let page = http
                .get(format!("{base}/console/campaigns/1"))
                .header(reqwest::header::COOKIE, cookie)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(page.contains(expected), "{page}");
        })
    };
    progress("0 of 1 replaced");
    let renewed = cw.json(&["renew", "api.cli.certwright.test"]);
    assert_eq!(renewed["action"], "renewed", "{renewed}");
    // The other certificate is not the campaign's: not due.
    assert_eq!(
        cw.json(&["renew", "other.certwright.test"])["action"],
        "not_due"
    );
    progress("1 of 1 replaced");
    ca.stop(&mut guard);
}

struct Scenario<'a> {
    ca: &'a CaProcess,
    base: &'a str,
    cw: &'a Certwright,
    dir: &'a Path,
}

/// Runs blocking work (processes, a client with its own runtime) off the async runtime.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| scope.spawn(f).join().unwrap())
}

/// Waits (bounded) until the page's URL contains `part`.
async fn wait_url(browser: &Browser, part: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let url = browser.current_url().await.unwrap().to_string();
        if url.contains(part) {
            return url;
        }
        assert!(Instant::now() < deadline, "never got to {part}: at {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Scenario<'_> {
    async fn run(&self, port: u16, profile: &Path, short: &str, app: &str) {
        let browser = open_browser(port, profile).await;
        let outcome =
            tokio::time::timeout(Duration::from_secs(150), self.steps(&browser, short, app)).await;
        let _ = browser.close().await;
        outcome.expect("the browser steps finished in time");
    }

    async fn goto(&self, browser: &Browser, page: &str) {
        browser.goto(&format!("{}{page}", self.base)).await.unwrap();
        find(browser, "main h1").await;
    }

    async fn text(&self, browser: &Browser, css: &str) -> String {
        find(browser, css).await.text().await.unwrap()
    }

    async fn steps(&self, browser: &Browser, short: &str, app: &str) {
        // Sign in.
        browser
            .goto(&format!("{}/console/sign-in", self.base))
            .await
            .unwrap();
        find(browser, "input[name=name]")
            .await
            .send_keys("ada")
            .await
            .unwrap();
        find(browser, "input[name=password]")
            .await
            .send_keys("scenario password 321")
            .await
            .unwrap();
        find(browser, "form.card button")
            .await
            .click()
            .await
            .unwrap();
        find(browser, ".tiles").await;

        // Renewal health: the 7-day certificate is not at risk within 5 days, and is
        // within 8 (the window moves as the clock would).
        let link = format!("a.serial[href='/console/certificates/{short}']");
        self.goto(browser, "/console/renewal?days=5").await;
        assert!(
            browser.find(fantoccini::Locator::Css(&link)).await.is_err(),
            "not at risk within 5 days"
        );
        self.goto(browser, "/console/renewal?days=8").await;
        find(browser, &link).await;

        // Revoke it in the browser (keyCompromise): on the CRL and in OCSP.
        find(browser, &link).await.click().await.unwrap();
        find(browser, "form.revoke select[name=reason] option[value='1']")
            .await
            .click()
            .await
            .unwrap();
        find(browser, "form.revoke button")
            .await
            .click()
            .await
            .unwrap();
        find(browser, "span.state.revoked").await;
        let entries = off_runtime(|| crl_entries(self.ca));
        assert!(
            entries.contains(&(short.to_owned(), Some(1))),
            "{short} on the CRL: {entries:?}"
        );
        off_runtime(|| self.ocsp_says_revoked("short.scenario.certwright.test"));

        // An EAB key made in the browser binds certbot's account.
        self.goto(browser, "/console/eab").await;
        find(browser, "form.search input[name=label]")
            .await
            .send_keys("team-certbot")
            .await
            .unwrap();
        find(browser, "form.search button")
            .await
            .click()
            .await
            .unwrap();
        let shown = self.text(browser, "section.created pre").await;
        let field = |k: &str| {
            shown
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| panic!("no {k} in {shown}"))
        };
        let (kid, hmac) = (field("kid:"), field("hmac_key:"));
        let cb = self.dir.join("certbot");
        let mut cmd = certbot_command(&cb, self.ca, "register");
        cmd.args([
            "--agree-tos",
            "-m",
            "ops@scenario.certwright.test",
            "--eab-kid",
            &kid,
            "--eab-hmac-key",
            &hmac,
        ]);
        off_runtime(|| {
            run_ok(
                "certbot register --eab",
                &mut cmd,
                CLIENT_TIMEOUT,
                &self.ca.logs(),
            )
        });
        self.goto(browser, "/console/eab").await;
        let bound = self.text(browser, "table").await;
        assert!(bound.contains("bound to account"), "{bound}");

        // A campaign for the fleet's suffix, started in the browser.
        self.goto(browser, "/console/campaigns").await;
        find(browser, "form.search input[name=suffix]")
            .await
            .send_keys(".fleet.certwright.test")
            .await
            .unwrap();
        find(browser, "form.search button")
            .await
            .click()
            .await
            .unwrap();
        let campaign = wait_url(browser, "/console/campaigns/").await;
        let progress = self.text(browser, "p.progress").await;
        assert!(progress.contains("0 of 1 replaced"), "{progress}");
        let waiting = self.text(browser, "main").await;
        assert!(waiting.contains(app), "{waiting}");

        // The certwright client sees the ARI window in the past and renews.
        let renewed = off_runtime(|| self.cw.json(&["renew", "app.fleet.certwright.test"]));
        assert_eq!(renewed["action"], "renewed", "{renewed}");
        browser.goto(&campaign).await.unwrap();
        let progress = self.text(browser, "p.progress").await;
        assert!(progress.contains("1 of 1 replaced"), "{progress}");
        screenshot(browser, "campaign").await;

        // The renewed certificate's account, from its certificate page; deactivated there.
        let new_serial = renewed["serial"].as_str().unwrap().to_owned();
        self.goto(browser, &format!("/console/certificates/{new_serial}"))
            .await;
        find(browser, "a[href^='/console/accounts/']")
            .await
            .click()
            .await
            .unwrap();
        wait_url(browser, "/console/accounts/").await;
        let page = self.text(browser, "main").await;
        assert!(
            page.contains(&new_serial) && page.contains("app.fleet.certwright.test"),
            "{page}"
        );
        screenshot(browser, "account").await;
        find(browser, "form.deactivate button")
            .await
            .click()
            .await
            .unwrap();
        find(browser, "span.state.deactivated").await;
    }

    /// `openssl ocsp` asks the CA's responder about `name`'s certificate: revoked.
    fn ocsp_says_revoked(&self, name: &str) {
        let dir = self.cw.cert_dir(name);
        std::fs::copy(dir.join("cert.pem"), dir.join("leaf.pem")).unwrap();
        std::fs::copy(self.ca.root_path(), dir.join("root.pem")).unwrap();
        let pki = self.ca.pki_http_listen.expect("the PKI listener is on");
        let url = format!("http://localhost:{}/ocsp", pki.port());
        let args = support::ocsp_query_args("chain.pem", &url, &[]);
        let (ok, text) = openssl(&dir, &args);
        assert!(ok, "{text}");
        assert!(text.contains("leaf.pem: revoked"), "{text}");
    }
}
