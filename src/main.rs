fn main() {
    std::process::exit(pm3::cli::main());
}
