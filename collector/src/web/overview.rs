//! The overview: untraced now and its age, hosts reporting and silent, windows active
//! now, authorized vs needing review per day (a server-rendered SVG chart), top hosts and
//! subjects, time to resolution. Read from the newest [`SAMPLE`] drift items through
//! `App` (the page says so when there are more).

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::layout::{self, Layout};
use super::session::{Viewer, app_error};
use crate::api::AppState;
use crate::app::Limit;
use crate::clock::Millis;
use crate::drift::DriftStatus;
use crate::store::{DriftFilter, DriftItem, Store};
use crate::windows::WindowStatus;

/// Drift items read for the page.
pub const SAMPLE: u32 = 1000;
/// Days of the chart.
pub const DAYS: i64 = 14;
const DAY_MS: i64 = 86_400_000;

/// One day of the chart: items opened that day, by how they stand now.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Day {
    pub label: String,
    /// Covered by a window (authorized or accepted).
    pub authorized: u32,
    /// Needed a person (open, or resolved by one).
    pub untraced: u32,
}

/// Items opened in the `DAYS` days up to `now`, per UTC day, oldest first.
pub fn per_day(items: &[DriftItem], now: Millis) -> Vec<Day> {
    let today = now.div_euclid(DAY_MS);
    let mut days: Vec<Day> = (0..DAYS)
        .map(|i| Day {
            label: layout::instant((today - DAYS + 1 + i) * DAY_MS)[5..10].to_owned(),
            ..Day::default()
        })
        .collect();
    for item in items {
        let offset = item.opened_at.div_euclid(DAY_MS) - (today - DAYS + 1);
        if let Some(day) = usize::try_from(offset).ok().and_then(|i| days.get_mut(i)) {
            match item.status {
                DriftStatus::Authorized | DriftStatus::Accepted => day.authorized += 1,
                DriftStatus::Open | DriftStatus::Resolved => day.untraced += 1,
            }
        }
    }
    days
}

/// The median time from needing review to a person's resolution (restores excluded).
pub fn median_resolution(items: &[DriftItem]) -> Option<i64> {
    let mut spans: Vec<i64> = items
        .iter()
        .filter_map(|i| {
            let r = i.resolution.as_ref()?;
            (r.category != crate::drift::ResolutionCategory::Restored)
                .then(|| r.at - i.untraced_since.unwrap_or(i.opened_at))
        })
        .collect();
    spans.sort_unstable();
    spans
        .get(spans.len() / 2)
        .copied()
        .filter(|_| !spans.is_empty())
}

/// The `n` keys with the most entries, most first.
pub fn top<'a>(keys: impl Iterator<Item = &'a str>, n: usize) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for k in keys {
        *counts.entry(k).or_default() += 1;
    }
    let mut list: Vec<(String, usize)> =
        counts.into_iter().map(|(k, c)| (k.to_owned(), c)).collect();
    list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    list.truncate(n);
    list
}

pub struct ChartBar {
    pub label: String,
    pub x: usize,
    pub auth_y: i64,
    pub auth_h: i64,
    pub untraced_y: i64,
    pub untraced_h: i64,
    pub authorized: u32,
    pub untraced: u32,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    layout: Layout,
    open: usize,
    oldest: String,
    over_hold: usize,
    hosts: usize,
    silent: usize,
    active_windows: usize,
    bars: Vec<ChartBar>,
    top_hosts: Vec<(String, usize)>,
    top_subjects: Vec<(String, usize)>,
    resolution: String,
    sampled: bool,
}

