fn main() {
    // defmt's linker script (its interned strings live in an info section of the ELF).
    println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
}
