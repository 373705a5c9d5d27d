//! Which attributes of a subject a policy compares, like AIDE's groups.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One comparable attribute of a subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Attribute {
    /// File type (file, dir, symlink, fifo, socket, char or block device).
    Type,
    /// Permission bits, including setuid, setgid and sticky.
    Mode,
    Uid,
    Gid,
    /// Exact size in bytes.
    Size,
    /// Size may only grow and the old content must stay as a prefix (log files).
    Growing,
    Mtime,
    Ctime,
    Inode,
    /// The filesystem device the subject lives on.
    Device,
    Nlink,
    /// BLAKE3 of the content of a regular file.
    Hash,
    /// Names and values of extended attributes (SELinux label, capabilities, ACLs...).
    Xattrs,
    /// Target of a symbolic link.
    LinkTarget,
    /// Device number of a character or block device node.
    Rdev,
}

impl Attribute {
    pub const ALL: [Attribute; 15] = [
        Attribute::Type,
        Attribute::Mode,
        Attribute::Uid,
        Attribute::Gid,
        Attribute::Size,
        Attribute::Growing,
        Attribute::Mtime,
        Attribute::Ctime,
        Attribute::Inode,
        Attribute::Device,
        Attribute::Nlink,
        Attribute::Hash,
        Attribute::Xattrs,
        Attribute::LinkTarget,
        Attribute::Rdev,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Attribute::Type => "type",
            Attribute::Mode => "mode",
            Attribute::Uid => "uid",
            Attribute::Gid => "gid",
            Attribute::Size => "size",
            Attribute::Growing => "growing",
            Attribute::Mtime => "mtime",
            Attribute::Ctime => "ctime",
            Attribute::Inode => "inode",
            Attribute::Device => "device",
            Attribute::Nlink => "nlink",
            Attribute::Hash => "hash",
            Attribute::Xattrs => "xattrs",
            Attribute::LinkTarget => "link_target",
            Attribute::Rdev => "rdev",
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown attribute `{0}`")]
pub struct UnknownAttribute(pub String);

impl FromStr for Attribute {
    type Err = UnknownAttribute;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Attribute::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| UnknownAttribute(s.to_owned()))
    }
}

impl Serialize for Attribute {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Attribute {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// A set of attributes, as a bit set.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AttributeSet(u32);

/// The attribute groups every policy can name without defining them.
pub const BUILTIN_GROUPS: [&str; 5] = ["content", "permissions", "growing", "full", "ignore"];

impl AttributeSet {
    pub const EMPTY: AttributeSet = AttributeSet(0);

    pub fn of(attrs: &[Attribute]) -> Self {
        attrs.iter().fold(Self::EMPTY, |set, &a| set.with(a))
    }

    /// Looks up a built-in group:
    /// - `content`: type, mode, owner, group, size, hash, xattrs, link target, device numbers;
    /// - `permissions`: the same without size and hash (content is not read);
    /// - `growing`: like `content`, but the file may grow as long as its old content stays a prefix;
    /// - `full`: everything, including inode, link count and times (noisy: any rewrite shows);
    /// - `ignore`: nothing; matching subjects are not recorded at all.
    pub fn builtin(name: &str) -> Option<Self> {
        use Attribute::*;
        let permissions = [Type, Mode, Uid, Gid, Xattrs, LinkTarget, Rdev];
        let set = match name {
            "content" => Self::of(&permissions).with(Size).with(Hash),
            "permissions" => Self::of(&permissions),
            "growing" => Self::of(&permissions).with(Growing),
            "full" => Self::of(&Attribute::ALL).without(Growing),
            "ignore" => Self::EMPTY,
            _ => return None,
        };
        Some(set)
    }

    pub fn with(self, attr: Attribute) -> Self {
        AttributeSet(self.0 | attr.bit())
    }

    pub fn without(self, attr: Attribute) -> Self {
        AttributeSet(self.0 & !attr.bit())
    }

    pub fn contains(self, attr: Attribute) -> bool {
        self.0 & attr.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether checking this set needs the content of regular files.
    pub fn reads_content(self) -> bool {
        self.contains(Attribute::Hash) || self.contains(Attribute::Growing)
    }

    pub fn iter(self) -> impl Iterator<Item = Attribute> {
        Attribute::ALL
            .into_iter()
            .filter(move |&a| self.contains(a))
    }
}

impl fmt::Debug for AttributeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl fmt::Display for AttributeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Attribute::name).collect();
        f.write_str(&names.join("+"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for attr in Attribute::ALL {
            assert_eq!(attr.name().parse::<Attribute>(), Ok(attr));
        }
        assert!("md5".parse::<Attribute>().is_err());
    }

    #[test]
    fn builtin_groups_differ_where_they_should() {
        let content = AttributeSet::builtin("content").unwrap();
        let permissions = AttributeSet::builtin("permissions").unwrap();
        let growing = AttributeSet::builtin("growing").unwrap();
        assert!(content.reads_content() && content.contains(Attribute::Size));
        assert!(!permissions.reads_content());
        assert!(growing.reads_content() && !growing.contains(Attribute::Size));
        assert!(AttributeSet::builtin("ignore").unwrap().is_empty());
        assert!(
            !AttributeSet::builtin("full")
                .unwrap()
                .contains(Attribute::Growing)
        );
        for name in BUILTIN_GROUPS {
            assert!(AttributeSet::builtin(name).is_some(), "{name}");
        }
        assert_eq!(AttributeSet::builtin("R"), None);
    }

    #[test]
    fn displays_as_plus_list() {
        let set = AttributeSet::of(&[Attribute::Hash, Attribute::Mode]);
        assert_eq!(set.to_string(), "mode+hash");
    }
}
