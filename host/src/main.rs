//! `vk-stackpath`: the command line. Parsing and printing only; the work is in the library.

mod cli;

fn main() -> std::process::ExitCode {
    vk_stackpath::memory::limit_arenas();
    cli::main()
}
