//! Lists the migrations: every `src/m<date>_<order>_<what>.rs`, in the order of its name,
//! becomes a module of this crate and a step of `Migrator::migrations()`. A new step is
//! its file and nothing else; one cannot be written and left out of the list.
//!
//! This costs no build time: a change to a migration rebuilds this crate (and the service)
//! with or without this script.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=src");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut steps: Vec<String> = std::fs::read_dir(&src)
        .expect("migration/src is a directory")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .filter_map(|path| Some(path.file_stem()?.to_str()?.to_owned()))
        .filter(|name| name.starts_with('m') && name[1..].starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    steps.sort();

    let mut out = String::new();
    for step in &steps {
        let path = src.join(format!("{step}.rs"));
        out.push_str(&format!(
            "#[path = {:?}]
mod {step};
",
            path.display().to_string()
        ));
    }
    out.push_str("\n/// Every step, in the order of its file name.\nfn steps() -> Vec<Box<dyn MigrationTrait>> {\n    vec![\n");
    for step in &steps {
        out.push_str(&format!("        Box::new({step}::Migration),\n"));
    }
    out.push_str("    ]\n}\n");
    let generated =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("steps.rs");
    std::fs::write(generated, out).expect("OUT_DIR is writable");
}
