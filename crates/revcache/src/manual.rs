//! What the CLI definition generates for packagers and shells: completion
//! scripts (`revcache completions SHELL`) and man pages (`revcache man`).
//!
//! Generated at run time from the same `clap` definition that parses the
//! flags, so they never drift from the binary and need no build step; a
//! package build runs the installed binary once to write them.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, ManArgs};

/// Prints the completion script for `args.shell` to stdout.
pub fn completions(args: CompletionsArgs) -> anyhow::Result<()> {
    // Rendered into memory first: clap_complete panics on a failed write.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "revcache", &mut script);
    print(&script).context("cannot write the completion script")
}

/// Prints revcache(1) to stdout, or writes it and one page per command
/// (revcache-serve(1) …) into `args.dir`.
pub fn man(args: ManArgs) -> anyhow::Result<()> {
    match &args.dir {
        Some(dir) => write_pages(dir),
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            print(&page).context("cannot write the man page")
        }
    }
}

/// Writes `bytes` to stdout; a reader that stopped early (`| head`) is
/// not an error.
fn print(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn write_pages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the man page directory {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("cannot write man pages into {}", dir.display()))
}
