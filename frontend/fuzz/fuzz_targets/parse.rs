//! Fuzz target: no input may panic the parser, the instruction layer, the
//! dump or the JSON view.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(ast) = frontend::parse("fuzz", &text) {
        let _ = frontend::syntax::validate(&ast);
        let dump = frontend::dump::dump(&ast);
        assert_eq!(dump.lines().count(), ast.instructions.len());
        for inst in &ast.instructions {
            let _ = frontend::syntax::sources::sources_and_dest(inst);
            assert!(inst.span.byte_start <= inst.span.byte_end);
            assert!(inst.span.byte_end <= text.len());
        }
    }
});
