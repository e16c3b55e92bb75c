//! Fuzz target: the option values a Dockerfile carries — `RUN --mount=…`
//! (and `--device=…`) and `COPY --chmod=…` — parse or fail with a message,
//! never panic; a parsed chmod applies to any mode.
#![no_main]

use builder::context::chmod::Chmod;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut expand = |s: &str| -> Result<String, String> { Ok(s.to_string()) };
    let _ = frontend::runmount::parse_mount(&text, &mut expand, "/work");
    let mut refuse = |s: &str| -> Result<String, String> {
        if s.contains('$') {
            Err(format!("cannot expand {s}"))
        } else {
            Ok(s.to_string())
        }
    };
    let _ = frontend::runmount::parse_mount(&text, &mut refuse, "");
    let _ = frontend::runmount::parse_device(&text);
    if let Ok(c) = Chmod::parse(&text) {
        for mode in [0, 0o644, 0o755, 0o4755, 0o7777] {
            let m = c.apply(mode, false);
            let d = c.apply(mode, true);
            assert!(m <= 0o7777 && d <= 0o7777, "{text:?}: {m:o} {d:o}");
        }
    }
});
