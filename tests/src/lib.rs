//! End-to-end test harness.
//!
//! Runs the real `driftwatch-agent` binary (built by `cargo build --workspace --bins`, or
//! named by `DRIFTWATCH_AGENT_BIN`) on temporary trees and gives the tests chainable
//! assertions on what it printed and how it exited.
//!
//! - [`Agent`] builds one invocation; [`Agent::run`] captures its output and never hangs
//!   (the process is killed and the test fails after a timeout, 60 s by default).
//! - [`Run`] is the finished invocation: `stdout`, `stderr`, [`Run::code`], [`Run::json`]
//!   and the assertions [`Run::expect`], [`Run::stdout_has`], [`Run::stderr_has`].
//! - [`HostDir`] is a temporary host: the watched tree `tree/`, the agent's `state/` (the
//!   ad-hoc baseline `state/baseline.db` and its key) and helpers to build odd trees.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

// The browser tests' Chromium over WebDriver (issue 11).
pub mod browser;
pub mod collector;
pub mod daemon;

/// No drift.
pub const EXIT_CLEAN: i32 = 0;
/// Drift found.
pub const EXIT_DRIFT: i32 = 1;
/// An error (including usage errors).
pub const EXIT_ERROR: i32 = 2;
/// No drift found, but some subjects could not be read.
pub const EXIT_INCOMPLETE: i32 = 3;
/// The baseline failed its integrity check.
pub const EXIT_INTEGRITY: i32 = 4;
/// The configuration was refused (`EX_CONFIG`), agent and collector alike.
pub const EXIT_CONFIG: i32 = 78;

/// The uid and gid the agent runs as under [`Agent::unprivileged`] (`nobody`).
pub const NOBODY: u32 = 65534;

/// How long a run may take unless [`Agent::timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

const BIN_NAME: &str = "driftwatch-agent";
const BIN_ENV: &str = "DRIFTWATCH_AGENT_BIN";

/// The agent binary: `$DRIFTWATCH_AGENT_BIN`, else `target/<profile>/driftwatch-agent`
/// next to (an ancestor of) this test executable.
pub fn agent_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os(BIN_ENV).filter(|v| !v.is_empty()) {
            let bin = PathBuf::from(bin);
            assert!(bin.is_file(), "{BIN_ENV}={} is not a file", bin.display());
            return bin;
        }
        let exe = std::env::current_exe().expect("path of the test executable");
        exe.ancestors()
            .skip(1)
            .map(|dir| dir.join(BIN_NAME))
            .find(|candidate| candidate.is_file())
            .unwrap_or_else(|| {
                panic!(
                    "{BIN_NAME} not found above {}: run `cargo build --workspace --bins` first \
                     (or set {BIN_ENV})",
                    exe.display()
                )
            })
    })
}

/// Whether the tests run as root (the owner of `/proc/self` is the effective uid).
/// A test that cannot run here for want of a tool or privilege skips with a loud message,
/// unless `.ci/run` set `require_var` (`DRIFTWATCH_REQUIRE_FAKETIME`, `_PROMTOOL`,
/// `_SANDBOX`): then it fails, so CI never passes by skipping.
pub fn skip_unless_required(require_var: &str, message: &str) {
    assert!(
        std::env::var_os(require_var).is_none(),
        "{require_var} is set: {message}"
    );
    eprintln!("\n*** SKIPPED: {message} ***\n");
}

pub fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A path as `&str` (test paths are UTF-8 unless a test makes them otherwise).
#[track_caller]
pub fn p(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("path is not UTF-8: {}", path.display()))
}

/// The `drifts` array of a `check --json` report.
#[track_caller]
pub fn drifts(report: &Value) -> &Vec<Value> {
    report["drifts"]
        .as_array()
        .unwrap_or_else(|| panic!("no drifts array in the report: {report:#}"))
}

/// The drift reported for `path`, if any.
#[track_caller]
pub fn drift_for<'a>(report: &'a Value, path: &str) -> Option<&'a Value> {
    drifts(report).iter().find(|d| d["path"] == path)
}

