//! The event buffer of a fanotify group in FID mode (`FAN_REPORT_DFID_NAME`),
//! parsed over a byte slice with every length checked: no pointer casts, no
//! trust in what the buffer says about its own sizes.
//!
//! Layout (linux/fanotify.h), native endian:
//!
//! ```text
//! fanotify_event_metadata  event_len u32 | vers u8 | reserved u8 | metadata_len u16
//!                          | mask u64 | fd i32 | pid i32                  (24 bytes)
//! then, up to event_len, info records:
//! fanotify_event_info_header  info_type u8 | pad u8 | len u16
//! fanotify_event_info_fid     header | fsid [i32; 2] | file_handle
//! file_handle                 handle_bytes u32 | handle_type i32 | f_handle[handle_bytes]
//! DFID_NAME records add the entry's name, NUL-terminated, padded to `len`.
//! ```
//!
//! A malformed event header makes the rest of the buffer unreadable (its
//! length cannot be trusted), so parsing stops there; a malformed info record
//! only costs its own event.

use std::fmt;

/// `sizeof(struct fanotify_event_metadata)`.
pub const METADATA_LEN: usize = 24;
/// `FANOTIFY_METADATA_VERSION`: the only layout this parser knows.
pub const METADATA_VERSION: u8 = 3;
/// `sizeof(struct fanotify_event_info_header)`.
const INFO_HEADER_LEN: usize = 4;
/// fsid (8 bytes) + handle_bytes (4) + handle_type (4).
const FID_FIXED_LEN: usize = 16;

pub const INFO_TYPE_FID: u8 = 1;
pub const INFO_TYPE_DFID_NAME: u8 = 2;
pub const INFO_TYPE_DFID: u8 = 3;

/// One event: what happened (`mask`), who did it (`pid`) and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FidEvent<'a> {
    pub mask: u64,
    pub pid: i32,
    /// The directory and the name of the entry the event is about; `None`
    /// for events without one (queue overflow).
    pub entry: Option<DirEntry<'a>>,
}

/// A directory (as a file handle on the file system `fsid`) and an entry name in it.
/// The name is `.` (or empty) when the event is about the directory itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirEntry<'a> {
    pub fsid: [i32; 2],
    pub handle_type: i32,
    pub handle: &'a [u8],
    pub name: &'a [u8],
}

impl DirEntry<'_> {
    /// The event is about the directory itself, not an entry in it.
    pub fn is_directory_itself(&self) -> bool {
        self.name.is_empty() || self.name == b"."
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Fewer bytes than an event header, or than the event says it has.
    Truncated { needed: usize, left: usize },
    /// A metadata layout this parser does not know.
    Version(u8),
    /// Lengths in the event header that contradict each other.
    EventLength {
        event_len: usize,
        metadata_len: usize,
    },
    /// An info record that does not fit its event or its own length.
    Record { info_type: u8, why: &'static str },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Truncated { needed, left } => {
                write!(f, "truncated event: {needed} bytes needed, {left} left")
            }
            ParseError::Version(v) => write!(f, "unknown fanotify metadata version {v}"),
            ParseError::EventLength {
                event_len,
                metadata_len,
            } => write!(
                f,
                "inconsistent event lengths: event_len {event_len}, metadata_len {metadata_len}"
            ),
            ParseError::Record { info_type, why } => {
                write!(f, "malformed info record of type {info_type}: {why}")
            }
        }
    }
}

/// The events in `buffer`, in order. After an error about an event header
/// the iterator ends.
pub fn events(buffer: &[u8]) -> Events<'_> {
    Events {
        rest: buffer,
        done: false,
    }
}

pub struct Events<'a> {
    rest: &'a [u8],
    done: bool,
}

impl<'a> Iterator for Events<'a> {
    type Item = Result<FidEvent<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.rest.is_empty() {
            return None;
        }
        match split_event(self.rest) {
            Ok((event, rest)) => {
                self.rest = rest;
                Some(event)
            }
            Err(err) => {
                self.done = true;
                Some(Err(err))
            }
        }
    }
}

