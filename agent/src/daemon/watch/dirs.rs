//! The watched directories, as a tree of names.
//!
//! With a watch on every directory of a large tree, the table of watches was most of
//! the daemon's memory: each directory's full path twice (by path for the watcher, by
//! watch descriptor for the reader), about 330 bytes per directory, 54 MB for the
//! 165,000 directories of a 1,000,000-file tree. Here each directory is one node that
//! holds its own name and its parent's index, so the bytes of `/usr/share/doc/` are
//! stored once, not once per directory below it. Full paths are rebuilt only for
//! the notifications that arrive.
//!
//! A node is found by path through a map from (parent, hash of name) to node, and by
//! watch descriptor through a map from the descriptor's number. Ancestors that are not
//! watched themselves (the parents of rule roots) are nodes without a watch, removed
//! with their last child. Generic over the watch handle `W` so that it is tested
//! without inotify.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::hash::{BuildHasher, Hasher};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};

/// The parent of top-level names; in `by_id`, the node of `/` itself.
const NO_PARENT: u32 = u32::MAX;

#[derive(Debug)]
struct Node<W> {
    parent: u32,
    /// Nodes below this one (watched or not).
    children: u32,
    name: Box<[u8]>,
    watch: Option<Watch<W>>,
}

#[derive(Debug)]
struct Watch<W> {
    handle: W,
    id: i32,
    /// The kernel ended the watch (its directory was deleted): the reader saw IN_IGNORED.
    ended: bool,
}

/// Why a directory could not be entered in the tree.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    #[error("not an absolute, normalized path")]
    NotAbsolute,
    /// Two names under one directory with the same 64-bit hash: not expected in practice,
    /// and then the directory is left unwatched (scanned) rather than mistaken for another.
    #[error("a name under the same directory has the same hash")]
    HashCollision,
}

/// Directories by path and by watch descriptor number, each stored once.
#[derive(Debug)]
pub struct DirTree<W> {
    nodes: Vec<Option<Node<W>>>,
    free: Vec<u32>,
    /// The watch on `/` (the parent of a rule root such as `/etc`).
    root: Option<Watch<W>>,
    by_name: HashMap<(u32, u64), u32>,
    by_id: HashMap<i32, u32>,
    /// Watches entered (ended or not), the figure status reports.
    watched: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl<W> Default for DirTree<W> {
    fn default() -> Self {
        DirTree {
            nodes: Vec::new(),
            free: Vec::new(),
            root: None,
            by_name: HashMap::new(),
            by_id: HashMap::new(),
            watched: 0,
            hasher: Default::default(),
        }
    }
}

impl<W> DirTree<W> {
    /// Directories with a watch (including watches the kernel ended and that were not
    /// forgotten yet).
    pub fn len(&self) -> usize {
        self.watched
    }

    pub fn is_empty(&self) -> bool {
        self.watched == 0
    }

    fn name_hash(&self, parent: u32, name: &[u8]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write_u32(parent);
        hasher.write(name);
        hasher.finish()
    }

    fn node(&self, index: u32) -> &Node<W> {
        self.nodes[index as usize]
            .as_ref()
            .expect("indexes in the maps are live nodes")
    }

    fn node_mut(&mut self, index: u32) -> &mut Node<W> {
        self.nodes[index as usize]
            .as_mut()
            .expect("indexes in the maps are live nodes")
    }

    fn child(&self, parent: u32, name: &[u8]) -> Option<u32> {
        let index = *self.by_name.get(&(parent, self.name_hash(parent, name)))?;
        (*self.node(index).name == *name).then_some(index)
    }

    /// The names of `path` below `/`, or `None` if it is not absolute and normalized.
    fn names(path: &Path) -> Option<Vec<&[u8]>> {
        let mut components = path.components();
        if components.next() != Some(Component::RootDir) {
            return None;
        }
        components
            .map(|c| match c {
                Component::Normal(name) => Some(name.as_bytes()),
                _ => None,
            })
            .collect()
    }

    /// The node of `path` (watched or not); `NO_PARENT` for `/`.
    fn lookup(&self, path: &Path) -> Option<u32> {
        let mut at = NO_PARENT;
        for name in Self::names(path)? {
            at = self.child(at, name)?;
        }
        Some(at)
    }

    fn watch_of(&self, index: u32) -> Option<&Watch<W>> {
        if index == NO_PARENT {
            self.root.as_ref()
        } else {
            self.node(index).watch.as_ref()
        }
    }

    /// Whether `path` has a watch entered.
    pub fn contains(&self, path: &Path) -> bool {
        self.lookup(path)
            .is_some_and(|index| self.watch_of(index).is_some())
    }

    /// Whether `path` has a watch the kernel has not ended; `None` if it has none.
    pub fn alive(&self, path: &Path) -> Option<bool> {
        let index = self.lookup(path)?;
        self.watch_of(index).map(|w| !w.ended)
    }

