//! Package provenance: which package a changed file belongs to, and whether
//! its content is still what the package shipped.
//!
//! dpkg records an MD5 of every file it installs (`/var/lib/dpkg/info/*.md5sums`,
//! and conffiles in its status file). A package upgrade that touches 400 files
//! then reads as "owned by P version V, matches the package" 400 times, while
//! a trojaned binary claiming to be packaged stands out as "does not match".
//! MD5 is what dpkg stores; it is used here to compare with dpkg's own record,
//! never as our integrity hash (that is BLAKE3).
//!
//! rpm keeps a digest of every file in its database (SHA-256 since RHEL 6, MD5
//! before); the `rpm` command reads it whatever its backend (Berkeley DB,
//! SQLite, ndb), so [`ProvenanceIndex::load_rpm`] asks it for the file list.
//!
//! [`PackageDb::host`] picks the manager. [`PackageRecords`] reloads the index when
//! the database changed and the loaded records cannot vouch for a file (no owner,
//! other content), so an upgraded file is judged against the new package without a
//! reload per event during an upgrade.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use driftwatch_common::api::v1::Provenance;
use md5::{Digest, Md5};
use sha2::Sha256;

/// rpm's query for every installed file: `NAME\tVERSION-RELEASE\tALGO\tDIGEST\tPATH` lines
/// (`%{=TAG}` repeats a package's value on each of its files).
const RPM_FILES_QUERY: &str =
    "[%{=NAME}\t%{=VERSION}-%{=RELEASE}\t%{=FILEDIGESTALGO}\t%{FILEDIGESTS}\t%{FILENAMES}\n]";

/// Where dpkg keeps its records.
pub struct DpkgPaths {
    pub info_dir: PathBuf,
    pub status: PathBuf,
}

/// Where rpm keeps its records: the root the `rpm` command is pointed at (`--root`), and
/// the database directory below it, watched for changes.
pub struct RpmPaths {
    pub root: PathBuf,
    pub db_dir: PathBuf,
}

impl Default for RpmPaths {
    fn default() -> Self {
        RpmPaths {
            root: PathBuf::from("/"),
            db_dir: PathBuf::from("/var/lib/rpm"),
        }
    }
}

impl RpmPaths {
    /// The database file whose replacement marks a package operation, for the
    /// backend in use (SQLite, ndb, Berkeley DB).
    fn db_file(&self) -> PathBuf {
        ["rpmdb.sqlite", "Packages.db", "Packages"]
            .iter()
            .map(|name| self.db_dir.join(name))
            .find(|path| path.exists())
            .unwrap_or_else(|| self.db_dir.join("rpmdb.sqlite"))
    }
}

/// The package manager whose records say what each file should be.
pub enum PackageDb {
    Dpkg(DpkgPaths),
    Rpm(RpmPaths),
}

impl PackageDb {
    /// This host's: dpkg where its status file exists, else rpm where its database
    /// directory exists, else dpkg (whose load then says there are no records).
    pub fn host() -> PackageDb {
        let dpkg = DpkgPaths::default();
        let rpm = RpmPaths::default();
        if !dpkg.status.exists() && rpm.db_dir.is_dir() {
            PackageDb::Rpm(rpm)
        } else {
            PackageDb::Dpkg(dpkg)
        }
    }

    fn load(&self) -> Result<ProvenanceIndex, ProvenanceError> {
        match self {
            PackageDb::Dpkg(paths) => ProvenanceIndex::load(paths),
            PackageDb::Rpm(paths) => ProvenanceIndex::load_rpm(paths),
        }
    }

    /// The file every package operation replaces or rewrites.
    fn changes_with(&self) -> PathBuf {
        match self {
            PackageDb::Dpkg(paths) => paths.status.clone(),
            PackageDb::Rpm(paths) => paths.db_file(),
        }
    }
}

