//! The shipped scanning units (`packaging/systemd/driftwatch-{agent,check}.service`),
//! reproduced around the real agent: no false drift under their restrictions (issue 9,
//! invariant I9).
//!
//! systemd is not PID 1 here, so each unit's `[Service]` section is read and turned into a
//! [`Sandbox`]: the hidden, read-only and private paths its protections mount, its
//! capability bounding set, and its own network and UTS namespaces. The test runs that
//! sandbox with `unshare` (mount, network, UTS namespaces), `mount` and `setpriv`. A
//! directive this file does not know fails the test, so a protection added to a unit is
//! either reproduced here or written down below as not changing what the agent sees.
//!
//! The host is a temporary tree standing for `/` (the default policy's rule paths mapped
//! into it; the state sources read it through `[sources] root`), and a PID and network
//! namespace of its own whose PID 1 is a root process listening on a TCP port, so the
//! listening ports, their owner and PID 1's namespaces are the test's and nothing else on
//! the machine can change them. `baseline init` runs there as plain root; `check` and
//! `run` run inside each unit's sandbox and must find nothing. The same flow under the
//! units' old restrictions (ProtectKernelModules=, PrivateNetwork=, no CAP_SYS_PTRACE)
//! must differ: blind spots reported as coverage, still never as drift.
//!
//! Needs root, `unshare`, `nsenter`, `setpriv`, `mount` (util-linux) and `perl` (the
//! listener). Without them the test says so loudly and skips, unless
//! `DRIFTWATCH_REQUIRE_SANDBOX` is set (CI): then it fails.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use driftwatch_tests::daemon::wait_until;
use driftwatch_tests::{HostDir, agent_bin, is_root, p, skip_unless_required};
use serde_json::Value;

/// The scanning units: they read the host, so what they see must be what root sees.
const SCANNING_UNITS: [&str; 2] = ["driftwatch-agent.service", "driftwatch-check.service"];

fn unit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/systemd")
}

