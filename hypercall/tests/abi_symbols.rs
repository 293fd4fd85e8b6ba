//! `nm` on the static library must list every rumpuser(3) v17 function as
//! defined: the list the skin declares, and the functions named in the
//! project's interface notes (`shared/docs/rumpuser-abi.md`) when they sit
//! beside the checkout.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn defined_symbols() -> BTreeSet<String> {
    let lib = support::staticlib();
    let out = Command::new("nm")
        .args(["--defined-only", "-g"])
        .arg(&lib)
        .output()
        .expect("run nm");
    assert!(out.status.success(), "nm failed on {}", lib.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_addr, kind, name) = (f.next()?, f.next()?, f.next()?);
            (kind == "T").then(|| name.to_owned())
        })
        .collect()
}

/// Function names in the interface notes: `rumpuser_<name>(` in prototypes
/// and in the lists of the prose.
fn documented_functions(doc: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let starts = doc
        .match_indices("rumpuser_")
        .chain(doc.match_indices("rumpcomp_pci_"));
    for (i, _) in starts {
        let rest = &doc[i..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..end];
        let after = rest[end..].trim_start();
        let is_call = after.starts_with('(');
        // Types and headers share the prefix: rumpuser_mtx, rumpuser_hyperup ...
        let is_type = matches!(
            name,
            "rumpuser_mtx"
                | "rumpuser_rw"
                | "rumpuser_cv"
                | "rumpuser_hyperup"
                | "rumpuser_iovec"
                | "rumpuser_component"
                | "rumpcomp_pci_dmaseg"
        );
        if is_call && !is_type {
            names.insert(name.to_owned());
        }
    }
    names
}

#[test]
fn every_exported_function_is_defined_in_the_static_library() {
    let defined = defined_symbols();
    let missing: Vec<_> = hypercall::abi::EXPORTED
        .iter()
        .filter(|f| !defined.contains(**f))
        .collect();
    assert!(
        missing.is_empty(),
        "not defined in libhypercall.a: {missing:?}"
    );
    assert!(hypercall::abi::EXPORTED.len() >= 78);
}

#[test]
fn every_function_of_the_interface_notes_is_defined() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/docs/rumpuser-abi.md");
    let Ok(text) = std::fs::read_to_string(&doc) else {
        println!("skipped: {} not beside the checkout", doc.display());
        return;
    };
    let documented = documented_functions(&text);
    assert!(documented.len() > 50, "parsed only {documented:?}");
    let defined = defined_symbols();
    let missing: Vec<_> = documented
        .iter()
        .filter(|f| !defined.contains(*f))
        .collect();
    assert!(
        missing.is_empty(),
        "documented but not defined: {missing:?}"
    );
}
