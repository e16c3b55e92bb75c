//! Layer export benchmark driver (being written; see export_vs_tar.sh).
fn main() {
    eprintln!("layer_export: not written yet");
    std::process::exit(2);
}
