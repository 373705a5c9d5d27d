//! The web console in a real browser (issue 11): Debian's headless Chromium driven through
//! chromedriver, against a collector (and, for the inbox, a real agent) the test starts.
//!
//! Every screen is checked by axe-core at 1280 px and at 390 px (no violations, no page
//! wider than the window) and saved as a screenshot under `target/browser-screenshots/`.
//! A new screen is one line in [`SCREENS`].
//!
//! Skipped without chromium, chromedriver or axe-core (`npm ci` in `tests/browser/`)
//! unless `DRIFTWATCH_REQUIRE_BROWSER` is set, as `.ci/run` does.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use driftwatch_tests::browser::Browser;
use driftwatch_tests::collector::{Collector, FakeAgent};
use driftwatch_tests::daemon::{DaemonHost, wait_until};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// Every signed-in screen: (name for the screenshot, path). Add a screen here; `{drift}`
/// is replaced by the id of the test's drift item.
const SCREENS: &[(&str, &str)] = &[
    ("inbox", "/ui/inbox"),
    ("drift-detail", "/ui/drift/{drift}"),
    ("overview", "/ui/overview"),
    ("windows", "/ui/windows"),
    ("hosts", "/ui/hosts"),
    ("audit", "/ui/audit"),
];

/// The widths the console must be usable at: a laptop and a phone.
const WIDTHS: &[(u32, u32)] = &[(1280, 900), (390, 844)];

/// One untraced item from a fake host, so the inbox has a row (and its resolve form).
fn collector_with_drift() -> (Collector, String) {
    let collector = Collector::start("");
    let admin = collector.token("admin", "root");
    let agent = FakeAgent::enroll(&collector, &admin, "web-1.example");
    agent
        .report(&collector, &[agent.event("file:/etc/ssh/sshd_config", "2")])
        .expect(200);
    (collector, admin)
}

