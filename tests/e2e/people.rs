//! Segregation of duties by person, and text output a hostile host cannot turn against the
//! reader: the real collector and `driftctl`, a `FakeAgent` for the host.

use driftwatch_common::api::v1::Actor;
use driftwatch_tests::collector::{Collector, FakeAgent};
use serde_json::{Value, json};

/// An RFC 3339 time `minutes` from now.
fn in_minutes(minutes: i64) -> String {
    let at = time::OffsetDateTime::now_utc() + time::Duration::minutes(minutes);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// `driftctl token create --person PERSON --role ROLE` by `admin`: the token.
#[track_caller]
fn token(collector: &Collector, admin: &str, person: &str, role: &str) -> String {
    let run = collector.driftctl(
        admin,
        &["token", "create", "--person", person, "--role", role],
    );
    run.expect(0);
    run.stdout.trim().to_owned()
}

/// A window requested with `token`; its id.
#[track_caller]
fn request_window(collector: &Collector, token: &str, ticket: &str) -> String {
    let created = collector.driftctl(
        token,
        &[
            "--json",
            "windows",
            "create",
            "--ticket",
            ticket,
            "--title",
            "work",
            "--host",
            "web-1",
            "--subject",
            "file:/etc/app/**",
            "--start",
            &in_minutes(-5),
            "--end",
            &in_minutes(55),
        ],
    );
    created.expect(0);
    let window: Value = serde_json::from_str(&created.stdout).unwrap();
    window["id"].as_str().unwrap().to_owned()
}

/// Approving `window` with `token` is refused (403, exit 83) with `fragment` in the error.
#[track_caller]
fn refused(collector: &Collector, token: &str, window: &str, fragment: &str) {
    let run = collector.driftctl(token, &["windows", "approve", window]);
    run.expect(83).stderr_has("403").stderr_has(fragment);
}

#[test]
fn a_person_cannot_approve_their_own_window_through_any_token_or_spelling() {
    let collector = Collector::start("");
    let root = collector.token("admin", "root");
    let carol = token(&collector, &root, "carol", "change-manager");
    let bob = token(&collector, &root, "bob", "change-manager");
    let window = request_window(&collector, &carol, "CHG-1");

    // Case and trailing space name carol herself: the token is hers, and refused.
    for alias in ["Carol", "carol "] {
        let run = collector.driftctl(
            &root,
            &[
                "token",
                "create",
                "--person",
                alias,
                "--role",
                "change-manager",
            ],
        );
        run.expect(0);
        assert!(
            !run.stderr.contains("new person"),
            "{alias:?} made a new person: {}",
            run.stderr
        );
        assert!(run.stderr.contains("for carol;"), "{}", run.stderr);
        refused(
            &collector,
            run.stdout.trim(),
            &window,
            "segregation of duties: carol requested",
        );
    }
    // Carol's own second token.
    let second = token(&collector, &root, "carol", "change-manager");
    refused(
        &collector,
        &second,
        &window,
        "segregation of duties: carol requested",
    );

    // A confusable name (Cyrillic а) and an invisible character are refused at creation.
    let cyrillic = collector.post(
        "/api/v1/tokens",
        Some(&root),
        &json!({"person": "c\u{430}rol", "role": "change-manager"}),
    );
    cyrillic.error(409, "conflict", "looks like the existing person `carol`");
    collector
        .post(
            "/api/v1/people",
            Some(&root),
            &json!({"name": "c\u{430}rol"}),
        )
        .error(409, "conflict", "`carol`");
    let hidden = collector.post(
        "/api/v1/tokens",
        Some(&root),
        &json!({"person": "carol\u{200b}", "role": "change-manager"}),
    );
    hidden.error(400, "bad_request", "U+200B");
    collector
        .post("/api/v1/people", Some(&root), &json!({"name": "CAROL"}))
        .error(409, "conflict", "person `carol` already exists");
    // driftctl says the same.
    collector
        .driftctl(&root, &["people", "create", "c\u{430}rol"])
        .expect(89)
        .stderr_has("carol");

    // The admin role does not approve.
    refused(
        &collector,
        &root,
        &window,
        "approve needs the change-manager role; root has role admin",
    );

    // Only one carol, whatever was tried.
    let people = collector.get("/api/v1/people", &root).expect(200);
    let names: Vec<&str> = people
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bob", "carol", "root"], "{people}");

    // Someone else approves; creating people and tokens is in the audit log.
    collector
        .driftctl(&bob, &["windows", "approve", &window])
        .expect(0)
        .stdout_has("is approved");
    let log = collector.driftctl(&root, &["audit", "log"]);
    log.expect(0);
    assert_eq!(
        log.stdout.matches("person.created").count(),
        3,
        "{}",
        log.stdout
    );
    assert!(log.stdout.contains("token.created"), "{}", log.stdout);
    // The approval names the token and who issued it.
    let entries = collector.get("/api/v1/audit", &root).expect(200);
    let approval = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "window.approved")
        .expect("the approval is audited");
    assert_eq!(approval["actor"], "bob", "{approval}");
    // root, then whoever ran the offline bootstrap (`local:USER`).
    let issuers = approval["details"]["token_issuers"].as_array().unwrap();
    assert_eq!(issuers.len(), 2, "{approval}");
    assert_eq!(issuers[0], "root", "{approval}");
    assert!(
        issuers[1].as_str().unwrap().starts_with("local:"),
        "{approval}"
    );
    let listed = collector.driftctl(&root, &["tokens", "list"]);
    listed.expect(0).stdout_has("issued by root (token ");
}

