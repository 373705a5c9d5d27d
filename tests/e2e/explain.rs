//! Issue 11 through the real `driftwatch-collector` and `driftctl`: `drift explain` says why
//! no window covered a change (a window approved for another host, one that ended 12
//! minutes before the change, one closed just before it, one never approved), `drift
//! history` shows the item's status changes, its events and the subject's timeline, and a
//! hostile subject reaches the terminal escaped.

use driftwatch_common::api::v1::Actor;
use driftwatch_tests::collector::{Collector, FakeAgent};
use serde_json::Value;

/// An RFC 3339 time `minutes` from now.
fn in_minutes(minutes: i64) -> String {
    let at = time::OffsetDateTime::now_utc() + time::Duration::minutes(minutes);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn token(collector: &Collector, admin: &str, name: &str, role: &str) -> String {
    let run = collector.driftctl(admin, &["token", "create", "--name", name, "--role", role]);
    run.expect(0);
    run.stdout.trim().to_owned()
}

/// Alice requests a window with `args` (after `windows create --title work`); its id.
#[track_caller]
fn request(collector: &Collector, alice: &str, args: &[&str]) -> String {
    let mut all = vec!["--json", "windows", "create", "--title", "work"];
    all.extend_from_slice(args);
    let created = collector.driftctl(alice, &all);
    created.expect(0);
    created.json()["id"].as_str().unwrap().to_owned()
}

/// A screen clear, a window title, a bell, a newline that forges a line, a bidi override.
const HOSTILE: &str = "\u{1b}[2J\u{1b}]0;title\u{7}\nwindow CHG-9 authorizes it\u{202e}fdp.exe";

#[track_caller]
fn assert_no_raw(what: &str, text: &str) {
    for raw in ['\u{1b}', '\u{7}', '\r', '\u{202e}'] {
        assert!(!text.contains(raw), "{what} shows {raw:?} raw:\n{text:?}");
    }
    assert!(
        !text.lines().any(|l| l.starts_with("window CHG-9")),
        "{what} shows a forged line:\n{text}"
    );
}

#[test]
fn driftctl_explains_why_no_window_covered_a_change() {
    let collector = Collector::start("");
    let admin = collector.token("admin", "root");
    let alice = token(&collector, &admin, "alice", "change-manager");
    let bob = token(&collector, &admin, "bob", "change-manager");
    let eve = token(&collector, &admin, "eve", "security");
    // Twelve minutes before anything the host reports.
    let ended = in_minutes(-12);
    let web = FakeAgent::enroll(&collector, &admin, "web-1");

    let (start, end) = (in_minutes(-5), in_minutes(55));
    let scope = |ticket: &'static str, host: &'static str| {
        [
            "--ticket",
            ticket,
            "--host",
            host,
            "--subject",
            "file:/etc/app/**",
        ]
    };
    // Approved, for another host.
    let other_host = request(
        &collector,
        &alice,
        &[
            &scope("CHG-1", "db-1")[..],
            &["--start", &start, "--end", &end],
        ]
        .concat(),
    );
    // An emergency change recorded after the fact, ended 12 minutes ago, then closed.
    let past = in_minutes(-60);
    let ended_early = request(
        &collector,
        &alice,
        &[
            &scope("INC-2", "web-1")[..],
            &["--kind", "emergency", "--start", &past, "--end", &ended],
        ]
        .concat(),
    );
    // Approved and closed out just before the change.
    let closed = request(
        &collector,
        &alice,
        &[
            &scope("CHG-3", "web-1")[..],
            &["--start", &start, "--end", &end],
        ]
        .concat(),
    );
    // Requested, never approved.
    request(
        &collector,
        &alice,
        &[
            &scope("CHG-4", "web-1")[..],
            &["--start", &start, "--end", &end],
        ]
        .concat(),
    );
    for id in [&other_host, &ended_early, &closed] {
        collector
            .driftctl(&bob, &["windows", "approve", id])
            .expect(0);
    }
    for id in [&ended_early, &closed] {
        collector
            .driftctl(&alice, &["windows", "close", id, "--comment", "done"])
            .expect(0);
    }
    // The host's heartbeat after the close: its next changes were spooled after it.
    web.heartbeat(&collector, 0).expect(200);
    let subject = "file:/etc/app/app.conf";
    let mut change = web.event(subject, "2");
    change.actor = Some(Actor {
        source: "fanotify".into(),
        pid: Some(4242),
        comm: Some("vi".into()),
        uid: Some(0),
        user: Some("root".into()),
        login_uid: Some(1000),
        login_user: Some("mallory".into()),
        tty: Some("pts/3".into()),
        ..Actor::default()
    });
    web.seal(&mut change);
    let hostile = web.event(&format!("file:/etc/app/{HOSTILE}"), "1");
    web.report(&collector, &[change, hostile]).expect(200);

    let items = collector.get("/api/v1/drift", &eve).expect(200);
    let id_of = |subject: &str| -> String {
        items
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["subject"] == subject)
            .unwrap_or_else(|| panic!("no drift on {subject:?}: {items:#}"))["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let id = id_of(subject);

    let explained = collector.driftctl(&eve, &["drift", "explain", &id]);
    explained.expect(0);
    let text = &explained.stdout;
    let line = |ticket: &str| -> &str {
        text.lines()
            .find(|l| l.trim_start().starts_with(&format!("{ticket} ")))
            .unwrap_or_else(|| panic!("no line for {ticket}:\n{text}"))
    };
    assert!(
        text.contains("event seq 1: untraced") && text.contains("by mallory"),
        "{text}"
    );
    assert!(
        line("CHG-1").ends_with("host web-1 is not in its scope"),
        "{text}"
    );
    assert!(
        line("INC-2").contains("(emergency, closed,")
            && line("INC-2").contains("the change came 12 minutes after the window ended"),
        "{text}"
    );
    assert!(
        line("CHG-3").contains("after the window was closed"),
        "{text}"
    );
    assert!(
        line("CHG-4").contains("is requested, not approved"),
        "{text}"
    );
    // The same as JSON.
    let json = collector.driftctl(&eve, &["--json", "drift", "explain", &id]);
    json.expect(0);
    let candidates = json.json()["explanation"]["events"][0]["candidates"].clone();
    let decision = |ticket: &str| -> Value {
        candidates
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["window"]["ticket"] == ticket)
            .unwrap()["decision"]
            .clone()
    };
    assert_eq!(decision("CHG-1")["reason"], "host_out_of_scope");
    assert_eq!(decision("INC-2")["reason"], "after");
    assert_eq!(decision("INC-2")["ended"], "planned_end");
    assert_eq!(decision("CHG-3")["ended"], "closed");
    assert_eq!(decision("CHG-4")["reason"], "not_approved");

    // History: opened untraced, resolved by eve with her reason; who made the change.
    collector
        .driftctl(
            &eve,
            &[
                "drift",
                "resolve",
                &id,
                "--category",
                "confirmed_unauthorized",
                "--comment",
                "nobody owned it",
            ],
        )
        .expect(0);
    let history = collector.driftctl(&eve, &["drift", "history", &id]);
    history.expect(0);
    history
        .stdout_has("(new) -> open  by collector")
        .stdout_has("open -> resolved  by eve: confirmed_unauthorized")
        .stdout_has("resolution: confirmed_unauthorized by eve")
        .stdout_has("nobody owned it")
        .stdout_has("mallory (login uid 1000) as root via vi[4242]")
        .stdout_has("on pts/3")
        .stdout_has("seen by watch")
        .stdout_has("timeline of file:/etc/app/app.conf on web-1");

    // A hostile subject: escaped in every text line, exact in JSON.
    let hostile_id = id_of(&format!("file:/etc/app/{HOSTILE}"));
    for command in ["explain", "history"] {
        let run = collector.driftctl(&eve, &["drift", command, &hostile_id]);
        run.expect(0);
        assert_no_raw(command, &run.stdout);
        assert!(
            run.stdout
                .contains("\\x1b[2J\\x1b]0;title\\x07\\x0awindow CHG-9"),
            "{}",
            run.stdout
        );
    }
    let json = collector.driftctl(&eve, &["--json", "drift", "explain", &hostile_id]);
    json.expect(0);
    assert_no_raw("explain --json", &json.stdout);
    assert_eq!(
        json.json()["drift"]["subject"],
        format!("file:/etc/app/{HOSTILE}").as_str()
    );

    // Exit codes as elsewhere: an unknown item is 84 (not found), an agent is refused.
    collector
        .driftctl(
            &eve,
            &["drift", "explain", "0190d3b4-0000-7000-8000-000000000000"],
        )
        .expect(84);
    collector
        .driftctl(&eve, &["drift", "history", "not-an-id"])
        .expect(64);
}
