//! What a service sandbox hides from the agent (invariant I9: a blind spot is
//! coverage, never drift).
//!
//! systemd's protections work with namespaces: `InaccessiblePaths=`,
//! `ProtectKernelModules=`, `ProtectHome=yes`, `PrivateTmp=`... mount something
//! else over a path in the service's own mount namespace, and
//! `PrivateNetwork=` / `ProtectHostname=` give it a network or UTS namespace of
//! its own. Read from inside, such a path looks like an empty mode-0000
//! directory, and the host's ports like none at all. So the agent compares its
//! namespaces with PID 1's: a mount of its own that shows something other than
//! what PID 1 sees at that path hides that path, and a namespace of its own
//! makes what lives in it (ports, `net.*` parameters) unverifiable here.
//!
//! The rules ([`hidden_mounts`], [`differs`]) are pure; [`hidden_paths`] and
//! [`foreign_namespace`] read /proc.
//!
//! The units and why each protection is kept or left out:
//! `packaging/systemd/README.md`; their reproduction around the real agent:
//! `tests/e2e/units.rs`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The message of a subject the sandbox hides.
pub const HIDDEN: &str = "not checked: hidden from the agent by a mount of its own sandbox \
     (e.g. the unit's InaccessiblePaths=, ProtectKernelModules=, ProtectHome=, PrivateTmp=); \
     what is there on the host is unverified";

/// Mount points of this process's mount namespace that show something other than
/// what PID 1 sees there, computed once per process. Empty when the agent shares
/// PID 1's mount namespace or when PID 1's cannot be read.
pub fn hidden_paths() -> &'static [PathBuf] {
    static HIDDEN_PATHS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    HIDDEN_PATHS.get_or_init(|| {
        let proc = Path::new("/proc");
        // Without CAP_SYS_PTRACE PID 1's namespace links cannot be read, but its
        // mountinfo can: in one namespace the two lists are the same.
        if foreign_namespace(proc, "mnt") == Some(false) {
            return Vec::new();
        }
        let read = |pid: &str| std::fs::read_to_string(proc.join(pid).join("mountinfo"));
        match (read("self"), read("1")) {
            (Ok(ours), Ok(init)) => {
                let hidden = hidden_mounts(&ours, &init);
                if !hidden.is_empty() {
                    tracing::info!(
                        paths = ?hidden,
                        "the agent's sandbox hides these paths: what is below them is reported as not checked"
                    );
                }
                hidden
            }
            _ => Vec::new(),
        }
    })
}

/// Whether this process has a namespace of `kind` (`net`, `mnt`, `uts`...) other
/// than PID 1's, as `proc` (normally /proc) shows them; `None` when it cannot tell.
pub fn foreign_namespace(proc: &Path, kind: &str) -> Option<bool> {
    let link = |pid: &str| std::fs::read_link(proc.join(pid).join("ns").join(kind)).ok();
    differs(link("self"), link("1")).or_else(|| {
        // The links need ptrace access to PID 1; /proc/PID/net does not, and each
        // network namespace has its own /proc/net entries (inode numbers).
        use std::os::unix::fs::MetadataExt;
        let net_dev = |pid: &str| {
            std::fs::metadata(proc.join(pid).join("net").join("dev"))
                .ok()
                .map(|m| m.ino())
        };
        (kind == "net")
            .then(|| differs(net_dev("self"), net_dev("1")))
            .flatten()
    })
}

/// Two namespace identities (`net:[4026531840]` links, inode numbers) differ;
/// `None` if either is unknown.
pub fn differs<T: PartialEq>(ours: Option<T>, init: Option<T>) -> Option<bool> {
    Some(ours? != init?)
}

