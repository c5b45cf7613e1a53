//! The operator console (docs/console.md) on a real `certwright-ca` process: operators
//! added with `certwright-ca operator`, a certificate issued by lego, and the console's
//! security over HTTP (reqwest): pages redirect to the sign-in without a session, POSTs
//! are refused without a session, without the CSRF token or by a viewer, with nothing
//! changed in the audit trail; five wrong passwords lock the name; sign-out ends the
//! session. Then one browser test: headless Chromium (chromedriver, driven with
//! fantoccini) signs in, searches the inventory and opens the certificate; with
//! `CERTWRIGHT_CONSOLE_SCREENSHOTS=1` it saves screenshots into docs/console/.

mod harness;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::header::{COOKIE, LOCATION};
use reqwest::StatusCode;
use support::console::{
    add_operator, ca_command, client, find, open_browser, runtime, screenshot, sign_in, start_ca,
    start_chromedriver, FormPairs,
};
use support::{
    ca_bin, dns, lego_command, run_bounded, run_ok, CaProcess, ProcessGuard, CLIENT_TIMEOUT,
};

/// lego gets a certificate for `name`; returns its serial (lower-case hex).
fn issue_with_lego(ca: &CaProcess, dir: &Path, name: &str) -> String {
    let path = dir.join("lego");
    let mut cmd = lego_command(&path, ca, &[name]);
    cmd.arg("--http")
        .args(["--http.port", &format!("127.0.0.1:{}", ca.http01_port)])
        .arg("run");
    run_ok("lego run", &mut cmd, CLIENT_TIMEOUT, &ca.logs());
    let cert = path.join(format!("certificates/{name}.crt"));
    let der = &support::pem_certs(&cert)[0];
    let (_, parsed) = x509_parser::parse_x509_certificate(der).unwrap();
    parsed
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The audit trail's length, as `certwright-ca audit export` writes it.
fn audit_len(ca: &CaProcess) -> usize {
    ca_command(ca, &["audit", "export"]).lines().count()
}

#[test]
fn the_console_refuses_without_a_session_a_csrf_token_or_the_admin_role() {
    let _dns = dns();
    let tmp = tempfile::tempdir().unwrap();
    let mut guard = ProcessGuard::default();
    let (ca, base) = start_ca(&mut guard, tmp.path());
    let serial = issue_with_lego(&ca, tmp.path(), "console.certwright.test");

    add_operator(&ca, "root", "admin", "root password 123");
    add_operator(&ca, "vera", "viewer", "viewer password 456");
    // Too short a password, or a taken name: refused.
    let mut cmd = Command::new(ca_bin());
    cmd.args([
        "operator",
        "add",
        "root",
        "--role",
        "admin",
        "--generate-password",
        "--data-dir",
    ])
    .arg(&ca.data_dir);
    assert!(!run_bounded(&mut cmd, Duration::from_secs(60))
        .status
        .success());
    let generated = ca_command(
        &ca,
        &[
            "operator",
            "add",
            "gen",
            "--role",
            "viewer",
            "--generate-password",
        ],
    );
    let password = generated
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("a generated password")
        .to_owned();
    let list = ca_command(&ca, &["operator", "list"]);
    for line in ["root\tadmin", "vera\tviewer", "gen\tviewer"] {
        assert!(list.contains(line), "{list}");
    }
    assert!(!list.contains(&password), "the list shows no password");

    runtime().block_on(refusals(&ca, &base, &serial, &password));
    ca.stop(&mut guard);
}

async fn refusals(ca: &CaProcess, base: &str, serial: &str, password: &str) {
    let http = client();
    // Without a session: every page goes to the sign-in page; every POST is refused.
    for page in [
        "/console",
        "/console/dashboard",
        "/console/certificates",
        &format!("/console/certificates/{serial}"),
        "/console/renewal",
        "/console/eab",
    ] {
        let r = http.get(format!("{base}{page}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{page}");
        assert_eq!(r.headers()[LOCATION], "/console/sign-in", "{page}");
        assert_eq!(r.headers()["content-security-policy"], "default-src 'self'");
        assert_eq!(r.headers()["x-frame-options"], "DENY");
        assert_eq!(r.headers()["referrer-policy"], "no-referrer");
        assert_eq!(r.headers()["cache-control"], "no-store");
    }
    let before = audit_len(ca);
    let renew = format!("{base}/console/certificates/{serial}/renew-early");
    let r = http
        .post(&renew)
        .form_pairs(&[("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http
        .post(format!("{base}/console/eab"))
        .form_pairs(&[("csrf", "x"), ("label", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The rest of the admin listener is as it was.
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // A viewer reads, finds lego's certificate, and cannot act.
    let (viewer, viewer_csrf) = sign_in(&http, base, "vera", "viewer password 456")
        .await
        .unwrap();
    let page = http
        .get(format!("{base}/console/certificates?name=.certwright.test"))
        .header(COOKIE, &viewer)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(serial), "{page}");
    let page = http
        .get(format!("{base}/console/certificates/{serial}"))
        .header(COOKIE, &viewer)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("BEGIN CERTIFICATE") && page.contains("console.certwright.test"),
        "{page}"
    );
    let revoke = format!("{base}/console/certificates/{serial}/revoke");
    for url in [&renew, &revoke] {
        let r = http
            .post(url)
            .header(COOKIE, &viewer)
            .form_pairs(&[("csrf", viewer_csrf.as_str()), ("reason", "4")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{url}");
    }

    // An admin without the form's token is refused too.
    let (admin, admin_csrf) = sign_in(&http, base, "root", "root password 123")
        .await
        .unwrap();
    for url in [&renew, &revoke] {
        let r = http
            .post(url)
            .header(COOKIE, &admin)
            .form_pairs(&[("csrf", viewer_csrf.as_str()), ("reason", "4")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{url}");
    }
    // Nothing changed: the trail has the sign-ins since, no action.
    let trail = ca_command(ca, &["audit", "export"]);
    for line in trail.lines().skip(before) {
        assert!(
            !line.contains("renew_early")
                && !line.contains("eab.create")
                && !line.contains("certificate.revoke"),
            "{line}"
        );
    }
    assert!(!ca_command(ca, &["certs", "list", "--revoked"]).contains(serial));

    // With it, the admin acts, audited under the operator's name.
    let r = http
        .post(&renew)
        .header(COOKIE, &admin)
        .form_pairs(&[("csrf", admin_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let trail = ca_command(ca, &["audit", "export"]);
    let entry = trail
        .lines()
        .find(|l| l.contains("certificate.renew_early"))
        .expect("audited");
    assert!(entry.contains("operator:root"), "{entry}");
    // An admin revokes with a reason, through the RA (audited under their name).
    let r = http
        .post(&revoke)
        .header(COOKIE, &admin)
        .form_pairs(&[("csrf", admin_csrf.as_str()), ("reason", "4")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(ca_command(ca, &["certs", "list", "--revoked"]).contains(serial));
    let trail = ca_command(ca, &["audit", "export"]);
    let entry = trail
        .lines()
        .find(|l| l.contains("certificate.revoke"))
        .expect("audited");
    assert!(entry.contains("operator:root"), "{entry}");
    let r = http
        .post(&revoke)
        .header(COOKIE, &admin)
        .form_pairs(&[("csrf", admin_csrf.as_str()), ("reason", "4")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT, "already revoked");

    // Sign-out deletes the session: the same cookie no longer opens a page.
    let r = http
        .post(format!("{base}/console/sign-out"))
        .header(COOKIE, &admin)
        .form_pairs(&[("csrf", admin_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = http
        .get(format!("{base}/console/dashboard"))
        .header(COOKIE, &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // The generated password signs in.
    sign_in(&http, base, "gen", password).await.unwrap();

    // Five wrong passwords: the right one is refused for the rest of the window.
    for _ in 0..5 {
        assert_eq!(
            sign_in(&http, base, "root", "wrong").await.unwrap_err(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        sign_in(&http, base, "root", "root password 123")
            .await
            .unwrap_err(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Five failures from one address lock every name from there.
    assert_eq!(
        sign_in(&http, base, "gen", password).await.unwrap_err(),
        StatusCode::TOO_MANY_REQUESTS
    );

    // Removing an operator: gone from the list; removing it again fails.
    ca_command(ca, &["operator", "remove", "gen"]);
    assert!(!ca_command(ca, &["operator", "list"]).contains("gen\t"));
    let mut cmd = Command::new(ca_bin());
    cmd.args(["operator", "remove", "gen", "--data-dir"])
        .arg(&ca.data_dir);
    assert!(!run_bounded(&mut cmd, Duration::from_secs(60))
        .status
        .success());
    let trail = ca_command(ca, &["audit", "export"]);
    assert!(trail.contains("operator.remove"), "{trail}");
}

#[test]
fn a_browser_signs_in_searches_and_opens_a_certificate() {
    let _dns = dns();
    let tmp = tempfile::tempdir().unwrap();
    let mut guard = ProcessGuard::default();
    let (ca, base) = start_ca(&mut guard, tmp.path());
    let serial = issue_with_lego(&ca, tmp.path(), "www.browser.certwright.test");
    add_operator(&ca, "ada", "admin", "browser password 789");

    let port = start_chromedriver(&mut guard);

    let profile = tmp.path().join("chromium-profile");
    let rt = runtime();
    rt.block_on(browse(&base, &serial, port, &profile));
    ca.stop(&mut guard);
}

async fn browse(base: &str, serial: &str, port: u16, profile: &Path) {
    let browser = open_browser(port, profile).await;

    let steps = async {
        browser
            .goto(&format!("{base}/console/dashboard"))
            .await
            .unwrap();
        // Without a session: the sign-in page.
        find(&browser, "input[name=name]")
            .await
            .send_keys("ada")
            .await
            .unwrap();
        find(&browser, "input[name=password]")
            .await
            .send_keys("browser password 789")
            .await
            .unwrap();
        screenshot(&browser, "sign-in").await;
        find(&browser, "form.card button")
            .await
            .click()
            .await
            .unwrap();
        find(&browser, ".tiles").await;
        screenshot(&browser, "dashboard").await;

        browser
            .goto(&format!("{base}/console/certificates"))
            .await
            .unwrap();
        find(&browser, "form.search input[name=name]")
            .await
            .send_keys(".browser.certwright.test")
            .await
            .unwrap();
        find(&browser, "form.search button")
            .await
            .click()
            .await
            .unwrap();
        // The unfiltered page lists the certificate too: wait for the search's own page.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !browser
            .current_url()
            .await
            .unwrap()
            .as_str()
            .contains("name=")
        {
            assert!(Instant::now() < deadline, "the search did not load");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let link = find(
            &browser,
            &format!("a.serial[href='/console/certificates/{serial}']"),
        )
        .await;
        screenshot(&browser, "inventory").await;
        link.click().await.unwrap();
        let pem = find(&browser, "pre.pem").await.text().await.unwrap();
        assert!(pem.contains("BEGIN CERTIFICATE"), "{pem}");
        let title = browser.title().await.unwrap();
        assert!(title.contains(serial), "{title}");
        screenshot(&browser, "certificate").await;

        browser
            .goto(&format!("{base}/console/renewal?days=90"))
            .await
            .unwrap();
        find(&browser, "main p").await;
        screenshot(&browser, "renewal").await;

        // On a phone's width the pages reflow: nothing is wider than the screen (wide
        // tables scroll inside their box).
        browser.set_window_size(400, 860).await.unwrap();
        for page in [
            "dashboard",
            "certificates?name=.browser.certwright.test",
            &format!("certificates/{serial}"),
        ] {
            browser
                .goto(&format!("{base}/console/{page}"))
                .await
                .unwrap();
            find(&browser, "main h1").await;
            let widths = browser
                .execute(
                    "return [document.documentElement.scrollWidth, window.innerWidth];",
                    vec![],
                )
                .await
                .unwrap();
            let (scroll, inner) = (widths[0].as_i64().unwrap(), widths[1].as_i64().unwrap());
            assert!(
                scroll <= inner,
                "{page}: {scroll}px wide on a {inner}px screen"
            );
        }
        browser
            .goto(&format!(
                "{base}/console/certificates?name=.browser.certwright.test"
            ))
            .await
            .unwrap();
        find(&browser, "main h1").await;
        screenshot(&browser, "phone-inventory").await;
    };
    let outcome = tokio::time::timeout(Duration::from_secs(240), steps).await;
    let _ = browser.close().await;
    outcome.expect("the browser steps finished in time");
}

/// The admin bearer token guards `/metrics` and `/readyz` as before; the console, which has
/// its own sign-in, is outside it (and still needs a session).
#[tokio::test]
async fn the_console_is_outside_the_admin_token_and_the_rest_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin-token");
    std::fs::write(&file, "s3cret-admin-token-0123456789\n").unwrap();
    let ca = harness::TestCa::start_with(move |c| c.admin_token_file = Some(file)).await;
    let http = client();
    let get = |path: &str| http.get(format!("{}{path}", ca.admin_base)).send();
    assert_eq!(
        get("/metrics").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get("/readyz").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get("/console/sign-in").await.unwrap().status(),
        StatusCode::OK
    );
    let r = get("/console/dashboard").await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/console/sign-in");
    // Paths that only look like the console are not exempt.
    for path in ["/consolex", "/Console/sign-in", "/consolemetrics"] {
        let r = get(path).await.unwrap();
        let status = r.status();
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::NOT_FOUND,
            "{path}: {status}"
        );
        assert!(!r.text().await.unwrap().contains("certwright_"), "{path}");
    }
}