impl Default for DpkgPaths {
    fn default() -> Self {
        DpkgPaths {
            info_dir: PathBuf::from("/var/lib/dpkg/info"),
            status: PathBuf::from("/var/lib/dpkg/status"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    #[error("package provenance is not available: {0}")]
    Unavailable(String),
    #[error("cannot read {path}: {cause}")]
    Read { path: PathBuf, cause: io::Error },
    #[error("cannot list rpm's files: {0}")]
    Rpm(String),
}

/// How a package manager recorded a file's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DigestAlgo {
    Md5,
    Sha256,
}

impl DigestAlgo {
    fn len(self) -> usize {
        match self {
            DigestAlgo::Md5 => 16,
            DigestAlgo::Sha256 => 32,
        }
    }

    /// rpm's `FILEDIGESTALGO` (OpenPGP hash numbers; absent means MD5).
    fn from_rpm(value: &str) -> Option<DigestAlgo> {
        match value {
            "1" | "(none)" | "" => Some(DigestAlgo::Md5),
            "8" => Some(DigestAlgo::Sha256),
            _ => None,
        }
    }
}

struct Package {
    name: String,
    version: String,
    algo: DigestAlgo,
}

/// Which package owns each file, with the digest the package recorded.
///
/// Compact because the daemon keeps it for its lifetime: a server's dpkg records ~100k
/// files, which as a map of owned paths took ~14 MB; as sorted 16-byte entries keyed by a
/// 64-bit hash of the path, with the digests in one buffer, it takes ~3 MB. A false match
/// needs two paths among ~100k with the same 64-bit hash (odds around 1e-10), and would
/// only name the wrong owner.
pub struct ProvenanceIndex {
    /// `dpkg` or `rpm`.
    manager: &'static str,
    /// Sorted by `path_key`; the last record of a path wins (md5sums over conffiles).
    files: Vec<PackagedFile>,
    /// The recorded digests, each as long as its package's algorithm says.
    digests: Vec<u8>,
    packages: Vec<Package>,
}

struct PackagedFile {
    path_key: u64,
    /// Index into `packages`.
    package: u32,
    /// Where its digest starts in `digests`.
    digest_at: u32,
}

fn path_key(absolute_path: &[u8]) -> u64 {
    let hash = blake3::hash(absolute_path);
    u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 of 32 bytes"))
}

impl ProvenanceIndex {
    /// Reads dpkg's records (about 100k files on a typical server, a fraction of a second).
    pub fn load(paths: &DpkgPaths) -> Result<Self, ProvenanceError> {
        if !paths.status.exists() {
            return Err(ProvenanceError::Unavailable(format!(
                "{} does not exist (no dpkg; no rpm database either)",
                paths.status.display()
            )));
        }
        let read = |path: &Path| {
            std::fs::read(path).map_err(|cause| ProvenanceError::Read {
                path: path.to_owned(),
                cause,
            })
        };
        let status = String::from_utf8_lossy(&read(&paths.status)?).into_owned();
        let mut index = ProvenanceIndex::new("dpkg");
        let versions = index.add_status(&status);
        let entries =
            std::fs::read_dir(&paths.info_dir).map_err(|cause| ProvenanceError::Read {
                path: paths.info_dir.clone(),
                cause,
            })?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(package) = name.to_str().and_then(|n| n.strip_suffix(".md5sums")) else {
                continue;
            };
            // `libc6:amd64.md5sums` belongs to package `libc6`.
            let bare = package.split(':').next().unwrap_or(package);
            let Some(&pkg) = versions.get(package).or_else(|| versions.get(bare)) else {
                continue; // records of a package no longer installed
            };
            let text = read(&entry.path())?;
            for line in text.split(|&b| b == b'\n') {
                if let Some((md5, path)) = parse_md5sums_line(line) {
                    index.add_file(&absolute(path), pkg, &md5);
                }
            }
        }
        index.seal();
        Ok(index)
    }

    /// Asks `rpm` for every installed file with its digest (one line per file).
    pub fn load_rpm(paths: &RpmPaths) -> Result<Self, ProvenanceError> {
        if !paths.db_dir.is_dir() {
            return Err(ProvenanceError::Unavailable(format!(
                "{} does not exist",
                paths.db_dir.display()
            )));
        }
        let output = std::process::Command::new("rpm")
            .arg("--root")
            .arg(&paths.root)
            .args(["-qa", "--qf", RPM_FILES_QUERY])
            .output()
            .map_err(|err| ProvenanceError::Rpm(format!("cannot run rpm: {err}")))?;
        if !output.status.success() {
            return Err(ProvenanceError::Rpm(format!(
                "rpm -qa failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(ProvenanceIndex::from_rpm_files(&output.stdout))
    }

    /// Parses [`RPM_FILES_QUERY`]'s output: `NAME\tVERSION-RELEASE\tALGO\tDIGEST\tPATH`.
    /// Files without a digest (directories, symlinks, ghosts) and digests of an algorithm
    /// we cannot compute are left out: such files are simply not judged.
    fn from_rpm_files(text: &[u8]) -> ProvenanceIndex {
        let mut index = ProvenanceIndex::new("rpm");
        let mut by_package: HashMap<(&[u8], &[u8]), u32> = HashMap::new();
        for line in text.split(|&b| b == b'\n') {
            let mut fields = line.splitn(5, |&b| b == b'\t');
            let (Some(name), Some(version), Some(algo), Some(digest), Some(path)) = (
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
            ) else {
                continue;
            };
            let Some(algo) = std::str::from_utf8(algo)
                .ok()
                .and_then(DigestAlgo::from_rpm)
            else {
                continue;
            };
            let Some(digest) = parse_hex(digest, algo.len()) else {
                continue; // no digest: not a regular file
            };
            if !path.starts_with(b"/") {
                continue;
            }
            let package = *by_package.entry((name, version)).or_insert_with(|| {
                index.packages.push(Package {
                    name: String::from_utf8_lossy(name).into_owned(),
                    version: String::from_utf8_lossy(version).into_owned(),
                    algo,
                });
                (index.packages.len() - 1) as u32
            });
            index.add_file(path, package, &digest);
        }
        index.seal();
        index
    }

    fn new(manager: &'static str) -> ProvenanceIndex {
        ProvenanceIndex {
            manager,
            files: Vec::new(),
            digests: Vec::new(),
            packages: Vec::new(),
        }
    }

    fn add_file(&mut self, absolute_path: &[u8], package: u32, digest: &[u8]) {
        let Ok(digest_at) = u32::try_from(self.digests.len()) else {
            return; // 4 GiB of digests: not a real package database
        };
        self.digests.extend_from_slice(digest);
        self.files.push(PackagedFile {
            path_key: path_key(absolute_path),
            package,
            digest_at,
        });
    }

    /// Sorts for lookups, keeping the last record added for each path.
    fn seal(&mut self) {
        // Stable, so among equal keys the order of addition is kept.
        self.files.sort_by_key(|file| file.path_key);
        let mut kept: Vec<PackagedFile> = Vec::with_capacity(self.files.len());
        for file in self.files.drain(..) {
            match kept.last_mut() {
                Some(last) if last.path_key == file.path_key => *last = file,
                _ => kept.push(file),
            }
        }
        kept.shrink_to_fit();
        self.files = kept;
        self.digests.shrink_to_fit();
    }

    /// Adds installed packages and their conffiles from dpkg's status file;
    /// returns name (and `name:arch`) -> package index.
    fn add_status(&mut self, status: &str) -> HashMap<String, u32> {
        let mut by_name = HashMap::new();
        for stanza in status.split("\n\n") {
            let field = |name: &str| {
                stanza.lines().find_map(|line| {
                    line.strip_prefix(name)
                        .and_then(|rest| rest.strip_prefix(':'))
                        .map(|value| value.trim().to_owned())
                })
            };
            let installed = field("Status").is_some_and(|s| s.ends_with(" installed"));
            let (Some(name), Some(version), true) = (field("Package"), field("Version"), installed)
            else {
                continue;
            };
            let Ok(pkg) = u32::try_from(self.packages.len()) else {
                break; // four billion packages: not a real status file
            };
            if let Some(arch) = field("Architecture") {
                by_name.insert(format!("{name}:{arch}"), pkg);
            }
            by_name.insert(name.clone(), pkg);
            self.packages.push(Package {
                name,
                version,
                algo: DigestAlgo::Md5,
            });
            // Conffiles: " /etc/x.conf <md5>" lines after the "Conffiles:" header.
            let conffiles = stanza
                .lines()
                .skip_while(|line| !line.starts_with("Conffiles:"))
                .skip(1)
                .take_while(|line| line.starts_with(' '));
            for line in conffiles {
                let mut parts = line.split_whitespace();
                if let (Some(path), Some(md5)) = (parts.next(), parts.next())
                    && let Some(md5) = parse_hex(md5.as_bytes(), 16)
                {
                    self.add_file(path.as_bytes(), pkg, &md5);
                }
            }
        }
        by_name
    }

    /// The package that owns `path` and the digest it shipped, trying the
    /// merged-/usr alias (`/bin/ls` is `/usr/bin/ls`) as well.
    fn owner(&self, path: &[u8]) -> Option<&PackagedFile> {
        let get = |path: &[u8]| {
            let key = path_key(path);
            self.files
                .binary_search_by_key(&key, |file| file.path_key)
                .ok()
                .map(|at| &self.files[at])
        };
        get(path).or_else(|| match path.strip_prefix(b"/usr") {
            Some(short) => get(short),
            None => get(&[b"/usr", path].concat()),
        })
    }

    pub fn owns(&self, path: &Path) -> bool {
        self.owner(path.as_os_str().as_bytes()).is_some()
    }

    /// The verdict for a file as it is now: owned by which package, and
    /// whether its content matches what the package installed. `None` when
    /// no package owns it.
    pub fn verify(&self, path: &Path) -> Option<io::Result<Provenance>> {
        let owner = self.owner(path.as_os_str().as_bytes())?;
        let package = &self.packages[owner.package as usize];
        let at = owner.digest_at as usize;
        let expected = &self.digests[at..at + package.algo.len()];
        Some(digest_of(path, package.algo).map(|actual| Provenance {
            manager: self.manager.into(),
            package: package.name.clone(),
            version: package.version.clone(),
            matches_package: actual == expected,
        }))
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// The [`ProvenanceIndex`] kept current for a long-running agent: dpkg rewrites its status
/// file (a new file renamed into place) at the end of every install, upgrade and removal,
/// so the index is reloaded when that file is no longer the one it was loaded from. A verdict
/// against the records of before an upgrade would call every upgraded file "does not match
/// its package", the false alarm this feature exists to avoid.
pub struct PackageRecords {
    db: PackageDb,
    /// The status file the current index (or error) was loaded from; `None` if absent.
    loaded_from: Option<FileStamp>,
    index: Result<ProvenanceIndex, ProvenanceError>,
}

/// What tells one version of a file from the next: a rename gives a new inode, an
/// in-place write a new mtime, ctime or size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        let ns = |secs: i64, nanos: i64| i128::from(secs) * 1_000_000_000 + i128::from(nanos);
        Some(FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        })
    }
}

impl PackageRecords {
    pub fn open(db: PackageDb) -> PackageRecords {
        let loaded_from = FileStamp::of(&db.changes_with());
        let index = db.load();
        PackageRecords {
            db,
            loaded_from,
            index,
        }
    }

    /// Why there is no provenance on this host, if there is none.
    pub fn unavailable(&self) -> Option<&ProvenanceError> {
        self.index.as_ref().err()
    }

    /// [`ProvenanceIndex::verify`] against the package manager's records as they are now;
    /// `None` when no package owns the file or there are no records.
    ///
    /// The records are reloaded only when the loaded ones cannot vouch for the file (no
    /// owner, or other content) and the database changed since: during an upgrade the
    /// database changes with every package, and a reload (dpkg: a fraction of a second;
    /// rpm: its query, a few seconds) is only worth it when the verdict depends on it.
    pub fn verify(&mut self, path: &Path) -> Option<io::Result<Provenance>> {
        let verdict = self
            .index
            .as_ref()
            .ok()
            .and_then(|index| index.verify(path));
        if matches!(&verdict, Some(Ok(provenance)) if provenance.matches_package) {
            return verdict;
        }
        if !self.refresh() {
            return verdict;
        }
        self.index.as_ref().ok()?.verify(path)
    }

    /// Reloads when the database changed since the last load (one `stat` otherwise);
    /// returns whether it did.
    fn refresh(&mut self) -> bool {
        let now = FileStamp::of(&self.db.changes_with());
        if now == self.loaded_from {
            return false;
        }
        let started = std::time::Instant::now();
        self.loaded_from = now;
        self.index = self.db.load();
        match &self.index {
            Ok(index) => tracing::info!(
                files = index.len(),
                took_ms = started.elapsed().as_millis() as u64,
                "package records changed; provenance reloaded"
            ),
            Err(err) => tracing::warn!(reason = %err, "package provenance off"),
        }
        true
    }
}

/// `<32 hex>  <relative path>`.
fn parse_md5sums_line(line: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let md5 = parse_hex(line.get(..32)?, 16)?;
    let path = line.get(32..)?.strip_prefix(b"  ")?;
    (!path.is_empty()).then_some((md5, path))
}

/// Exactly `len` bytes written as `2 * len` hex digits.
fn parse_hex(hex: &[u8], len: usize) -> Option<Vec<u8>> {
    if hex.len() != 2 * len {
        return None;
    }
    hex.chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

fn absolute(relative: &[u8]) -> Vec<u8> {
    if relative.starts_with(b"/") {
        relative.to_vec()
    } else {
        [b"/", relative].concat()
    }
}

fn digest_of(path: &Path, algo: DigestAlgo) -> io::Result<Vec<u8>> {
    match algo {
        DigestAlgo::Md5 => hash_file::<Md5>(path),
        DigestAlgo::Sha256 => hash_file::<Sha256>(path),
    }
}

fn hash_file<H: Digest>(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let mut hasher = H::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf)? {
            0 => break,
            n => hasher.update(&buf[..n]),
        }
    }
    Ok(hasher.finalize().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md5_hex(bytes: &[u8]) -> String {
        Md5::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// A fake root with dpkg records for two files of package `tool`.
    fn fixture() -> (tempfile::TempDir, ProvenanceIndex) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let bin = root.join("usr/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("tool"), b"genuine").unwrap();
        std::fs::write(bin.join("other"), b"trojaned").unwrap();
        let info = root.join("info");
        std::fs::create_dir(&info).unwrap();
        let rel = |name: &str| {
            bin.join(name)
                .strip_prefix("/")
                .unwrap()
                .display()
                .to_string()
        };
        std::fs::write(
            info.join("tool:amd64.md5sums"),
            format!(
                "{}  {}\n{}  {}\n",
                md5_hex(b"genuine"),
                rel("tool"),
                md5_hex(b"original"),
                rel("other")
            ),
        )
        .unwrap();
        std::fs::write(
            info.join("gone.md5sums"),
            format!("{}  {}\n", md5_hex(b"x"), rel("gone")),
        )
        .unwrap();
        let status = root.join("status");
        std::fs::write(
            &status,
            "Package: tool\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.1-1\n\
             Conffiles:\n /etc/tool.conf 0123456789abcdef0123456789abcdef\n",
        )
        .unwrap();
        let index = ProvenanceIndex::load(&DpkgPaths {
            info_dir: info,
            status,
        })
        .unwrap();
        (dir, index)
    }

    #[test]
    fn genuine_and_modified_packaged_files() {
        let (dir, index) = fixture();
        let bin = dir.path().join("usr/bin");
        let genuine = index.verify(&bin.join("tool")).unwrap().unwrap();
        assert_eq!(
            (genuine.package.as_str(), genuine.version.as_str()),
            ("tool", "2.1-1")
        );
        assert!(genuine.matches_package);
        let trojaned = index.verify(&bin.join("other")).unwrap().unwrap();
        assert!(!trojaned.matches_package);
        assert!(index.verify(&dir.path().join("unowned")).is_none());
    }

    #[test]
    fn conffiles_are_owned_and_removed_packages_are_not() {
        let (dir, index) = fixture();
        assert!(index.owns(Path::new("/etc/tool.conf")));
        assert!(!index.owns(&dir.path().join("usr/bin/gone")));
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn records_follow_a_package_upgrade() {
        let (dir, _) = fixture();
        let root = dir.path();
        let mut records = PackageRecords::open(PackageDb::Dpkg(DpkgPaths {
            info_dir: root.join("info"),
            status: root.join("status"),
        }));
        let tool = root.join("usr/bin/tool");
        assert!(records.verify(&tool).unwrap().unwrap().matches_package);

        // The upgrade: new content, new md5sums, and (last, as dpkg does) a new status
        // file renamed into place.
        std::fs::write(&tool, b"genuine 2.2").unwrap();
        let rel = tool.strip_prefix("/").unwrap().display().to_string();
        std::fs::write(
            root.join("info/tool:amd64.md5sums"),
            format!("{}  {rel}\n", md5_hex(b"genuine 2.2")),
        )
        .unwrap();
        let upgraded = std::fs::read_to_string(root.join("status"))
            .unwrap()
            .replace("2.1-1", "2.2-1");
        std::fs::write(root.join("status-new"), upgraded).unwrap();
        std::fs::rename(root.join("status-new"), root.join("status")).unwrap();

        let verdict = records.verify(&tool).unwrap().unwrap();
        assert_eq!(verdict.version, "2.2-1");
        assert!(verdict.matches_package, "the upgraded file is genuine");

        // Records that vanish turn provenance off instead of giving stale verdicts of
        // difference (a file that still matches what its package shipped keeps saying so).
        std::fs::remove_file(root.join("status")).unwrap();
        assert!(records.verify(&tool).unwrap().unwrap().matches_package);
        std::fs::write(&tool, b"changed after dpkg went away").unwrap();
        assert!(records.verify(&tool).is_none());
        assert!(records.unavailable().is_some());
    }

    #[test]
    fn the_last_record_of_a_path_wins() {
        // dpkg lists a conffile in the status file and again in md5sums: the later wins.
        let mut index = ProvenanceIndex::new("dpkg");
        for name in ["a", "b"] {
            index.packages.push(Package {
                name: name.into(),
                version: "1".into(),
                algo: DigestAlgo::Md5,
            });
        }
        index.add_file(b"/etc/x.conf", 0, &[1; 16]);
        index.add_file(b"/etc/y.conf", 0, &[2; 16]);
        index.add_file(b"/etc/x.conf", 1, &[3; 16]);
        index.seal();
        assert_eq!(index.len(), 2);
        let owner = index.owner(b"/etc/x.conf").unwrap();
        let at = owner.digest_at as usize;
        assert_eq!(owner.package, 1);
        assert_eq!(index.digests[at..at + 16], [3; 16]);
        assert!(index.owner(b"/etc/z.conf").is_none());
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn rpm_file_lists_give_verdicts_with_their_algorithm() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("usr/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("bash"), b"genuine").unwrap();
        std::fs::write(bin.join("ls"), b"trojaned").unwrap();
        std::fs::write(bin.join("old"), b"legacy").unwrap();
        let path = |name: &str| bin.join(name).display().to_string();
        // As `rpm -qa --qf RPM_FILES_QUERY` prints it: a directory and a symlink have no
        // digest; an old package records MD5 (algorithm absent); SHA-1 (2) is not computed.
        let listing = format!(
            concat!(
                "bash\t5.1.8-6.el9\t8\t{}\t{}\n",
                "bash\t5.1.8-6.el9\t8\t\t/usr/share/doc/bash\n",
                "coreutils\t8.32-34.el9\t8\t{}\t{}\n",
                "coreutils\t8.32-34.el9\t8\t\t/usr/bin/dir-link\n",
                "legacy\t1.0-1\t(none)\t{}\t{}\n",
                "odd\t1-1\t2\t{}\t/usr/bin/sha1-file\n",
                "truncated line\n",
            ),
            sha256_hex(b"genuine"),
            path("bash"),
            sha256_hex(b"original"),
            path("ls"),
            md5_hex(b"legacy"),
            path("old"),
            "ab".repeat(20),
        );
        let index = ProvenanceIndex::from_rpm_files(listing.as_bytes());
        assert_eq!(
            index.len(),
            3,
            "only regular files with a digest we can check"
        );

        let bash = index.verify(&bin.join("bash")).unwrap().unwrap();
        assert_eq!(
            (
                bash.manager.as_str(),
                bash.package.as_str(),
                bash.version.as_str()
            ),
            ("rpm", "bash", "5.1.8-6.el9")
        );
        assert!(bash.matches_package);
        let ls = index.verify(&bin.join("ls")).unwrap().unwrap();
        assert_eq!(ls.package, "coreutils");
        assert!(
            !ls.matches_package,
            "a trojaned binary that claims its package"
        );
        assert!(
            index
                .verify(&bin.join("old"))
                .unwrap()
                .unwrap()
                .matches_package
        );
        assert!(index.verify(Path::new("/usr/bin/sha1-file")).is_none());
    }

    #[test]
    fn without_rpm_records_provenance_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let missing = RpmPaths {
            root: dir.path().to_owned(),
            db_dir: dir.path().join("var/lib/rpm"),
        };
        let Err(err) = ProvenanceIndex::load_rpm(&missing) else {
            panic!("no database, no index");
        };
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn malformed_md5sums_lines_are_skipped() {
        assert!(parse_md5sums_line(b"nothex  usr/bin/x").is_none());
        assert!(parse_md5sums_line(b"0123456789abcdef0123456789abcdef usr/bin/x").is_none());
        assert!(parse_md5sums_line(b"0123456789abcdef0123456789abcdef  ").is_none());
    }

    #[test]
    fn this_hosts_coreutils_match_their_package() {
        let Ok(index) = ProvenanceIndex::load(&DpkgPaths::default()) else {
            return; // not a dpkg host
        };
        // /bin/cat is recorded as bin/cat or usr/bin/cat depending on the release.
        if let Some(verdict) = index.verify(Path::new("/usr/bin/cat")) {
            let verdict = verdict.unwrap();
            assert_eq!(verdict.package, "coreutils");
            assert!(verdict.matches_package, "{verdict:?}");
        }
    }
}
