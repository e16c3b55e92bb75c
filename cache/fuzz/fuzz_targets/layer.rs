//! Fuzz target: a layer blob from a registry or an archive is hostile.
//! Reading it (any compression the sniffer picks) and unpacking it must
//! never panic, and nothing may be created outside the destination
//! (`..`, absolute paths, symlink and hardlink escapes are refused or kept
//! inside).
#![no_main]

use std::io::Read;

use cache::layer::{OwnershipMode, UnpackOptions, WhiteoutMode, for_each_entry, unpack};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = for_each_entry(data, |_, r| {
        // Bounded by the input: a reader may not produce more than the
        // decompressor gives, and the sink throws it away.
        let _ = std::io::copy(&mut r.take(64 << 20), &mut std::io::sink());
        Ok(())
    });
    let Ok(outer) = tempfile::tempdir() else {
        return;
    };
    let dest = outer.path().join("root");
    if std::fs::create_dir(&dest).is_err() {
        return;
    }
    for whiteouts in [WhiteoutMode::Apply, WhiteoutMode::Overlay] {
        let opts = UnpackOptions {
            whiteouts,
            ownership: OwnershipMode::Record,
        };
        let _ = unpack(data, &dest, &opts);
        let names: Vec<_> = std::fs::read_dir(outer.path())
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("root")],
            "escaped the destination"
        );
    }
});
