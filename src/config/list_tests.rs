//! `parse_yaml_list`: every error of a document read entry by entry.

use std::path::Path;

use super::*;

/// Read only to be checked.
#[allow(dead_code)]
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListDoc {
    items: Vec<ListItem>,
    #[serde(default)]
    title: Option<String>,
}

/// Read only to be checked.
#[allow(dead_code)]
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListItem {
    name: String,
    #[serde(default)]
    n: Option<u8>,
    #[serde(default)]
    tags: Vec<String>,
}

#[test]
fn parse_yaml_list_reports_every_error() {
    let list = |src: &str| {
        let p = parse_yaml_list::<ListDoc, ListItem>(Path::new("f.yaml"), src, "items");
        let errs: Vec<(String, Option<usize>, Option<usize>)> = p
            .errors
            .iter()
            .map(|e| (e.field.clone(), e.line, e.column))
            .collect();
        let partial: Vec<(usize, Vec<String>)> = p
            .partial
            .iter()
            .map(|x| (x.index, x.removed.clone()))
            .collect();
        (errs, p.value.is_some(), p.kept, partial)
    };
    let e = |f: &str, l: usize, c: usize| (f.to_owned(), Some(l), Some(c));
    // After a repeated key (its value a sequence at the key's indentation), the rest is read;
    // one entry's several mistakes are all reported.
    let (errs, value, kept, partial) = list(
        "items:\n- name: a\n  tags:\n  - x\n  tags:\n  - y\n  - z\n- name: b\n  n: 300\n  colour: red\n",
    );
    assert_eq!(
        errs,
        [
            e("items[0].tags", 5, 3),
            e("items[1].n", 9, 6),
            e("items[1].colour", 10, 3)
        ]
    );
    assert!(value);
    assert_eq!(kept, [0]);
    assert_eq!(partial, [(1, vec!["n".to_owned(), "colour".to_owned()])]);
    // A repeated key inside a flow mapping is not cut out: it alone is reported.
    let (errs, value, _, _) = list("items: [{name: a, name: b}]\ntitle: [x]\n");
    assert_eq!(errs, [e("items[0].name", 1, 19)]);
    assert!(!value);
    // A required field whose bad value was set aside is not reported missing as well.
    let (errs, _, kept, partial) = list("items:\n- name: [x]\n  n: 1\n");
    assert_eq!(errs, [e("items[0].name", 2, 9)]);
    assert!(kept.is_empty() && partial.is_empty());
    // The rest of the document: every mistake, and what is left is still read.
    let (errs, value, _, _) = list("title: [x]\nextra: 1\nitems: []\n");
    assert_eq!(errs, [e("title", 1, 8), e("extra", 2, 1)]);
    assert!(value);
}
