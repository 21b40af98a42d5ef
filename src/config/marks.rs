//! Where each key and value sits in a YAML file, for error messages.
//!
//! serde_yaml stays the parser of record; it reports line and column only for errors it finds
//! while reading text, not for values that parsed but failed a later check (an HS256 in
//! `algorithms`, a duplicate route name, a bad duration read through `serde_yaml::Value`). This
//! second, read-only pass over the parser events of `yaml-rust2` records the position of every
//! node under its serde path (`routes[2].consent.permissions`), so any error that names a field
//! can name its line and column too. It also finds duplicate keys, which serde_yaml reports at
//! the enclosing mapping rather than at the key.

use std::collections::{HashMap, HashSet};

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// Positions of the keys and values of one YAML document, by serde path.
#[derive(Debug, Default)]
pub struct Marks {
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
    /// `(path of the repeated key, position of its second occurrence)`.
    pub duplicates: Vec<(String, Pos)>,
}

impl Marks {
    /// Reads the positions of `src`. A syntax error stops the pass; what was read before is kept
    /// (serde_yaml reports the syntax error itself).
    pub fn read(src: &str) -> Self {
        let mut r = Receiver::default();
        let _ = Parser::new_from_str(src).load(&mut r, false);
        r.marks
    }

    /// The position of the value at `path` (`""` is the document).
    pub fn value(&self, path: &str) -> Option<Pos> {
        self.values.get(path).copied()
    }

    /// The position of the key whose value is at `path`.
    pub fn key(&self, path: &str) -> Option<Pos> {
        self.keys.get(path).copied()
    }

    /// A key named `name` outside the mapping at `path` (where it is missing), the nearest by
    /// line: the likely result of wrong indentation.
    pub fn stray_key(&self, name: &str, path: &str) -> Option<(String, Pos)> {
        let wanted = if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
        let here = self.value(path).map_or(0, |p| p.line);
        self.keys
            .iter()
            .filter(|(k, _)| {
                *k != &wanted && (k.as_str() == name || k.ends_with(&format!(".{name}")))
            })
            .min_by_key(|(_, p)| p.line.abs_diff(here))
            .map(|(k, p)| (k.clone(), *p))
    }

    /// The value at `path`, or else at the nearest enclosing node that has one.
    pub fn nearest(&self, path: &str) -> Option<Pos> {
        let mut p = path;
        loop {
            if let Some(pos) = self.value(p) {
                return Some(pos);
            }
            if p.is_empty() {
                return None;
            }
            p = parent(p);
        }
    }
}

/// `a.b[2].c` → `a.b[2]` → `a.b` → `a` → `""`.
pub fn parent(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    }
}

/// A serde field path (`routes[3] (get-account).consent`) without the route-name annotations
/// error messages add, as used by `Marks`.
pub fn plain_path(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut skip = false;
    for c in field.chars() {
        match c {
            ' ' if !skip => skip = true,
            ')' if skip => skip = false,
            _ if skip => {}
            _ => out.push(c),
        }
    }
    if out == "." { String::new() } else { out }
}

enum Frame {
    Map {
        path: String,
        /// The key just read, whose value comes next; `None` while a key is expected.
        key: Option<String>,
        seen: HashSet<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
    /// A complex (non-scalar) key: its contents are not addressable by a serde path.
    Ignored,
}

#[derive(Default)]
struct Receiver {
    marks: Marks,
    stack: Vec<Frame>,
}

impl Receiver {
    /// The path of the node that starts now, or `None` when the node is a mapping key.
    fn place(&mut self, event: &Event, pos: Pos) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Ignored) => Some("\u{0}".into()),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
            Some(Frame::Map { path, key, seen }) => match key.take() {
                Some(k) => Some(if path.is_empty() {
                    k
                } else {
                    format!("{path}.{k}")
                }),
                None => {
                    let name = match event {
                        Event::Scalar(s, ..) => s.clone(),
                        _ => "\u{0}".into(),
                    };
                    let full = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}.{name}")
                    };
                    // A block mapping's start event is marked at its first value; the
                    // mapping starts at its first key.
                    if seen.is_empty()
                        && let Some(v) = self.marks.values.get_mut(path.as_str())
                        && (pos.line, pos.column) < (v.line, v.column)
                    {
                        *v = pos;
                    }
                    if !seen.insert(name.clone()) {
                        self.marks.duplicates.push((full.clone(), pos));
                    }
                    self.marks.keys.entry(full).or_insert(pos);
                    *key = Some(name);
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for Receiver {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos {
            line: mark.line(),
            column: mark.col() + 1,
        };
        match &ev {
            Event::Scalar(..) | Event::Alias(_) => {
                if let Some(p) = self.place(&ev, pos) {
                    self.marks.values.entry(p).or_insert(pos);
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let frame = match self.place(&ev, pos) {
                    None => Frame::Ignored,
                    Some(p) => {
                        self.marks.values.entry(p.clone()).or_insert(pos);
                        if matches!(ev, Event::MappingStart(..)) {
                            Frame::Map {
                                path: p,
                                key: None,
                                seen: HashSet::new(),
                            }
                        } else {
                            Frame::Seq { path: p, next: 0 }
                        }
                    }
                };
                self.stack.push(frame);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                if let Some(Frame::Ignored) = self.stack.pop()
                    && let Some(Frame::Map { key, .. }) = self.stack.last_mut()
                {
                    // The complex key is done; its value comes next.
                    *key = Some("\u{0}".into());
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keys_values_and_duplicates() {
        let src = "api: a\nroutes:\n  - name: x\n    scopes: [s1, s2]\n  - name: y\n    name: z\n";
        let m = Marks::read(src);
        let at = |line, column| Some(Pos { line, column });
        assert_eq!(m.value("api"), at(1, 6));
        assert_eq!(m.key("routes"), at(2, 1));
        assert_eq!(m.value("routes[0].name"), at(3, 11));
        assert_eq!(m.value("routes[0].scopes[1]"), at(4, 18));
        assert_eq!(m.key("routes[1].name"), at(5, 5));
        assert_eq!(
            m.duplicates,
            vec![("routes[1].name".into(), Pos { line: 6, column: 5 })]
        );
        assert_eq!(
            m.nearest("routes[0].scopes[7].x"),
            m.value("routes[0].scopes")
        );
    }

    #[test]
    fn plain_path_drops_annotations() {
        assert_eq!(
            plain_path("routes[3] (get-account).consent"),
            "routes[3].consent"
        );
        assert_eq!(plain_path("."), "");
        assert_eq!(plain_path("issuers[0].algorithms"), "issuers[0].algorithms");
    }
}