/// The open drift items, through the API.
fn open_drift(collector: &Collector, token: &str) -> Vec<Value> {
    collector
        .get("/api/v1/drift?status=open", token)
        .expect(200)
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[track_caller]
fn assert_accessible(browser: &Browser, screen: &str) {
    let violations = browser.axe();
    assert!(
        violations.is_empty(),
        "axe-core found on {screen}:\n{}",
        violations.join("\n")
    );
}

#[test]
fn every_screen_passes_axe_and_fits_at_1280_and_390_px() {
    let (collector, _admin) = collector_with_drift();
    let security = collector.token("security", "sam");
    let drift = open_drift(&collector, &security)[0]["id"]
        .as_str()
        .expect("a drift id")
        .to_owned();
    let base = collector.url();
    for &(width, height) in WIDTHS {
        let Some(browser) = Browser::start(width, height) else {
            return;
        };
        // The sign-in page, before any session.
        browser.goto(&format!("{base}/ui/sign-in"));
        assert_eq!(
            browser.viewport_width(),
            u64::from(width),
            "the page is {width} px wide"
        );
        assert!(browser.text().contains("Sign in"), "{}", browser.text());
        browser.screenshot(&format!("sign-in-{width}"));
        assert_accessible(&browser, &format!("sign-in at {width} px"));
        assert!(!browser.overflows(), "sign-in is wider than {width} px");

        browser.sign_in(&base, &security);
        for &(name, path) in SCREENS {
            let path = path.replace("{drift}", &drift);
            let path = path.as_str();
            browser.goto(&format!("{base}{path}"));
            assert!(
                browser.url().ends_with(path),
                "{name} is shown, not {}",
                browser.url()
            );
            browser.screenshot(&format!("{name}-{width}"));
            assert_accessible(&browser, &format!("{name} at {width} px"));
            assert!(
                !browser.overflows(),
                "{name} is wider than the {width} px window"
            );
        }
        // The page not found.
        browser.goto(&format!("{base}/ui/no-such-screen"));
        browser.screenshot(&format!("not-found-{width}"));
        assert_accessible(&browser, &format!("not found at {width} px"));
    }
}

#[test]
fn a_change_under_the_agent_shows_in_the_inbox_and_leaves_it_when_resolved() {
    let collector = Collector::start("");
    let admin = collector.token("admin", "root");
    let security = collector.token("security", "sam");
    let host = DaemonHost::new(Some(&collector.url()), "");
    host.init();
    let hostname = host.enroll_at(&collector, &admin);
    let daemon = host.start();
    let Some(browser) = Browser::start(1280, 900) else {
        return;
    };
    let base = collector.url();
    browser.sign_in(&base, &security);
    assert!(
        browser.text().contains("Nothing needs review"),
        "the inbox starts empty: {}",
        browser.text()
    );

    // A mark on this very page: a reload would lose it.
    browser.script("window.driftwatchTestMark = 'kept';", vec![]);
    assert!(
        browser.wait_for(|| browser.count("#live[hidden]") == 1),
        "the banner waits hidden"
    );
    std::fs::write(host.host.tree().join("etc/app.conf"), "port = 8080\n").unwrap();
    // The live banner counts it, without a reload and without moving rows.
    let counted = wait_until(WAIT, || {
        browser.count("#live[hidden]") == 0 && browser.text().contains("1 new")
    });
    assert!(
        counted,
        "the banner never counted the change: {}",
        browser.text()
    );
    assert_eq!(
        browser.script("return window.driftwatchTestMark || null;", vec![]),
        json!("kept"),
        "the page was not reloaded"
    );
    assert!(
        !browser.text().contains("app.conf"),
        "no row moved in under the pointer: {}",
        browser.text()
    );
    browser.screenshot("inbox-live-banner");
    browser.click("#live-reload");
    assert!(
        browser.wait_for(|| browser.text().contains("app.conf")),
        "the banner's click shows the row: {}",
        browser.text()
    );
    browser.screenshot("inbox-with-change");
    assert_eq!(browser.count("input[name=group]"), 1, "{}", browser.text());

    browser.click("input[name=group]");
    browser.select("#r-category", "false_positive");
    browser.fill("#r-comment", "test edit by sam, reverted");
    browser.fill("#r-ticket", "CHG-42");
    browser.click("#resolve fieldset button[type=submit]");
    assert!(
        browser.wait_for(|| browser.text().contains("1 item resolved")),
        "{}",
        browser.text()
    );
    browser.screenshot("resolved");
    browser.goto(&format!("{base}/ui/inbox"));
    assert!(
        !browser.text().contains("app.conf"),
        "the resolved change left the inbox: {}",
        browser.text()
    );
    // The API agrees, with the reason kept.
    assert!(open_drift(&collector, &security).is_empty());
    let all = collector.get("/api/v1/drift", &security).expect(200);
    let item = all
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d.to_string().contains("app.conf"))
        .unwrap_or_else(|| panic!("the item is kept: {all:#}"));
    assert!(
        item.to_string().contains("test edit by sam, reverted"),
        "{item:#}"
    );
    assert!(item.to_string().contains(&hostname), "{item:#}");
    drop(browser);
    daemon.stop();
}

#[test]
fn an_auditor_sees_no_resolve_button_and_a_forged_post_gets_403() {
    let (collector, admin) = collector_with_drift();
    let auditor = collector.token("auditor", "ann");
    let Some(browser) = Browser::start(1280, 900) else {
        return;
    };
    let base = collector.url();
    browser.sign_in(&base, &auditor);
    browser.goto(&format!("{base}/ui/inbox"));
    assert!(browser.text().contains("sshd_config"), "{}", browser.text());
    assert_eq!(browser.count("input[name=group]"), 0, "no row to select");
    assert_eq!(browser.count("#r-comment"), 0, "no resolve form");
    assert!(!browser.text().contains("Resolve selected"));
    browser.screenshot("inbox-auditor");

    // The auditor's own page posts the resolve anyway, with a valid CSRF token.
    let open = open_drift(&collector, &admin);
    let id = open[0]["id"].as_str().expect("an id").to_owned();
    let status = browser.script_async(
        "var done = arguments[arguments.length - 1];\
         var body = new URLSearchParams();\
         body.append('csrf', document.querySelector('input[name=csrf]').value);\
         body.append('group', arguments[0]);\
         body.append('category', 'false_positive');\
         body.append('comment', 'forged');\
         fetch('/ui/inbox/resolve', { method: 'POST', body: body })\
           .then(function (r) { done(r.status); }, function (e) { done(String(e)); });",
        vec![json!(id)],
    );
    assert_eq!(status, json!(403));
    assert_eq!(
        open_drift(&collector, &admin).len(),
        1,
        "nothing was resolved"
    );
}