/// One line of /proc/PID/mountinfo: what it shows (device and root within that
/// file system) and where.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Mount {
    device: String,
    root: PathBuf,
    mount_point: PathBuf,
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let device = fields.nth(2)?.to_owned();
            let root = PathBuf::from(unescape(fields.next()?));
            let mount_point = PathBuf::from(unescape(fields.next()?));
            Some(Mount {
                device,
                root,
                mount_point,
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            std::str::from_utf8(digits)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount points in `ours` (this namespace's mountinfo) that do not show what
/// `init` (PID 1's) shows at the same path. A read-only bind of a path onto itself
/// (ProtectSystem=, ProtectHome=read-only, ReadOnlyPaths=) shows the same files and
/// is not hidden; a bind of systemd's inaccessible node, a private /tmp or a tmpfs is.
pub fn hidden_mounts(ours: &str, init: &str) -> Vec<PathBuf> {
    let init = parse_mountinfo(init);
    let mut hidden: Vec<PathBuf> = parse_mountinfo(ours)
        .into_iter()
        .filter(|mount| !shows_the_same(mount, &init))
        .map(|mount| mount.mount_point)
        .collect();
    hidden.sort();
    hidden.dedup();
    // Only the topmost hidden path matters: everything below it is hidden with it.
    let mut topmost: Vec<PathBuf> = Vec::new();
    for path in hidden {
        if !topmost.iter().any(|above| path.starts_with(above)) {
            topmost.push(path);
        }
    }
    topmost
}

/// Whether PID 1 sees the same directory of the same file system at `mount`'s mount point.
fn shows_the_same(mount: &Mount, init: &[Mount]) -> bool {
    // The mount PID 1 sees at that path: the deepest mount point above it, the last
    // mounted of those (mountinfo lists in mount order, so a later one is on top).
    let Some(covering) = init
        .iter()
        .filter(|m| mount.mount_point.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.components().count())
        .and_then(|deepest| {
            init.iter()
                .rev()
                .find(|m| m.mount_point == deepest.mount_point)
        })
    else {
        return false;
    };
    let Ok(below) = mount.mount_point.strip_prefix(&covering.mount_point) else {
        return false;
    };
    let expected = if below.as_os_str().is_empty() {
        covering.root.clone()
    } else {
        covering.root.join(below)
    };
    covering.device == mount.device && mount.root == expected
}

#[cfg(test)]
mod tests {
    use super::*;

    const INIT: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:21 / /proc rw,nosuid shared:2 - proc proc rw
24 22 0:22 / /run rw,nosuid shared:3 - tmpfs tmpfs rw
25 22 8:2 / /boot rw,relatime shared:4 - ext4 /dev/sda2 rw
26 22 0:23 / /tmp\\040dir rw shared:5 - tmpfs tmpfs rw
";

    #[test]
    fn the_same_namespace_hides_nothing() {
        assert!(hidden_mounts(INIT, INIT).is_empty());
    }

    #[test]
    fn read_only_binds_of_a_path_onto_itself_hide_nothing() {
        // ProtectSystem=strict and ProtectHome=read-only: each path bound onto itself,
        // read-only, new mount ids and no propagation.
        let ours = format!(
            "{INIT}\
101 22 8:1 / / ro,relatime - ext4 /dev/sda1 rw
102 101 8:1 /home /home ro,relatime - ext4 /dev/sda1 rw
103 101 8:1 /root /root ro,relatime - ext4 /dev/sda1 rw
104 101 0:21 /sys /proc/sys ro,nosuid - proc proc rw
105 101 8:2 / /boot ro,relatime - ext4 /dev/sda2 rw
"
        );
        assert_eq!(hidden_mounts(&ours, INIT), Vec::<PathBuf>::new());
    }

    #[test]
    fn inaccessible_nodes_private_dirs_and_tmpfs_hide_their_path() {
        let ours = format!(
            "{INIT}\
110 22 0:22 /systemd/inaccessible/dir /usr/lib/modules ro - tmpfs tmpfs rw
111 22 0:22 /systemd/inaccessible/dir /usr/lib/modules/6.1.0 ro - tmpfs tmpfs rw
112 22 8:1 /tmp/systemd-private-abc/tmp /var/tmp rw - ext4 /dev/sda1 rw
113 22 0:40 / /dev rw - tmpfs tmpfs rw
114 22 8:1 /srv/empty /etc/secret\\040dir ro - ext4 /dev/sda1 rw
"
        );
        assert_eq!(
            hidden_mounts(&ours, INIT),
            ["/dev", "/etc/secret dir", "/usr/lib/modules", "/var/tmp"].map(PathBuf::from)
        );
    }

    #[test]
    fn a_bind_over_a_mount_point_compares_with_what_is_mounted_there() {
        // /tmp dir is its own tmpfs at PID 1: a bind of the root file system's /tmp dir
        // (the directory under the mount) would show other files.
        let ours = format!("{INIT}120 22 8:1 /tmp\\040dir /tmp\\040dir rw - ext4 /dev/sda1 rw\n");
        assert_eq!(hidden_mounts(&ours, INIT), [PathBuf::from("/tmp dir")]);
        let same = format!("{INIT}121 22 0:23 /x /tmp\\040dir/x rw - tmpfs tmpfs rw\n");
        assert!(hidden_mounts(&same, INIT).is_empty());
    }

    #[test]
    fn namespaces_differ_only_when_both_are_known() {
        let ns = |s: &str| Some(PathBuf::from(s));
        assert_eq!(differs(ns("net:[1]"), ns("net:[1]")), Some(false));
        assert_eq!(differs(ns("net:[2]"), ns("net:[1]")), Some(true));
        assert_eq!(differs(ns("net:[2]"), None), None);
        assert_eq!(differs(Some(4026531874_u64), Some(4026532197)), Some(true));
    }

    #[test]
    fn no_proc_means_cannot_tell() {
        assert_eq!(
            foreign_namespace(Path::new("/nonexistent/proc"), "net"),
            None
        );
    }
}
