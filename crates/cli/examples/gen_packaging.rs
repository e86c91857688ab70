//! Regenerates `contrib/man` and `contrib/completions` from the command-line definition:
//! `cargo run -p offlineimap --example gen_packaging -- contrib`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../src/args.rs"]
#[allow(dead_code)]
mod args;
#[path = "../src/packaging.rs"]
mod packaging;

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "contrib".to_string());
    packaging::generate(std::path::Path::new(&dir)).expect("writing the packaging files");
    println!("wrote man page and completions under {dir}");
}