/// Splits off one event. The outer error is about the header (stop); the
/// inner one about this event's records (skip it).
#[allow(clippy::type_complexity)]
fn split_event(buffer: &[u8]) -> Result<(Result<FidEvent<'_>, ParseError>, &[u8]), ParseError> {
    if buffer.len() < METADATA_LEN {
        return Err(ParseError::Truncated {
            needed: METADATA_LEN,
            left: buffer.len(),
        });
    }
    let event_len = u32_at(buffer, 0) as usize;
    let version = buffer[4];
    let metadata_len = u16::from_ne_bytes([buffer[6], buffer[7]]) as usize;
    if version != METADATA_VERSION {
        return Err(ParseError::Version(version));
    }
    if metadata_len < METADATA_LEN || event_len < metadata_len {
        return Err(ParseError::EventLength {
            event_len,
            metadata_len,
        });
    }
    if event_len > buffer.len() {
        return Err(ParseError::Truncated {
            needed: event_len,
            left: buffer.len(),
        });
    }
    let mask = u64::from_ne_bytes(buffer[8..16].try_into().expect("8 bytes"));
    let pid = i32_at(buffer, 20);
    let records = &buffer[metadata_len..event_len];
    let event = entry_of(records).map(|entry| FidEvent { mask, pid, entry });
    Ok((event, &buffer[event_len..]))
}

/// The first directory record (DFID_NAME or DFID) among `records`; other
/// record types (the object's own FID, pidfd, error...) are skipped.
fn entry_of(mut records: &[u8]) -> Result<Option<DirEntry<'_>>, ParseError> {
    let mut found = None;
    while !records.is_empty() {
        if records.len() < INFO_HEADER_LEN {
            return Err(ParseError::Record {
                info_type: records[0],
                why: "shorter than its header",
            });
        }
        let info_type = records[0];
        let len = u16::from_ne_bytes([records[2], records[3]]) as usize;
        if len < INFO_HEADER_LEN || len > records.len() {
            return Err(ParseError::Record {
                info_type,
                why: "length outside the event",
            });
        }
        let body = &records[INFO_HEADER_LEN..len];
        records = &records[len..];
        if found.is_some() {
            continue;
        }
        match info_type {
            INFO_TYPE_DFID_NAME => found = Some(fid_record(info_type, body, true)?),
            INFO_TYPE_DFID => found = Some(fid_record(info_type, body, false)?),
            _ => {}
        }
    }
    Ok(found)
}

