//! Who may move a window from one status to another (segregation of duties, I5).
//!
//! ```text
//! requested ──approve──► approved ──close──► closed
//!     │  └──reject──► rejected     │
//!     └──cancel──► cancelled ◄─────┘ cancel
//! ```
//!
//! Window changes need the change-manager or admin role. The requester cannot approve or
//! reject their own window (they cancel it instead).

use std::fmt;

use super::{Window, WindowStatus};
use crate::identity::{Principal, Role};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Approve,
    Reject,
    Cancel,
    Close,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::Reject => "reject",
            Action::Cancel => "cancel",
            Action::Close => "close",
        }
    }

    /// The status after the action.
    pub fn outcome(self) -> WindowStatus {
        match self {
            Action::Approve => WindowStatus::Approved,
            Action::Reject => WindowStatus::Rejected,
            Action::Cancel => WindowStatus::Cancelled,
            Action::Close => WindowStatus::Closed,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Roles that may request and change windows.
pub const WINDOW_ROLES: [Role; 2] = [Role::ChangeManager, Role::Admin];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not this person (role or segregation of duties): 403.
    Forbidden(String),
    /// Not in this status: 409.
    Conflict(String),
}

/// Whether `actor` may `action` the window in its current status.
pub fn check(window: &Window, action: Action, actor: &Principal) -> Result<(), Refusal> {
    if !WINDOW_ROLES.contains(&actor.role) {
        return Err(Refusal::Forbidden(format!(
            "{action} needs the change-manager or admin role; {} has role {}",
            actor.name, actor.role
        )));
    }
    let allowed_from: &[WindowStatus] = match action {
        Action::Approve | Action::Reject => &[WindowStatus::Requested],
        Action::Cancel => &[WindowStatus::Requested, WindowStatus::Approved],
        Action::Close => &[WindowStatus::Approved],
    };
    if !allowed_from.contains(&window.status) {
        let expected: Vec<&str> = allowed_from.iter().map(|s| s.name()).collect();
        return Err(Refusal::Conflict(format!(
            "cannot {action} window {} ({}): it is {}, and only a {} window can be {}",
            window.id,
            window.ticket,
            window.status,
            expected.join(" or "),
            action.outcome()
        )));
    }
    if matches!(action, Action::Approve | Action::Reject) && actor.name == window.requester {
        return Err(Refusal::Forbidden(format!(
            "segregation of duties: {} requested window {} ({}) and cannot {action} it; \
             another change manager must (to withdraw it, cancel it)",
            actor.name, window.id, window.ticket
        )));
    }
    Ok(())
}
