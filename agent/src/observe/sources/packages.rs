//! `package:NAME`: installed packages from dpkg's status file (and rpm's
//! database through `rpm -qa` where rpm is the package manager).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Collection, SourceError, StateSource, fields, key, read_text, under};

pub struct Packages {
    /// dpkg's status file, normally /var/lib/dpkg/status.
    pub dpkg_status: PathBuf,
    /// rpm's database directory, normally /var/lib/rpm.
    pub rpm_db: PathBuf,
}

impl Packages {
    pub fn at(root: &Path) -> Self {
        Packages {
            dpkg_status: under(root, "/var/lib/dpkg/status"),
            rpm_db: under(root, "/var/lib/rpm"),
        }
    }
}

impl StateSource for Packages {
    fn namespace(&self) -> &'static str {
        "package"
    }

    fn collect(&self) -> Result<Collection, SourceError> {
        if self.dpkg_status.exists() {
            return Ok(parse_dpkg_status(&read_text("package", &self.dpkg_status)?));
        }
        if self.rpm_db.is_dir() {
            // rpm's --root takes the directory that holds var/lib/rpm.
            let root = self.rpm_db.ancestors().nth(3).unwrap_or(Path::new("/"));
            return rpm_packages(root);
        }
        Err(SourceError::Unavailable {
            source_name: "package",
            reason: "neither dpkg nor rpm is installed".into(),
        })
    }
}

/// Installed packages from dpkg's status file. A name installed for several
/// architectures (multi-arch) is keyed `NAME:ARCH` so each is tracked.
pub fn parse_dpkg_status(text: &str) -> Collection {
    let mut installed: Vec<(String, String, String)> = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|line| {
                line.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .map(|value| value.trim().to_owned())
            })
        };
        let is_installed = field("Status").is_some_and(|s| s.ends_with(" installed"));
        if let (true, Some(name), Some(version)) =
            (is_installed, field("Package"), field("Version"))
        {
            let arch = field("Architecture").unwrap_or_default();
            installed.push((name, version, arch));
        }
    }
    let count = |name: &str| installed.iter().filter(|(n, _, _)| n == name).count();
    installed
        .iter()
        .map(|(name, version, arch)| {
            let keyed = if count(name) > 1 {
                format!("{name}:{arch}")
            } else {
                name.clone()
            };
            (
                key("package", &keyed),
                fields([("version", version), ("arch", arch)]),
            )
        })
        .collect()
}

fn rpm_packages(root: &Path) -> Result<Collection, SourceError> {
    let output = Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args([
            "-qa",
            "--qf",
            "%{NAME}\\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\\t%{ARCH}\\n",
        ])
        .output()
        .map_err(|err| SourceError::Unavailable {
            source_name: "package",
            reason: format!("cannot run rpm: {err}"),
        })?;
    if !output.status.success() {
        return Err(SourceError::Unavailable {
            source_name: "package",
            reason: format!(
                "rpm -qa failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    Ok(parse_rpm_list(&String::from_utf8_lossy(&output.stdout)))
}

/// `NAME\tEPOCH:VERSION-RELEASE\tARCH` lines, as `rpm -qa --qf` prints them.
pub fn parse_rpm_list(text: &str) -> Collection {
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|line| line.split('\t').collect::<Vec<_>>())
        .filter(|parts| parts.len() == 3)
        .collect();
    let count = |name: &str| rows.iter().filter(|r| r[0] == name).count();
    rows.iter()
        .map(|r| {
            let keyed = if count(r[0]) > 1 {
                format!("{}:{}", r[0], r[2])
            } else {
                r[0].to_owned()
            };
            (
                key("package", &keyed),
                fields([("version", r[1]), ("arch", r[2])]),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_common::api::v1::SubjectKey;

    const STATUS: &str = "\
Package: openssh-server
Status: install ok installed
Architecture: amd64
Version: 1:9.2p1-2+deb12u3
Description: secure shell server
 multi-line description

Package: removed-but-configured
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9

Package: libc6
Status: install ok installed
Architecture: i386
Version: 2.36-9
";

    #[test]
    fn installed_packages_only_with_multiarch_keys() {
        let packages = parse_dpkg_status(STATUS);
        let keys: Vec<&str> = packages.keys().map(|k| k.0.as_str()).collect();
        assert_eq!(
            keys,
            [
                "package:libc6:amd64",
                "package:libc6:i386",
                "package:openssh-server"
            ]
        );
        let ssh = &packages[&SubjectKey("package:openssh-server".into())];
        assert_eq!(ssh["version"], "1:9.2p1-2+deb12u3");
        assert_eq!(ssh["arch"], "amd64");
    }

    #[test]
    fn rpm_list_parses() {
        let packages = parse_rpm_list("bash\t0:5.1.8-6.el9\tx86_64\nbroken line\n");
        assert_eq!(packages.len(), 1);
        assert_eq!(
            packages[&SubjectKey("package:bash".into())]["version"],
            "0:5.1.8-6.el9"
        );
    }

    #[test]
    fn reads_this_hosts_dpkg_status_when_present() {
        let source = Packages::at(Path::new("/"));
        match source.collect() {
            Ok(packages) => assert!(!packages.is_empty()),
            Err(SourceError::Unavailable { .. }) => {}
            Err(err) => panic!("{err}"),
        }
    }
}
