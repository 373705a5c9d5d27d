//! Cross-site request forgery: two checks on every state-changing request.
//!
//! 1. [`same_origin_only`]: a browser's `Sec-Fetch-Site` must be `same-origin`; without it,
//!    an `Origin` header must name the host the request was sent to (`Host`). A request with
//!    neither header comes from no browser, so no other site can have sent it with the
//!    person's cookie; it still needs the token below.
//! 2. The form's `csrf` field must equal the session's token ([`token_for`]), compared in
//!    constant time ([`matches`]). The token is derived from the session id with a keyed
//!    BLAKE3 (so it reveals nothing of the id and needs no storage).
//!
//! Either failing is 403 and nothing changes. Sign-in has no session yet: the first check
//! and the cookie's `SameSite=Strict` protect it.

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::layout;

const CONTEXT: &str = "driftwatch web console 2026-12 csrf token";

/// The CSRF token of the session whose id is `secret`.
pub fn token_for(secret: &str) -> String {
    crate::identity::hex(&blake3::derive_key(CONTEXT, secret.as_bytes()))
}

/// Whether `given` is `expected`, in time independent of where they differ.
pub fn matches(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    if a.len() != b.len() || a.is_empty() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Why a request does not come from the console's own pages (`None`: it may).
pub fn cross_site(headers: &HeaderMap) -> Option<&'static str> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        // Set by the browser alone (a forbidden header name) and authoritative. Under the
        // console's `Referrer-Policy: no-referrer`, Chromium sends `Origin: null` with every
        // form POST, its own pages' included, so the Origin is only read without this header.
        if site.eq_ignore_ascii_case("same-origin") {
            return None;
        }
        return Some("the browser says this request comes from another site");
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let Some(origin) = origin.to_str().ok() else {
            return Some("the Origin header is not text");
        };
        let host = origin
            .split_once("://")
            .map(|(_, rest)| rest.trim_end_matches('/'));
        let expected = text("host");
        match (host, expected) {
            (Some(host), Some(expected)) if host.eq_ignore_ascii_case(expected) => {}
            _ => return Some("the request's Origin is not this collector"),
        }
    }
    None
}

/// Refuses (403) a state-changing request from another site.
pub async fn same_origin_only(request: Request, next: Next) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !safe && let Some(why) = cross_site(request.headers()) {
        tracing::warn!(path = %request.uri().path(), why, "cross-site request to the web console refused");
        return layout::error_page(
            StatusCode::FORBIDDEN,
            &format!("Refused: {why}. Use the console's own pages."),
        );
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn tokens_are_per_session_and_compared_whole() {
        let a = token_for(&"a".repeat(64));
        let b = token_for(&"b".repeat(64));
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(matches(&a, &a.clone()));
        assert!(!matches(&a, &b));
        assert!(!matches(&a, &a[..63]));
        assert!(!matches(&a, ""));
        assert!(!matches("", ""));
    }

    #[test]
    fn same_origin_passes_and_other_sites_are_named() {
        assert_eq!(cross_site(&headers(&[])), None);
        assert_eq!(
            cross_site(&headers(&[
                ("host", "collector:8443"),
                ("origin", "https://collector:8443"),
                ("sec-fetch-site", "same-origin"),
            ])),
            None
        );
        // Chromium's own form POST under `Referrer-Policy: no-referrer` (found by the
        // browser tests: every sign-in was refused).
        assert_eq!(
            cross_site(&headers(&[
                ("host", "127.0.0.1:8443"),
                ("origin", "null"),
                ("sec-fetch-site", "same-origin"),
            ])),
            None
        );
        for bad in [
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[("sec-fetch-site", "same-site")]),
            headers(&[("sec-fetch-site", "cross-site"), ("origin", "null")]),
            headers(&[
                ("host", "collector:8443"),
                ("origin", "https://evil.example"),
            ]),
            headers(&[("host", "collector:8443"), ("origin", "null")]),
            headers(&[("origin", "https://collector:8443")]),
        ] {
            assert!(cross_site(&bad).is_some(), "{bad:?}");
        }
    }
}
