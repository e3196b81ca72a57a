//! Builds libzmq 4.3.5 (zeromq-src) with CURVE, against the libsodium that
//! libsodium-sys-stable built (`DEP_SODIUM_LIB`, `DEP_SODIUM_INCLUDE`), and links it
//! statically.

use std::env;

fn main() {
    let lib = env::var("DEP_SODIUM_LIB").expect("libsodium-sys-stable gives DEP_SODIUM_LIB");
    let include =
        env::var("DEP_SODIUM_INCLUDE").expect("libsodium-sys-stable gives DEP_SODIUM_INCLUDE");
    // libzmq's own sources warn by the hundred under a recent gcc; they are not ours to
    // mend, and a workspace member's build-script warnings would bury the project's own.
    let target = env::var("TARGET")
        .expect("cargo gives TARGET")
        .replace('-', "_");
    // zeromq-src leaves eventfd out on Linux, so every socket's mailbox is a socketpair:
    // two files a socket where one does (a node with thousands of peers runs into its
    // open-file limit twice as soon). Linux has had eventfd since 2.6.27, glibc since 2.9.
    let eventfd = match target.contains("linux") {
        true => " -DZMQ_HAVE_EVENTFD -DZMQ_HAVE_EVENTFD_CLOEXEC",
        false => "",
    };
    for flags in [format!("CXXFLAGS_{target}"), format!("CFLAGS_{target}")] {
        let mut value = env::var(&flags).unwrap_or_default();
        value.push_str(" -w");
        value.push_str(eventfd);
        // Only this build script's own process reads it (cc, called below).
        env::set_var(flags, value.trim());
    }
    zeromq_src::Build::new()
        .with_libsodium(Some(zeromq_src::LibLocation::new(lib, include)))
        .build();
}
