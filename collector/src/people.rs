//! People: the person each API token belongs to, and when two names are one person.
//! Segregation of duties (I5) compares people, never token names. Pure.
//!
//! A name is shown as given, trimmed and with whitespace collapsed. Two names are the same
//! person when their *canonical* forms are equal (Unicode compatibility form NFKC, then
//! case folding, then NFKC again: `Carol`, `carol `, `ｃａｒｏｌ`) or when their *keys* are
//! (the UTS #39 confusable skeleton, case-folded and skeletonized again: `cаrol` with a
//! Cyrillic `а`, `caroI` with a capital I). Names holding control, format or
//! default-ignorable characters (zero-width, bidi controls) are refused outright.

use driftwatch_common::pathbytes::is_unsafe_char;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use unicode_security::GeneralSecurityProfile;
use unicode_security::general_security_profile::IdentifierType;
use uuid::Uuid;

use crate::clock::Millis;

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// A person record: tokens belong to one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub id: Uuid,
    /// As shown (trimmed, whitespace collapsed).
    pub name: String,
    /// NFKC + case folding: unique.
    pub canonical: String,
    /// Confusable skeleton of the name: unique.
    pub key: String,
    pub created_at: Millis,
    /// Who created the record (a person's name, or `local:USER` offline).
    pub created_by: String,
}

/// A checked name and the two forms that must be unique.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonName {
    pub display: String,
    pub canonical: String,
    pub key: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a person's name must not be empty")]
    Empty,
    #[error("a person's name is at most {MAX_NAME_CHARS} characters; this one has {0}")]
    TooLong(usize),
    #[error(
        "a person's name must not contain {what}: U+{code:04X} at character {at}; type the name \
         without it"
    )]
    Forbidden {
        what: &'static str,
        code: u32,
        at: usize,
    },
}

/// Why a character cannot be part of a name.
fn forbidden(c: char) -> Option<&'static str> {
    if c.is_control() {
        Some("control characters")
    } else if is_unsafe_char(c) {
        Some("bidi controls, zero-width or line-separator characters")
    } else if c.identifier_type() == Some(IdentifierType::Default_Ignorable) || default_ignorable(c)
    {
        Some("invisible (default-ignorable) characters")
    } else {
        None
    }
}

/// Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt); the security
/// profile's table lists only the first reason a character is restricted.
fn default_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// Trims and collapses every run of whitespace into one space.
fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn canonical(display: &str) -> String {
    let folded = caseless::default_case_fold_str(&display.nfkc().collect::<String>());
    collapse(&folded.nfkc().collect::<String>())
}

fn key(display: &str) -> String {
    let nfkc: String = display.nfkc().collect();
    let first: String = unicode_security::skeleton(&nfkc).collect();
    let folded = caseless::default_case_fold_str(&first);
    collapse(&unicode_security::skeleton(&folded).collect::<String>())
}

/// Checks a name for a new person and computes its unique forms.
pub fn check_name(raw: &str) -> Result<PersonName, NameError> {
    for (at, c) in raw.chars().enumerate() {
        // Whitespace other than the plain space (tabs, newlines) is a control character:
        // refused like the others rather than silently collapsed.
        if let Some(what) = forbidden(c) {
            return Err(NameError::Forbidden {
                what,
                code: u32::from(c),
                at: at + 1,
            });
        }
    }
    let display = collapse(raw);
    if display.is_empty() {
        return Err(NameError::Empty);
    }
    let count = display.chars().count();
    if count > MAX_NAME_CHARS {
        return Err(NameError::TooLong(count));
    }
    Ok(PersonName {
        canonical: canonical(&display),
        key: key(&display),
        display,
    })
}

/// The unique forms of any stored name (legacy token names, a window's requester): the
/// characters [`check_name`] refuses are dropped first, so `carol\u{200b}` is `carol`.
pub fn identity(raw: &str) -> PersonName {
    let cleaned: String = raw.chars().filter(|c| forbidden(*c).is_none()).collect();
    let display = collapse(&cleaned);
    PersonName {
        canonical: canonical(&display),
        key: key(&display),
        display,
    }
}

/// Whether two stored names denote the same person (see the module docs).
pub fn same_person(a: &str, b: &str) -> bool {
    let (a, b) = (identity(a), identity(b));
    a.canonical == b.canonical || a.key == b.key
}

