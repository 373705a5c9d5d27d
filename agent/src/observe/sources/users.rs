//! `user:NAME` and `group:NAME`: accounts from /etc/passwd and /etc/group,
//! compared field by field so a change reads as what it means
//! ("user eve added with uid 0", "group sudo: eve added").

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use driftwatch_common::api::v1::ChangeKind;

use super::{Collection, Fields, SourceError, StateSource, key, read_text, under};

/// Users and groups; both files are read, as one source.
pub struct Accounts {
    pub passwd: PathBuf,
    pub group: PathBuf,
}

impl Accounts {
    pub fn at(root: &Path) -> Self {
        Accounts {
            passwd: under(root, "/etc/passwd"),
            group: under(root, "/etc/group"),
        }
    }
}

impl StateSource for Accounts {
    fn namespace(&self) -> &'static str {
        "user"
    }

    fn collect(&self) -> Result<Collection, SourceError> {
        let mut accounts = parse_passwd(&read_text("user", &self.passwd)?);
        accounts.extend(parse_group(&read_text("user", &self.group)?));
        Ok(accounts)
    }
}

/// `name:password:uid:gid:gecos:home:shell` lines (the password field is
/// never kept: it is `x` or a hash).
pub fn parse_passwd(text: &str) -> Collection {
    text.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split(':').collect();
            if cols.len() != 7 || cols[0].is_empty() || line.starts_with('#') {
                return None;
            }
            let fields: Fields = [
                ("uid", cols[2]),
                ("gid", cols[3]),
                ("gecos", cols[4]),
                ("home", cols[5]),
                ("shell", cols[6]),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            Some((key("user", cols[0]), fields))
        })
        .collect()
}

/// `name:password:gid:member,member` lines; members are sorted.
pub fn parse_group(text: &str) -> Collection {
    text.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split(':').collect();
            if cols.len() != 4 || cols[0].is_empty() || line.starts_with('#') {
                return None;
            }
            let members: BTreeSet<&str> = cols[3].split(',').filter(|m| !m.is_empty()).collect();
            let members = members.into_iter().collect::<Vec<_>>().join(",");
            let fields: Fields = [
                ("gid".to_owned(), cols[2].to_owned()),
                ("members".to_owned(), members),
            ]
            .into();
            Some((key("group", cols[0]), fields))
        })
        .collect()
}

fn get<'a>(fields: Option<&'a Fields>, name: &str) -> &'a str {
    fields.and_then(|f| f.get(name)).map_or("-", String::as_str)
}

pub fn describe_user(
    name: &str,
    kind: ChangeKind,
    before: Option<&Fields>,
    after: Option<&Fields>,
    changed: &[String],
) -> String {
    match kind {
        ChangeKind::Added => format!(
            "user {name} added with uid {}, gid {}, home {}, shell {}",
            get(after, "uid"),
            get(after, "gid"),
            get(after, "home"),
            get(after, "shell")
        ),
        ChangeKind::Removed => format!("user {name} removed (was uid {})", get(before, "uid")),
        _ => {
            let parts: Vec<String> = changed
                .iter()
                .map(|field| format!("{field} {} -> {}", get(before, field), get(after, field)))
                .collect();
            format!("user {name}: {}", parts.join(", "))
        }
    }
}

pub fn describe_group(
    name: &str,
    kind: ChangeKind,
    before: Option<&Fields>,
    after: Option<&Fields>,
) -> String {
    let members = |fields: Option<&Fields>| -> BTreeSet<String> {
        get(fields, "members")
            .split(',')
            .filter(|m| !m.is_empty() && *m != "-")
            .map(str::to_owned)
            .collect()
    };
    match kind {
        ChangeKind::Added => format!(
            "group {name} added with gid {}, members {}",
            get(after, "gid"),
            get(after, "members")
        ),
        ChangeKind::Removed => format!("group {name} removed (was gid {})", get(before, "gid")),
        _ => {
            let (old, new) = (members(before), members(after));
            let mut parts = Vec::new();
            let added: Vec<&str> = new.difference(&old).map(String::as_str).collect();
            let removed: Vec<&str> = old.difference(&new).map(String::as_str).collect();
            if !added.is_empty() {
                parts.push(format!("{} added", added.join(", ")));
            }
            if !removed.is_empty() {
                parts.push(format!("{} removed", removed.join(", ")));
            }
            if get(before, "gid") != get(after, "gid") {
                parts.push(format!(
                    "gid {} -> {}",
                    get(before, "gid"),
                    get(after, "gid")
                ));
            }
            format!("group {name}: {}", parts.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::sources::diff_states;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/bash\nbob:x:1001:1001:Bob:/home/bob:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\nsudo:x:27:alice\n";

    fn summaries(before: (&str, &str), after: (&str, &str)) -> Vec<String> {
        let load = |(passwd, group): (&str, &str)| {
            let mut c = parse_passwd(passwd);
            c.extend(parse_group(group));
            c
        };
        diff_states(&load(before), &load(after))
            .into_iter()
            .map(|c| c.summary)
            .collect()
    }

    #[test]
    fn a_second_root_account_reads_plainly() {
        let passwd = format!("{PASSWD}eve:x:0:0::/home/eve:/bin/bash\n");
        assert_eq!(
            summaries((PASSWD, GROUP), (&passwd, GROUP)),
            ["user eve added with uid 0, gid 0, home /home/eve, shell /bin/bash"]
        );
    }

    #[test]
    fn shell_and_membership_changes_are_named() {
        let passwd = PASSWD.replace("/usr/sbin/nologin", "/bin/bash");
        let group = GROUP.replace("sudo:x:27:alice", "sudo:x:27:bob,alice");
        assert_eq!(
            summaries((PASSWD, GROUP), (&passwd, &group)),
            [
                "group sudo: bob added",
                "user bob: shell /usr/sbin/nologin -> /bin/bash"
            ]
        );
    }

    #[test]
    fn removals_and_malformed_lines() {
        assert_eq!(
            summaries(
                (PASSWD, GROUP),
                ("root:x:0:0:root:/root:/bin/bash\nnot a line\n", GROUP)
            ),
            ["user bob removed (was uid 1001)"]
        );
    }

    #[test]
    fn member_order_is_not_a_change() {
        assert!(summaries((PASSWD, "g:x:5:a,b\n"), (PASSWD, "g:x:5:b,a\n")).is_empty());
    }
}