fn unit_text(name: &str) -> String {
    let path = unit_dir().join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// What a unit's `[Service]` section does to the agent's view, in host paths.
#[derive(Debug, Default, PartialEq, Eq)]
struct Sandbox {
    /// The capability bounding set (lowercase, without `cap_`); `None`: every capability.
    capabilities: Option<BTreeSet<String>>,
    no_new_privileges: bool,
    /// Bound read-only onto themselves: the same files, no writes.
    read_only: BTreeSet<String>,
    /// Covered by an inaccessible node (an empty mode-0000 directory or file).
    hidden: BTreeSet<String>,
    /// Replaced by a fresh empty directory (PrivateTmp=, PrivateDevices=, ProtectHome=tmpfs).
    private: BTreeSet<String>,
    /// Options of a new /proc instance (ProtectProc=, ProcSubset=).
    proc_options: Vec<String>,
    private_network: bool,
    private_uts: bool,
}

/// Directives that change nothing the agent reads, and why. Anything not here and not
/// reproduced in [`sandbox_of`] fails the test.
const NOT_A_VIEW_CHANGE: &[(&str, &str)] = &[
    // How the service is run, not what it sees.
    ("Type", "service mechanics"),
    ("NotifyAccess", "service mechanics"),
    ("WatchdogSec", "service mechanics"),
    ("ExecStart", "service mechanics"),
    ("ExecStartPre", "service mechanics"),
    ("ExecReload", "service mechanics"),
    ("Restart", "service mechanics"),
    ("RestartSec", "service mechanics"),
    ("RestartPreventExitStatus", "service mechanics"),
    ("SuccessExitStatus", "service mechanics"),
    ("TimeoutStartSec", "service mechanics"),
    ("TimeoutStopSec", "service mechanics"),
    ("ExecStartPost", "service mechanics"),
    ("ExecStop", "service mechanics"),
    ("ExecStopPost", "service mechanics"),
    ("ExecCondition", "service mechanics"),
    ("RestartSteps", "service mechanics"),
    ("RestartMaxDelaySec", "service mechanics"),
    ("RuntimeMaxSec", "service mechanics"),
    ("KillMode", "service mechanics"),
    ("KillSignal", "service mechanics"),
    ("SyslogIdentifier", "logging"),
    ("StandardOutput", "logging"),
    ("StandardError", "logging"),
    ("LogLevelMax", "logging"),
    ("LogExtraFields", "logging"),
    ("Environment", "service mechanics"),
    (
        "StateDirectory",
        "creates the state directory; writable under ProtectSystem=",
    ),
    ("StateDirectoryMode", "mode of the state directory"),
    ("RuntimeDirectory", "creates a directory under /run"),
    ("RuntimeDirectoryMode", "mode of the runtime directory"),
    (
        "ConfigurationDirectory",
        "creates /etc/driftwatch if missing",
    ),
    ("UMask", "mode of files the agent creates"),
    (
        "ReadWritePaths",
        "makes paths writable; reads are unchanged",
    ),
    // Scheduling and resources: slower, never different.
    ("Nice", "CPU priority"),
    ("IOSchedulingClass", "I/O priority"),
    ("IOSchedulingPriority", "I/O priority"),
    ("CPUQuota", "CPU time"),
    (
        "MemoryMax",
        "memory limit: exceeding it kills the agent, loudly",
    ),
    ("LimitNOFILE", "descriptor limit"),
    ("TasksMax", "thread limit"),
    ("OOMScoreAdjust", "who the kernel kills first"),
    // The sandbox already has a mount namespace of its own (unshare -m).
    ("PrivateMounts", "mount propagation out of the service only"),
    // Capabilities the bounding set above does not hold anyway.
    (
        "ProtectClock",
        "removes CAP_SYS_TIME/CAP_WAKE_ALARM and clock-setting calls",
    ),
    ("RestrictSUIDSGID", "refuses to create set-uid files"),
    ("RestrictRealtime", "refuses realtime scheduling"),
    ("RestrictNamespaces", "refuses to create namespaces"),
    ("LockPersonality", "refuses personality changes"),
    (
        "MemoryDenyWriteExecute",
        "refuses writable+executable memory",
    ),
    (
        "RemoveIPC",
        "removes IPC objects at stop (non-root users only)",
    ),
    (
        "IPAddressDeny",
        "drops packets; the sources read /proc/net, they send nothing",
    ),
    (
        "RestrictAddressFamilies",
        "refuses socket(); the sources read files under /proc, none opens a socket",
    ),
    // Seccomp filters are not reproduced: a refused call fails with EPERM, which the
    // agent reports as an error (exit 3), never as a different state.
    (
        "SystemCallArchitectures",
        "seccomp: native system calls only",
    ),
    (
        "SystemCallFilter",
        "seccomp: a refused call fails loudly (EPERM)",
    ),
    (
        "SystemCallErrorNumber",
        "seccomp: the errno of a refused call",
    ),
];

/// Parses a unit's `[Service]` section. Err names a directive this test does not know.
fn sandbox_of(unit: &str) -> Result<Sandbox, String> {
    let mut sandbox = Sandbox::default();
    let mut in_service = false;
    let set = |paths: &[&str]| paths.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        if !in_service || line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("not a directive: {line}"))?;
        let yes = matches!(value, "yes" | "true" | "on" | "1");
        let no = matches!(value, "no" | "false" | "off" | "0" | "");
        let unsupported = || format!("{key}={value} is not reproduced by this test: teach it");
        match key {
            "CapabilityBoundingSet" => {
                if value.starts_with('~') {
                    return Err(unsupported());
                }
                let caps = sandbox.capabilities.get_or_insert_with(BTreeSet::new);
                if value.is_empty() {
                    caps.clear();
                }
                for name in value.split_whitespace() {
                    let name = name.to_ascii_lowercase();
                    let short = name.strip_prefix("cap_").ok_or_else(unsupported)?;
                    caps.insert(short.to_owned());
                }
            }
            // For root (User= is not reproduced, so these units run as root) the bounding
            // set decides; ambient capabilities matter only to other users.
            "AmbientCapabilities" => {}
            "NoNewPrivileges" => sandbox.no_new_privileges = yes,
            "ProtectSystem" => match value {
                "strict" => sandbox.read_only.extend(set(&["/"])),
                "full" => sandbox
                    .read_only
                    .extend(set(&["/usr", "/boot", "/efi", "/etc"])),
                "yes" | "true" => sandbox.read_only.extend(set(&["/usr", "/boot", "/efi"])),
                _ if no => {}
                _ => return Err(unsupported()),
            },
            "ProtectHome" => {
                let homes = set(&["/home", "/root", "/run/user"]);
                match value {
                    "read-only" => sandbox.read_only.extend(homes),
                    "tmpfs" => sandbox.private.extend(homes),
                    _ if yes => sandbox.hidden.extend(homes),
                    _ if no => {}
                    _ => return Err(unsupported()),
                }
            }
            "PrivateTmp" if yes => sandbox.private.extend(set(&["/tmp", "/var/tmp"])),
            "PrivateDevices" if yes => sandbox.private.extend(set(&["/dev"])),
            "PrivateNetwork" => sandbox.private_network = yes,
            "ProtectHostname" => sandbox.private_uts = yes,
            // systemd 252's lists (src/core/namespace.c).
            "ProtectKernelTunables" if yes => {
                sandbox.read_only.extend(set(&[
                    "/proc/acpi",
                    "/proc/apm",
                    "/proc/asound",
                    "/proc/bus",
                    "/proc/fs",
                    "/proc/irq",
                    "/proc/latency_stats",
                    "/proc/mtrr",
                    "/proc/scsi",
                    "/proc/sys",
                    "/proc/sysrq-trigger",
                    "/proc/timer_list",
                    "/proc/timer_stats",
                    "/sys",
                ]));
                sandbox
                    .hidden
                    .extend(set(&["/proc/kallsyms", "/proc/kcore"]));
            }
            "ProtectKernelModules" if yes => {
                sandbox
                    .hidden
                    .extend(set(&["/lib/modules", "/usr/lib/modules"]));
                if let Some(caps) = &mut sandbox.capabilities {
                    caps.remove("sys_module");
                }
            }
            "ProtectKernelLogs" if yes => {
                sandbox.hidden.extend(set(&["/proc/kmsg", "/dev/kmsg"]));
                if let Some(caps) = &mut sandbox.capabilities {
                    caps.remove("syslog");
                }
            }
            "ProtectControlGroups" if yes => sandbox.read_only.extend(set(&["/sys/fs/cgroup"])),
            "ProtectProc" => match value {
                "invisible" | "noaccess" | "ptraceable" => {
                    sandbox.proc_options.push(format!("hidepid={value}"))
                }
                "default" => {}
                _ => return Err(unsupported()),
            },
            "ProcSubset" => match value {
                "pid" => sandbox.proc_options.push("subset=pid".into()),
                "all" => {}
                _ => return Err(unsupported()),
            },
            "InaccessiblePaths" | "ReadOnlyPaths" => {
                for path in value.split_whitespace() {
                    let path = path.trim_start_matches(['-', '+']).to_owned();
                    if key == "InaccessiblePaths" {
                        sandbox.hidden.insert(path);
                    } else {
                        sandbox.read_only.insert(path);
                    }
                }
            }
            // A boolean protection switched off changes nothing.
            "PrivateTmp"
            | "PrivateDevices"
            | "ProtectKernelTunables"
            | "ProtectKernelModules"
            | "ProtectKernelLogs"
            | "ProtectControlGroups"
                if no => {}
            _ if NOT_A_VIEW_CHANGE.iter().any(|(known, _)| *known == key) => {}
            _ => return Err(unsupported()),
        }
    }
    Ok(sandbox)
}

