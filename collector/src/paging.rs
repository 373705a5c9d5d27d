//! Listings with a cursor (issue 10), pure: a page is read by keyset (the listing's order
//! continues strictly after the last item handed out, never OFFSET), one row more than the
//! limit is asked of the store to learn whether there is more, and the next cursor is the
//! last item's key, opaque to clients (hex of a tagged text, so a cursor of one listing
//! given to another is refused, not misread).

use uuid::Uuid;

use crate::clock::Millis;

/// A page and, when the listing goes on, the cursor of the next one.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// Where a listing stopped: its last item's key in the listing's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    /// Drift, newest opened first: `(opened_at, id)`.
    Drift(Millis, Uuid),
    /// Hosts by name: `(hostname, id)`.
    Host(String, Uuid),
    /// Windows by start: `(start_at, id)`.
    Window(Millis, Uuid),
    /// The audit log by sequence number.
    Audit(u64),
}

/// Which listing a cursor belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listing {
    Drift,
    Hosts,
    Windows,
    Audit,
}

impl Listing {
    fn tag(self) -> &'static str {
        match self {
            Listing::Drift => "drift",
            Listing::Hosts => "hosts",
            Listing::Windows => "windows",
            Listing::Audit => "audit",
        }
    }
}

impl Key {
    fn listing(&self) -> Listing {
        match self {
            Key::Drift(..) => Listing::Drift,
            Key::Host(..) => Listing::Hosts,
            Key::Window(..) => Listing::Windows,
            Key::Audit(_) => Listing::Audit,
        }
    }

    /// The cursor handed to clients.
    pub fn encode(&self) -> String {
        let text = match self {
            Key::Drift(at, id) | Key::Window(at, id) => format!("{at}\n{id}"),
            Key::Host(name, id) => format!("{id}\n{name}"),
            Key::Audit(seq) => seq.to_string(),
        };
        let tagged = format!("1\n{}\n{text}", self.listing().tag());
        crate::identity::hex(tagged.as_bytes())
    }

    /// A cursor of `listing`, or why it is not one.
    pub fn decode(listing: Listing, cursor: &str) -> Result<Key, String> {
        let refused = || {
            format!(
                "cursor is not one the {} listing handed out (pass its next cursor as it came)",
                listing.tag()
            )
        };
        if cursor.len() > 2048 || !cursor.len().is_multiple_of(2) {
            return Err(refused());
        }
        let bytes = (0..cursor.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(cursor.get(i..i + 2).unwrap_or("x"), 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| refused())?;
        let text = String::from_utf8(bytes).map_err(|_| refused())?;
        let mut parts = text.splitn(3, '\n');
        let (Some("1"), Some(tag), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(refused());
        };
        if tag != listing.tag() {
            return Err(refused());
        }
        let time_id = |rest: &str| -> Option<(Millis, Uuid)> {
            let (at, id) = rest.split_once('\n')?;
            Some((at.parse().ok()?, Uuid::parse_str(id).ok()?))
        };
        match listing {
            Listing::Drift => time_id(rest).map(|(at, id)| Key::Drift(at, id)),
            Listing::Windows => time_id(rest).map(|(at, id)| Key::Window(at, id)),
            Listing::Hosts => rest
                .split_once('\n')
                .and_then(|(id, name)| Some(Key::Host(name.to_owned(), Uuid::parse_str(id).ok()?))),
            Listing::Audit => rest.parse().ok().map(Key::Audit),
        }
        .ok_or_else(refused)
    }
}

/// The page of `limit` items out of `rows` (read with `limit + 1`): the extra row only says
/// that the listing goes on, after the last item kept.
pub fn page<T>(mut rows: Vec<T>, limit: u32, key: impl Fn(&T) -> Key) -> Page<T> {
    let limit = limit as usize;
    if rows.len() <= limit {
        return Page {
            items: rows,
            next: None,
        };
    }
    rows.truncate(limit);
    let next = rows.last().map(|last| key(last).encode());
    Page { items: rows, next }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_comes_back_as_the_key_it_was() {
        let id = Uuid::now_v7();
        for key in [
            Key::Drift(-5, id),
            Key::Window(1_700_000_000_000, id),
            Key::Host("web-1\nevil".into(), id),
            Key::Audit(42),
        ] {
            let cursor = key.encode();
            assert!(cursor.bytes().all(|b| b.is_ascii_hexdigit()), "{cursor}");
            assert_eq!(Key::decode(key.listing(), &cursor), Ok(key));
        }
    }

    #[test]
    fn a_cursor_of_another_listing_or_a_made_up_one_is_refused() {
        let drift = Key::Drift(1, Uuid::now_v7()).encode();
        let err = Key::decode(Listing::Windows, &drift).unwrap_err();
        assert!(err.contains("windows listing"), "{err}");
        for bad in ["", "zz", "abc", "31", &"00".repeat(2000)] {
            assert!(Key::decode(Listing::Audit, bad).is_err(), "{bad:?}");
        }
        let forged = crate::identity::hex(b"1\naudit\nnot-a-number");
        assert!(Key::decode(Listing::Audit, &forged).is_err());
    }

    #[test]
    fn the_extra_row_makes_a_next_cursor_and_is_not_returned() {
        let full = page(vec![1u64, 2, 3], 2, |n| Key::Audit(*n));
        assert_eq!(full.items, vec![1, 2]);
        assert_eq!(full.next, Some(Key::Audit(2).encode()));
        let last = page(vec![3u64], 2, |n| Key::Audit(*n));
        assert_eq!(last.items, vec![3]);
        assert_eq!(last.next, None);
        let exact = page(vec![1u64, 2], 2, |n| Key::Audit(*n));
        assert_eq!(exact.next, None, "exactly the limit: no more");
    }
}