#[test]
fn a_requester_cannot_approve_through_a_token_they_issued() {
    let collector = Collector::start("");
    let root = collector.token("admin", "root");
    // Dana is an admin and a change manager (two tokens, one person).
    let dana_admin = token(&collector, &root, "dana", "admin");
    let dana = token(&collector, &root, "dana", "change-manager");
    let bob = token(&collector, &root, "bob", "change-manager");
    let window = request_window(&collector, &dana, "CHG-2");

    // Dana mints an alias with the change-manager role: a new person, but her token.
    let alias = collector.driftctl(
        &dana_admin,
        &[
            "token",
            "create",
            "--person",
            "dana-second",
            "--role",
            "change-manager",
        ],
    );
    alias.expect(0);
    assert!(alias.stderr.contains("(new person)"), "{}", alias.stderr);
    refused(
        &collector,
        alias.stdout.trim(),
        &window,
        "token was issued by dana",
    );
    // Through a proxy admin she minted, which mints the approver.
    let proxy = token(&collector, &dana_admin, "proxy", "admin");
    let puppet = token(&collector, &proxy, "puppet", "change-manager");
    refused(&collector, &puppet, &window, "token was issued by");
    // Her admin token is refused for the role, before anything else.
    refused(
        &collector,
        &dana_admin,
        &window,
        "needs the change-manager role",
    );

    collector
        .driftctl(&bob, &["windows", "approve", &window])
        .expect(0)
        .stdout_has("is approved");
}

#[test]
fn tokens_issued_before_people_existed_are_adopted_and_merged_names_reported() {
    let mut collector = Collector::start("");
    let root = collector.token("admin", "root");
    let carol = token(&collector, &root, "carol", "change-manager");
    let look_alike = token(&collector, &root, "tmp-a", "change-manager");
    let spaced = token(&collector, &root, "tmp-b", "change-manager");
    let bob = token(&collector, &root, "bob", "change-manager");
    let window = request_window(&collector, &carol, "CHG-3");

    // As a database from before people: token names only (the old bypasses among them).
    let (code, log) = collector.stop();
    assert_eq!(code, Some(0), "{log}");
    {
        let db = rusqlite::Connection::open(collector.db()).unwrap();
        db.execute_batch(
            "UPDATE tokens SET name = 'c\u{430}rol' WHERE name = 'tmp-a';
             UPDATE tokens SET name = 'Carol ' WHERE name = 'tmp-b';
             UPDATE tokens SET person_id = NULL;
             DELETE FROM people;",
        )
        .unwrap();
    }
    collector.restart();
    let log = collector.log();
    assert!(
        log.contains("now belong to one person") && log.contains("Carol "),
        "{log}"
    );

    for alias in [&look_alike, &spaced] {
        refused(
            &collector,
            alias,
            &window,
            "segregation of duties: carol requested",
        );
    }
    let people = collector.get("/api/v1/people", &root).expect(200);
    assert_eq!(people.as_array().unwrap().len(), 3, "{people}");
    let audit = collector.driftctl(&root, &["audit", "log"]);
    audit.expect(0).stdout_has("person.names_merged");
    collector
        .driftctl(&bob, &["windows", "approve", &window])
        .expect(0);
}

