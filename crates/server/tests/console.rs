//! The operator console (docs/console.md) on a real `certwright-ca` process: operators
//! added with `certwright-ca operator`, a certificate issued by lego, and the console's
//! security over HTTP (reqwest): pages redirect to the sign-in without a session, POSTs
//! are refused without a session, without the CSRF token or by a viewer, with nothing
//! changed in the audit trail; five wrong passwords lock the name; sign-out ends the
//! session. Over the admin listener with TLS: a one-time sign-in link from `operator add
//! --login-link` works once, cookies are `Secure`, and `operator disable` ends a session.
//! Then one browser test: headless Chromium (chromedriver, driven with
//! fantoccini) signs in, searches the inventory and opens the certificate; with
//! `CERTWRIGHT_CONSOLE_SCREENSHOTS=1` it saves screenshots into docs/console/.

mod harness;
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::header::{COOKIE, LOCATION};
use reqwest::StatusCode;
use support::console::{
    add_operator, ca_command, client, client_builder, csrf_field, find, open_browser, runtime,
    screenshot, set_cookie, sign_in, start_ca, start_chromedriver, FormPairs,
};
use support::{
    ca_bin, dns, free_port, lego_command, run_bounded, run_ok, CaProcess, ProcessGuard,
    CLIENT_TIMEOUT,
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
        // The charts render under the CSP (default-src 'self'): no style attribute or
        // script for it to block, the stylesheet colours the bars, and today's issuance
        // is the tallest bar.
        let charts = browser
            .execute(
                "const bars = [...document.querySelectorAll('svg.chart rect.bar')];
                 const issued = document.querySelector('svg.chart rect.bar.issued');
                 return [bars.length,
                         document.querySelectorAll('[style], style, script').length,
                         getComputedStyle(issued).fill,
                         Math.max(...bars.map(b => b.getBBox().height)),
                         document.querySelectorAll('svg.chart rect.bar > title').length];",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            charts,
            serde_json::json!([90, 0, "rgb(31, 58, 95)", 100, 90]),
            "three charts of 30 bars, each with its title"
        );
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

/// The value of the `certwright_console` cookie a response sets, as a `Cookie` header.
fn session_cookie(r: &reqwest::Response) -> String {
    set_cookie(r, "certwright_console")
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn a_login_link_works_once_over_the_tls_admin_listener_and_disable_ends_the_session() {
    let _dns = dns();
    let tmp = tempfile::tempdir().unwrap();
    let mut guard = ProcessGuard::default();
    // The admin listener's certificate, from a test CA of its own.
    let (root, cert, key) = support::x509::tls_identity(tmp.path());
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = tmp.path().join("ca.toml");
    std::fs::write(
        &config,
        format!(
            "admin_listen = \"{admin}\"\nadmin_tls_cert = \"{}\"\nadmin_tls_key = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let config = config.to_string_lossy().into_owned();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let ca = CaProcess::start_with_args(
        ca_bin(),
        &mut guard,
        &tmp.path().join("ca"),
        listen,
        free_port(),
        &["--config", &config, "--admin-listen", &admin.to_string()],
    );
    let out = std::fs::read_dir(&ca.data_dir)
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("ca-stdout"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .unwrap();
    assert!(
        out.contains(&format!("admin:            https://{admin}/metrics")),
        "{out}"
    );

    let added = ca_command(
        &ca,
        &[
            "operator",
            "add",
            "alice",
            "--role",
            "admin",
            "--login-link",
            "--config",
            &config,
        ],
    );
    let prefix = format!("https://{admin}/console/welcome/");
    let link = added
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no link in: {added}"))
        .to_owned();
    let token = &link[prefix.len()..];
    assert_eq!(
        certwright_proto::b64::decode(token).unwrap().len(),
        32,
        "256 random bits"
    );
    for file in ["certwright.db", "certwright.db-wal"] {
        let bytes = std::fs::read(ca.data_dir.join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "{file}: the token is stored only hashed"
        );
    }

    let root_pem = std::fs::read(&root).unwrap();
    let runtime = runtime();
    let (alice, alice_csrf) = runtime.block_on(async {
        let https = client_builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&root_pem).unwrap()])
            .build()
            .unwrap();
        let base = format!("https://{admin}");
        // The rest of the admin listener speaks HTTPS too; plain HTTP gets nowhere.
        let r = https.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(client()
            .get(format!("http://{admin}/healthz"))
            .send()
            .await
            .map_or(true, |r| r.status() != StatusCode::OK));

        let page = https.get(&link).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let login = set_cookie(&page, "certwright_console_login").unwrap();
        assert!(login.contains("; Secure"), "{login}");
        let login = login.split(';').next().unwrap().to_owned();
        let csrf = csrf_field(&page.text().await.unwrap());
        let new = "alice's own passphrase";
        let form = [("csrf", csrf.as_str()), ("new", new), ("again", new)];
        let r = https
            .post(&link)
            .header(COOKIE, &login)
            .form_pairs(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let cookie = set_cookie(&r, "certwright_console").unwrap();
        assert!(
            cookie.contains("; Secure") && cookie.contains("; HttpOnly"),
            "{cookie}"
        );
        let from_link = session_cookie(&r);
        let dashboard = https
            .get(format!("{base}/console/dashboard"))
            .header(COOKIE, &from_link)
            .send()
            .await
            .unwrap();
        assert_eq!(dashboard.status(), StatusCode::OK);

        // Once only: the same link, the same form, refused; the password stays.
        let before = audit_len(&ca);
        let again = https
            .post(&link)
            .header(COOKIE, &login)
            .form_pairs(&[
                ("csrf", csrf.as_str()),
                ("new", "someone else's pass"),
                ("again", "someone else's pass"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_FOUND);
        assert!(set_cookie(&again, "certwright_console").is_none());
        assert_eq!(
            https.get(&link).send().await.unwrap().status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(audit_len(&ca), before + 2, "two refusals audited");
        assert_eq!(
            sign_in(&https, &base, "alice", "someone else's pass").await,
            Err(StatusCode::UNAUTHORIZED)
        );
        sign_in(&https, &base, "alice", new).await.unwrap()
    });

    // Disabling alice ends her sessions at once, and she cannot sign in.
    let disabled = ca_command(&ca, &["operator", "disable", "alice"]);
    assert!(disabled.contains("disabled operator alice"), "{disabled}");
    let list = ca_command(&ca, &["operator", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("alice\tadmin\t") && l.ends_with("\tdisabled")),
        "{list}"
    );
    runtime.block_on(async {
        let https = client_builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&root_pem).unwrap()])
            .build()
            .unwrap();
        let base = format!("https://{admin}");
        let r = https
            .get(format!("{base}/console/dashboard"))
            .header(COOKIE, &alice)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()[LOCATION], "/console/sign-in");
        let r = https
            .post(format!("{base}/console/eab"))
            .header(COOKIE, &alice)
            .form_pairs(&[("csrf", alice_csrf.as_str()), ("label", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            sign_in(&https, &base, "alice", "alice's own passphrase").await,
            Err(StatusCode::UNAUTHORIZED)
        );
    });
    let actions = ca_command(&ca, &["audit", "export"]);
    for action in [
        "\"operator.link\"",
        "\"operator.password_set\"",
        "\"operator.link_refused\"",
        "\"operator.disable\"",
    ] {
        assert!(actions.contains(action), "{action} in {actions}");
    }

    // A renewed pair in the same files is served after SIGHUP, without a restart.
    let renewed = tmp.path().join("renewed");
    std::fs::create_dir_all(&renewed).unwrap();
    let (new_root, new_cert, new_key) = support::x509::tls_identity(&renewed);
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    let new_root = std::fs::read(&new_root).unwrap();
    let trusts_new = || {
        runtime.block_on(async {
            client_builder()
                .tls_certs_only([reqwest::Certificate::from_pem(&new_root).unwrap()])
                .build()
                .unwrap()
                .get(format!("https://{admin}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK)
        })
    };
    assert!(!trusts_new(), "the old certificate until SIGHUP");
    certwright_testkit::process::send_signal(
        ca.pid(&mut guard),
        certwright_testkit::process::Signal::HUP,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !trusts_new() {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate is not served 10 s after SIGHUP\n{}",
            ca.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    ca.stop(&mut guard);
}
