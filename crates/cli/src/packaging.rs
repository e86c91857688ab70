//! Man page and shell completions, generated from the command-line definition so that
//! they can never disagree with it. Used by `examples/gen_packaging.rs` (which writes
//! `contrib/`) and by the test that checks `contrib/` is up to date.

use std::io;
use std::path::Path;

use clap::CommandFactory;

use super::args::Args;

/// Writes `man/offlineimap.1` and `completions/{offlineimap.bash,_offlineimap,offlineimap.fish}`
/// under `dir`.
pub fn generate(dir: &Path) -> io::Result<()> {
    let cmd = Args::command();
    std::fs::create_dir_all(dir.join("man"))?;
    std::fs::create_dir_all(dir.join("completions"))?;
    let mut man = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut man)?;
    std::fs::write(dir.join("man/offlineimap.1"), man)?;
    for (shell, file) in [
        (clap_complete::Shell::Bash, "offlineimap.bash"),
        (clap_complete::Shell::Zsh, "_offlineimap"),
        (clap_complete::Shell::Fish, "offlineimap.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "offlineimap", &mut out);
        std::fs::write(dir.join("completions").join(file), out)?;
    }
    Ok(())
}
