//! Who may move a window from one status to another (segregation of duties, I5).
//!
//! ```text
//! requested ──approve──► approved ──close──► closed
//!     │  └──reject──► rejected     │
//!     └──cancel──► cancelled ◄─────┘ cancel
//! ```
//!
//! Requesting, cancelling and closing need the change-manager or admin role; approving and
//! rejecting (the decision segregation of duties is about) need the change-manager role.
//! The requester cannot approve or reject their own window (they cancel it instead): not
//! through any of their tokens (people are compared, `crate::people::same_person`), and not
//! through a token they issued, directly or through tokens issued by tokens they issued.

use std::fmt;

use super::{Window, WindowStatus};
use crate::identity::{Principal, Role};
use crate::people::same_person;

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

/// Roles that may request, cancel and close windows.
pub const WINDOW_ROLES: [Role; 2] = [Role::ChangeManager, Role::Admin];

/// Roles that may approve or reject windows.
pub const DECISION_ROLES: [Role; 1] = [Role::ChangeManager];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not this person (role or segregation of duties): 403.
    Forbidden(String),
    /// Not in this status: 409.
    Conflict(String),
}

/// Whether `actor` may `action` the window in its current status. `issuers`: who issued
/// the actor's token, and who issued that one, and so on (names of people, or of whoever
/// ran the offline bootstrap).
pub fn check(
    window: &Window,
    action: Action,
    actor: &Principal,
    issuers: &[String],
) -> Result<(), Refusal> {
    let deciding = matches!(action, Action::Approve | Action::Reject);
    let roles: &[Role] = if deciding {
        &DECISION_ROLES
    } else {
        &WINDOW_ROLES
    };
    if !roles.contains(&actor.role) {
        let names: Vec<&str> = roles.iter().map(|r| r.name()).collect();
        return Err(Refusal::Forbidden(format!(
            "{action} needs the {} role; {} has role {}",
            names.join(" or "),
            actor.name,
            actor.role
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
    if deciding && same_person(&actor.name, &window.requester) {
        return Err(Refusal::Forbidden(format!(
            "segregation of duties: {} requested window {} ({}) and cannot {action} it, \
             through any of their tokens; another change manager must (to withdraw it, cancel it)",
            window.requester, window.id, window.ticket
        )));
    }
    if deciding
        && let Some(issuer) = issuers
            .iter()
            .find(|issuer| same_person(issuer, &window.requester))
    {
        return Err(Refusal::Forbidden(format!(
            "segregation of duties: {}'s token was issued by {issuer} (directly or through \
             tokens they issued), who requested window {} ({}); a change manager whose token \
             the requester did not issue must {action} it",
            actor.name, window.id, window.ticket
        )));
    }
    Ok(())
}
