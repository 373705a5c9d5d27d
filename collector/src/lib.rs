//! The driftwatch collector (being built).
