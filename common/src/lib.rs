//! The vocabulary shared by every driftwatch component.
//!
//! Nothing here does I/O: these are the types that describe what a subject
//! looks like ([`state::FileState`]), which of its attributes a policy compares
//! ([`attrs::AttributeSet`]), how content is fingerprinted ([`hash::ContentHash`]),
//! how byte-exact paths are shown to people and machines ([`pathbytes`]) and how
//! path globs are matched ([`pattern::GlobList`]), and the versioned wire
//! format between agents and the collector ([`api::v1`]) with the
//! largest value each of its fields may hold ([`limits`]). [`cli_docs`] renders the
//! binaries' man pages and shell completions into memory.

pub mod api;
pub mod attrs;
pub mod chain_key;
pub mod cli_docs;
pub mod hash;
pub mod limits;
pub mod pathbytes;
pub mod pattern;
pub mod state;