/// Why a new name cannot be a new person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Clash<'a> {
    /// Equal after normalisation (case, whitespace, compatibility form).
    SameName(&'a Person),
    /// Confusable with (looks like) an existing person's name.
    LooksLike(&'a Person),
}

impl Clash<'_> {
    pub fn person(&self) -> &Person {
        match self {
            Clash::SameName(p) | Clash::LooksLike(p) => p,
        }
    }

    /// A message naming the existing person.
    pub fn message(&self, new: &str) -> String {
        match self {
            Clash::SameName(p) => format!(
                "person `{}` already exists (`{new}` is the same name once case, whitespace and \
                 Unicode compatibility forms are normalised); issue tokens to `{}`",
                p.name, p.name
            ),
            Clash::LooksLike(p) => format!(
                "`{new}` looks like the existing person `{}` (confusable characters, Unicode \
                 UTS #39); choose a name that cannot be mistaken for theirs",
                p.name
            ),
        }
    }
}

/// The existing person a new name collides with, if any.
pub fn clash<'a>(name: &PersonName, people: &'a [Person]) -> Option<Clash<'a>> {
    if let Some(p) = people.iter().find(|p| p.canonical == name.canonical) {
        return Some(Clash::SameName(p));
    }
    people
        .iter()
        .find(|p| p.key == name.key)
        .map(Clash::LooksLike)
}

/// Where a legacy token (issued before people existed) goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    Existing(Uuid),
    /// Index into [`Adoption::new_people`].
    New(usize),
}

/// Tokens of one person that were issued under names that differ as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merge {
    pub person: String,
    pub names: Vec<String>,
}

/// The plan for tokens without a person: a person per distinct name, where names that are
/// one person by [`same_person`]'s rules share it (and are reported).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Adoption {
    pub new_people: Vec<PersonName>,
    pub owners: Vec<(Uuid, Owner)>,
    pub merges: Vec<Merge>,
}

