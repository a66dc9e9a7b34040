//! The documents an auditor reads stay true to the tests: every test that `docs/ASVS.md` or
//! `docs/THREAT-MODEL.md` names exists, every ASVS row says how it stands in the format the top
//! of `docs/ASVS.md` describes, and no row is left `untested`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// ASVS 4.0.3 has this many requirements at Level 1 or Level 2 (deleted ones not counted).
const LEVEL_1_AND_2_ROWS: usize = 259;

const STATUSES: [&str; 5] = ["verified", "n/a", "planned", "not met", "untested"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo().join(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

/// The files a test name can live in: `it::<module>::<fn>` in `crates/gatehouse/tests/it/`,
/// `lib::<module path>::<fn>` in `crates/gatehouse/src/`, `sec::<module path>::<fn>` in
/// `crates/gatehouse-security/src/`; a module path is `<path>.rs` or `<path>/mod.rs`.
fn files_of(name: &str) -> Result<(Vec<PathBuf>, &str), String> {
    let parts: Vec<&str> = name.split("::").collect();
    let well_formed = parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
    if !well_formed {
        return Err(format!(
            "`{name}` is not `<it|lib|sec>::<module path>::<fn>`"
        ));
    }
    let root = match parts[0] {
        "it" => "crates/gatehouse/tests/it",
        "lib" => "crates/gatehouse/src",
        "sec" => "crates/gatehouse-security/src",
        other => return Err(format!("`{name}`: unknown test kind `{other}`")),
    };
    let function = parts[parts.len() - 1];
    let module = parts[1..parts.len() - 1].join("/");
    let base = repo().join(root);
    Ok((
        vec![
            base.join(format!("{module}.rs")),
            base.join(&module).join("mod.rs"),
        ],
        function,
    ))
}

/// `path` from the repository's root.
fn shown(path: &Path) -> String {
    path.strip_prefix(repo())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Why `name` does not name a test function, if it does not.
fn missing(name: &str) -> Option<String> {
    let (files, function) = match files_of(name) {
        Ok(found) => found,
        Err(why) => return Some(why),
    };
    let Some(text) = files.iter().find_map(|f| std::fs::read_to_string(f).ok()) else {
        return Some(format!("`{name}`: no file {}", shown(&files[0])));
    };
    let defined = [format!("fn {function}("), format!("fn {function}<")]
        .iter()
        .any(|d| text.contains(d.as_str()));
    (!defined).then(|| format!("`{name}`: no `fn {function}` in {}", shown(&files[0])))
}

/// Every backticked test name in `text`: a span that starts with `it::`, `lib::` or `sec::`
/// (a placeholder such as `it::<module>::<function>` is not a name).
fn test_names(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| {
            ["it::", "lib::", "sec::"]
                .iter()
                .any(|p| span.starts_with(p))
        })
        .filter(|span| !span.contains('<'))
        .map(str::to_owned)
        .collect()
}

/// The ASVS table's rows: the cells of every table line whose first cell is a row id.
fn asvs_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| l.starts_with("| V"))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

/// `V2.1.10` → `[2, 1, 10]`.
fn id_parts(id: &str) -> Option<Vec<u32>> {
    let parts: Option<Vec<u32>> = id
        .strip_prefix('V')?
        .split('.')
        .map(|p| p.parse().ok())
        .collect();
    parts.filter(|p| p.len() == 3)
}

#[test]
fn every_asvs_row_is_well_formed_and_every_verified_row_names_a_test() {
    let text = read("docs/ASVS.md");
    let rows = asvs_rows(&text);
    let mut problems = Vec::new();
    let mut ids = Vec::new();
    for cells in &rows {
        let line = cells.join(" | ");
        let [id, level, requirement, status, evidence] = cells.as_slice() else {
            problems.push(format!("not five cells: {line}"));
            continue;
        };
        let Some(parts) = id_parts(id) else {
            problems.push(format!("bad id `{id}`"));
            continue;
        };
        ids.push(parts);
        if level != "L1" && level != "L2" {
            problems.push(format!("{id}: level `{level}` is not L1 or L2"));
        }
        if requirement.is_empty() {
            problems.push(format!("{id}: no requirement text"));
        }
        if !STATUSES.contains(&status.as_str()) {
            problems.push(format!(
                "{id}: status `{status}` is not one of {STATUSES:?}"
            ));
            continue;
        }
        let names = test_names(evidence);
        match status.as_str() {
            "verified" if names.is_empty() => {
                problems.push(format!("{id}: verified, but names no test"))
            }
            "untested" => problems.push(format!(
                "{id}: untested: write the test that fails without the control"
            )),
            "n/a" | "planned" | "not met" if evidence.is_empty() => {
                problems.push(format!("{id}: {status} without its reason"))
            }
            _ => {}
        }
    }
    let sorted: Vec<_> = {
        let mut s = ids.clone();
        s.sort();
        s.dedup();
        s
    };
    if sorted != ids {
        problems.push("row ids are repeated or out of order".into());
    }
    if ids.len() != LEVEL_1_AND_2_ROWS {
        problems.push(format!(
            "{} rows, but ASVS 4.0.3 has {LEVEL_1_AND_2_ROWS} Level 1 and 2 requirements",
            ids.len()
        ));
    }
    assert!(
        problems.is_empty(),
        "docs/ASVS.md:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_test_the_documents_name_exists() {
    let mut problems = Vec::new();
    for doc in ["docs/ASVS.md", "docs/THREAT-MODEL.md"] {
        let names: BTreeSet<String> = test_names(&read(doc)).into_iter().collect();
        assert!(!names.is_empty(), "{doc} names no test");
        problems.extend(
            names
                .iter()
                .filter_map(|n| missing(n))
                .map(|p| format!("{doc}: {p}")),
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_file_the_documents_link_to_exists() {
    let mut problems = Vec::new();
    for doc in ["docs/ASVS.md", "docs/THREAT-MODEL.md", "docs/PRIVACY.md"] {
        let text = read(doc);
        for target in text
            .split("](")
            .skip(1)
            .filter_map(|rest| rest.split(')').next())
        {
            if target.contains("://") || target.starts_with('#') {
                continue;
            }
            let path = target.split('#').next().unwrap_or(target);
            if !repo().join("docs").join(path).exists() {
                problems.push(format!("{doc}: link to {target}, which does not exist"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checks_catch_a_renamed_test_and_an_untested_row() {
    assert!(missing("it::signin::a_user_signs_in_with_a_magic_link_and_out_again").is_none());
    assert!(missing("it::signin::a_user_signs_in_with_a_magic_link_and_out").is_some());
    assert!(missing("it::no_such_module::a_user_signs_in").is_some());
    assert!(missing("lib::identity::password_policy::the_address_is_refused").is_none());
    assert!(missing("lib::identity::the_address_is_refused").is_some());
    assert!(missing("sec::csrf::a_null_origin_is_forbidden").is_none());
    assert!(
        missing("sec::rate_limit::tests::ipv6_clients_are_counted_by_their_64_network").is_none()
    );
    assert!(missing("it::Signin::x").is_some());
    let rows = asvs_rows("| V2.1.1 | L1 | text | untested | none |\n| other |\n");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][3], "untested");
    assert_eq!(
        test_names("`it::a::b`, `lib::c::d` and `not::e`"),
        ["it::a::b", "lib::c::d"]
    );
}