#[test]
fn every_shipped_unit_is_understood_and_the_scanning_ones_see_the_host() {
    for name in SCANNING_UNITS {
        let text = unit_text(name);
        let sandbox = sandbox_of(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let caps = sandbox.capabilities.clone().unwrap_or_default();
        assert!(caps.contains("dac_read_search"), "{name}: {sandbox:?}");
        assert!(
            caps.contains("sys_ptrace"),
            "{name}: port owners need it: {sandbox:?}"
        );
        for watched in [
            "/usr/lib/modules",
            "/lib/modules",
            "/etc",
            "/usr",
            "/boot",
            "/root",
        ] {
            assert!(
                !sandbox
                    .hidden
                    .iter()
                    .chain(&sandbox.private)
                    .any(|h| watched.starts_with(h.as_str())),
                "{name} hides {watched}, which the default policy watches: {sandbox:?}"
            );
        }
        assert!(
            !sandbox.private_network,
            "{name}: ports live in the host's network namespace"
        );
        assert!(
            sandbox.proc_options.is_empty(),
            "{name}: the sources read all of /proc"
        );
    }
    // The opt-in drop-in only adds.
    let merged = format!(
        "{}\n{}",
        unit_text("driftwatch-agent.service"),
        unit_text("attribution.conf")
    );
    sandbox_of(&merged).expect("the agent unit with attribution.conf");
}

#[test]
fn an_unknown_protection_fails_the_test() {
    for added in [
        "PrivateIPC=yes",
        "TemporaryFileSystem=/var",
        "ProtectSystem=weird",
        "User=driftwatch",
    ] {
        let text = old_unit(&unit_text("driftwatch-check.service"), &[added], false);
        let err = sandbox_of(&text).expect_err(added);
        assert!(err.contains("not reproduced"), "{added}: {err}");
    }
}

/// `unit` with `lines` added to its `[Service]` section; `keep_ptrace` false also takes
/// CAP_SYS_PTRACE out of its bounding set (the units before issue 9).
fn old_unit(unit: &str, lines: &[&str], keep_ptrace: bool) -> String {
    let mut text = String::new();
    for line in unit.lines() {
        let line = if !keep_ptrace && line.starts_with("CapabilityBoundingSet=") {
            line.replace(" CAP_SYS_PTRACE", "")
        } else {
            line.to_owned()
        };
        text.push_str(&line);
        text.push('\n');
        if line == "[Service]" {
            for added in lines {
                text.push_str(added);
                text.push('\n');
            }
        }
    }
    text
}

/// Whether the sandboxed flow can run here; otherwise a loud skip, or a failure in CI.
fn sandbox_tools_ready() -> bool {
    let missing: Vec<&str> = ["unshare", "nsenter", "setpriv", "mount", "perl"]
        .into_iter()
        .filter(|tool| {
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .map(|s| !s.success())
                .unwrap_or(true)
        })
        .collect();
    let why = if !is_root() {
        Some("not running as root".to_owned())
    } else if !missing.is_empty() {
        Some(format!("missing {}", missing.join(", ")))
    } else {
        None
    };
    let Some(why) = why else { return true };
    skip_unless_required(
        "DRIFTWATCH_REQUIRE_SANDBOX",
        &format!(
            "the shipped units were NOT reproduced around the agent ({why}); run the tests \
             as root with util-linux and perl"
        ),
    );
    false
}

/// A host in namespaces of its own: `tree/` is its `/`, PID 1 is a root perl
/// listening on a TCP port, /proc is mounted at `tree/proc`.
struct Host {
    dir: HostDir,
    config: PathBuf,
    /// The `unshare` process and PID 1 of the host's PID namespace (as seen from here).
    unshare: Child,
    init_pid: u32,
    port: u16,
}

impl Drop for Host {
    fn drop(&mut self) {
        // PID 1 of a PID namespace takes every process in it along.
        let _ = Command::new("kill")
            .args(["-KILL", &self.init_pid.to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

impl Host {
    fn new() -> Host {
        let dir = HostDir::new();
        // What the default policy watches, a few files each.
        dir.write("etc/app.conf", "port = 80\n");
        dir.write(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/bash\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n",
        );
        dir.write("etc/group", "root:x:0:\nssh:x:101:\n");
        dir.write(
            "etc/sysctl.d/99-host.conf",
            "net.ipv4.ip_forward = 0\nkernel.sysrq = 176\n",
        );
        dir.write(
            "var/lib/dpkg/status",
            "Package: openssh-server\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:9.2p1-2\n\n",
        );
        dir.write("usr/bin/tool", "#!/bin/sh\n");
        dir.write("usr/lib/x86_64-linux-gnu/libdemo.so.1", "\x7fELF demo");
        dir.write(
            "usr/lib/modules/6.1.0-test/kernel/drivers/demo.ko",
            "module",
        );
        dir.write(
            "usr/lib/modules/6.1.0-test/modules.dep",
            "kernel/drivers/demo.ko:\n",
        );
        dir.write("boot/vmlinuz-6.1.0-test", "kernel");
        dir.write("root/.ssh/authorized_keys", "ssh-ed25519 AAAA admin\n");
        dir.write("var/spool/cron/crontabs/root", "0 3 * * * /usr/bin/tool\n");
        for empty in ["proc", "tmp", "var/tmp", "dev", "home"] {
            dir.mkdir(empty);
        }
        fs::set_permissions(dir.path("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();

        let config = dir.root().join("agent.toml");
        fs::write(&config, policy(&dir)).unwrap();

        let tree = dir.tree();
        let mut unshare = Command::new("unshare")
            .args([
                "--net",
                "--pid",
                "--fork",
                "--mount",
                "--propagation",
                "private",
            ])
            .arg(format!("--mount-proc={}", p(&tree.join("proc"))))
            .args([
                "perl",
                "-MIO::Socket::INET",
                "-e",
                "$s = IO::Socket::INET->new(Listen => 5, LocalAddr => '0.0.0.0', LocalPort => 0, \
                 Proto => 'tcp') or die \"listen: $!\"; print $s->sockport, \"\\n\"; \
                 STDOUT->flush; sleep 600",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the host's PID 1 (unshare)");
        let mut line = String::new();
        BufReader::new(unshare.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("the listener's port");
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the host's listener did not start: {line:?}"));
        let children = format!("/proc/{0}/task/{0}/children", unshare.id());
        let init_pid = fs::read_to_string(&children)
            .ok()
            .and_then(|c| c.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no PID 1 under unshare ({children})"));
        Host {
            dir,
            config,
            unshare,
            init_pid,
            port,
        }
    }

    /// `nsenter` into the host's namespaces, then `argv`.
    fn enter(&self) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.init_pid.to_string(), "-m", "-n", "-p", "--"])
            .env_remove("DRIFTWATCH_CONFIG")
            .env("DRIFTWATCH_LOG", "warn")
            .stdin(Stdio::null());
        cmd
    }

    /// The agent as plain root on this host.
    fn agent(&self, args: &[&str]) -> Command {
        let mut cmd = self.enter();
        cmd.arg(agent_bin())
            .arg("--config")
            .arg(&self.config)
            .args(args);
        cmd
    }

    /// The agent inside `sandbox`, reproduced with unshare, mount and setpriv.
    fn sandboxed(&self, sandbox: &Sandbox, name: &str, args: &[&str]) -> Command {
        let script = self.dir.root().join(format!("{name}.sh"));
        fs::write(&script, self.setup_script(sandbox, name)).unwrap();
        let mut cmd = self.enter();
        cmd.args(["unshare", "--mount", "--propagation", "private"]);
        if sandbox.private_network {
            cmd.arg("--net");
        }
        if sandbox.private_uts {
            cmd.arg("--uts");
        }
        cmd.args(["--", "sh"])
            .arg(&script)
            .arg(agent_bin())
            .arg("--config")
            .arg(&self.config)
            .args(args);
        cmd
    }

    /// The mounts of `sandbox` over this host's tree, then `setpriv` into its capabilities.
    fn setup_script(&self, sandbox: &Sandbox, name: &str) -> String {
        let tree = self.dir.tree();
        let scratch = self.dir.root().join(format!("sandbox-{name}"));
        let inaccessible_dir = scratch.join("inaccessible/dir");
        let inaccessible_file = scratch.join("inaccessible/file");
        fs::create_dir_all(&inaccessible_dir).unwrap();
        fs::write(&inaccessible_file, "").unwrap();
        for node in [&inaccessible_dir, &inaccessible_file] {
            fs::set_permissions(node, fs::Permissions::from_mode(0o000)).unwrap();
        }
        let host = |path: &str| p(&tree.join(path.trim_start_matches('/'))).to_owned();
        let mut script = String::from("set -e\n");
        if !sandbox.proc_options.is_empty() {
            script.push_str(&format!(
                "mount -t proc -o {} proc '{}'\n",
                sandbox.proc_options.join(","),
                host("/proc")
            ));
        }
        for path in &sandbox.read_only {
            let at = host(path);
            script.push_str(&format!(
                "if [ -e '{at}' ]; then mount --rbind '{at}' '{at}'; mount -o remount,bind,ro '{at}'; fi\n"
            ));
        }
        for path in &sandbox.hidden {
            let at = host(path);
            let (dir, file) = (p(&inaccessible_dir), p(&inaccessible_file));
            script.push_str(&format!(
                "if [ -d '{at}' ]; then mount --bind '{dir}' '{at}'; \
                 elif [ -f '{at}' ]; then mount --bind '{file}' '{at}'; fi\n"
            ));
        }
        for (i, path) in sandbox.private.iter().enumerate() {
            let fresh = scratch.join(format!("private-{i}"));
            fs::create_dir_all(&fresh).unwrap();
            fs::set_permissions(&fresh, fs::Permissions::from_mode(0o1777)).unwrap();
            let at = host(path);
            script.push_str(&format!(
                "if [ -d '{at}' ]; then mount --bind '{}' '{at}'; fi\n",
                p(&fresh)
            ));
        }
        let bounding = match &sandbox.capabilities {
            None => "+all".to_owned(),
            Some(caps) => std::iter::once("-all".to_owned())
                .chain(caps.iter().map(|c| format!("+{c}")))
                .collect::<Vec<_>>()
                .join(","),
        };
        script.push_str(&format!(
            "exec setpriv --bounding-set={bounding} --inh-caps=-all{} -- \"$@\"\n",
            if sandbox.no_new_privileges {
                " --no-new-privs"
            } else {
                ""
            }
        ));
        script
    }
}

/// The default policy's rules mapped into the host's tree, every state source reading it.
fn policy(dir: &HostDir) -> String {
    let example = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples/agent.toml"),
    )
    .expect("the default policy");
    let mut text = format!(
        "state_dir = \"{}\"\n[scan]\ninterval_secs = 3600\n[sources]\n\
         enabled = [\"package\", \"sysctl\", \"module\", \"port\", \"user\"]\n\
         interval_secs = 1\nroot = \"{}\"\n[watch]\nsettle_ms = 50\nmax_delay_ms = 500\n\
         [heartbeat]\ninterval_secs = 1\n",
        p(dir.state()),
        p(dir.tree())
    );
    let mut rules = 0;
    let mut in_rule = false;
    for line in example.lines().map(str::trim) {
        if line.starts_with('[') {
            in_rule = line == "[[rule]]";
        } else if in_rule && let Some(path) = line.strip_prefix("path = \"") {
            let path = path.trim_end_matches('"').trim_start_matches('/');
            text.push_str(&format!(
                "[[rule]]\npath = \"{}\"\n",
                p(&dir.tree().join(path))
            ));
            rules += 1;
        }
    }
    assert!(rules > 10, "the default policy's rules were not found");
    text
}

/// Runs `cmd` to completion within `timeout`; (exit code, stdout, stderr).
fn run(mut cmd: Command, timeout: Duration) -> (i32, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let deadline = Instant::now() + timeout;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check_json(host: &Host, sandbox: &Sandbox, name: &str) -> (i32, Value, String) {
    let (code, stdout, stderr) = run(
        host.sandboxed(sandbox, name, &["check", "--json"]),
        Duration::from_secs(60),
    );
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("{name}: check --json gave no JSON ({e}), exit {code}: {stdout}\n{stderr}")
    });
    (code, report, stderr)
}

/// Runs the daemon in `sandbox` until it is ready and has compared two polls of the
/// sources, then ends the host (its PID 1 takes the daemon along); the last status and log.
fn run_daemon(host: &Host, sandbox: &Sandbox, name: &str) -> (Value, String) {
    let log_path = host.dir.root().join(format!("{name}.log"));
    let log = fs::File::create(&log_path).unwrap();
    let mut cmd = host.sandboxed(sandbox, name, &["run"]);
    cmd.env("DRIFTWATCH_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut daemon = cmd.spawn().expect("start the daemon");
    let status_file = host.dir.state().join("status.json");
    let status = || -> Value {
        fs::read(&status_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    };
    let mut first_poll = Value::Null;
    let polled_twice = wait_until(Duration::from_secs(60), || {
        let now = status();
        let at = &now["coverage"]["last_source_poll_at"];
        if now["ready"] != true || at.is_null() {
            return false;
        }
        if first_poll.is_null() {
            first_poll = at.clone();
        }
        *at != first_poll
    });
    let last = status();
    let log_text = fs::read_to_string(&log_path).unwrap_or_default();
    let _ = Command::new("kill")
        .args(["-KILL", &host.init_pid.to_string()])
        .status();
    let _ = daemon.wait();
    assert!(
        polled_twice,
        "{name}: the daemon did not get ready and poll twice: {last:#}\n{log_text}"
    );
    (last, log_text)
}

/// A kernel built without loadable modules has no /proc/modules: the module source is
/// then rightly unavailable, on the host and in every sandbox alike.
fn kernel_has_modules() -> bool {
    Path::new("/proc/modules").exists()
}

/// A report's `sources_unavailable`, less what this kernel cannot have.
fn blind_spots(report: &Value) -> Vec<String> {
    report["sources_unavailable"]
        .as_array()
        .expect("sources_unavailable")
        .iter()
        .filter_map(Value::as_str)
        .filter(|note| kernel_has_modules() || !note.starts_with("module: not available"))
        .map(str::to_owned)
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().map(ToString::to_string).collect())
        .unwrap_or_default()
}

#[test]
fn baseline_from_a_root_shell_and_check_or_daemon_under_each_unit_agree() {
    if !sandbox_tools_ready() {
        return;
    }
    let host = Host::new();
    let (code, stdout, stderr) = run(
        host.agent(&["baseline", "init", "--json"]),
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "baseline init as root: {stdout}\n{stderr}");
    let init: Value = serde_json::from_str(&stdout).unwrap();
    assert!(blind_spots(&init).is_empty(), "{init}");
    // Every source saw everything as root; a sandbox that hid a field (the listener's
    // owner, say) would add a note to sources_unavailable, checked below.

    for name in SCANNING_UNITS {
        let sandbox = sandbox_of(&unit_text(name)).unwrap();
        let (code, report, stderr) = check_json(&host, &sandbox, name);
        assert_eq!(
            code, 0,
            "{name}: check under the unit's sandbox: {report:#}\n{stderr}"
        );
        assert!(
            report["drifts"].as_array().unwrap().is_empty(),
            "{name}: {report:#}"
        );
        assert!(
            report["state_drifts"].as_array().unwrap().is_empty(),
            "{name}: {report:#}"
        );
        assert!(
            report["errors"].as_array().unwrap().is_empty(),
            "{name}: {report:#}"
        );
        assert!(
            blind_spots(&report).is_empty(),
            "{name}: every source sees the host: {report:#}"
        );
    }

    // The daemon under the agent's unit: an unchanged host spools nothing.
    let sandbox = sandbox_of(&unit_text("driftwatch-agent.service")).unwrap();
    let (last, log_text) = run_daemon(&host, &sandbox, "daemon");
    assert_eq!(
        last["events_spooled"], 0,
        "drift from an unchanged host: {last:#}\n{log_text}"
    );
    assert_eq!(last["open_drift"], 0, "{last:#}");
    assert_eq!(last["coverage"]["unreadable"], 0, "{last:#}");
    let sources = last["coverage"]["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 5, "{last:#}");
    for source in sources {
        if source["name"] == "module" && !kernel_has_modules() {
            assert_eq!(source["condition"], "unavailable", "{last:#}");
            continue;
        }
        assert_eq!(source["condition"], "ok", "{last:#}");
        assert!(source["detail"].is_null(), "no blind spot: {last:#}");
    }
}

#[test]
fn the_old_restrictions_are_caught_and_their_blind_spots_are_coverage_not_drift() {
    if !sandbox_tools_ready() {
        return;
    }
    let host = Host::new();
    let (code, stdout, stderr) = run(
        host.agent(&["baseline", "init", "--quiet"]),
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "baseline init as root: {stdout}\n{stderr}");
    let current = sandbox_of(&unit_text("driftwatch-check.service")).unwrap();

    // The check unit as it shipped before: its own network, modules hidden, no ptrace.
    let old = sandbox_of(&old_unit(
        &unit_text("driftwatch-check.service"),
        &["PrivateNetwork=yes", "ProtectKernelModules=yes"],
        false,
    ))
    .unwrap();
    assert_ne!(old, current, "the generated sandbox follows the unit");
    assert!(old.hidden.contains("/usr/lib/modules") && old.private_network);
    let (code, report, stderr) = check_json(&host, &old, "old-check");
    assert!(
        report["drifts"].as_array().unwrap().is_empty(),
        "blind spots are not drift (I9): {report:#}"
    );
    assert!(
        report["state_drifts"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    assert_eq!(
        code, 3,
        "not everything could be checked: {report:#}\n{stderr}"
    );
    let modules = p(&host.dir.path("usr/lib/modules")).to_owned();
    let errors = strings(&report["errors"]);
    assert!(
        errors
            .iter()
            .any(|e| e.contains(&modules) && e.contains("hidden from the agent")),
        "the hidden module tree is named: {errors:?}"
    );
    let unavailable = strings(&report["sources_unavailable"]);
    assert!(
        unavailable
            .iter()
            .any(|u| u.contains("port") && u.contains("network namespace")),
        "ports in a private network namespace are unavailable: {unavailable:?}"
    );
    assert!(
        unavailable
            .iter()
            .any(|u| u.contains("sysctl:net.ipv4.ip_forward")),
        "net.* parameters of a private network namespace are not compared: {unavailable:?}"
    );

    // Only CAP_SYS_PTRACE taken away: the owner of the host's listener is out of sight.
    let no_ptrace = sandbox_of(&old_unit(
        &unit_text("driftwatch-check.service"),
        &[],
        false,
    ))
    .unwrap();
    assert!(
        !no_ptrace
            .capabilities
            .as_ref()
            .unwrap()
            .contains("sys_ptrace")
    );
    let (code, report, stderr) = check_json(&host, &no_ptrace, "no-ptrace");
    assert!(
        report["state_drifts"].as_array().unwrap().is_empty(),
        "not `unknown` (I9): {report:#}"
    );
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    let unavailable = strings(&report["sources_unavailable"]);
    let port = format!("port:tcp/{} (process)", host.port);
    assert!(
        unavailable.iter().any(|u| u.contains(&port)),
        "the unreadable owner is coverage: {unavailable:?}"
    );

    // The daemon under the agent's old unit: the same blind spots, as coverage.
    let old_agent = sandbox_of(&old_unit(
        &unit_text("driftwatch-agent.service"),
        &["ProtectKernelModules=yes"],
        false,
    ))
    .unwrap();
    let (last, log_text) = run_daemon(&host, &old_agent, "old-daemon");
    assert_eq!(
        last["events_spooled"], 0,
        "blind spots are not drift (I9): {last:#}\n{log_text}"
    );
    assert!(
        last["coverage"]["unreadable"].as_u64().unwrap() > 0,
        "the hidden module tree is unverified: {last:#}"
    );
    let ports = last["coverage"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "port")
        .unwrap();
    assert_eq!(ports["condition"], "ok", "{last:#}");
    assert!(
        ports["detail"].as_str().unwrap_or_default().contains(&port),
        "the unreadable owner is in the coverage: {last:#}"
    );
    assert!(
        log_text.contains("partly unreadable"),
        "and said once in the log: {log_text}"
    );
}
