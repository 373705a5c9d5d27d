//! `port:PROTO/PORT`: listening sockets and the process that owns them, from
//! /proc/net/{tcp,tcp6,udp,udp6} and /proc/PID/fd.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use super::{Collection, Fields, SourceError, StateSource, key, mark_unreadable, read_text, under};

pub struct Ports {
    /// Normally /proc.
    pub proc_root: PathBuf,
}

impl Ports {
    pub fn at(root: &Path) -> Self {
        Ports {
            proc_root: under(root, "/proc"),
        }
    }
}

/// One listening socket as /proc/net shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub proto: &'static str,
    pub address: String,
    pub port: u16,
    pub uid: u32,
    pub inode: u64,
}

impl StateSource for Ports {
    fn namespace(&self) -> &'static str {
        "port"
    }

    fn collect(&self) -> Result<Collection, SourceError> {
        if crate::observe::sandbox::foreign_namespace(&self.proc_root, "net") == Some(true) {
            return Err(SourceError::Unavailable {
                source_name: "port",
                reason: "the agent runs in a network namespace of its own (a unit's \
                         PrivateNetwork=?): the host's listening ports are not visible here"
                    .into(),
            });
        }
        let mut listeners = Vec::new();
        for (file, proto, v6) in [
            ("tcp", "tcp", false),
            ("tcp6", "tcp", true),
            ("udp", "udp", false),
            ("udp6", "udp", true),
        ] {
            match read_text("port", &self.proc_root.join("net").join(file)) {
                Ok(text) => listeners.extend(parse_proc_net(&text, proto, v6)),
                // No IPv6 on this host, for example.
                Err(SourceError::Unavailable { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        let owners = socket_owners(&self.proc_root);
        Ok(group_by_port(&listeners, &owners))
    }
}

/// Socket inodes and the name of the process owning each, from /proc/PID/fd.
#[derive(Debug, Default)]
pub struct Owners {
    pub by_inode: HashMap<u64, String>,
    /// Some process's descriptors could not be read (EACCES without
    /// CAP_SYS_PTRACE): a socket with no owner found may be one of its.
    pub incomplete: bool,
}

impl Owners {
    pub fn complete(by_inode: HashMap<u64, String>) -> Self {
        Owners {
            by_inode,
            incomplete: false,
        }
    }
}

/// Listening TCP sockets (state 0A) and bound, unconnected UDP sockets (state 07, no peer).
pub fn parse_proc_net(text: &str, proto: &'static str, v6: bool) -> Vec<Listener> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, state) = (cols.get(1)?, cols.get(2)?, cols.get(3)?);
            let listening = match proto {
                "tcp" => *state == "0A",
                _ => *state == "07" && remote.ends_with(":0000"),
            };
            if !listening {
                return None;
            }
            let (addr_hex, port_hex) = local.split_once(':')?;
            Some(Listener {
                proto,
                address: decode_address(addr_hex, v6)?,
                port: u16::from_str_radix(port_hex, 16).ok()?,
                uid: cols.get(7)?.parse().ok()?,
                inode: cols.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

/// /proc/net prints addresses as native-endian 32-bit words in hex.
fn decode_address(hex: &str, v6: bool) -> Option<String> {
    let words: Option<Vec<[u8; 4]>> = (0..hex.len() / 8)
        .map(|i| {
            u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16)
                .ok()
                .map(u32::to_ne_bytes)
        })
        .collect();
    let bytes: Vec<u8> = words?.concat();
    match (v6, bytes.len()) {
        (false, 4) => Some(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string()),
        (true, 16) => Some(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?).to_string()),
        _ => None,
    }
}

/// Socket inode -> name of the owning process (the lowest pid: the parent of
/// forked workers). Processes we may not inspect are skipped.
fn socket_owners(proc_root: &std::path::Path) -> Owners {
    let mut owners: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut incomplete = false;
    for entry in std::fs::read_dir(proc_root).into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let fds = match std::fs::read_dir(entry.path().join("fd")) {
            Ok(fds) => fds,
            Err(err) => {
                incomplete |= denied(&err);
                continue;
            }
        };
        for fd in fds.flatten() {
            let target = match std::fs::read_link(fd.path()) {
                Ok(target) => target,
                Err(err) => {
                    incomplete |= denied(&err);
                    continue;
                }
            };
            if let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
            {
                owners.entry(pid).or_default().push(inode);
            }
        }
    }
    let mut by_inode = HashMap::new();
    for (pid, inodes) in owners {
        let comm = std::fs::read_to_string(proc_root.join(pid.to_string()).join("comm"))
            .map(|c| c.trim().to_owned())
            .unwrap_or_else(|_| format!("pid {pid}"));
        for inode in inodes {
            by_inode.entry(inode).or_insert_with(|| comm.clone());
        }
    }
    Owners {
        by_inode,
        incomplete,
    }
}

fn denied(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::PermissionDenied
}

/// One subject per protocol and port: the addresses it listens on, the owner.
/// A socket whose owner was not found while some processes could not be
/// looked at has an unknown owner for want of sight, not for want of one: its
/// port's `process` is marked unreadable (coverage), never "unknown" (drift).
pub fn group_by_port(listeners: &[Listener], owners: &Owners) -> Collection {
    /// Addresses, owning processes and uids of one protocol and port.
    #[derive(Default)]
    struct Seen {
        addresses: BTreeSet<String>,
        processes: BTreeSet<String>,
        uids: BTreeSet<String>,
        owner_unreadable: bool,
    }
    let mut ports: BTreeMap<(&str, u16), Seen> = BTreeMap::new();
    for l in listeners {
        let seen = ports.entry((l.proto, l.port)).or_default();
        seen.addresses.insert(l.address.clone());
        match owners.by_inode.get(&l.inode) {
            Some(name) => {
                seen.processes.insert(name.clone());
            }
            None if owners.incomplete => seen.owner_unreadable = true,
            None => {
                seen.processes.insert("unknown".into());
            }
        }
        seen.uids.insert(l.uid.to_string());
    }
    let join = |set: BTreeSet<String>| set.into_iter().collect::<Vec<_>>().join(",");
    ports
        .into_iter()
        .map(|((proto, port), seen)| {
            let mut fields: Fields = [
                ("addresses".to_owned(), join(seen.addresses)),
                ("process".to_owned(), join(seen.processes)),
                ("uid".to_owned(), join(seen.uids)),
            ]
            .into();
            if seen.owner_unreadable {
                mark_unreadable(&mut fields, "process");
            }
            (key("port", &format!("{proto}/{port}")), fields)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_common::api::v1::SubjectKey;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0 100 0 0 10 0
   1: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000   108        0 1002 1 0 100 0 0 10 0
   2: 0100007F:0016 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 1003 1 0 100 0 0 10 0
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1004 1 0 100 0 0 10 0
";
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 1005 2 0 0
";

    #[test]
    fn listening_sockets_only() {
        let tcp = parse_proc_net(TCP, "tcp", false);
        assert_eq!(tcp.len(), 2, "the established connection is not a listener");
        assert_eq!(tcp[0].address, "0.0.0.0");
        assert_eq!(tcp[0].port, 22);
        assert_eq!(tcp[1].address, "127.0.0.1");
        assert_eq!(tcp[1].port, 3306);
        assert_eq!(tcp[1].uid, 108);
        let tcp6 = parse_proc_net(TCP6, "tcp", true);
        assert_eq!(tcp6[0].address, "::");
        let udp = parse_proc_net(UDP, "udp", false);
        assert_eq!((udp[0].address.as_str(), udp[0].port), ("127.0.0.53", 53));
    }

    #[test]
    fn ports_group_addresses_and_name_their_owner() {
        let mut listeners = parse_proc_net(TCP, "tcp", false);
        listeners.extend(parse_proc_net(TCP6, "tcp", true));
        let owners = Owners::complete(HashMap::from([
            (1001, "sshd".to_owned()),
            (1004, "sshd".to_owned()),
        ]));
        let ports = group_by_port(&listeners, &owners);
        let ssh = &ports[&SubjectKey("port:tcp/22".into())];
        assert_eq!(ssh["addresses"], "0.0.0.0,::");
        assert_eq!(ssh["process"], "sshd");
        assert_eq!(
            ports[&SubjectKey("port:tcp/3306".into())]["process"],
            "unknown"
        );
    }

    #[test]
    fn an_owner_hidden_by_missing_privilege_is_unreadable_not_unknown() {
        let listeners = parse_proc_net(TCP, "tcp", false);
        let owners = Owners {
            by_inode: HashMap::from([(1001, "sshd".to_owned())]),
            incomplete: true,
        };
        let ports = group_by_port(&listeners, &owners);
        let ssh = &ports[&SubjectKey("port:tcp/22".into())];
        assert_eq!(ssh["process"], "sshd");
        assert!(!ssh.contains_key(super::super::UNREADABLE));
        let mysql = &ports[&SubjectKey("port:tcp/3306".into())];
        assert!(!mysql.contains_key("process"), "{mysql:?}");
        assert_eq!(mysql[super::super::UNREADABLE], "process");
        assert_eq!(mysql["uid"], "108", "what /proc/net says is still there");
    }

    #[test]
    fn reads_this_hosts_sockets() {
        // A listener of our own must show up, owned by this test process.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let ports = Ports::at(Path::new("/")).collect().unwrap();
        let ours = &ports[&SubjectKey(format!("port:tcp/{port}"))];
        assert!(ours["addresses"].contains("127.0.0.1"), "{ours:?}");
        assert_ne!(ours["process"], "unknown", "{ours:?}");
    }
}
