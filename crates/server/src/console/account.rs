//! An operator's own account: one-time sign-in links (`/console/welcome/TOKEN`, printed
//! by `certwright-ca operator add --login-link` and `operator link`) with which an
//! operator sets their password, and changing one's password (`/console/account`).
//!
//! A link's token is 32 random bytes, stored only as its SHA-256, valid 24 hours, used
//! once. An unknown, used or expired link gets one and the same refusal (audited as
//! `operator.link_refused`), so the page tells nothing about which it was.

use std::collections::HashMap;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::html;

use super::password::{self, token_hash};
use super::views::layout;
use super::{
    cookie_value, parse_form, peer, same, Console, Page, Refusal, LOGIN_COOKIE, SESSION_COOKIE,
    SESSION_SECONDS, THROTTLE_FAILURES, THROTTLE_WINDOW,
};
use crate::clock::rfc3339;
use crate::store::operators::OperatorSession;
use crate::store::{Store, StoreError};

/// How long a sign-in link lasts.
pub const LOGIN_LINK_SECONDS: i64 = 24 * 3600;

/// Makes a sign-in link for `operator` (replacing their earlier one) and returns its
/// token, which is shown once and stored only as its SHA-256; None if the operator is
/// unknown or disabled.
pub async fn issue_login_link(
    store: &Store,
    operator: &str,
    now: i64,
) -> Result<Option<String>, StoreError> {
    let token = password::random_token();
    let made = store
        .create_login_link(operator, &token_hash(&token), now, now + LOGIN_LINK_SECONDS)
        .await?;
    Ok(made.then_some(token))
}

/// The URL of the link with `token` on the console at `base` (`https://HOST:PORT`).
pub fn login_link_url(base: &str, token: &str) -> String {
    format!("{}/console/welcome/{token}", base.trim_end_matches('/'))
}

/// This module's routes.
pub(super) fn routes() -> Router<Console> {
    Router::new()
        .route("/console/welcome/{token}", get(welcome_page).post(welcome))
        .route("/console/account", get(account_page))
        .route("/console/account/password", post(change_password))
}

/// What a form body may weigh.
const FORM_LIMIT: usize = 64 * 1024;

/// The client's address, the headers and the form of a POST.
async fn read_form(
    request: Request,
) -> Result<(String, HeaderMap, HashMap<String, String>), Refusal> {
    let address = peer(request.extensions());
    let headers = request.headers().clone();
    let body = axum::body::to_bytes(request.into_body(), FORM_LIMIT)
        .await
        .map_err(|_| Refusal::Status(StatusCode::BAD_REQUEST, "The form is too large."))?;
    Ok((address, headers, parse_form(&body)))
}

/// The new password of a form (`new`, repeated in `again`), or why not.
fn new_password(form: &HashMap<String, String>) -> Result<String, String> {
    let new = form.get("new").cloned().unwrap_or_default();
    if form.get("again") != Some(&new) {
        return Err("The two new passwords differ.".to_owned());
    }
    password::check_new(&new)?;
    Ok(new)
}

async fn hash_password(new: String) -> Result<String, Refusal> {
    tokio::task::spawn_blocking(move || password::hash(&new))
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or(Refusal::Status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The password could not be hashed.",
        ))
}

/// The one answer to an unknown, used or expired link; audited.
async fn link_refused(console: &Console, address: &str) -> Page {
    console.store.login_link_refused(address).await?;
    tracing::info!(%address, "console: sign-in link refused");
    Ok((
        StatusCode::NOT_FOUND,
        layout(
            "Sign-in link not valid",
            None,
            html! {
                p { "This sign-in link is not valid: it was used already, it expired, or it never existed." }
                p { "Ask an admin for a new one (" code { "certwright-ca operator link NAME" } "), or "
                    a href="/console/sign-in" { "sign in" } "." }
            },
        ),
    )
        .into_response())
}

/// The set-password form of a link, with a fresh double-submit token in its cookie.
fn welcome_form(
    console: &Console,
    status: StatusCode,
    operator: &str,
    error: Option<&str>,
) -> Response {
    let csrf = password::random_token();
    (
        status,
        [(header::SET_COOKIE, console.cookie(LOGIN_COOKIE, &csrf, 3600))],
        layout(
            "Set your password",
            None,
            html! {
                p { "Welcome, " strong { (operator) } ". Choose a password ("
                    (password::MIN_PASSWORD_LEN) " characters at least); you are then signed in. The link works once." }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                form.card method="post" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="name" autocomplete="username" value=(operator);
                    label { "New password" input name="new" type="password" autocomplete="new-password" required; }
                    label { "New password again" input name="again" type="password" autocomplete="new-password" required; }
                    button type="submit" { "Set the password and sign in" }
                }
            },
        ),
    )
        .into_response()
}