    /// Enters the watch `handle` (descriptor number `id`) for `path`. A path already in
    /// the tree gets the new watch in place of its old one.
    pub fn insert(&mut self, path: &Path, handle: W, id: i32) -> Result<(), InsertError> {
        let names = Self::names(path).ok_or(InsertError::NotAbsolute)?;
        let Some((last, above)) = names.split_last() else {
            let old = self.root.replace(Watch {
                handle,
                id,
                ended: false,
            });
            self.replaced(old, NO_PARENT, id);
            return Ok(());
        };
        let mut at = NO_PARENT;
        for name in above {
            at = match self.child(at, name) {
                Some(index) => index,
                None => self.add_node(at, name)?,
            };
        }
        self.insert_under(at, last, handle, id)
    }

    fn insert_under(
        &mut self,
        parent: u32,
        name: &[u8],
        handle: W,
        id: i32,
    ) -> Result<(), InsertError> {
        let index = match self.child(parent, name) {
            Some(index) => index,
            None => self.add_node(parent, name)?,
        };
        let old = self.node_mut(index).watch.replace(Watch {
            handle,
            id,
            ended: false,
        });
        self.replaced(old, index, id);
        Ok(())
    }

    /// Accounts for a new watch `id` on `index`, in place of `old`.
    fn replaced(&mut self, old: Option<Watch<W>>, index: u32, id: i32) {
        match old {
            Some(old) => {
                if self.by_id.get(&old.id) == Some(&index) {
                    self.by_id.remove(&old.id);
                }
            }
            None => self.watched += 1,
        }
        self.by_id.insert(id, index);
    }

    fn add_node(&mut self, parent: u32, name: &[u8]) -> Result<u32, InsertError> {
        let key = (parent, self.name_hash(parent, name));
        if self.by_name.contains_key(&key) {
            return Err(InsertError::HashCollision);
        }
        let node = Node {
            parent,
            children: 0,
            name: name.into(),
            watch: None,
        };
        let index = match self.free.pop() {
            Some(index) => {
                self.nodes[index as usize] = Some(node);
                index
            }
            None => {
                self.nodes.push(Some(node));
                (self.nodes.len() - 1) as u32
            }
        };
        self.by_name.insert(key, index);
        if parent != NO_PARENT {
            self.node_mut(parent).children += 1;
        }
        Ok(index)
    }

    /// The directory watched under descriptor number `id` (for a notification).
    pub fn path_of(&self, id: i32) -> Option<PathBuf> {
        let index = *self.by_id.get(&id)?;
        let mut names: Vec<&[u8]> = Vec::new();
        let mut at = index;
        while at != NO_PARENT {
            let node = self.node(at);
            names.push(&node.name[..]);
            at = node.parent;
        }
        let mut path = PathBuf::from("/");
        for name in names.into_iter().rev() {
            path.push(OsStr::from_bytes(name));
        }
        Some(path)
    }

    /// The kernel ended the watch `id` (IN_IGNORED): notifications for it stop resolving,
    /// and [`DirTree::alive`] says so until the directory is forgotten or watched again.
    pub fn ended(&mut self, id: i32) {
        let watch = match self.by_id.remove(&id) {
            None => return,
            Some(NO_PARENT) => self.root.as_mut(),
            Some(index) => self.node_mut(index).watch.as_mut(),
        };
        if let Some(watch) = watch {
            watch.ended = true;
        }
    }

    /// Removes `dir` and every directory below it; returns their watch handles (to be
    /// removed from the kernel).
    pub fn remove_below(&mut self, dir: &Path) -> Vec<W> {
        let Some(top) = self.lookup(dir) else {
            return Vec::new();
        };
        let mut handles = Vec::new();
        if top == NO_PARENT
            && let Some(watch) = self.root.take()
        {
            self.watched -= 1;
            self.by_id.remove(&watch.id);
            handles.push(watch.handle);
        }
        // Every node whose chain of parents reaches `top`, deepest first.
        let mut doomed: Vec<(usize, u32)> = Vec::new();
        for (index, slot) in self.nodes.iter().enumerate() {
            if slot.is_none() {
                continue;
            }
            let (mut at, mut depth) = (index as u32, 0);
            while at != NO_PARENT && at != top {
                at = self.node(at).parent;
                depth += 1;
            }
            if at == top {
                doomed.push((depth, index as u32));
            }
        }
        doomed.sort_unstable_by(|a, b| b.cmp(a));
        for (_, index) in doomed {
            // An ancestor without a watch may already have gone with its last child.
            if self.nodes[index as usize].is_some() {
                handles.extend(self.remove_node(index));
            }
        }
        handles
    }

