fn main() {
    // A panic is reported by the hook in `cli::main` and ends with exit code 1, never 101.
    let code = std::panic::catch_unwind(pm3::cli::main).unwrap_or(1);
    std::process::exit(code);
}