async fn welcome_page(
    State(console): State<Console>,
    Path(token): Path<String>,
    request: Request,
) -> Page {
    let now = console.clock.now();
    match console
        .store
        .login_link_operator(&token_hash(&token), now)
        .await?
    {
        Some(operator) => Ok(welcome_form(&console, StatusCode::OK, &operator, None)),
        None => link_refused(&console, &peer(request.extensions())).await,
    }
}

async fn welcome(
    State(console): State<Console>,
    Path(token): Path<String>,
    request: Request,
) -> Page {
    let (address, headers, form) = read_form(request).await?;
    match (cookie_value(&headers, LOGIN_COOKIE), form.get("csrf")) {
        (Some(cookie), Some(sent)) if !cookie.is_empty() && same(cookie, sent) => {}
        _ => {
            return Err(Refusal::Status(
                StatusCode::FORBIDDEN,
                "The form expired: open the link again.",
            ))
        }
    }
    let link = token_hash(&token);
    let now = console.clock.now();
    let Some(operator) = console.store.login_link_operator(&link, now).await? else {
        return link_refused(&console, &address).await;
    };
    let new = match new_password(&form) {
        Ok(new) => new,
        Err(e) => {
            return Ok(welcome_form(
                &console,
                StatusCode::BAD_REQUEST,
                &operator,
                Some(&e),
            ))
        }
    };
    let hash = hash_password(new).await?;
    let session = password::random_token();
    let used = console
        .store
        .use_login_link(
            &link,
            &hash,
            &token_hash(&session),
            &password::random_token(),
            now,
            now + SESSION_SECONDS,
        )
        .await?;
    // Used by a concurrent request since it was looked up: the same refusal.
    let Some(operator) = used else {
        return link_refused(&console, &address).await;
    };
    tracing::info!(%operator, "console: password set with a sign-in link");
    Ok(super::signed_in(&console, &session))
}

/// The account page, with a message (`notice`) or an error above the form.
fn account_view(
    session: &OperatorSession,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
) -> Response {
    (
        status,
        layout(
            "Your account",
            Some(session),
            html! {
                dl {
                    dt { "Name" } dd { (session.operator) }
                    dt { "Role" } dd { (session.role.as_str()) }
                    dt { "This session ends" } dd { (rfc3339(session.expires_at)) }
                }
                h2 { "Change your password" }
                @if let Some(n) = notice { p role="status" { (n) } }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                form.card method="post" action="/console/account/password" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="name" autocomplete="username" value=(session.operator);
                    label { "Current password" input name="current" type="password" autocomplete="current-password" required; }
                    label { "New password (" (password::MIN_PASSWORD_LEN) " characters at least)"
                        input name="new" type="password" autocomplete="new-password" required; }
                    label { "New password again" input name="again" type="password" autocomplete="new-password" required; }
                    button type="submit" { "Change the password" }
                }
                p { "Changing it signs you out everywhere else." }
            },
        ),
    )
        .into_response()
}

