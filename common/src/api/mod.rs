//! The wire format between agents and the collector, versioned by module.
//! Readers tolerate unknown fields (a newer peer may add some); a breaking
//! change is a new module and a new URL prefix.

pub mod v1;