    /// Removes a node without children, then its ancestors left without children or a
    /// watch.
    fn remove_node(&mut self, index: u32) -> Option<W> {
        let node = self.nodes[index as usize]
            .take()
            .expect("a live node is removed once");
        debug_assert_eq!(node.children, 0, "children are removed first");
        self.free.push(index);
        let key = (node.parent, self.name_hash(node.parent, &node.name));
        self.by_name.remove(&key);
        let handle = node.watch.map(|watch| {
            self.watched -= 1;
            if self.by_id.get(&watch.id) == Some(&index) {
                self.by_id.remove(&watch.id);
            }
            watch.handle
        });
        if node.parent != NO_PARENT {
            let parent = self.node_mut(node.parent);
            parent.children -= 1;
            if parent.children == 0 && parent.watch.is_none() {
                // A scaffolding ancestor (never watched) left empty.
                let _ = self.remove_node(node.parent);
            }
        }
        handle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(path: &str) -> &Path {
        Path::new(path)
    }

    #[test]
    fn directories_are_found_by_path_and_by_descriptor() {
        let mut tree = DirTree::default();
        tree.insert(p("/srv/a"), "wa", 1).unwrap();
        tree.insert(p("/srv/a/b"), "wb", 2).unwrap();
        tree.insert(p("/srv/c"), "wc", 3).unwrap();
        assert_eq!(tree.len(), 3);
        assert!(tree.contains(p("/srv/a/b")));
        // `/srv` is only a step on the way: no watch of its own.
        assert!(!tree.contains(p("/srv")));
        assert!(!tree.contains(p("/srv/a/b/c")));
        assert!(!tree.contains(p("/srv/ab")));
        assert!(!tree.contains(p("relative/a")));
        assert_eq!(tree.path_of(2), Some(PathBuf::from("/srv/a/b")));
        assert_eq!(tree.path_of(3), Some(PathBuf::from("/srv/c")));
        assert_eq!(tree.path_of(4), None);
    }

    #[test]
    fn the_root_and_names_that_are_not_utf8_round_trip() {
        let mut tree = DirTree::default();
        tree.insert(p("/"), (), 1).unwrap();
        let odd = PathBuf::from(OsStr::from_bytes(b"/etc/\xff\xfe"));
        tree.insert(&odd, (), 2).unwrap();
        assert_eq!(tree.path_of(1), Some(PathBuf::from("/")));
        assert_eq!(tree.path_of(2), Some(odd.clone()));
        assert!(tree.contains(&odd) && tree.contains(p("/")));
        assert_eq!(tree.insert(p("a/b"), (), 3), Err(InsertError::NotAbsolute));
        assert_eq!(tree.len(), 2);
        tree.ended(1);
        assert_eq!(tree.alive(p("/")), Some(false));
        // Forgetting `/` forgets everything.
        assert_eq!(tree.remove_below(p("/")).len(), 2);
        assert!(tree.is_empty() && tree.by_id.is_empty() && tree.by_name.is_empty());
    }

    #[test]
    fn an_ended_watch_stops_resolving_until_watched_again() {
        let mut tree = DirTree::default();
        tree.insert(p("/t/d"), "old", 5).unwrap();
        assert_eq!(tree.alive(p("/t/d")), Some(true));
        tree.ended(5);
        assert_eq!(tree.alive(p("/t/d")), Some(false));
        assert_eq!(tree.path_of(5), None);
        assert_eq!(tree.len(), 1, "still counted until forgotten");
        // A new directory at the same path: a new watch in place of the ended one.
        tree.insert(p("/t/d"), "new", 9).unwrap();
        assert_eq!(tree.alive(p("/t/d")), Some(true));
        assert_eq!(tree.len(), 1);
        assert_eq!(tree.alive(p("/t/never")), None);
    }

    #[test]
    fn removing_a_subtree_returns_its_watches_and_keeps_its_siblings() {
        let mut tree = DirTree::default();
        for (id, path) in ["/r", "/r/a", "/r/a/x", "/r/a/x/y", "/r/ab", "/r/b"]
            .into_iter()
            .enumerate()
        {
            tree.insert(p(path), path.to_owned(), id as i32).unwrap();
        }
        let mut gone = tree.remove_below(p("/r/a"));
        gone.sort();
        assert_eq!(gone, ["/r/a", "/r/a/x", "/r/a/x/y"]);
        assert_eq!(tree.len(), 3);
        assert!(tree.contains(p("/r/ab")) && tree.contains(p("/r/b")));
        assert!(!tree.contains(p("/r/a/x")));
        assert_eq!(tree.path_of(1), None);
        assert!(tree.remove_below(p("/r/a")).is_empty());
        // Freed slots are reused, and the reused node resolves to its own path.
        tree.insert(p("/r/new/deep"), "n".to_owned(), 42).unwrap();
        assert_eq!(tree.path_of(42), Some(PathBuf::from("/r/new/deep")));
        assert_eq!(tree.path_of(5), Some(PathBuf::from("/r/b")));
    }

    #[test]
    fn ancestors_that_were_never_watched_go_with_their_last_child() {
        let mut tree = DirTree::default();
        tree.insert(p("/a/b/c"), (), 1).unwrap();
        tree.insert(p("/a/b/d"), (), 2).unwrap();
        tree.remove_below(p("/a/b/c"));
        assert_eq!(tree.nodes.iter().flatten().count(), 3, "/a, /a/b, /a/b/d");
        tree.remove_below(p("/a/b/d"));
        assert_eq!(tree.nodes.iter().flatten().count(), 0);
        assert!(tree.by_name.is_empty() && tree.by_id.is_empty());
        assert!(tree.is_empty());
    }
}