/// What a hostile host puts in a subject and an actor: a screen clear, a window title, a
/// carriage return, a newline that forges a table line, a right-to-left override.
const HOSTILE: &str = "\u{1b}[2J\u{1b}]0;title\u{7}\rX\n0190d3b4-0000-7000-8000-000000000000  resolved   web-1  file:/etc/ok  1 event(s)\u{202e}fdp.exe";

/// Raw bytes none of the text outputs may contain.
#[track_caller]
fn assert_no_raw(what: &str, text: &str) {
    for raw in ['\u{1b}', '\u{7}', '\r', '\u{202e}'] {
        assert!(!text.contains(raw), "{what} shows {raw:?} raw:\n{text:?}");
    }
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("0190d3b4-0000-7000-8000-000000000000")),
        "{what} shows a forged line:\n{text}"
    );
}

#[test]
fn control_and_bidi_characters_from_a_host_are_shown_escaped() {
    let collector = Collector::start("");
    let root = collector.token("admin", "root");
    let eve = token(&collector, &root, "eve", "security");
    let web = FakeAgent::enroll(&collector, &root, "web-1");
    let subject = format!("file:/etc/{HOSTILE}");
    let mut event = web.event(&subject, "1");
    event.actor = Some(Actor {
        source: "fanotify".into(),
        pid: Some(4242),
        comm: Some(format!("sh{HOSTILE}")),
        login_user: Some(format!("mallory{HOSTILE}")),
        ..Actor::default()
    });
    web.seal(&mut event);
    web.report(&collector, &[event]).expect(200);
    let escaped = "\\x1b[2J\\x1b]0;title\\x07\\x0dX\\x0a0190d3b4";

    let list = collector.driftctl(&eve, &["drift", "list"]);
    list.expect(0);
    assert_no_raw("drift list", &list.stdout);
    assert!(list.stdout.contains(escaped), "{}", list.stdout);
    assert!(
        list.stdout.contains("\\xe2\\x80\\xaefdp.exe"),
        "{}",
        list.stdout
    );
    assert_eq!(list.stdout.lines().count(), 1, "{}", list.stdout);

    let items = collector.get("/api/v1/drift", &eve).expect(200);
    let id = items[0]["id"].as_str().unwrap().to_owned();
    // JSON keeps the exact text.
    assert_eq!(items[0]["subject"], subject.as_str());
    let show = collector.driftctl(&eve, &["drift", "show", &id]);
    show.expect(0);
    assert_no_raw("drift show", &show.stdout);
    assert!(
        show.stdout.contains(&format!("mallory{escaped}")),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout.contains(&format!("via sh{escaped}")),
        "{}",
        show.stdout
    );

    // driftctl --json: still the exact values, with what JSON leaves raw as \u escapes.
    let json = collector.driftctl(&eve, &["--json", "drift", "show", &id]);
    json.expect(0);
    assert_no_raw("drift show --json", &json.stdout);
    let parsed: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(parsed["drift"]["subject"], subject.as_str());

    let csv = collector.driftctl(
        &eve,
        &[
            "report",
            "export",
            "--from",
            &in_minutes(-10),
            "--to",
            &in_minutes(10),
        ],
    );
    csv.expect(0);
    // CRLF ends each record (RFC 4180); no other carriage return may appear.
    let lines = csv.stdout.replace("\r\n", "\n");
    assert_no_raw("CSV export", &lines);
    let table = lines.split("\n\n").nth(1).unwrap_or(&lines);
    // The export is signed on its last line (`driftctl verify`): not a record.
    let table: String = table
        .lines()
        .filter(|l| !l.starts_with("# driftwatch-signature"))
        .collect::<Vec<_>>()
        .join("\n");
    let table = table.as_str();
    assert!(table.contains(escaped), "{table}");
    // A header and one record: the newline did not start a record.
    assert_eq!(
        table.lines().filter(|l| !l.is_empty()).count(),
        2,
        "{table}"
    );

    // The collector's log: a refused batch quotes the subject, escaped.
    let bad = web.event(&format!(":{HOSTILE}"), "1");
    web.report(&collector, &[bad]).expect(400);
    let log = collector.log();
    assert!(log.contains("request refused"), "{log}");
    assert!(
        !log.contains('\u{1b}') && !log.contains('\u{202e}'),
        "{log:?}"
    );
}
