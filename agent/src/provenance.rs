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
//! rpm keeps its digests in its database; reading it is not supported yet
//! ([`ProvenanceIndex::load`] says so on rpm-only hosts).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use driftwatch_common::api::v1::Provenance;
use md5::{Digest, Md5};

/// Where dpkg keeps its records.
pub struct DpkgPaths {
    pub info_dir: PathBuf,
    pub status: PathBuf,
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
}

/// Which package owns each file, with the digest the package recorded.
///
/// Compact because the daemon keeps it for its lifetime: a server's dpkg records ~100k
/// files, which as a map of owned paths took ~14 MB; as sorted 32-byte entries keyed by a
/// 64-bit hash of the path it takes ~3 MB. A false match needs two paths among ~100k
/// with the same 64-bit hash (odds around 1e-10), and would only name the wrong owner.
pub struct ProvenanceIndex {
    /// Sorted by `path_key`; the last record of a path wins (md5sums over conffiles).
    files: Vec<PackagedFile>,
    /// (name, version)
    packages: Vec<(String, String)>,
}

struct PackagedFile {
    path_key: u64,
    /// Index into `packages`.
    package: u32,
    md5: [u8; 16],
}

fn path_key(absolute_path: &[u8]) -> u64 {
    let hash = blake3::hash(absolute_path);
    u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 of 32 bytes"))
}

impl ProvenanceIndex {
    /// Reads dpkg's records (about 100k files on a typical server, a fraction of a second).
    pub fn load(paths: &DpkgPaths) -> Result<Self, ProvenanceError> {
        if !paths.status.exists() {
            let reason = if Path::new("/var/lib/rpm").is_dir() {
                "rpm hosts are not supported yet (only dpkg)".to_owned()
            } else {
                format!("{} does not exist", paths.status.display())
            };
            return Err(ProvenanceError::Unavailable(reason));
        }
        let read = |path: &Path| {
            std::fs::read(path).map_err(|cause| ProvenanceError::Read {
                path: path.to_owned(),
                cause,
            })
        };
        let status = String::from_utf8_lossy(&read(&paths.status)?).into_owned();
        let mut index = ProvenanceIndex {
            files: Vec::new(),
            packages: Vec::new(),
        };
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
                    index.add_file(&absolute(path), pkg, md5);
                }
            }
        }
        index.seal();
        Ok(index)
    }

    fn add_file(&mut self, absolute_path: &[u8], package: u32, md5: [u8; 16]) {
        self.files.push(PackagedFile {
            path_key: path_key(absolute_path),
            package,
            md5,
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
            self.packages.push((name, version));
            // Conffiles: " /etc/x.conf <md5>" lines after the "Conffiles:" header.
            let conffiles = stanza
                .lines()
                .skip_while(|line| !line.starts_with("Conffiles:"))
                .skip(1)
                .take_while(|line| line.starts_with(' '));
            for line in conffiles {
                let mut parts = line.split_whitespace();
                if let (Some(path), Some(md5)) = (parts.next(), parts.next())
                    && let Some(md5) = parse_hex16(md5.as_bytes())
                {
                    self.add_file(path.as_bytes(), pkg, md5);
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
        let expected = owner.md5;
        let (name, version) = &self.packages[owner.package as usize];
        Some(md5_of(path).map(|actual| Provenance {
            manager: "dpkg".into(),
            package: name.clone(),
            version: version.clone(),
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
    paths: DpkgPaths,
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
    pub fn open(paths: DpkgPaths) -> PackageRecords {
        let loaded_from = FileStamp::of(&paths.status);
        let index = ProvenanceIndex::load(&paths);
        PackageRecords {
            paths,
            loaded_from,
            index,
        }
    }

    /// Why there is no provenance on this host, if there is none.
    pub fn unavailable(&self) -> Option<&ProvenanceError> {
        self.index.as_ref().err()
    }

    /// [`ProvenanceIndex::verify`] against dpkg's records as they are now; `None` when no
    /// package owns the file or there are no records.
    pub fn verify(&mut self, path: &Path) -> Option<io::Result<Provenance>> {
        self.refresh();
        self.index.as_ref().ok()?.verify(path)
    }

    /// Reloads when the status file changed since the last load (one `stat` otherwise).
    fn refresh(&mut self) {
        let now = FileStamp::of(&self.paths.status);
        if now == self.loaded_from {
            return;
        }
        let started = std::time::Instant::now();
        self.loaded_from = now;
        self.index = ProvenanceIndex::load(&self.paths);
        match &self.index {
            Ok(index) => tracing::info!(
                files = index.len(),
                took_ms = started.elapsed().as_millis() as u64,
                "package records changed; provenance reloaded"
            ),
            Err(err) => tracing::warn!(reason = %err, "package provenance off"),
        }
    }
}

/// `<32 hex>  <relative path>`.
fn parse_md5sums_line(line: &[u8]) -> Option<([u8; 16], &[u8])> {
    let md5 = parse_hex16(line.get(..32)?)?;
    let path = line.get(32..)?.strip_prefix(b"  ")?;
    (!path.is_empty()).then_some((md5, path))
}

fn parse_hex16(hex: &[u8]) -> Option<[u8; 16]> {
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

fn absolute(relative: &[u8]) -> Vec<u8> {
    if relative.starts_with(b"/") {
        relative.to_vec()
    } else {
        [b"/", relative].concat()
    }
}

fn md5_of(path: &Path) -> io::Result<[u8; 16]> {
    let mut file = File::open(path)?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf)? {
            0 => break,
            n => hasher.update(&buf[..n]),
        }
    }
    Ok(hasher.finalize().into())
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
        let paths = || DpkgPaths {
            info_dir: root.join("info"),
            status: root.join("status"),
        };
        let mut records = PackageRecords::open(paths());
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

        // Records that vanish turn provenance off instead of keeping stale verdicts.
        std::fs::remove_file(root.join("status")).unwrap();
        assert!(records.verify(&tool).is_none());
        assert!(records.unavailable().is_some());
    }

    #[test]
    fn the_last_record_of_a_path_wins() {
        // dpkg lists a conffile in the status file and again in md5sums: the later wins.
        let mut index = ProvenanceIndex {
            files: Vec::new(),
            packages: vec![("a".into(), "1".into()), ("b".into(), "2".into())],
        };
        index.add_file(b"/etc/x.conf", 0, [1; 16]);
        index.add_file(b"/etc/y.conf", 0, [2; 16]);
        index.add_file(b"/etc/x.conf", 1, [3; 16]);
        index.seal();
        assert_eq!(index.len(), 2);
        let owner = index.owner(b"/etc/x.conf").unwrap();
        assert_eq!((owner.package, owner.md5), (1, [3; 16]));
        assert!(index.owner(b"/etc/z.conf").is_none());
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
