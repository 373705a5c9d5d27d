//! The web console (`driftwatch_collector::web`) in process: requests go through the
//! collector's whole router with `tower::ServiceExt::oneshot`; drift comes from agents
//! reporting over the real HTTP stack (`support::Server`).

mod support;

use axum::body::Body as AxumBody;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use driftwatch_collector::clock::Clock;
use driftwatch_collector::identity::Role;
use serde_json::Value;
use tower::ServiceExt;

use support::{MINUTE, NOW, Server};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn set_cookie(&self) -> String {
        self.headers
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    /// The CSRF token the page's forms carry.
    fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("a form with a csrf field") + marker.len();
        self.body[start..start + 64].to_owned()
    }
}

/// Sends one request through the collector's router. `origin`: send `Origin` and
/// `Sec-Fetch-Site` as a browser on the console's own page would.
async fn call(
    server: &Server,
    method: Method,
    path: &str,
    cookie: Option<&str>,
    form: Option<&str>,
    headers: &[(&str, &str)],
) -> Answer {
    let router = driftwatch_collector::api::router(server.app.clone());
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "collector.test:8443");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = match form {
        Some(form) => {
            request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            AxumBody::from(form.to_owned())
        }
        None => AxumBody::empty(),
    };
    let response = router.oneshot(request.body(body).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

const SAME_SITE: &[(&str, &str)] = &[
    ("origin", "https://collector.test:8443"),
    ("sec-fetch-site", "same-origin"),
];

fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Signs in with `token`; returns the `Cookie` header value for later requests.
async fn sign_in(server: &Server, token: &str) -> String {
    let answer = call(
        server,
        Method::POST,
        "/ui/sign-in",
        None,
        Some(&format!("token={}", form_encode(token))),
        SAME_SITE,
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let cookie = answer.set_cookie();
    cookie.split(';').next().unwrap().to_owned()
}

async fn page(server: &Server, path: &str, cookie: &str) -> Answer {
    call(server, Method::GET, path, Some(cookie), None, &[]).await
}

async fn open_drift(server: &Server, token: &str) -> Vec<Value> {
    let (status, drift) = server.get("/api/v1/drift?status=open", token).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    drift.as_array().unwrap().clone()
}

async fn audit_actions(server: &Server) -> Vec<String> {
    let (_, log) = server.get("/api/v1/audit?limit=1000", &server.admin).await;
    log.as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn sign_in_sets_a_strict_cookie_and_every_page_gets_the_security_headers() {
    let server = Server::start().await;
    let eve = server.token(Role::Security, "eve").await;

    let root = call(&server, Method::GET, "/", None, None, &[]).await;
    assert_eq!(root.location(), "/ui/");
    let unsigned = call(&server, Method::GET, "/ui/inbox", None, None, &[]).await;
    assert_eq!(unsigned.status, StatusCode::SEE_OTHER);
    assert_eq!(unsigned.location(), "/ui/sign-in");

    let answer = call(
        &server,
        Method::POST,
        "/ui/sign-in",
        None,
        Some(&format!("token={}", form_encode(&eve))),
        SAME_SITE,
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let cookie = answer.set_cookie();
    let parts: Vec<&str> = cookie.split("; ").collect();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Secure"] {
        assert!(parts.contains(&part), "{part} missing in {cookie}");
    }
    assert!(
        parts.iter().any(|p| p.starts_with("Max-Age=28")),
        "{cookie}"
    );
    let session = parts[0];
    // The cookie's value is random and is not the token.
    assert!(!session.contains(&eve));

    let login_page = call(&server, Method::GET, "/ui/sign-in", None, None, &[]).await;
    let missing = call(
        &server,
        Method::GET,
        "/ui/nowhere",
        Some(session),
        None,
        &[],
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    for (path, answer) in [
        ("/ui/sign-in", login_page),
        ("/ui/inbox", page(&server, "/ui/inbox", session).await),
        ("/ui/hosts", page(&server, "/ui/hosts", session).await),
        ("/ui/nowhere", missing),
    ] {
        let h = &answer.headers;
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP, "{path}");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer", "{path}");
        assert_eq!(h[header::CACHE_CONTROL], "no-store", "{path}");
        assert!(
            h[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
        // No inline script or style: every script and stylesheet is a file of ours.
        assert!(!answer.body.contains("<script>"), "{path}");
        assert!(!answer.body.contains("style="), "{path}");
        assert!(!answer.body.contains("<style"), "{path}");
    }
    let inbox = page(&server, "/ui/inbox", session).await;
    assert_eq!(inbox.status, StatusCode::OK);
    assert!(
        inbox.body.contains("eve"),
        "the page names who is signed in"
    );
    assert!(
        audit_actions(&server)
            .await
            .contains(&"session.signed_in".to_owned())
    );

    // The stylesheet the page links is served with its hash in the name, cached for long.
    let css = inbox
        .body
        .split("href=\"")
        .find_map(|rest| rest.split('"').next().filter(|u| u.ends_with(".css")))
        .unwrap()
        .to_owned();
    let asset = call(&server, Method::GET, &css, None, None, &[]).await;
    assert_eq!(asset.status, StatusCode::OK);
    assert!(
        asset.headers[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert!(
        asset.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
}

#[tokio::test]
async fn sign_out_ends_the_session_on_the_server() {
    let server = Server::start().await;
    let eve = server.token(Role::Security, "eve").await;
    let session = sign_in(&server, &eve).await;
    let csrf = page(&server, "/ui/inbox", &session).await.csrf();

    let out = call(
        &server,
        Method::POST,
        "/ui/sign-out",
        Some(&session),
        Some(&format!("csrf={csrf}")),
        SAME_SITE,
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.set_cookie().contains("Max-Age=0"));
    // The old cookie, replayed, is refused: the session ended on the server.
    let replay = page(&server, "/ui/inbox", &session).await;
    assert_eq!(replay.status, StatusCode::SEE_OTHER);
    assert_eq!(replay.location(), "/ui/sign-in");
    assert!(
        audit_actions(&server)
            .await
            .contains(&"session.signed_out".to_owned())
    );
}

#[tokio::test]
async fn expired_idle_and_revoked_sessions_are_refused() {
    let server = Server::start().await;
    let eve = server.token(Role::Security, "eve").await;

    // Absolute lifetime (8 h by default), even while in use.
    let session = sign_in(&server, &eve).await;
    for _ in 0..16 {
        server.clock.set(server.clock.now() + 29 * MINUTE);
        assert_eq!(
            page(&server, "/ui/inbox", &session).await.status,
            StatusCode::OK
        );
    }
    server.clock.set(server.clock.now() + 29 * MINUTE);
    let expired = page(&server, "/ui/inbox", &session).await;
    assert_eq!(expired.status, StatusCode::SEE_OTHER);
    assert!(expired.set_cookie().contains("Max-Age=0"));

    // Idle for 30 min.
    let session = sign_in(&server, &eve).await;
    server.clock.set(server.clock.now() + 31 * MINUTE);
    assert_eq!(
        page(&server, "/ui/inbox", &session).await.status,
        StatusCode::SEE_OTHER
    );

    // The token behind it revoked.
    let session = sign_in(&server, &eve).await;
    assert_eq!(
        page(&server, "/ui/inbox", &session).await.status,
        StatusCode::OK
    );
    let (_, tokens) = server.get("/api/v1/tokens", &server.admin).await;
    let id = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "eve")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = server
        .post(
            &format!("/api/v1/tokens/{id}/revoke"),
            &server.admin,
            serde_json::json!({}),
        )
        .await;
    assert!(status.is_success());
    assert_eq!(
        page(&server, "/ui/inbox", &session).await.status,
        StatusCode::SEE_OTHER
    );
    let _ = NOW;
}

#[tokio::test]
async fn agent_credentials_and_wrong_tokens_cannot_sign_in() {
    let server = Server::start().await;
    let agent = server.enroll("web-1", &[]).await;
    let answer = call(
        &server,
        Method::POST,
        "/ui/sign-in",
        None,
        Some(&format!("token={}", form_encode(&agent.credential))),
        SAME_SITE,
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    assert!(answer.set_cookie().is_empty());
    let wrong = call(
        &server,
        Method::POST,
        "/ui/sign-in",
        None,
        Some("token=dwt_00000000000000000000000000000000_00"),
        SAME_SITE,
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.set_cookie().is_empty());
    assert!(
        !audit_actions(&server)
            .await
            .contains(&"session.signed_in".to_owned())
    );
}

#[tokio::test]
async fn a_resolve_without_the_csrf_token_or_from_another_site_is_refused_and_changes_nothing() {
    let server = Server::start().await;
    let eve = server.token(Role::Security, "eve").await;
    let web = server.enroll("web-1", &[]).await;
    server
        .report(&web, &[web.event("file:/etc/motd", "1", NOW)])
        .await;
    let id = open_drift(&server, &eve).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let session = sign_in(&server, &eve).await;
    let csrf = page(&server, "/ui/inbox", &session).await.csrf();
    let form =
        |csrf: &str| format!("csrf={csrf}&group={id}&category=false_positive&comment=tuning");
    let other_session = sign_in(&server, &eve).await;
    let others_csrf = page(&server, "/ui/inbox", &other_session).await.csrf();
    assert_ne!(csrf, others_csrf, "each session has its own token");

    for (what, body, headers) in [
        (
            "no token",
            format!("group={id}&category=false_positive&comment=tuning"),
            SAME_SITE,
        ),
        ("a wrong token", form(&"0".repeat(64)), SAME_SITE),
        ("another session's token", form(&others_csrf), SAME_SITE),
        (
            "another site's Origin",
            form(&csrf),
            &[("origin", "https://evil.example")][..],
        ),
        (
            "a cross-site fetch",
            form(&csrf),
            &[("sec-fetch-site", "cross-site")][..],
        ),
    ] {
        let answer = call(
            &server,
            Method::POST,
            "/ui/inbox/resolve",
            Some(&session),
            Some(&body),
            headers,
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{what}: {}",
            answer.body
        );
        assert_eq!(
            open_drift(&server, &eve).await.len(),
            1,
            "{what}: nothing resolved"
        );
    }
    // A cross-site sign-in post is refused too.
    let answer = call(
        &server,
        Method::POST,
        "/ui/sign-in",
        None,
        Some(&format!("token={}", form_encode(&eve))),
        &[("sec-fetch-site", "cross-site")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);

    // The same form with the right token from the console's own page goes through.
    let answer = call(
        &server,
        Method::POST,
        "/ui/inbox/resolve",
        Some(&session),
        Some(&form(&csrf)),
        SAME_SITE,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(open_drift(&server, &eve).await.is_empty());
}

#[tokio::test]
async fn a_role_that_cannot_resolve_sees_no_button_and_a_forged_post_is_forbidden() {
    let server = Server::start().await;
    let eve = server.token(Role::Security, "eve").await;
    let audrey = server.token(Role::Auditor, "audrey").await;
    let web = server.enroll("web-1", &[]).await;
    server
        .report(&web, &[web.event("file:/etc/motd", "1", NOW)])
        .await;
    let id = open_drift(&server, &eve).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let eves = page(&server, "/ui/inbox", &sign_in(&server, &eve).await).await;
    assert!(eves.body.contains("Resolve selected"));
    assert!(eves.body.contains("name=\"group\""));

    let session = sign_in(&server, &audrey).await;
    let inbox = page(&server, "/ui/inbox", &session).await;
    assert_eq!(inbox.status, StatusCode::OK);
    assert!(
        inbox.body.contains("/etc/motd"),
        "the auditor sees the drift"
    );
    assert!(!inbox.body.contains("Resolve selected"));
    assert!(!inbox.body.contains("name=\"group\""));
    let csrf = inbox.csrf();
    let forged = call(
        &server,
        Method::POST,
        "/ui/inbox/resolve",
        Some(&session),
        Some(&format!(
            "csrf={csrf}&group={id}&category=false_positive&comment=forged"
        )),
        SAME_SITE,
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(open_drift(&server, &eve).await.len(), 1);
}

#[tokio::test]
async fn a_hostile_subject_is_shown_escaped() {
    let server = Server::start().await;
    let eve = server.token(Role::Security, "eve").await;
    let web = server.enroll("web-1", &[]).await;
    let hostile = "file:/tmp/<script>alert(1)</script>\"'&.conf";
    server.report(&web, &[web.event(hostile, "1", NOW)]).await;
    let inbox = page(&server, "/ui/inbox", &sign_in(&server, &eve).await).await;
    assert!(!inbox.body.contains("<script>alert(1)"), "{}", inbox.body);
    // Escaped, and shown (quotes and `&` too).
    assert!(
        inbox
            .body
            .contains("&#60;script&#62;alert(1)&#60;/script&#62;&#34;&#39;&#38;.conf"),
        "{}",
        inbox.body
    );
    assert!(!inbox.body.contains("\"'&.conf"));
}

#[tokio::test]
async fn the_inbox_groups_a_change_across_hosts_filters_exports_and_bulk_resolves_with_a_reason() {
    let server = Server::start().await;
    let eve = server.token(Role::Security, "eve").await;
    let web1 = server.enroll("web-1", &[]).await;
    let web2 = server.enroll("web-2", &[]).await;
    let db = server.enroll("db-1", &[]).await;
    // The same change on two hosts, and another result on a third.
    server
        .report(&web1, &[web1.event("file:/etc/ssh/sshd_config", "2", NOW)])
        .await;
    server
        .report(&web2, &[web2.event("file:/etc/ssh/sshd_config", "2", NOW)])
        .await;
    server
        .report(&db, &[db.event("file:/etc/ssh/sshd_config", "9", NOW)])
        .await;
    assert_eq!(open_drift(&server, &eve).await.len(), 3);
    server.clock.set(NOW + 7 * MINUTE);

    let session = sign_in(&server, &eve).await;
    let inbox = page(&server, "/ui/inbox", &session).await;
    assert!(inbox.body.contains("3 items in 2 rows"), "{}", inbox.body);
    assert!(inbox.body.contains("the same change on 2 hosts"));
    assert!(inbox.body.contains("hold of 5 min passed"));

    // Filters are in the URL; the export gives exactly the filtered rows.
    let filtered = page(&server, "/ui/inbox?host=web", &session).await;
    assert!(
        filtered.body.contains("2 items in 1 rows"),
        "{}",
        filtered.body
    );
    assert!(filtered.body.contains("href=\"/ui/inbox.csv?host=web\""));
    let csv = page(&server, "/ui/inbox.csv?host=web", &session).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines.len(), 3, "{}", csv.body);
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.contains("web-") && l.contains(",change,"))
    );

    // Bulk resolve needs a reason: without one nothing is resolved.
    let ids: Vec<String> = open_drift(&server, &eve)
        .await
        .iter()
        .filter(|d| d["hostname"] != "db-1")
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    let group = ids.join("%2C");
    let csrf = inbox.csrf();
    let empty = call(
        &server,
        Method::POST,
        "/ui/inbox/resolve",
        Some(&session),
        Some(&format!(
            "csrf={csrf}&group={group}&category=false_positive&comment=+++"
        )),
        SAME_SITE,
    )
    .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    assert!(empty.body.contains("reason is required"));
    assert_eq!(open_drift(&server, &eve).await.len(), 3);

    let done = call(
        &server,
        Method::POST,
        "/ui/inbox/resolve",
        Some(&session),
        Some(&format!(
            "csrf={csrf}&group={group}&category=false_positive&comment=hardening+rollout&back=host%3Dweb"
        )),
        SAME_SITE,
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("2 items resolved"));
    assert!(done.body.contains("href=\"/ui/inbox?host=web\""));
    let left = open_drift(&server, &eve).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["hostname"], "db-1");
    let resolved = audit_actions(&server)
        .await
        .iter()
        .filter(|a| *a == "drift.resolved")
        .count();
    assert_eq!(resolved, 2, "each item resolved through App, each audited");
}

#[tokio::test]
async fn the_hosts_screen_lists_silent_hosts_first() {
    let server = Server::start().await;
    let eve = server.token(Role::Auditor, "audrey").await;
    let quiet = server.enroll("quiet-1", &[]).await;
    let busy = server.enroll("busy-1", &[]).await;
    server.heartbeat(&quiet, 0, NOW).await;
    server.clock.set(NOW + 10 * MINUTE);
    server.heartbeat(&busy, 0, NOW + 10 * MINUTE).await;
    let hosts = page(&server, "/ui/hosts", &sign_in(&server, &eve).await).await;
    assert_eq!(hosts.status, StatusCode::OK);
    assert!(
        hosts.body.contains("2 enrolled, 1 silent"),
        "{}",
        hosts.body
    );
    let quiet_at = hosts.body.find("quiet-1").unwrap();
    let busy_at = hosts.body.find("busy-1").unwrap();
    assert!(quiet_at < busy_at, "silent first");
    assert!(hosts.body.contains("10 entries, verified"));
}

#[tokio::test]
async fn the_console_answers_over_the_real_http_stack() {
    let server = Server::start().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = client.get(format!("{}/", server.url)).send().await.unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::SEE_OTHER);
    let answer = client
        .get(format!("{}/ui/sign-in", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::OK);
    assert_eq!(answer.headers()["content-security-policy"], CSP);
    assert!(
        answer
            .text()
            .await
            .unwrap()
            .contains("<label for=\"token\">")
    );
    // The API keeps answering JSON errors.
    let api = client
        .get(format!("{}/api/v1/nothing", server.url))
        .send()
        .await
        .unwrap();
    assert!(
        api.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
}

// ---- Screens: drift detail, windows, overview, audit and evidence, live banner.

async fn first_drift_id(server: &Server, token: &str) -> String {
    open_drift(server, token).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_drift_detail_shows_each_role_exactly_its_actions_and_resolves_with_csrf() {
    let server = Server::start().await;
    let eve = server.token(Role::Security, "eve").await;
    let audrey = server.token(Role::Auditor, "audrey").await;
    let carol = server.token(Role::ChangeManager, "carol").await;
    let web = server.enroll("web-1", &[]).await;
    let hostile = "file:/tmp/<script>alert(1)</script>.conf";
    server.report(&web, &[web.event(hostile, "1", NOW)]).await;
    let id = first_drift_id(&server, &eve).await;
    let path = format!("/ui/drift/{id}");

    let eves = page(&server, &path, &sign_in(&server, &eve).await).await;
    assert_eq!(eves.status, StatusCode::OK, "{}", eves.body);
    assert!(eves.body.contains("Why no window covered it"));
    assert!(eves.body.contains("none was requested"), "{}", eves.body);
    assert!(eves.body.contains("Resolve this drift"));
    assert!(!eves.body.contains("Record an emergency window"));
    assert!(!eves.body.contains("<script>alert(1)"));
    assert!(eves.body.contains("&#60;script&#62;alert(1)"));

    let audreys_session = sign_in(&server, &audrey).await;
    let audreys = page(&server, &path, &audreys_session).await;
    assert_eq!(audreys.status, StatusCode::OK);
    assert!(!audreys.body.contains("Resolve this drift"));
    assert!(!audreys.body.contains("Record an emergency window"));
    let carols = page(&server, &path, &sign_in(&server, &carol).await).await;
    assert!(!carols.body.contains("Resolve this drift"));
    assert!(carols.body.contains(&format!("/ui/windows/new?drift={id}")));

    // The inbox links its rows to the detail.
    let inbox = page(&server, "/ui/inbox", &sign_in(&server, &eve).await).await;
    assert!(inbox.body.contains(&format!("href=\"{path}\"")));

    // A forged resolve by the auditor is refused by App; one without the token too.
    let forged = call(
        &server,
        Method::POST,
        &format!("{path}/resolve"),
        Some(&audreys_session),
        Some(&format!(
            "csrf={}&category=false_positive&comment=forged",
            audreys.csrf()
        )),
        SAME_SITE,
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let session = sign_in(&server, &eve).await;
    let csrf = page(&server, &path, &session).await.csrf();
    let no_token = call(
        &server,
        Method::POST,
        &format!("{path}/resolve"),
        Some(&session),
        Some("category=false_positive&comment=tuning"),
        SAME_SITE,
    )
    .await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    assert_eq!(open_drift(&server, &eve).await.len(), 1);
    let no_reason = call(
        &server,
        Method::POST,
        &format!("{path}/resolve"),
        Some(&session),
        Some(&format!("csrf={csrf}&category=false_positive&comment=")),
        SAME_SITE,
    )
    .await;
    assert_eq!(no_reason.status, StatusCode::BAD_REQUEST);
    let done = call(
        &server,
        Method::POST,
        &format!("{path}/resolve"),
        Some(&session),
        Some(&format!(
            "csrf={csrf}&category=false_positive&comment=noise"
        )),
        SAME_SITE,
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert!(open_drift(&server, &eve).await.is_empty());
    let after = page(&server, &path, &session).await;
    assert!(
        after.body.contains("false_positive by eve"),
        "{}",
        after.body
    );
    assert!(!after.body.contains("Resolve this drift"));
    assert_eq!(
        page(&server, "/ui/drift/not-an-id", &session).await.status,
        StatusCode::NOT_FOUND
    );
}

/// The value of the input named `name` in a page (the first one).
fn input_value(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body.find(&marker).expect(name) + marker.len();
    let rest = &body[start..];
    rest[..rest.find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn an_emergency_window_recorded_from_a_drift_makes_it_authorized_and_the_requester_cannot_approve()
 {
    let server = Server::start().await;
    let eve = server.token(Role::Security, "eve").await;
    let carol = server.token(Role::ChangeManager, "carol").await;
    let dave = server.token(Role::ChangeManager, "dave").await;
    let audrey = server.token(Role::Auditor, "audrey").await;
    let web = server.enroll("web-1", &[]).await;
    server
        .report(&web, &[web.event("file:/etc/nginx/nginx.conf", "1", NOW)])
        .await;
    let id = first_drift_id(&server, &eve).await;
    server.clock.set(NOW + 20 * MINUTE);

    let carols = sign_in(&server, &carol).await;
    let form = page(&server, &format!("/ui/windows/new?drift={id}"), &carols).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    assert_eq!(input_value(&form.body, "hosts"), "web-1");
    assert!(form.body.contains(">file:/etc/nginx/nginx.conf</textarea>"));
    assert!(form.body.contains("<option value=\"emergency\" selected>"));
    let (start, end) = (
        input_value(&form.body, "start"),
        input_value(&form.body, "end"),
    );
    // The security analyst cannot request one: no link, and the form is refused.
    let eves = sign_in(&server, &eve).await;
    assert_eq!(
        page(&server, &format!("/ui/windows/new?drift={id}"), &eves)
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    let body = format!(
        "csrf={}&drift={id}&ticket=INC-7&title=hotfix&kind=emergency&hosts=web-1&subjects={}&start={}&end={}&time_zone=UTC&implementers=",
        form.csrf(),
        form_encode("file:/etc/nginx/nginx.conf"),
        form_encode(&start),
        form_encode(&end)
    );
    // Without the CSRF token: refused, nothing requested.
    let forged = call(
        &server,
        Method::POST,
        "/ui/windows",
        Some(&carols),
        Some(body.split_once('&').unwrap().1),
        SAME_SITE,
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let (_, windows) = server.get("/api/v1/windows", &carol).await;
    assert!(windows.as_array().unwrap().is_empty());

    let created = call(
        &server,
        Method::POST,
        "/ui/windows",
        Some(&carols),
        Some(&body),
        SAME_SITE,
    )
    .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let window_path = created.location().to_owned();
    assert!(window_path.starts_with("/ui/windows/"));

    // The requester sees why she cannot approve, not a button; a forged approval is 403.
    let mine = page(&server, &window_path, &carols).await;
    assert!(
        mine.body.contains("You cannot approve this window"),
        "{}",
        mine.body
    );
    assert!(mine.body.contains("segregation of duties"));
    assert!(!mine.body.contains("value=\"approve\""));
    assert!(mine.body.contains("value=\"cancel\""));
    let forged = call(
        &server,
        Method::POST,
        &format!("{window_path}/decide"),
        Some(&carols),
        Some(&format!("csrf={}&action=approve", mine.csrf())),
        SAME_SITE,
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    assert_eq!(open_drift(&server, &eve).await.len(), 1);

    // The auditor sees no action, only the evidence.
    let audreys = sign_in(&server, &audrey).await;
    let seen = page(&server, &window_path, &audreys).await;
    assert!(!seen.body.contains("name=\"action\""));
    assert!(seen.body.contains("evidence?format=html"));
    let list = page(&server, "/ui/windows", &audreys).await;
    assert!(list.body.contains("INC-7"));
    assert!(list.body.contains("Awaiting a decision"));
    assert!(!list.body.contains("Request a window"));

    // Another change manager approves: the drift is authorized.
    let daves = sign_in(&server, &dave).await;
    let theirs = page(&server, &window_path, &daves).await;
    assert!(theirs.body.contains("value=\"approve\""));
    assert!(theirs.body.contains("value=\"reject\""));
    let approved = call(
        &server,
        Method::POST,
        &format!("{window_path}/decide"),
        Some(&daves),
        Some(&format!("csrf={}&action=approve&comment=ok", theirs.csrf())),
        SAME_SITE,
    )
    .await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.body);
    assert!(open_drift(&server, &eve).await.is_empty());
    let (_, item) = server.get(&format!("/api/v1/drift/{id}"), &eve).await;
    assert_eq!(item["drift"]["status"], "authorized", "{item}");

    // The close-out shows the drift it will accept; the evidence bundle is served.
    let closing = page(&server, &window_path, &daves).await;
    assert!(
        closing.body.contains("Drift it will accept (1)"),
        "{}",
        closing.body
    );
    assert!(closing.body.contains(&format!("/ui/drift/{id}")));
    let detail = page(&server, &format!("/ui/drift/{id}"), &daves).await;
    assert!(detail.body.contains("INC-7"), "{}", detail.body);
    let bundle = page(
        &server,
        &format!("{window_path}/evidence?format=json"),
        &audreys,
    )
    .await;
    assert_eq!(bundle.status, StatusCode::OK, "{}", bundle.body);
    assert!(bundle.body.contains("INC-7"));
}

#[tokio::test]
async fn every_screen_renders_for_every_role_with_the_security_headers() {
    let server = Server::start().await;
    let web = server.enroll("web-<b>1</b>", &[]).await;
    server
        .report(&web, &[web.event("file:/etc/<i>x</i>", "1", NOW)])
        .await;
    let admin = server.admin.clone();
    let eve = server.token(Role::Security, "eve").await;
    let id = first_drift_id(&server, &eve).await;
    for (role, name) in [
        (Role::Security, "s"),
        (Role::Auditor, "a"),
        (Role::ChangeManager, "c"),
        (Role::Admin, "ad"),
    ] {
        let token = if role == Role::Admin {
            admin.clone()
        } else {
            server.token(role, name).await
        };
        let session = sign_in(&server, &token).await;
        for path in [
            "/ui/inbox".to_owned(),
            "/ui/overview".to_owned(),
            "/ui/windows".to_owned(),
            "/ui/audit".to_owned(),
            format!("/ui/drift/{id}"),
        ] {
            let answer = page(&server, &path, &session).await;
            assert_eq!(
                answer.status,
                StatusCode::OK,
                "{role:?} {path}: {}",
                answer.body
            );
            assert_eq!(answer.headers[header::CONTENT_SECURITY_POLICY], CSP);
            assert!(
                !answer.body.contains("<b>1</b>"),
                "{path} escapes host names"
            );
            assert!(!answer.body.contains("<i>x</i>"), "{path} escapes subjects");
            assert!(!answer.body.contains("style="), "{path}");
            assert!(!answer.body.contains("<script>"), "{path}");
        }
        let windows = page(&server, "/ui/windows", &session).await;
        assert_eq!(
            windows.body.contains("Request a window"),
            matches!(role, Role::ChangeManager | Role::Admin),
            "{role:?}"
        );
        let audit = page(&server, "/ui/audit", &session).await;
        assert_eq!(
            audit.body.contains("Export (signed)"),
            matches!(role, Role::Security | Role::Auditor | Role::Admin),
            "{role:?}"
        );
    }
}

#[tokio::test]
async fn the_overview_counts_untraced_drift_and_silent_hosts() {
    let server = Server::start().await;
    let audrey = server.token(Role::Auditor, "audrey").await;
    let web = server.enroll("web-1", &[]).await;
    let _quiet = server.enroll("quiet-1", &[]).await;
    server
        .report(
            &web,
            &[
                web.event("file:/etc/a", "1", NOW),
                web.event("file:/etc/b", "1", NOW),
            ],
        )
        .await;
    server.clock.set(NOW + 90 * MINUTE);
    server.heartbeat(&web, 2, NOW + 90 * MINUTE).await;
    let overview = page(&server, "/ui/overview", &sign_in(&server, &audrey).await).await;
    assert_eq!(overview.status, StatusCode::OK);
    let text = overview.body.replace(['\n', ' '], "");
    assert!(
        text.contains("<spanclass=\"n\">2</span>untracedorflaggednow,oldest1h30min"),
        "{}",
        overview.body
    );
    assert!(
        text.contains("<spanclass=\"n\">2</span>overthehold"),
        "{}",
        overview.body
    );
    assert!(text.contains("1silent"), "{}", overview.body);
    assert!(
        overview.body.contains("2 needing review"),
        "the chart counts today's two"
    );
    assert!(overview.body.contains("href=\"/ui/inbox?host=web-1\""));
}

#[tokio::test]
async fn the_audit_screen_verifies_filters_and_exports_a_seeded_sample() {
    let server = Server::start().await;
    let eve = server.token(Role::Security, "eve").await;
    let carol = server.token(Role::ChangeManager, "carol").await;
    let web = server.enroll("web-1", &[]).await;
    server
        .report(&web, &[web.event("file:/etc/motd", "1", NOW)])
        .await;
    let session = sign_in(&server, &eve).await;
    let audit = page(&server, "/ui/audit?action=session", &session).await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.body);
    assert!(audit.body.contains("Verified"), "{}", audit.body);
    assert!(audit.body.contains("session.signed_in"));
    assert!(!audit.body.contains(">token.created<"), "filtered out");

    let path = format!(
        "/ui/audit/export?from={}&to={}&host=&sample=1&seed=7&format=csv",
        form_encode("2026-01-01T00:00:00Z"),
        form_encode("2027-01-01T00:00:00Z")
    );
    let first = page(&server, &path, &session).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert!(first.body.contains("file:/etc/motd"), "{}", first.body);
    assert!(
        audit_actions(&server)
            .await
            .contains(&"report.exported".to_owned())
    );
    let bad = page(&server, "/ui/audit/export?from=yesterday&to=", &session).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    // A change manager may not export: App refuses it, whatever the page showed.
    let carols = sign_in(&server, &carol).await;
    assert_eq!(
        page(&server, &path, &carols).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn the_inbox_subscribes_to_the_live_stream_with_its_session() {
    let server = Server::start().await;
    let eve = server.token(Role::Security, "eve").await;
    let session = sign_in(&server, &eve).await;
    let inbox = page(&server, "/ui/inbox", &session).await;
    assert!(
        inbox
            .body
            .contains("data-stream=\"/ui/inbox/stream?after=0\"")
    );
    let open = |cookie: Option<String>| {
        let router = driftwatch_collector::api::router(server.app.clone());
        let mut request = Request::builder()
            .uri("/ui/inbox/stream")
            .header(header::HOST, "collector.test:8443");
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        router.oneshot(request.body(AxumBody::empty()).unwrap())
    };
    let live = open(Some(session.clone())).await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    assert!(
        live.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    drop(live);
    let anonymous = open(None).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    // The script is a file, served from the page's own origin.
    let js = inbox
        .body
        .split("src=\"")
        .find_map(|rest| rest.split('"').next().filter(|u| u.ends_with(".js")))
        .unwrap()
        .to_owned();
    let script = call(&server, Method::GET, &js, None, None, &[]).await;
    assert!(script.body.contains("EventSource"));
}

#[tokio::test]
async fn a_token_the_requester_issued_sees_no_approve_button_and_its_forged_approval_is_403() {
    let server = Server::start().await;
    // root (admin) issues mallory's change-manager token, then requests a window himself:
    // mallory's token is root's, so it may not approve root's request (App::decide).
    let (status, issued) = server
        .post(
            "/api/v1/tokens",
            &server.admin,
            serde_json::json!({"name": "mallory", "role": "change-manager"}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{issued}");
    let mallory = issued["token"].as_str().unwrap().to_owned();
    let dave = server.token(Role::ChangeManager, "dave").await;
    let at = driftwatch_collector::clock::rfc3339;
    let (status, window) = server
        .post(
            "/api/v1/windows",
            &server.admin,
            serde_json::json!({
                "ticket": "CHG-9", "title": "patch", "hosts": {"names": ["web-1"]},
                "subjects": ["package:nginx*"], "start": at(NOW + 60 * MINUTE),
                "end": at(NOW + 120 * MINUTE), "time_zone": "UTC",
            }),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{window}");
    let path = format!("/ui/windows/{}", window["id"].as_str().unwrap());

    let mallorys = sign_in(&server, &mallory).await;
    let seen = page(&server, &path, &mallorys).await;
    assert_eq!(seen.status, StatusCode::OK, "{}", seen.body);
    assert!(!seen.body.contains("value=\"approve\""), "{}", seen.body);
    assert!(!seen.body.contains("value=\"reject\""), "{}", seen.body);
    assert!(
        seen.body.contains("You cannot approve this window")
            && seen.body.contains("token was issued by root"),
        "{}",
        seen.body
    );
    // She may still cancel it (no lineage rule there), as App allows.
    assert!(seen.body.contains("value=\"cancel\""), "{}", seen.body);
    let forged = call(
        &server,
        Method::POST,
        &format!("{path}/decide"),
        Some(&mallorys),
        Some(&format!("csrf={}&action=approve", seen.csrf())),
        SAME_SITE,
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    let (_, still) = server
        .get(
            &format!("/api/v1/windows/{}", window["id"].as_str().unwrap()),
            &dave,
        )
        .await;
    assert_eq!(still["status"], "requested", "{still}");

    // A change manager whose token root did not issue sees the button.
    let daves = sign_in(&server, &dave).await;
    let theirs = page(&server, &path, &daves).await;
    assert!(theirs.body.contains("value=\"approve\""), "{}", theirs.body);
    assert!(!theirs.body.contains("You cannot approve"));
}

/// The banner's stream URL in a rendered inbox.
fn stream_url(body: &str) -> String {
    let marker = "data-stream=\"";
    let start = body.find(marker).expect("a live banner") + marker.len();
    let rest = &body[start..];
    rest[..rest.find('"').unwrap()].replace("&amp;", "&")
}

#[tokio::test]
async fn the_banner_counts_drift_changed_between_rendering_and_connecting() {
    let server = Server::start().await;
    let eve = server.token(Role::Security, "eve").await;
    let web = server.enroll("web-1", &[]).await;
    server
        .report(&web, &[web.event("file:/etc/old.conf", "1", NOW)])
        .await;
    let session = sign_in(&server, &eve).await;
    let inbox = page(&server, "/ui/inbox", &session).await;
    assert!(inbox.body.contains("old.conf"), "{}", inbox.body);
    let url = stream_url(&inbox.body);
    assert!(url.starts_with("/ui/inbox/stream?after="), "{url}");
    let cursor: i64 = url.rsplit('=').next().unwrap().parse().unwrap();
    assert!(
        cursor > 0,
        "the render-time cursor is after old.conf: {url}"
    );

    // A change lands after the page was rendered, before the browser connects.
    server
        .report(&web, &[web.event("file:/etc/new.conf", "2", NOW + MINUTE)])
        .await;
    let router = driftwatch_collector::api::router(server.app.clone());
    let request = Request::builder()
        .uri(&url)
        .header(header::HOST, "collector.test:8443")
        .header(header::COOKIE, &session)
        .body(AxumBody::empty())
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body().into_data_stream();
    let mut seen = String::new();
    let deadline = std::time::Duration::from_secs(10);
    let found = tokio::time::timeout(deadline, async {
        use futures_util::StreamExt;
        while let Some(Ok(chunk)) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("new.conf") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(found, "the change was counted: {seen}");
    assert!(seen.contains("event: drift"), "{seen}");
    assert!(
        !seen.contains("old.conf"),
        "only what changed after the render: {seen}"
    );
    assert!(seen.contains("\"kind\":\"opened\""), "{seen}");

    // The open item changes again: the stream says so (`changed`), not only status changes.
    server
        .report(
            &web,
            &[web.event("file:/etc/new.conf", "3", NOW + 2 * MINUTE)],
        )
        .await;
    let again = tokio::time::timeout(deadline, async {
        use futures_util::StreamExt;
        while let Some(Ok(chunk)) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("\"kind\":\"changed\"") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(
        again,
        "a further change of an open item is streamed: {seen}"
    );
    assert_eq!(
        open_drift(&server, &eve).await.len(),
        2,
        "still one item per subject"
    );
}

#[tokio::test]
async fn the_request_form_sends_a_schedule_and_expected_states_and_shows_every_problem() {
    let server = Server::start().await;
    let carol = server.token(Role::ChangeManager, "carol").await;
    let carols = sign_in(&server, &carol).await;
    let form = page(&server, "/ui/windows/new", &carols).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    for field in [
        "name=\"weekday\" value=\"sun\"",
        "name=\"schedule_start\"",
        "name=\"schedule_minutes\"",
        "name=\"expected\"",
    ] {
        assert!(form.body.contains(field), "{field} on the form");
    }
    let at = |ms| form_encode(&driftwatch_collector::clock::rfc3339(ms));
    let fields = |kind: &str, minutes: &str, expected: &str| {
        format!(
            "csrf={}&ticket=STD-4&title=weekly+patch&kind={kind}&hosts=web-1&subjects={}\
             &start={}&end={}&time_zone=UTC&implementers=&weekday=sun&weekday=wed\
             &schedule_start=02%3A00&schedule_minutes={minutes}&expected={}",
            form.csrf(),
            form_encode("package:nginx*"),
            at(NOW + MINUTE),
            at(NOW + 60 * 24 * 60 * MINUTE),
            form_encode(expected)
        )
    };

    // Refused by the API's own validation: shown on the form, with what was typed kept.
    let refused = call(
        &server,
        Method::POST,
        "/ui/windows",
        Some(&carols),
        Some(&fields("normal", "2000", "package:nginx version 1.2.3")),
        SAME_SITE,
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(
        refused.body.contains("The window was not requested"),
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("set kind = &#34;standard&#34;")
            || refused.body.contains("set kind = &quot;standard&quot;"),
        "the kind problem: {}",
        refused.body
    );
    assert!(refused.body.contains("duration"), "{}", refused.body);
    assert!(refused.body.contains("value=\"sun\" checked"));
    assert!(
        refused
            .body
            .contains(">package:nginx version 1.2.3</textarea>")
    );
    // A malformed expected-state line is refused before the API sees it, named by line.
    let malformed = call(
        &server,
        Method::POST,
        "/ui/windows",
        Some(&carols),
        Some(&fields(
            "standard",
            "90",
            "package:nginx\nfile:/etc/a hash xyz",
        )),
        SAME_SITE,
    )
    .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert!(
        malformed.body.contains("expected state, line 1")
            && malformed.body.contains("expected state, line 2"),
        "{}",
        malformed.body
    );
    let (_, windows) = server.get("/api/v1/windows", &carol).await;
    assert!(windows.as_array().unwrap().is_empty(), "{windows}");

    // A recurring standard window with its expected end state.
    let created = call(
        &server,
        Method::POST,
        "/ui/windows",
        Some(&carols),
        Some(&fields("standard", "90", "package:nginx version 1.2.3")),
        SAME_SITE,
    )
    .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let id = created.location().rsplit('/').next().unwrap().to_owned();
    let (_, window) = server.get(&format!("/api/v1/windows/{id}"), &carol).await;
    assert_eq!(window["kind"], "standard", "{window}");
    assert_eq!(
        window["schedule"],
        serde_json::json!({"weekdays": ["sun", "wed"], "start": "02:00", "duration_minutes": 90}),
        "{window}"
    );
    assert_eq!(
        window["expected"][0]["subject"], "package:nginx",
        "{window}"
    );
    assert_eq!(window["expected"][0]["version"], "1.2.3", "{window}");
    let shown = page(&server, created.location(), &carols).await;
    assert!(
        shown.body.contains("recurring sun,wed 02:00 for 90 min"),
        "{}",
        shown.body
    );
    assert!(shown.body.contains("version 1.2.3"));
}
