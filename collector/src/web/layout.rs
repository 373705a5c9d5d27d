//! What every page shares: the frame (`collector/web/templates/base.html`: skip link,
//! header with the navigation and sign-out, `main`), the error page, and rendering.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::session::Viewer;
use crate::identity::Role;

/// The navigation: `(path, label, roles that see it)`. A later screen adds its line.
pub const NAV: &[(&str, &str, &[Role])] = &[
    ("/ui/inbox", "Untraced inbox", &Role::PEOPLE),
    ("/ui/overview", "Overview", &Role::PEOPLE),
    ("/ui/windows", "Windows", &Role::PEOPLE),
    ("/ui/hosts", "Hosts", &Role::PEOPLE),
    ("/ui/audit", "Audit and evidence", &Role::PEOPLE),
];

pub struct NavItem {
    pub path: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// The frame's data, a field of every page's template.
pub struct Layout {
    pub title: String,
    /// `None` on the sign-in and error pages.
    pub user: Option<String>,
    pub role: String,
    pub csrf: String,
    pub nav: Vec<NavItem>,
    pub css: String,
    pub js: String,
}

impl Layout {
    pub fn new(title: &str, viewer: Option<&Viewer>, current: &str) -> Layout {
        let nav = match viewer {
            Some(v) => NAV
                .iter()
                .filter(|(_, _, roles)| roles.contains(&v.principal.role))
                .map(|(path, label, _)| NavItem {
                    path,
                    label,
                    current: *path == current,
                })
                .collect(),
            None => Vec::new(),
        };
        Layout {
            title: title.to_owned(),
            user: viewer.map(|v| v.principal.name.clone()),
            role: viewer.map_or_else(String::new, |v| v.principal.role.name().to_owned()),
            csrf: viewer.map_or_else(String::new, |v| v.csrf.clone()),
            nav,
            css: super::assets::css_url(),
            js: super::assets::js_url(),
        }
    }
}

/// Renders a page, or the error page when the template fails.
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "a console page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><title>Error</title><p>The page could not be rendered.</p>"),
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    status: u16,
    message: String,
}

/// A page saying what went wrong, with `status`.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    render(
        status,
        &ErrorPage {
            layout: Layout::new(status.canonical_reason().unwrap_or("Error"), None, ""),
            status: status.as_u16(),
            message: message.to_owned(),
        },
    )
}

/// A duration for people: "45 s", "12 min", "3 h 5 min", "2 d 4 h".
pub fn duration(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 86_400 => match (s / 3600, (s % 3600) / 60) {
            (h, 0) => format!("{h} h"),
            (h, m) => format!("{h} h {m} min"),
        },
        s => match (s / 86_400, (s % 86_400) / 3600) {
            (d, 0) => format!("{d} d"),
            (d, h) => format!("{d} d {h} h"),
        },
    }
}

/// A time for people: RFC 3339 to the second, UTC.
pub fn instant(ms: i64) -> String {
    let text = crate::clock::rfc3339(ms);
    match text.split_once('.') {
        Some((seconds, _)) => format!("{seconds}Z"),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(-5), "0 s");
        assert_eq!(duration(45_000), "45 s");
        assert_eq!(duration(12 * 60_000 + 5_000), "12 min");
        assert_eq!(duration(3 * 3_600_000), "3 h");
        assert_eq!(duration(3 * 3_600_000 + 5 * 60_000), "3 h 5 min");
        assert_eq!(duration(2 * 86_400_000 + 4 * 3_600_000), "2 d 4 h");
    }
}
