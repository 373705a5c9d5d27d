//! Reading the host: scan, state sources, attribution, provenance, masking, sandbox.
pub mod attribution;
pub mod provenance;
pub mod redact;
pub mod sandbox;
pub mod scan;
pub mod sources;