/// A page on another origin (`localhost:PORT`, the collector being `127.0.0.1`) with a
/// form that posts a complete, valid-looking resolve to the collector.
fn attacker_site(action: &str, csrf: &str, id: &str) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let page = format!(
        "<!doctype html><title>prize</title><form method=post action=\"{action}\">\
         <input name=csrf value=\"{csrf}\"><input name=group value=\"{id}\">\
         <input name=category value=false_positive><input name=comment value=pwned>\
         <button id=go>claim</button></form>"
    );
    let server = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut served = 0;
        while served < 2 && std::time::Instant::now() < deadline {
            match listener.accept() {
                Ok((mut socket, _)) => {
                    socket.set_nonblocking(false).unwrap();
                    socket
                        .set_read_timeout(Some(Duration::from_secs(5)))
                        .unwrap();
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf);
                    let _ = write!(
                        socket,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{page}",
                        page.len()
                    );
                    served += 1;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    (format!("http://localhost:{port}/"), server)
}

#[test]
fn a_cross_site_form_post_is_refused() {
    let (collector, admin) = collector_with_drift();
    let security = collector.token("security", "sam");
    let Some(browser) = Browser::start(1280, 900) else {
        return;
    };
    let base = collector.url();
    browser.sign_in(&base, &security);
    browser.goto(&format!("{base}/ui/inbox"));
    // The attacker even knows the CSRF token: the browser's own signals still give it away.
    let csrf = browser
        .script(
            "return document.querySelector('input[name=csrf]').value;",
            vec![],
        )
        .as_str()
        .unwrap()
        .to_owned();
    let id = open_drift(&collector, &admin)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (site, server) = attacker_site(&format!("{base}/ui/inbox/resolve"), &csrf, &id);
    browser.goto(&site);
    browser.click("#go");
    assert!(
        browser.wait_for(|| browser.url().starts_with(&base)),
        "the form was posted: {}",
        browser.url()
    );
    let text = browser.text();
    browser.screenshot("cross-site-refused");
    assert!(
        !text.contains("resolved, each recorded"),
        "the cross-site post resolved something: {text}"
    );
    assert_eq!(open_drift(&collector, &admin).len(), 1, "nothing resolved");
    assert!(
        text.contains("Refused: the browser says this request comes from another site")
            && text.contains("HTTP 403"),
        "the refusal says why: {text}"
    );
    drop(browser);
    let _ = server.join();
}

#[test]
fn a_session_expires_after_its_ttl() {
    // 60 s is the shortest lifetime the configuration accepts.
    let collector = Collector::start("[dashboard]\nsession_ttl_secs = 60\n");
    let security = collector.token("security", "sam");
    let Some(browser) = Browser::start(1280, 900) else {
        return;
    };
    let base = collector.url();
    browser.sign_in(&base, &security);
    browser.goto(&format!("{base}/ui/hosts"));
    assert!(browser.url().ends_with("/ui/hosts"), "{}", browser.url());
    std::thread::sleep(Duration::from_secs(62));
    browser.goto(&format!("{base}/ui/hosts"));
    assert!(
        browser.url().contains("/ui/sign-in"),
        "an expired session still shows {}: {}",
        browser.url(),
        browser.text()
    );
    browser.screenshot("session-expired");
}

/// The drift detail's button records an emergency window (scope and times filled in);
/// carol, who recorded it, sees why she cannot approve it instead of a button, and her own
/// page's forged approval gets 403; dave approves it in his browser and the drift is
/// authorized, on the page and through the API.
#[test]
fn an_emergency_window_recorded_from_a_drift_authorizes_it_and_its_requester_cannot_approve() {
    let (collector, admin) = collector_with_drift();
    let carol = collector.token("change-manager", "carol");
    let dave = collector.token("change-manager", "dave");
    let id = open_drift(&collector, &admin)[0]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let base = collector.url();
    let Some(browser) = Browser::start(1280, 900) else {
        return;
    };
    browser.sign_in(&base, &carol);
    browser.goto(&format!("{base}/ui/drift/{id}"));
    browser.click("a.button[href^='/ui/windows/new']");
    assert!(
        browser.wait_for(|| browser.url().contains("/ui/windows/new?drift=")),
        "{}",
        browser.url()
    );
    assert!(
        browser.text().contains("Record an emergency window"),
        "{}",
        browser.text()
    );
    let filled = browser.script(
        "return [document.getElementById('w-hosts').value, \
                 document.getElementById('w-subjects').value, \
                 document.getElementById('w-kind').value];",
        vec![],
    );
    assert_eq!(
        filled,
        json!(["web-1.example", "file:/etc/ssh/sshd_config", "emergency"]),
        "scope filled in from the drift"
    );
    browser.fill("#w-ticket", "INC-7");
    browser.screenshot("window-from-drift");
    browser.click("form.card button[type=submit]");
    assert!(
        browser.wait_for(|| {
            let url = browser.url();
            url.contains("/ui/windows/") && !url.contains("/new")
        }),
        "the window was recorded: {} {}",
        browser.url(),
        browser.text()
    );
    let window_url = browser.url();
    let window_id = window_url.rsplit('/').next().unwrap().to_owned();

    // carol, the requester: no approve button, the reason instead.
    assert_eq!(
        browser.count("input[name=action][value=approve]"),
        0,
        "{}",
        browser.text()
    );
    assert!(
        browser.text().contains("You cannot approve this window")
            && browser.text().contains("segregation of duties"),
        "{}",
        browser.text()
    );
    browser.screenshot("window-requester");
    let status = browser.script_async(
        "var done = arguments[arguments.length - 1];\
         var body = new URLSearchParams();\
         body.append('csrf', document.querySelector('input[name=csrf]').value);\
         body.append('action', 'approve');\
         body.append('comment', 'forged');\
         fetch(arguments[0], { method: 'POST', body: body })\
           .then(function (r) { done(r.status); }, function (e) { done(String(e)); });",
        vec![json!(format!("/ui/windows/{window_id}/decide"))],
    );
    assert_eq!(status, json!(403), "carol's forged approval");
    let window = collector
        .get(&format!("/api/v1/windows/{window_id}"), &admin)
        .expect(200);
    assert_eq!(window["status"], "requested", "{window:#}");
    assert_eq!(open_drift(&collector, &admin).len(), 1, "still open");

    // dave approves it in the browser: the drift is authorized.
    browser.sign_in(&base, &dave);
    browser.goto(&window_url);
    assert_eq!(browser.count("input[name=action][value=approve]"), 1);
    browser.fill("#c-approve", "seen the incident");
    browser.click("form:has(input[value=approve]) button[type=submit]");
    assert!(
        browser.wait_for(|| browser.text().contains("approved by dave")),
        "{}",
        browser.text()
    );
    browser.screenshot("window-approved");
    browser.goto(&format!("{base}/ui/drift/{id}"));
    assert!(
        browser.text().contains("status authorized"),
        "{}",
        browser.text()
    );
    let item = collector
        .get(&format!("/api/v1/drift/{id}"), &admin)
        .expect(200);
    assert_eq!(item["drift"]["status"], "authorized", "{item:#}");
    assert_eq!(
        item["drift"]["window_id"].as_str(),
        Some(window_id.as_str()),
        "{item:#}"
    );
    assert!(open_drift(&collector, &admin).is_empty());
}