pub async fn page<S: Store>(State(app): State<AppState<S>>, viewer: Viewer) -> Response {
    let me = &viewer.principal;
    let limit = Limit {
        asked: Some(SAMPLE),
        default: SAMPLE,
        max: SAMPLE,
    };
    let all = match app.drift_items(me, DriftFilter::default(), limit).await {
        Ok(items) => items,
        Err(err) => return app_error(err),
    };
    let open = match app
        .drift_items(
            me,
            DriftFilter {
                status: Some(DriftStatus::Open),
                ..DriftFilter::default()
            },
            limit,
        )
        .await
    {
        Ok(items) => items,
        Err(err) => return app_error(err),
    };
    let hosts = match app.hosts(me).await {
        Ok(h) => h,
        Err(err) => return app_error(err),
    };
    let windows = match app.windows(me, Some(WindowStatus::Approved)).await {
        Ok(w) => w,
        Err(err) => return app_error(err),
    };
    let now = app.now();
    let since = |i: &DriftItem| i.untraced_since.unwrap_or(i.opened_at);
    let oldest = open.iter().map(since).min();
    let days = per_day(&all, now);
    let peak = days
        .iter()
        .map(|d| d.authorized + d.untraced)
        .max()
        .unwrap_or(0)
        .max(1);
    let scale = |n: u32| i64::from(n) * 160 / i64::from(peak);
    let bars = days
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let (ah, uh) = (scale(d.authorized), scale(d.untraced));
            ChartBar {
                x: 40 + i * 50,
                untraced_y: 180 - uh,
                untraced_h: uh,
                auth_y: 180 - uh - ah,
                auth_h: ah,
                label: d.label,
                authorized: d.authorized,
                untraced: d.untraced,
            }
        })
        .collect();
    let silent_after = app.settings.silent_after_ms;
    layout::render(
        StatusCode::OK,
        &OverviewPage {
            layout: Layout::new("Overview", Some(&viewer), "/ui/overview"),
            open: open.len(),
            oldest: oldest.map_or_else(|| "—".to_owned(), |t| layout::duration(now - t)),
            over_hold: open
                .iter()
                .filter(|i| now - since(i) >= app.settings.hold_ms)
                .count(),
            hosts: hosts.len(),
            silent: hosts
                .iter()
                .filter(|h| h.last_seen_at.unwrap_or(h.enrolled_at) < now - silent_after)
                .count(),
            active_windows: windows
                .iter()
                .filter(|w| w.start <= now && now < w.effective_end())
                .count(),
            bars,
            top_hosts: top(open.iter().map(|i| i.hostname.as_str()), 5),
            top_subjects: top(open.iter().map(|i| i.subject.as_str()), 5),
            resolution: median_resolution(&all)
                .map_or_else(|| "no resolution yet".to_owned(), layout::duration),
            sampled: all.len() >= SAMPLE as usize || open.len() >= SAMPLE as usize,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn item(opened_at: Millis, status: DriftStatus) -> DriftItem {
        DriftItem {
            id: Uuid::nil(),
            host_id: Uuid::nil(),
            hostname: "h".into(),
            subject: "s".into(),
            status,
            reason: None,
            window_id: None,
            opened_at,
            untraced_since: Some(opened_at),
            events: 1,
            last_event_id: Uuid::nil(),
            last_event_at: opened_at,
            alerted_at: None,
            resolution: None,
            updated_at: opened_at,
        }
    }

    #[test]
    fn days_count_what_was_covered_and_what_needed_a_person() {
        let now = 100 * DAY_MS + 5;
        let days = per_day(
            &[
                item(now, DriftStatus::Open),
                item(now - 1, DriftStatus::Authorized),
                item(now - DAY_MS, DriftStatus::Resolved),
                item(now - DAYS * DAY_MS, DriftStatus::Open),
            ],
            now,
        );
        assert_eq!(days.len(), DAYS as usize);
        assert_eq!((days[13].authorized, days[13].untraced), (1, 1));
        assert_eq!((days[12].authorized, days[12].untraced), (0, 1));
        assert_eq!(
            days.iter().map(|d| d.untraced).sum::<u32>(),
            2,
            "older ones left out"
        );
    }

    #[test]
    fn the_top_list_counts_and_orders() {
        let got = top(["a", "b", "b", "c", "b", "a"].into_iter(), 2);
        assert_eq!(got, [("b".to_owned(), 3), ("a".to_owned(), 2)]);
    }
}