fn fid_record(info_type: u8, body: &[u8], named: bool) -> Result<DirEntry<'_>, ParseError> {
    let bad = |why| ParseError::Record { info_type, why };
    if body.len() < FID_FIXED_LEN {
        return Err(bad("too short for a file handle"));
    }
    let fsid = [i32_at(body, 0), i32_at(body, 4)];
    let handle_len = u32_at(body, 8) as usize;
    let handle_type = i32_at(body, 12);
    let after_fixed = &body[FID_FIXED_LEN..];
    if handle_len == 0 || handle_len > after_fixed.len() {
        return Err(bad("file handle length outside the record"));
    }
    let (handle, rest) = after_fixed.split_at(handle_len);
    let name = if named {
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| bad("name without a terminating NUL"))?;
        &rest[..end]
    } else {
        &[]
    };
    if name.contains(&b'/') {
        return Err(bad("name contains '/'"));
    }
    Ok(DirEntry {
        fsid,
        handle_type,
        handle,
        name,
    })
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn i32_at(bytes: &[u8], at: usize) -> i32 {
    i32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds an info record the way the kernel lays it out (padded to 4 bytes).
    fn fid_record_bytes(
        info_type: u8,
        fsid: [i32; 2],
        handle: &[u8],
        name: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&fsid[0].to_ne_bytes());
        body.extend_from_slice(&fsid[1].to_ne_bytes());
        body.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
        body.extend_from_slice(&1i32.to_ne_bytes());
        body.extend_from_slice(handle);
        if let Some(name) = name {
            body.extend_from_slice(name);
            body.push(0);
        }
        while !(body.len() + INFO_HEADER_LEN).is_multiple_of(4) {
            body.push(0);
        }
        let mut record = vec![info_type, 0];
        record.extend_from_slice(&((body.len() + INFO_HEADER_LEN) as u16).to_ne_bytes());
        record.extend_from_slice(&body);
        record
    }

    fn event_bytes(mask: u64, pid: i32, records: &[Vec<u8>]) -> Vec<u8> {
        let records: Vec<u8> = records.concat();
        let mut event = Vec::new();
        event.extend_from_slice(&((METADATA_LEN + records.len()) as u32).to_ne_bytes());
        event.push(METADATA_VERSION);
        event.push(0);
        event.extend_from_slice(&(METADATA_LEN as u16).to_ne_bytes());
        event.extend_from_slice(&mask.to_ne_bytes());
        event.extend_from_slice(&(-1i32).to_ne_bytes());
        event.extend_from_slice(&pid.to_ne_bytes());
        event.extend_from_slice(&records);
        event
    }

    const ATTRIB: u64 = 0x4;
    const MOVED_FROM: u64 = 0x40;
    const MOVED_TO: u64 = 0x80;
    const OVERFLOW: u64 = 0x4000;

    #[test]
    fn consecutive_events_with_names_are_read_in_order() {
        let mut buffer = event_bytes(
            MOVED_FROM,
            42,
            &[fid_record_bytes(
                INFO_TYPE_DFID_NAME,
                [7, 9],
                &[1, 2, 3, 4, 5, 6, 7, 8],
                Some(b"old.conf"),
            )],
        );
        buffer.extend(event_bytes(
            MOVED_TO,
            42,
            &[fid_record_bytes(
                INFO_TYPE_DFID_NAME,
                [7, 9],
                &[9; 12],
                Some(b"new.conf"),
            )],
        ));
        let parsed: Vec<_> = events(&buffer).collect::<Result<_, _>>().unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].mask, MOVED_FROM);
        assert_eq!(parsed[0].pid, 42);
        let from = parsed[0].entry.unwrap();
        assert_eq!(from.fsid, [7, 9]);
        assert_eq!(from.handle, &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(from.handle_type, 1);
        assert_eq!(from.name, b"old.conf");
        assert!(!from.is_directory_itself());
        assert_eq!(parsed[1].entry.unwrap().name, b"new.conf");
        assert_eq!(parsed[1].entry.unwrap().handle, &[9; 12]);
    }

    #[test]
    fn an_overflow_event_has_no_entry() {
        let buffer = event_bytes(OVERFLOW, 0, &[]);
        let parsed: Vec<_> = events(&buffer).collect();
        assert_eq!(
            parsed,
            vec![Ok(FidEvent {
                mask: OVERFLOW,
                pid: 0,
                entry: None
            })]
        );
    }

    #[test]
    fn the_directory_itself_and_unknown_records_are_understood() {
        // An object FID record first (skipped), then the directory with name ".",
        // then a record type from a newer kernel (skipped).
        let buffer = event_bytes(
            ATTRIB,
            5,
            &[
                fid_record_bytes(INFO_TYPE_FID, [1, 1], &[4; 8], None),
                fid_record_bytes(INFO_TYPE_DFID_NAME, [1, 1], &[5; 8], Some(b".")),
                vec![99, 0, 8, 0, 0, 0, 0, 0],
            ],
        );
        let event = events(&buffer).next().unwrap().unwrap();
        let entry = event.entry.unwrap();
        assert_eq!(entry.handle, &[5; 8]);
        assert!(entry.is_directory_itself());
        let dfid_only = event_bytes(
            ATTRIB,
            5,
            &[fid_record_bytes(INFO_TYPE_DFID, [1, 1], &[6; 8], None)],
        );
        let entry = events(&dfid_only).next().unwrap().unwrap().entry.unwrap();
        assert!(entry.is_directory_itself() && entry.handle == [6; 8]);
    }

    #[test]
    fn a_truncated_buffer_stops_after_the_good_events() {
        let good = event_bytes(
            ATTRIB,
            1,
            &[fid_record_bytes(
                INFO_TYPE_DFID_NAME,
                [1, 2],
                &[3; 8],
                Some(b"a"),
            )],
        );
        let mut buffer = good.clone();
        buffer.extend_from_slice(&good[..good.len() - 3]);
        let parsed: Vec<_> = events(&buffer).collect();
        assert_eq!(parsed.len(), 2);
        assert!(parsed[0].is_ok());
        assert!(
            matches!(parsed[1], Err(ParseError::Truncated { .. })),
            "{parsed:?}"
        );
        // Shorter than a header.
        let parsed: Vec<_> = events(&good[..10]).collect();
        assert_eq!(
            parsed,
            vec![Err(ParseError::Truncated {
                needed: METADATA_LEN,
                left: 10
            })]
        );
    }

    #[test]
    fn inconsistent_headers_stop_parsing() {
        let good = event_bytes(ATTRIB, 1, &[]);
        let mut wrong_version = good.clone();
        wrong_version[4] = 2;
        assert_eq!(
            events(&wrong_version).collect::<Vec<_>>(),
            vec![Err(ParseError::Version(2))]
        );
        let mut short_metadata = good.clone();
        short_metadata[6..8].copy_from_slice(&8u16.to_ne_bytes());
        assert!(matches!(
            events(&short_metadata).next(),
            Some(Err(ParseError::EventLength { .. }))
        ));
        // event_len 0 would loop forever if it were trusted.
        let mut zero_length = good.clone();
        zero_length[0..4].copy_from_slice(&0u32.to_ne_bytes());
        let mut doubled = zero_length.clone();
        doubled.extend_from_slice(&good);
        assert_eq!(events(&doubled).count(), 1);
    }

    #[test]
    fn a_malformed_record_costs_only_its_event() {
        let good_record = fid_record_bytes(INFO_TYPE_DFID_NAME, [1, 2], &[3; 8], Some(b"ok"));
        let mut cases = Vec::new();
        // Record length beyond the event.
        let mut too_long = good_record.clone();
        too_long[2..4].copy_from_slice(&200u16.to_ne_bytes());
        cases.push(too_long);
        // Record length shorter than its header.
        let mut too_short = good_record.clone();
        too_short[2..4].copy_from_slice(&2u16.to_ne_bytes());
        cases.push(too_short);
        // handle_bytes beyond the record.
        let mut big_handle = good_record.clone();
        big_handle[12..16].copy_from_slice(&1000u32.to_ne_bytes());
        cases.push(big_handle);
        // Name without NUL: overwrite the terminator and padding.
        let mut no_nul = good_record.clone();
        let len = no_nul.len();
        for byte in &mut no_nul[len - 2..] {
            *byte = b'x';
        }
        cases.push(no_nul);
        // Too short for a file handle.
        cases.push(vec![INFO_TYPE_DFID_NAME, 0, 8, 0, 1, 2, 3, 4]);
        // Three stray bytes.
        cases.push(vec![INFO_TYPE_DFID, 0, 3]);
        for bad in cases {
            let mut buffer = event_bytes(ATTRIB, 1, std::slice::from_ref(&bad));
            buffer.extend(event_bytes(ATTRIB, 2, std::slice::from_ref(&good_record)));
            let parsed: Vec<_> = events(&buffer).collect();
            assert_eq!(parsed.len(), 2, "{bad:?}: {parsed:?}");
            assert!(
                matches!(parsed[0], Err(ParseError::Record { .. })),
                "{bad:?}: {parsed:?}"
            );
            let next = parsed[1].as_ref().unwrap();
            assert_eq!((next.pid, next.entry.unwrap().name), (2, &b"ok"[..]));
        }
    }

    #[test]
    fn a_name_with_a_slash_is_refused() {
        let buffer = event_bytes(
            ATTRIB,
            1,
            &[fid_record_bytes(
                INFO_TYPE_DFID_NAME,
                [1, 2],
                &[3; 8],
                Some(b"../etc"),
            )],
        );
        assert!(matches!(
            events(&buffer).next(),
            Some(Err(ParseError::Record { .. }))
        ));
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic fuzz: random bytes, and a good event with each byte flipped.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for len in 0..300 {
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if bytes.len() > 5 {
                bytes[4] = METADATA_VERSION;
            }
            let _ = events(&bytes).count();
        }
        let good = event_bytes(
            ATTRIB,
            1,
            &[fid_record_bytes(
                INFO_TYPE_DFID_NAME,
                [1, 2],
                &[3; 8],
                Some(b"name"),
            )],
        );
        for at in 0..good.len() {
            for value in [0u8, 1, 0x7f, 0xff] {
                let mut bytes = good.clone();
                bytes[at] = value;
                assert!(events(&bytes).count() <= bytes.len() / METADATA_LEN + 1);
            }
        }
    }
}
