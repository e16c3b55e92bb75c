//! How a RUN step that failed is reported: BuildKit's words, so that a CI
//! log reads the same as under `docker build`:
//! `process "/bin/sh -c make" did not complete successfully: exit code: 2`.

use runtime::sandbox::ExitStatus;

/// The message for a step whose process ended with `exit` (not 0).
pub fn failed_process(argv: &[String], exit: ExitStatus) -> String {
    let status = match exit {
        ExitStatus::Code(c) => format!("exit code: {c}"),
        // A shell reports death by a signal as 128 + the signal, as does
        // BuildKit; the signal is named too.
        ExitStatus::Signal(s) => format!("exit code: {} (killed by signal {s})", 128 + s),
    };
    format!(
        "process \"{}\" did not complete successfully: {status}",
        argv.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildkit_words() {
        let argv = vec!["/bin/sh".to_string(), "-c".into(), "exit 3".into()];
        assert_eq!(
            failed_process(&argv, ExitStatus::Code(3)),
            "process \"/bin/sh -c exit 3\" did not complete successfully: exit code: 3"
        );
        assert_eq!(
            failed_process(&argv, ExitStatus::Signal(9)),
            "process \"/bin/sh -c exit 3\" did not complete successfully: exit code: 137 (killed by signal 9)"
        );
    }
}