/// One invocation of the agent, built up like a [`Command`].
#[derive(Debug, Clone)]
pub struct Agent {
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    current_dir: Option<PathBuf>,
    unprivileged: bool,
    timeout: Duration,
}

impl Default for Agent {
    fn default() -> Self {
        Self::new()
    }
}

impl Agent {
    /// The agent with no arguments, `DRIFTWATCH_CONFIG` unset and `DRIFTWATCH_LOG=warn`.
    pub fn new() -> Self {
        Agent {
            args: Vec::new(),
            envs: Vec::new(),
            current_dir: None,
            unprivileged: false,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable (after the harness defaults, so it wins).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.current_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Runs the agent as uid/gid 65534 through `setpriv` when the tests run as root;
    /// otherwise the tests already run unprivileged and the agent runs directly.
    pub fn unprivileged(mut self) -> Self {
        self.unprivileged = true;
        self
    }

    /// Whether this invocation really switches to another user.
    pub fn drops_privileges(&self) -> bool {
        self.unprivileged && is_root()
    }

    /// Kills the agent and fails the test after `timeout` instead of the default 60 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The program and arguments actually started.
    fn argv(&self) -> Vec<OsString> {
        let mut argv: Vec<OsString> = Vec::new();
        if self.drops_privileges() {
            argv.extend(
                [
                    "setpriv",
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                ]
                .map(OsString::from),
            );
        }
        argv.push(agent_bin().as_os_str().to_owned());
        argv.extend(self.args.iter().cloned());
        argv
    }

    /// Runs the agent to completion, capturing stdout and stderr.
    #[track_caller]
    pub fn run(&self) -> Run {
        let argv = self.argv();
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env_remove("DRIFTWATCH_CONFIG")
            .env("DRIFTWATCH_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in &self.envs {
            cmd.env(key, value);
        }
        if let Some(dir) = &self.current_dir {
            cmd.current_dir(dir);
        }
        let command = shell_words(&argv);

        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{command}`: {e}"));
        let stdout = drain(child.stdout.take().expect("piped stdout"));
        let stderr = drain(child.stderr.take().expect("piped stderr"));

        let deadline = Instant::now() + self.timeout;
        let mut timed_out = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    timed_out = true;
                    let _ = child.kill();
                    break child.wait().expect("wait for the killed agent");
                }
                Ok(None) => thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("waiting for `{command}`: {e}"),
            }
        };
        let run = Run {
            command,
            status,
            stdout: stdout.join().expect("stdout reader"),
            stderr: stderr.join().expect("stderr reader"),
        };
        assert!(
            !timed_out,
            "the agent did not finish within {:?} and was killed: {run}",
            self.timeout
        );
        run
    }
}

/// Reads a pipe to the end on its own thread, so a full pipe never blocks the agent.
fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A command line for display, each word quoted if needed.
fn shell_words(argv: &[OsString]) -> String {
    argv.iter()
        .map(|word| {
            let word = word.to_string_lossy();
            let plain = !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                word.into_owned()
            } else {
                format!("{word:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A finished agent run.
#[derive(Debug)]
pub struct Run {
    command: String,
    status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The exit code; a death by signal N reads as 128 + N.
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .or_else(|| self.status.signal().map(|s| 128 + s))
            .unwrap_or(-1)
    }

    /// Stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }

    /// Asserts the exit code.
    #[track_caller]
    pub fn expect(&self, code: i32) -> &Self {
        assert_eq!(self.code(), code, "unexpected exit code: {self}");
        self
    }

    /// Asserts that stdout contains `needle`.
    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}: {self}"
        );
        self
    }

    /// Asserts that stderr contains `needle`.
    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}: {self}"
        );
        self
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f)?;
        writeln!(f, "--- command: {}", self.command)?;
        writeln!(f, "--- exit code: {} ({})", self.code(), self.status)?;
        writeln!(f, "--- stdout:")?;
        write!(f, "{}", self.stdout)?;
        if !self.stdout.is_empty() && !self.stdout.ends_with('\n') {
            writeln!(f)?;
        }
        writeln!(f, "--- stderr:")?;
        write!(f, "{}", self.stderr)?;
        if !self.stderr.is_empty() && !self.stderr.ends_with('\n') {
            writeln!(f)?;
        }
        write!(f, "---")
    }
}

/// Mode of the files the helpers create (independent of the umask).
const FILE_MODE: u32 = 0o644;
/// Mode of the directories the helpers create (independent of the umask).
const DIR_MODE: u32 = 0o755;

/// A temporary host: `tree/` (watched) and `state/` (the baseline) in a temp dir.
#[derive(Debug)]
pub struct HostDir {
    dir: TempDir,
    tree: PathBuf,
    state: PathBuf,
}

impl Default for HostDir {
    fn default() -> Self {
        Self::new()
    }
}

impl HostDir {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("driftwatch-e2e-")
            .tempdir()
            .expect("create a temp dir");
        let tree = dir.path().join("tree");
        let state = dir.path().join("state");
        for d in [&tree, &state] {
            fs::create_dir(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
            set_mode(d, DIR_MODE);
        }
        HostDir { dir, tree, state }
    }

    /// The temp dir holding `tree/` and `state/`.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The watched tree.
    pub fn tree(&self) -> &Path {
        &self.tree
    }

    /// Where the baseline lives.
    pub fn state(&self) -> &Path {
        &self.state
    }

    /// The ad-hoc baseline database.
    pub fn db(&self) -> PathBuf {
        self.state.join("baseline.db")
    }

    /// The baseline's key: the db path + `.key`.
    pub fn key(&self) -> PathBuf {
        let mut key = self.db().into_os_string();
        key.push(".key");
        PathBuf::from(key)
    }

    /// `tree/rel`.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        let rel = rel.as_ref();
        assert!(rel.is_relative(), "{} is not relative", rel.display());
        self.tree.join(rel)
    }

    /// Creates the directories up to `dir` (inside the tree) that do not exist yet, 0755.
    fn make_dirs(&self, dir: &Path) {
        if dir.symlink_metadata().is_ok() {
            return;
        }
        if let Some(parent) = dir.parent() {
            self.make_dirs(parent);
        }
        fs::create_dir(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        set_mode(dir, DIR_MODE);
    }

    fn make_parent(&self, path: &Path) {
        if let Some(parent) = path.parent() {
            self.make_dirs(parent);
        }
    }

    /// Writes `tree/rel` (parents created); a new file gets mode 0644, an existing one
    /// keeps its mode.
    pub fn write(&self, rel: impl AsRef<Path>, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(rel);
        self.make_parent(&path);
        let existed = path.symlink_metadata().is_ok();
        fs::write(&path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        if !existed {
            set_mode(&path, FILE_MODE);
        }
        path
    }

    /// Appends to `tree/rel`.
    pub fn append(&self, rel: impl AsRef<Path>, content: impl AsRef<[u8]>) -> PathBuf {
        use std::io::Write;
        let path = self.path(rel);
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(content.as_ref()))
            .unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
        path
    }

    /// Creates the directory `tree/rel` (and its parents), mode 0755.
    pub fn mkdir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let path = self.path(rel);
        self.make_dirs(&path);
        path
    }

    /// Sets the permission bits of `path` (any path, not only in the tree).
    pub fn chmod(&self, path: impl AsRef<Path>, mode: u32) {
        set_mode(path.as_ref(), mode);
    }

    /// Creates the symlink `tree/rel` pointing at `target` (taken as is).
    pub fn symlink(&self, target: impl AsRef<Path>, rel: impl AsRef<Path>) -> PathBuf {
        let link = self.path(rel);
        self.make_parent(&link);
        std::os::unix::fs::symlink(target.as_ref(), &link)
            .unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
        link
    }

    /// Creates `tree/rel` as a hard link to `tree/existing`.
    pub fn hard_link(&self, existing: impl AsRef<Path>, rel: impl AsRef<Path>) -> PathBuf {
        let original = self.path(existing);
        let link = self.path(rel);
        self.make_parent(&link);
        fs::hard_link(&original, &link)
            .unwrap_or_else(|e| panic!("link {} to {}: {e}", link.display(), original.display()));
        link
    }

    /// Creates the FIFO `tree/rel` with `mkfifo`.
    pub fn fifo(&self, rel: impl AsRef<Path>) -> PathBuf {
        let path = self.path(rel);
        self.make_parent(&path);
        run_tool(Command::new("mkfifo").arg("-m").arg("644").arg(&path));
        path
    }

    /// Creates the Unix socket `tree/rel` (bound, then closed: the socket file stays).
    pub fn socket(&self, rel: impl AsRef<Path>) -> PathBuf {
        let path = self.path(rel);
        self.make_parent(&path);
        drop(
            std::os::unix::net::UnixListener::bind(&path)
                .unwrap_or_else(|e| panic!("bind {}: {e}", path.display())),
        );
        path
    }

    /// Creates the character device `tree/rel` with `mknod` (needs root).
    pub fn char_device(&self, rel: impl AsRef<Path>, major: u32, minor: u32) -> PathBuf {
        let path = self.path(rel);
        self.make_parent(&path);
        run_tool(
            Command::new("mknod")
                .arg("-m")
                .arg("644")
                .arg(&path)
                .arg("c")
                .arg(major.to_string())
                .arg(minor.to_string()),
        );
        path
    }

    /// Writes a file named by raw bytes (not necessarily UTF-8) in `tree/dir`.
    pub fn write_raw_name(
        &self,
        dir: impl AsRef<Path>,
        name: &[u8],
        content: impl AsRef<[u8]>,
    ) -> PathBuf {
        let dir = self.path(dir);
        self.make_dirs(&dir);
        let path = dir.join(OsStr::from_bytes(name));
        fs::write(&path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        set_mode(&path, FILE_MODE);
        path
    }

    /// Creates `tree/rel` as a sparse file of `len` bytes (all holes).
    pub fn sparse(&self, rel: impl AsRef<Path>, len: u64) -> PathBuf {
        let path = self.path(rel);
        self.make_parent(&path);
        fs::File::create(&path)
            .and_then(|f| f.set_len(len))
            .unwrap_or_else(|e| panic!("sparse file {}: {e}", path.display()));
        set_mode(&path, FILE_MODE);
        path
    }

    /// Lets uid 65534 run the agent here: the tree and the temp dir become world
    /// readable and traversable, and `state/` is handed to 65534 (when running as root).
    pub fn share_with_nobody(&self) {
        add_mode(self.root(), 0o755);
        share_tree(&self.tree);
        if is_root() {
            std::os::unix::fs::chown(&self.state, Some(NOBODY), Some(NOBODY))
                .unwrap_or_else(|e| panic!("chown {}: {e}", self.state.display()));
        }
    }

    /// The agent with `args`, then `--path <tree> --db <db>` (the ad-hoc mode).
    pub fn agent<I, S>(&self, args: I) -> Agent
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Agent::new()
            .args(args)
            .arg("--path")
            .arg(self.tree())
            .arg("--db")
            .arg(self.db())
    }

    /// Runs `baseline init` and asserts it succeeded.
    #[track_caller]
    pub fn init(&self) -> Run {
        let run = self.agent(["baseline", "init"]).run();
        run.expect(EXIT_CLEAN);
        run
    }

    /// Runs `check --json` (the caller asserts the exit code).
    #[track_caller]
    pub fn check_json(&self) -> Run {
        self.agent(["check", "--json"]).run()
    }
}

/// Adds read (and, for directories, search) permission for everyone below `path`.
fn share_tree(path: &Path) {
    let meta =
        fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    if meta.is_dir() {
        add_mode(path, 0o555);
        let entries = fs::read_dir(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        for entry in entries {
            share_tree(&entry.expect("directory entry").path());
        }
    } else if meta.is_file() {
        add_mode(path, 0o444);
    }
}

fn add_mode(path: &Path, bits: u32) {
    let mode = fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode();
    set_mode(path, (mode & 0o7777) | bits);
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, path.display()));
}

#[track_caller]
fn run_tool(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
