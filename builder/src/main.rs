//! `strata`: build container images from Dockerfiles as an ordinary user,
//! with no daemon. This file only hands the command line to [`builder::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    builder::cli::main()
}
