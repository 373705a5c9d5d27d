//! `sysctl:KEY`: kernel parameters under /proc/sys.
//!
//! Which keys: a built-in set that matters for security, plus every key the
//! host's sysctl configuration sets (sysctl.conf and sysctl.d): a value that
//! differs from what the host was configured to have is drift. Reading all
//! of /proc/sys would report counters and caches that change on their own.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{Collection, SourceError, StateSource, fields, key, mark_unreadable, under};

/// Parameters worth watching on any server.
pub const SECURITY_KEYS: &[&str] = &[
    "fs.protected_hardlinks",
    "fs.protected_symlinks",
    "fs.suid_dumpable",
    "kernel.dmesg_restrict",
    "kernel.kexec_load_disabled",
    "kernel.kptr_restrict",
    "kernel.modules_disabled",
    "kernel.randomize_va_space",
    "kernel.sysrq",
    "kernel.unprivileged_bpf_disabled",
    "kernel.yama.ptrace_scope",
    "net.ipv4.conf.all.accept_redirects",
    "net.ipv4.conf.all.accept_source_route",
    "net.ipv4.conf.all.rp_filter",
    "net.ipv4.conf.all.send_redirects",
    "net.ipv4.ip_forward",
    "net.ipv4.tcp_syncookies",
    "net.ipv6.conf.all.accept_redirects",
    "net.ipv6.conf.all.forwarding",
];

pub struct Sysctl {
    pub proc_sys: PathBuf,
    /// sysctl configuration files, or directories of `*.conf` files.
    pub config_paths: Vec<PathBuf>,
    /// Keys to watch beyond the built-in and configured ones.
    pub extra_keys: Vec<String>,
}

impl Sysctl {
    pub fn at(root: &Path) -> Self {
        Sysctl {
            proc_sys: under(root, "/proc/sys"),
            config_paths: [
                "/etc/sysctl.conf",
                "/etc/sysctl.d",
                "/run/sysctl.d",
                "/usr/local/lib/sysctl.d",
                "/usr/lib/sysctl.d",
                "/lib/sysctl.d",
            ]
            .into_iter()
            .map(|path| under(root, path))
            .collect(),
            extra_keys: Vec::new(),
        }
    }
}

impl StateSource for Sysctl {
    fn namespace(&self) -> &'static str {
        "sysctl"
    }

    fn collect(&self) -> Result<Collection, SourceError> {
        if !self.proc_sys.is_dir() {
            return Err(SourceError::Unavailable {
                source_name: "sysctl",
                reason: format!("{} does not exist", self.proc_sys.display()),
            });
        }
        let mut keys: BTreeSet<String> = SECURITY_KEYS.iter().map(|k| (*k).to_owned()).collect();
        keys.extend(self.extra_keys.iter().cloned());
        for path in &self.config_paths {
            for file in config_files(path) {
                if let Ok(text) = std::fs::read_to_string(&file) {
                    keys.extend(configured_keys(&text));
                }
            }
        }
        // Network parameters belong to the network namespace, the host and domain names
        // to the UTS namespace: in namespaces of its own (PrivateNetwork=,
        // ProtectHostname=) the agent reads its own copies, not the host's.
        let proc = self.proc_sys.parent().unwrap_or(Path::new("/proc"));
        let foreign_net = crate::observe::sandbox::foreign_namespace(proc, "net") == Some(true);
        let foreign_uts = crate::observe::sandbox::foreign_namespace(proc, "uts") == Some(true);
        Ok(keys
            .into_iter()
            .filter_map(|name| {
                // Absent (module not loaded, other kernel) or unreadable: not tracked.
                let value =
                    std::fs::read_to_string(self.proc_sys.join(name.replace('.', "/"))).ok()?;
                let mut fields = fields([("value", &normalize(&value))]);
                if (foreign_net && in_net_namespace(&name))
                    || (foreign_uts && in_uts_namespace(&name))
                {
                    mark_unreadable(&mut fields, "value");
                }
                Some((key("sysctl", &name), fields))
            })
            .collect())
    }
}

/// Kernel parameters that each network namespace has its own copy of.
pub fn in_net_namespace(name: &str) -> bool {
    name.starts_with("net.")
}

/// Kernel parameters that each UTS namespace has its own copy of.
pub fn in_uts_namespace(name: &str) -> bool {
    matches!(name, "kernel.hostname" | "kernel.domainname")
}

fn config_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_owned()];
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "conf"))
        .collect();
    files.sort();
    files
}

/// Keys set by a sysctl configuration file (`key = value` lines; `/` and `.`
/// both separate; a leading `-` only silences errors). Globbed keys are skipped.
pub fn configured_keys(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with(';'))
        .filter_map(|line| line.split_once('='))
        .map(|(name, _)| name.trim().trim_start_matches('-').replace('/', "."))
        .filter(|name| !name.is_empty() && !name.contains('*') && !name.contains(".."))
        .collect()
}

/// One line, single spaces: `4\t4\t1\t7\n` reads as `4 4 1 7`.
fn normalize(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_common::api::v1::SubjectKey;

    #[test]
    fn configured_keys_follow_sysctl_d_syntax() {
        let text = "# comment\n; also\nnet.ipv4.ip_forward = 1\n-kernel/sysrq=0\nnet.ipv4.conf.*.rp_filter = 2\n\n";
        assert_eq!(
            configured_keys(text),
            ["net.ipv4.ip_forward", "kernel.sysrq"]
        );
    }

    #[test]
    fn reads_values_from_a_proc_sys_tree() {
        let dir = tempfile::tempdir().unwrap();
        let proc_sys = dir.path().join("sys");
        std::fs::create_dir_all(proc_sys.join("net/ipv4")).unwrap();
        std::fs::create_dir_all(proc_sys.join("vm")).unwrap();
        std::fs::write(proc_sys.join("net/ipv4/ip_forward"), "0\n").unwrap();
        std::fs::write(proc_sys.join("vm/swappiness"), "60\n").unwrap();
        let conf = dir.path().join("99-local.conf");
        std::fs::write(&conf, "vm.swappiness = 10\n").unwrap();
        let source = Sysctl {
            proc_sys,
            config_paths: vec![conf, dir.path().join("missing.d")],
            extra_keys: Vec::new(),
        };
        let state = source.collect().unwrap();
        assert_eq!(state.len(), 2, "only keys that exist: {state:?}");
        assert_eq!(
            state[&SubjectKey("sysctl:vm.swappiness".into())]["value"],
            "60"
        );
        assert_eq!(
            state[&SubjectKey("sysctl:net.ipv4.ip_forward".into())]["value"],
            "0"
        );
    }

    #[test]
    fn multi_value_parameters_are_normalized() {
        assert_eq!(normalize("4\t4\t1\t7\n"), "4 4 1 7");
    }
}
