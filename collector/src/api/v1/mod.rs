//! Handlers under `/api/v1`: decode, call one `App` operation, encode.

pub mod agents;
pub mod audit;
pub mod drift;
pub mod fleet;
pub mod tokens;
pub mod windows;

use super::error::ApiError;

/// Exports for auditors are planned (issue 4, "Evidence for auditors").
pub async fn reports_not_supported() -> ApiError {
    ApiError::not_supported(
        "evidence exports (CSV and JSON for a period, close-out bundles) are not supported yet; \
         GET /api/v1/drift, /api/v1/windows and /api/v1/audit hold the records",
    )
}