async fn account_page(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Page {
    let session = console.page_session(&headers).await?;
    let notice = params
        .contains_key("changed")
        .then_some("Your password was changed; your other sessions have ended.");
    Ok(account_view(&session, StatusCode::OK, notice, None))
}

async fn change_password(State(console): State<Console>, request: Request) -> Page {
    let (address, headers, form) = read_form(request).await?;
    let session = console.post_session(&headers, &form).await?;
    let name = session.operator.clone();
    let now = console.clock.now();
    // A wrong current password is a failed sign-in: counted and throttled the same way.
    let (by_name, by_address) = console
        .store
        .login_failures(&name, &address, now - THROTTLE_WINDOW)
        .await?;
    if by_name >= THROTTLE_FAILURES || by_address >= THROTTLE_FAILURES {
        tracing::warn!(%address, "console: password change throttled");
        return Ok(account_view(
            &session,
            StatusCode::TOO_MANY_REQUESTS,
            None,
            Some("Too many failed sign-ins: try again in 15 minutes."),
        ));
    }
    let stored = console
        .store
        .operator_credentials(&name)
        .await?
        .map(|(_, hash)| hash)
        .unwrap_or_else(|| password::dummy_hash().to_owned());
    let current = form.get("current").cloned().unwrap_or_default();
    let matches = tokio::task::spawn_blocking(move || password::verify(&current, &stored))
        .await
        .unwrap_or(false);
    if !matches {
        console
            .store
            .record_login_failure(&name, &address, now, now - THROTTLE_WINDOW)
            .await?;
        tracing::info!(%address, operator = %name, "console: password change with a wrong current password");
        return Ok(account_view(
            &session,
            StatusCode::UNAUTHORIZED,
            None,
            Some("The current password is wrong."),
        ));
    }
    let new = match new_password(&form) {
        Ok(new) => new,
        Err(e) => {
            return Ok(account_view(
                &session,
                StatusCode::BAD_REQUEST,
                None,
                Some(&e),
            ))
        }
    };
    let hash = hash_password(new).await?;
    let keep = cookie_value(&headers, SESSION_COOKIE)
        .map(token_hash)
        .unwrap_or_default();
    // Audited as the operator, by the store.
    if !console
        .store
        .change_operator_password(&name, &hash, &keep)
        .await?
    {
        return Err(Refusal::Store(StoreError::NotFound));
    }
    Ok((
        StatusCode::SEE_OTHER,
        [(header::LOCATION, "/console/account?changed=1")],
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::console::tests::Fixture;
    use crate::store::operators::OperatorRole;

    /// `name`'s stored password hash.
    async fn stored_hash(store: &Store, name: &str) -> String {
        store.operator_credentials(name).await.unwrap().unwrap().1
    }

    async fn actions(store: &Store) -> Vec<String> {
        store
            .audit_entries(0, 0, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| format!("{} {}", e.actor, e.action))
            .collect()
    }

    fn form(pairs: &[(&str, &str)]) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    }

    #[tokio::test]
    async fn a_login_link_sets_the_password_once_and_signs_in() {
        let f = Fixture::new().await;
        let old = password::hash("the old password").unwrap();
        f.store
            .add_operator("alice", OperatorRole::Viewer, &old, 1)
            .await
            .unwrap();
        // alice has a session elsewhere, which the link ends.
        let (elsewhere, _) = f.another_session("alice").await;
        let now = Clock::system().now();
        let token = issue_login_link(&f.store, "alice", now)
            .await
            .unwrap()
            .unwrap();
        assert!(issue_login_link(&f.store, "nobody", now)
            .await
            .unwrap()
            .is_none());
        let url = login_link_url("https://127.0.0.1:14001/", &token);
        assert_eq!(
            url,
            format!("https://127.0.0.1:14001/console/welcome/{token}")
        );
        let path = format!("/console/welcome/{token}");
        let refused = |s: String| s.contains("This sign-in link is not valid");

        let (status, headers, body) = f.send("GET", &path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("alice") && body.contains("Set your password"));
        let login = headers[header::SET_COOKIE].to_str().unwrap().to_owned();
        assert!(login.starts_with(&format!("{LOGIN_COOKIE}=")), "{login}");
        let login = login.split(';').next().unwrap().to_owned();
        let csrf = login.split_once('=').unwrap().1.to_owned();
        let new = "a brand new passphrase";

        // Refusals that change nothing: no double-submit token, a wrong one, a short
        // password, passwords that differ.
        for (cookie, body, status) in [
            (
                None,
                form(&[("csrf", &csrf), ("new", new), ("again", new)]),
                StatusCode::FORBIDDEN,
            ),
            (
                Some(login.as_str()),
                form(&[("new", new), ("again", new)]),
                StatusCode::FORBIDDEN,
            ),
            (
                Some(login.as_str()),
                form(&[("csrf", "wrong"), ("new", new), ("again", new)]),
                StatusCode::FORBIDDEN,
            ),
            (
                Some(login.as_str()),
                form(&[("csrf", &csrf), ("new", "short"), ("again", "short")]),
                StatusCode::BAD_REQUEST,
            ),
            (
                Some(login.as_str()),
                form(&[("csrf", &csrf), ("new", new), ("again", "something else")]),
                StatusCode::BAD_REQUEST,
            ),
        ] {
            let (got, _, page) = f.send("POST", &path, cookie, Some(&body)).await;
            assert_eq!(got, status, "{cookie:?} {body}: {page}");
            assert_eq!(stored_hash(&f.store, "alice").await, old, "{body}");
            assert!(f
                .store
                .login_link_operator(&token_hash(&token), Clock::system().now())
                .await
                .unwrap()
                .is_some());
        }
        let (status, _, _) = f
            .send("GET", "/console/dashboard", Some(&elsewhere), None)
            .await;
        assert_eq!(status, StatusCode::OK, "the other session still works");

        // The link works.
        let body = form(&[("csrf", &csrf), ("new", new), ("again", new)]);
        let (status, headers, _) = f.send("POST", &path, Some(&login), Some(&body)).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers[header::LOCATION], "/console/dashboard");
        let session = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|c| c.starts_with(&format!("{SESSION_COOKIE}=")))
            .unwrap();
        let session = session.split(';').next().unwrap().to_owned();
        let (status, _, _) = f
            .send("GET", "/console/dashboard", Some(&session), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, _) = f
            .send("GET", "/console/dashboard", Some(&elsewhere), None)
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "the other session ended");
        let set = stored_hash(&f.store, "alice").await;
        assert!(password::verify(new, &set));

        // Used: the refusal page, audited, nothing changes; so for an unknown link.
        let before = actions(&f.store).await.len();
        for path in [path.clone(), "/console/welcome/not-a-link".to_owned()] {
            let (status, _, page) = f.send("GET", &path, None, None).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert!(refused(page), "{path}");
            let body = form(&[
                ("csrf", &csrf),
                ("new", "another passphrase"),
                ("again", "another passphrase"),
            ]);
            let (status, headers, page) = f.send("POST", &path, Some(&login), Some(&body)).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert!(refused(page), "{path}");
            assert!(headers.get(header::SET_COOKIE).is_none());
            assert_eq!(stored_hash(&f.store, "alice").await, set);
        }
        let after = actions(&f.store).await;
        assert_eq!(
            after[before..],
            ["operator operator.link_refused"; 4],
            "{after:?}"
        );
        assert!(after.contains(&"operator:alice operator.password_set".to_owned()));

        // A disabled operator's link is refused the same way.
        let token = issue_login_link(&f.store, "alice", Clock::system().now())
            .await
            .unwrap()
            .unwrap();
        f.store.set_operator_disabled("alice", true).await.unwrap();
        let (status, _, page) = f
            .send("GET", &format!("/console/welcome/{token}"), None, None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(refused(page));
    }

    #[tokio::test]
    async fn changing_ones_password_needs_the_current_one_and_counts_failures() {
        let f = Fixture::new().await;
        let (cookie, csrf) = f.session("vera", OperatorRole::Viewer).await;
        let current = "the current passphrase";
        let hash = password::hash(current).unwrap();
        // Fixture sessions come with a placeholder hash: give vera a real one.
        f.store
            .change_operator_password("vera", &hash, "")
            .await
            .unwrap();
        // (That ended the fixture's session; open another.)
        let token = password::random_token();
        let now = Clock::system().now();
        f.store
            .create_operator_session(&token_hash(&token), "vera", &csrf, now, now + 600)
            .await
            .unwrap();
        let cookie_now = format!("{SESSION_COOKIE}={token}");
        assert_ne!(cookie, cookie_now);
        let cookie = cookie_now;
        let other = password::random_token();
        f.store
            .create_operator_session(&token_hash(&other), "vera", "c2", now, now + 600)
            .await
            .unwrap();
        let other = format!("{SESSION_COOKIE}={other}");

        // The page: without a session, off to sign in; with one, the account.
        let (status, headers, _) = f.send("GET", "/console/account", None, None).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers[header::LOCATION], "/console/sign-in");
        let (status, _, page) = f.send("GET", "/console/account", Some(&cookie), None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("vera") && page.contains("viewer") && page.contains(&csrf));

        let post = "/console/account/password";
        let new = "a fresh passphrase";
        let failures =
            |s: Store| async move { s.login_failures("vera", "unknown", 0).await.unwrap().0 };
        // Without a session or its CSRF token: 403, nothing changes, nothing counted.
        for (c, body) in [
            (
                None,
                form(&[
                    ("csrf", &csrf),
                    ("current", current),
                    ("new", new),
                    ("again", new),
                ]),
            ),
            (
                Some(cookie.as_str()),
                form(&[("current", current), ("new", new), ("again", new)]),
            ),
            (
                Some(cookie.as_str()),
                form(&[
                    ("csrf", "c2"),
                    ("current", current),
                    ("new", new),
                    ("again", new),
                ]),
            ),
        ] {
            let (status, _, _) = f.send("POST", post, c, Some(&body)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{c:?} {body}");
            assert_eq!(stored_hash(&f.store, "vera").await, hash);
            assert_eq!(failures(f.store.clone()).await, 0);
        }
        // A wrong current password: 401, counted as a failed sign-in.
        for n in 1..=THROTTLE_FAILURES {
            let body = form(&[
                ("csrf", &csrf),
                ("current", "wrong"),
                ("new", new),
                ("again", new),
            ]);
            let (status, _, page) = f.send("POST", post, Some(&cookie), Some(&body)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{page}");
            assert!(page.contains("The current password is wrong."));
            assert_eq!(failures(f.store.clone()).await, n);
            assert_eq!(stored_hash(&f.store, "vera").await, hash);
        }
        // Throttled now, even with the right one.
        let right = form(&[
            ("csrf", &csrf),
            ("current", current),
            ("new", new),
            ("again", new),
        ]);
        let (status, _, page) = f.send("POST", post, Some(&cookie), Some(&right)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{page}");
        assert_eq!(stored_hash(&f.store, "vera").await, hash);
        // The window passes: vera's failures are forgotten (one is left, long ago).
        f.store
            .record_login_failure("vera", "unknown", 0, i64::MAX)
            .await
            .unwrap();
        assert_eq!(failures(f.store.clone()).await, 1);
        // A short new password: 400, nothing changes.
        let short = form(&[
            ("csrf", &csrf),
            ("current", current),
            ("new", "short"),
            ("again", "short"),
        ]);
        let (status, _, _) = f.send("POST", post, Some(&cookie), Some(&short)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(stored_hash(&f.store, "vera").await, hash);

        let (status, headers, _) = f.send("POST", post, Some(&cookie), Some(&right)).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers[header::LOCATION], "/console/account?changed=1");
        assert!(password::verify(new, &stored_hash(&f.store, "vera").await));
        let (status, _, page) = f
            .send("GET", "/console/account?changed=1", Some(&cookie), None)
            .await;
        assert_eq!(status, StatusCode::OK, "this session stays");
        assert!(page.contains("Your password was changed"));
        let (status, _, _) = f.send("GET", "/console/account", Some(&other), None).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "the other session ended");
        assert!(actions(&f.store)
            .await
            .contains(&"operator:vera operator.password_change".to_owned()));
    }

    #[tokio::test]
    async fn a_disabled_operator_cannot_sign_in_and_their_sessions_end() {
        let f = Fixture::new().await;
        let (cookie, _) = f.session("dora", OperatorRole::Admin).await;
        let hash = password::hash("dora's passphrase").unwrap();
        f.store
            .change_operator_password("dora", &hash, "")
            .await
            .unwrap();
        let (cookie2, _) = f.another_session("dora").await;
        let (status, _, _) = f
            .send("GET", "/console/dashboard", Some(&cookie2), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_ne!(cookie, cookie2);
        f.store.set_operator_disabled("dora", true).await.unwrap();
        let (status, _, _) = f
            .send("GET", "/console/dashboard", Some(&cookie2), None)
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "the session ended at once");

        let sign_in = |pw: &str| form(&[("csrf", "L"), ("name", "dora"), ("password", pw)]);
        let login = format!("{LOGIN_COOKIE}=L");
        let (status, headers, page) = f
            .send(
                "POST",
                "/console/sign-in",
                Some(&login),
                Some(&sign_in("dora's passphrase")),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            page.contains("Wrong name or password."),
            "the same message: {page}"
        );
        assert!(headers.get_all(header::SET_COOKIE).iter().all(|c| !c
            .to_str()
            .unwrap()
            .starts_with(&format!("{SESSION_COOKIE}="))));
        let (_, _, wrong) = f
            .send(
                "POST",
                "/console/sign-in",
                Some(&login),
                Some(&sign_in("not the password")),
            )
            .await;
        assert!(wrong.contains("Wrong name or password."));

        f.store.set_operator_disabled("dora", false).await.unwrap();
        let (status, _, _) = f
            .send(
                "POST",
                "/console/sign-in",
                Some(&login),
                Some(&sign_in("dora's passphrase")),
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "enabled again");
    }
}
