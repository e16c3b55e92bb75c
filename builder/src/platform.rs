//! The host platform as the frontend sees it. There is one host-platform
//! table, the store's (`cache::platform::Platform::host`); the frontend is
//! pure and takes the platforms it lowers for as input, so the builder
//! converts the store's answer here and passes it in. BUILDPLATFORM, the
//! default TARGETPLATFORM, the config's `architecture` and the platform the
//! store picks base images for then agree on every machine, including one
//! whose architecture the table does not know.

/// The store's host platform in the frontend's type.
pub fn host() -> frontend::Platform {
    to_frontend(&cache::platform::Platform::host())
}

/// Lowering options for the host: target and build platform both the host's.
pub fn host_build_options() -> frontend::BuildOptions {
    frontend::BuildOptions {
        platform: host(),
        build_platform: host(),
        ..Default::default()
    }
}

fn to_frontend(p: &cache::platform::Platform) -> frontend::Platform {
    frontend::Platform {
        os: p.os.clone(),
        architecture: p.architecture.clone(),
        variant: p.variant.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontend_and_store_agree_on_the_host() {
        let store = cache::platform::Platform::host();
        assert_eq!(host().to_string(), store.to_string());
        let opts = host_build_options();
        assert_eq!(opts.platform.to_string(), store.to_string());
        assert_eq!(opts.build_platform.to_string(), store.to_string());
    }

    #[test]
    fn unknown_architectures_pass_through_the_same_everywhere() {
        let store = cache::platform::Platform::for_rust_arch("sparc64");
        let fe = to_frontend(&store);
        assert_eq!(fe.architecture, "sparc64");
        assert_eq!(fe.to_string(), store.to_string());
        // What the frontend lowers BUILDARCH/TARGETARCH from for that host.
        let df = frontend::parse(
            "Dockerfile",
            "FROM scratch\nARG TARGETARCH\nARG BUILDARCH\nENV T=$TARGETARCH B=$BUILDARCH\n",
        )
        .expect("parses");
        let opts = frontend::BuildOptions {
            platform: fe.clone(),
            build_platform: fe,
            ..Default::default()
        };
        let g = frontend::lower(&df, &opts, &frontend::EmptyResolver).expect("lowers");
        let env = &g.stages.last().expect("a stage").config.env;
        assert!(env.iter().any(|e| e == "T=sparc64"), "{env:?}");
        assert!(env.iter().any(|e| e == "B=sparc64"), "{env:?}");
    }
}
