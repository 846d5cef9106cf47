//! Fingerprints the migrations folder so that test templates are rebuilt when a migration
//! changes (see `testing.rs`), and embeds each migration's `up.sql` text for
//! `migrate --dry-run` (diesel's embedded migrations do not expose it).

use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files = Vec::new();
    collect(&dir, &mut files);
    files.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for path in files {
        println!("cargo:rerun-if-changed={}", path.display());
        let bytes = std::fs::read(&path).unwrap_or_default();
        for b in path.to_string_lossy().bytes().chain(bytes) {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    println!("cargo:rustc-env=MIGRATIONS_DIGEST={hash:016x}");
    write_up_sql(&dir);
}

/// Writes `$OUT_DIR/migration_sql.rs`: `&[(directory name, up.sql text)]`, oldest first.
fn write_up_sql(dir: &Path) {
    let mut entries: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .map(|e| e.path())
                .filter(|p| p.join("up.sql").is_file())
                .filter_map(|p| {
                    let name = p.file_name()?.to_string_lossy().into_owned();
                    Some((name, p.join("up.sql")))
                })
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    let mut code = String::from("&[\n");
    for (name, path) in entries {
        code.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            path.canonicalize().unwrap_or(path).display().to_string()
        ));
    }
    code.push(']');
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("migration_sql.rs");
    std::fs::write(out, code).expect("write migration_sql.rs");
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                collect(&path, out);
            } else {
                out.push(path);
            }
        }
    }
}
