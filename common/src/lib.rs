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
//!
//! The one exception to "no I/O" is [`logging`] (feature `logging`): how the binaries write
//! their logs and fatal errors to stderr, shared so that agent, collector and `driftctl`
//! behave alike under journald.

pub mod api;
pub mod attrs;
pub mod build_info;
pub mod chain_key;
pub mod cli_docs;
pub mod hash;
pub mod limits;
#[cfg(feature = "logging")]
pub mod logging;
pub mod pathbytes;
pub mod pattern;
pub mod state;
