//! The console's CSS and JS, files in `collector/web/static/` embedded in the binary and
//! served under a name carrying their content hash, so browsers may keep them for a year
//! and a new build is fetched at once.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

struct Asset {
    /// `app.<hash>.css`
    name: String,
    content_type: &'static str,
    bytes: &'static [u8],
}

fn asset(stem: &str, ext: &str, content_type: &'static str, bytes: &'static [u8]) -> Asset {
    let hash = blake3::hash(bytes).to_hex();
    Asset {
        name: format!("{stem}.{}.{ext}", &hash[..16]),
        content_type,
        bytes,
    }
}

static CSS: LazyLock<Asset> = LazyLock::new(|| {
    asset(
        "app",
        "css",
        "text/css; charset=utf-8",
        include_bytes!("../../web/static/app.css"),
    )
});
static JS: LazyLock<Asset> = LazyLock::new(|| {
    asset(
        "app",
        "js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/static/app.js"),
    )
});

/// Where the stylesheet is (`/ui/static/app.<hash>.css`).
pub fn css_url() -> String {
    format!("/ui/static/{}", CSS.name)
}

/// Where the script is.
pub fn js_url() -> String {
    format!("/ui/static/{}", JS.name)
}

pub async fn serve(Path(name): Path<String>) -> Response {
    for asset in [&*CSS, &*JS] {
        if asset.name == name {
            let mut response = asset.bytes.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            );
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            );
            return response;
        }
    }
    super::layout::error_page(StatusCode::NOT_FOUND, "No such file.")
}
