//! The standalone product: the baseline store and the check against it.
pub mod check;
pub mod store;