/// Plans the migration of `tokens` (id, name, oldest first) onto `people`.
pub fn adopt(people: &[Person], tokens: &[(Uuid, String)]) -> Adoption {
    let mut plan = Adoption::default();
    // Per owner: the names written, for the report.
    let mut names: Vec<(Owner, String, Vec<String>)> = Vec::new();
    for (token, raw) in tokens {
        let mut id = identity(raw);
        if id.display.is_empty() {
            id = identity(&format!("token {token}"));
        }
        let existing = people
            .iter()
            .find(|p| p.canonical == id.canonical || p.key == id.key);
        let owner = match existing {
            Some(p) => Owner::Existing(p.id),
            None => match plan
                .new_people
                .iter()
                .position(|n| n.canonical == id.canonical || n.key == id.key)
            {
                Some(i) => Owner::New(i),
                None => {
                    plan.new_people.push(id.clone());
                    Owner::New(plan.new_people.len() - 1)
                }
            },
        };
        let shown = match (&owner, existing) {
            (_, Some(p)) => p.name.clone(),
            (Owner::New(i), None) => plan.new_people[*i].display.clone(),
            (Owner::Existing(_), None) => unreachable!("an existing owner was found"),
        };
        match names.iter_mut().find(|(o, _, _)| *o == owner) {
            Some((_, _, written)) => {
                if !written.contains(raw) {
                    written.push(raw.clone());
                }
            }
            None => names.push((owner.clone(), shown, vec![raw.clone()])),
        }
        plan.owners.push((*token, owner));
    }
    plan.merges = names
        .into_iter()
        .filter(|(_, person, written)| written.len() > 1 || written[0] != *person)
        .map(|(_, person, names)| Merge { person, names })
        .collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(name: &str) -> Person {
        let n = check_name(name).unwrap();
        Person {
            id: Uuid::now_v7(),
            name: n.display,
            canonical: n.canonical,
            key: n.key,
            created_at: 0,
            created_by: "root".into(),
        }
    }

    #[test]
    fn names_are_trimmed_and_collapsed_for_display() {
        let n = check_name("  Carol   Danvers ").unwrap();
        assert_eq!(n.display, "Carol Danvers");
        assert_eq!(n.canonical, "carol danvers");
    }

    #[test]
    fn the_four_bypasses_are_one_person_or_refused() {
        let carol = [person("carol")];
        // Case and trailing space: the same name.
        for same in ["Carol", "carol ", " CAROL", "ｃａｒｏｌ"] {
            let name = check_name(same).unwrap();
            assert!(
                matches!(clash(&name, &carol), Some(Clash::SameName(p)) if p.name == "carol"),
                "{same:?}"
            );
            assert!(same_person(same, "carol"), "{same:?}");
        }
        // Cyrillic а, capital I for l, digit 1 for l: confusable, refused naming carol.
        for looks in ["c\u{430}rol", "caroI", "caro1"] {
            let name = check_name(looks).unwrap();
            let found = clash(&name, &carol).unwrap_or_else(|| panic!("{looks:?}"));
            assert!(matches!(found, Clash::LooksLike(_)), "{looks:?}");
            assert!(found.message(looks).contains("`carol`"), "{looks:?}");
            assert!(same_person(looks, "carol"), "{looks:?}");
        }
        // Zero-width space: refused outright, and the same person when compared.
        let err = check_name("carol\u{200b}").unwrap_err();
        assert!(
            matches!(err, NameError::Forbidden { code: 0x200b, .. }),
            "{err}"
        );
        assert!(same_person("carol\u{200b}", "carol"));
        assert!(!same_person("carol", "caroline"));
        assert!(!same_person("alice", "alice-second"));
    }

    #[test]
    fn control_format_and_invisible_characters_are_refused() {
        for bad in [
            "ca\u{1b}[2Jrol",
            "carol\n",
            "car\tol",
            "\u{202e}lorac",
            "ca\u{2066}rol",
            "ca\u{200d}rol",
            "carol\u{feff}",
            "ca\u{ad}rol",
            "ca\u{34f}rol",
            "carol\u{e0001}",
            "car\u{85}ol",
            "c\u{115f}arol",
        ] {
            assert!(
                matches!(check_name(bad), Err(NameError::Forbidden { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(check_name("   "), Err(NameError::Empty));
        assert_eq!(
            check_name(&"a".repeat(MAX_NAME_CHARS + 1)),
            Err(NameError::TooLong(MAX_NAME_CHARS + 1))
        );
        // Ordinary names of people, in any script.
        for good in [
            "Zoë O'Brien",
            "Jean-Luc",
            "Þórunn",
            "山田 太郎",
            "Ἀλέξανδρος",
        ] {
            assert!(check_name(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn distinct_people_do_not_clash() {
        let people = [person("alice"), person("bob")];
        for other in ["carol", "alice-second", "bobby", "Alicia"] {
            assert_eq!(clash(&check_name(other).unwrap(), &people), None, "{other}");
        }
    }

    #[test]
    fn a_token_request_names_an_existing_person_only_exactly() {
        let people = [person("carol")];
        let same = check_name("Carol ").unwrap();
        assert!(matches!(clash(&same, &people), Some(Clash::SameName(p)) if p.name == "carol"));
        assert_eq!(clash(&check_name("dave").unwrap(), &people), None);
        let looks = check_name("c\u{430}rol").unwrap();
        assert!(matches!(clash(&looks, &people), Some(Clash::LooksLike(_))));
        assert!(check_name("carol\u{200b}").is_err());
    }

    #[test]
    fn legacy_tokens_get_a_person_each_and_collisions_are_reported() {
        let alice = person("alice");
        let ids: Vec<Uuid> = (0..6).map(|_| Uuid::now_v7()).collect();
        let tokens: Vec<(Uuid, String)> = [
            "carol",
            "Carol",
            "c\u{430}rol",
            "carol\u{200b}",
            "bob",
            "Alice",
        ]
        .iter()
        .zip(&ids)
        .map(|(n, id)| (*id, n.to_string()))
        .collect();
        let plan = adopt(std::slice::from_ref(&alice), &tokens);
        assert_eq!(
            plan.new_people
                .iter()
                .map(|n| n.display.as_str())
                .collect::<Vec<_>>(),
            ["carol", "bob"]
        );
        assert_eq!(plan.owners[0].1, Owner::New(0));
        assert!(plan.owners[1..4].iter().all(|(_, o)| *o == Owner::New(0)));
        assert_eq!(plan.owners[4].1, Owner::New(1));
        assert_eq!(plan.owners[5].1, Owner::Existing(alice.id));
        assert_eq!(
            plan.merges,
            [
                Merge {
                    person: "carol".into(),
                    names: vec![
                        "carol".into(),
                        "Carol".into(),
                        "c\u{430}rol".into(),
                        "carol\u{200b}".into()
                    ],
                },
                Merge {
                    person: "alice".into(),
                    names: vec!["Alice".into()],
                },
            ]
        );
    }
}
