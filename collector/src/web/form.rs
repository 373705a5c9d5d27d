//! `application/x-www-form-urlencoded` bodies as ordered pairs (a field may repeat, as the
//! inbox's selected rows do), read up to [`MAX_FORM_BYTES`].

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::Response;

use super::layout;

pub const MAX_FORM_BYTES: usize = 256 * 1024;

/// A decoded form.
#[derive(Debug, Default)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    pub fn parse(body: &[u8]) -> Fields {
        let text = String::from_utf8_lossy(body);
        Fields(
            text.split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    /// The first value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Percent-decoding with `+` as a space; invalid escapes are kept as written.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let bytes = Bytes::from_request(req, state).await.map_err(|_| {
            layout::error_page(
                StatusCode::BAD_REQUEST,
                "The form could not be read (too large or cut short).",
            )
        })?;
        if bytes.len() > MAX_FORM_BYTES {
            return Err(layout::error_page(
                StatusCode::PAYLOAD_TOO_LARGE,
                "The form is too large.",
            ));
        }
        Ok(Fields::parse(&bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_fields_and_escapes_decode() {
        let f = Fields::parse(b"group=a%2Cb&group=c&comment=two+words%21&bad=%zz&csrf=");
        assert_eq!(f.all("group").collect::<Vec<_>>(), ["a,b", "c"]);
        assert_eq!(f.get("comment"), Some("two words!"));
        assert_eq!(f.get("bad"), Some("%zz"));
        assert_eq!(f.get("csrf"), Some(""));
        assert_eq!(f.get("missing"), None);
        assert_eq!(Fields::parse(b"x=%4").get("x"), Some("%4"));
    }
}
